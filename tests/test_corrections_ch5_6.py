"""Checks of the corrected statements of the policy-gradient and PPO chapters (issue 16, items 2, 5, 6, 7).

Every expectation is exact: the toy problems are small enough to sum over every response. The quantity a
statement is about is computed one way (an estimator's expected gradient, a normalized loss's expected
gradient, the KL of the optimum) and compared with an independent computation (autograd of the enumerated
KL or objective, the per-state KLs, finite differences, the closed-form limit).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_course import toy
from rlhf_course.kl import k1, k3
from rlhf_course.objective import optimal_policy

torch.set_num_threads(1)
F64 = torch.float64
SEQS = toy.make_sequences()             # fixed length 3
VARLEN = toy.make_sequences(eos=True)   # lengths 1 to 3 (the end token ends a response)
seeds = st.integers(0, 2**31 - 1)


def random_logits(problem: toy.TabularProblem, seed: int, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(problem.ref_logits.shape, generator=g, dtype=F64)
    return problem.ref_logits + scale * noise


def enumerated_kl(problem: toy.TabularProblem, logits: torch.Tensor) -> torch.Tensor:
    """Prompt-averaged KL(pi || pi_ref) over whole responses, written out (not rlhf_course.kl)."""
    p, q = problem.probs(logits), problem.ref_probs
    return (p * (torch.log(p) - torch.log(q))).sum(-1).mean()


def grad_of(fn, logits: torch.Tensor) -> torch.Tensor:
    theta = logits.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(theta), theta)
    return torch.nan_to_num(g)


def expected_term_gradient(problem, term, theta, sampler, weight_by_ratio=False) -> torch.Tensor:
    """E_{y ~ pi_sampler}[grad_theta term(delta)] (times pi_theta / pi_sampler if asked), exact."""
    def objective(t):
        delta = problem.token_logprobs(t) - problem.ref_token_logprobs
        w = problem.probs(sampler).detach()
        if weight_by_ratio:  # rho = pi_theta / pi_old, a number per sample (no gradient through it)
            w = w * (problem.probs(t) / problem.probs(sampler)).detach()
        return (w * term(delta)).sum(1).mean()
    return grad_of(objective, theta)


def sequence_k2(delta):
    return delta.sum(-1) ** 2 / 2


def per_token_k2(delta):
    return (delta ** 2 / 2).sum(-1)


def rel_error(g, truth) -> float:
    return float((g - truth).norm() / truth.norm())


# --- item 2: what a KL estimator in the loss differentiates --------------------------------------------

@settings(max_examples=15, deadline=None)
@given(seeds)
def test_sequence_k2_on_policy_has_the_kl_gradient(seed):
    theta = random_logits(SEQS, seed)
    got = expected_term_gradient(SEQS, sequence_k2, theta, theta)
    assert rel_error(got, grad_of(lambda t: enumerated_kl(SEQS, t), theta)) < 1e-10


@settings(max_examples=15, deadline=None)
@given(seeds)
def test_per_token_k2_differentiates_the_state_kls_with_the_states_held_fixed(seed):
    """E[grad sum_t delta_t^2 / 2] = sum_s d(s) grad KL(pi(.|s) || pi_ref(.|s)) with the visit
    probabilities d(s) not differentiated: the future terms of the KL's gradient are dropped."""
    theta = random_logits(SEQS, seed)
    got = expected_term_gradient(SEQS, per_token_k2, theta, theta)
    P, S = SEQS.n_prompts, SEQS.n_states
    visits = torch.zeros(P, S, dtype=F64)
    probs = SEQS.probs(theta).detach()
    for n in range(SEQS.n_responses):
        for t in range(SEQS.length):
            if SEQS.mask[n, t]:
                visits[:, SEQS.states[n, t]] += probs[:, n]

    def state_kls(t):
        lp, lq = torch.log_softmax(t, -1), torch.log_softmax(SEQS.ref_logits, -1)
        return (visits * (lp.exp() * (lp - lq)).sum(-1)).sum(1).mean()

    assert rel_error(got, grad_of(state_kls, theta)) < 1e-10


@settings(max_examples=15, deadline=None)
@given(seeds)
def test_per_token_k2_is_biased_away_from_the_reference(seed):
    theta = random_logits(SEQS, seed)
    got = expected_term_gradient(SEQS, per_token_k2, theta, theta)
    assert rel_error(got, grad_of(lambda t: enumerated_kl(SEQS, t), theta)) > 1e-3


@settings(max_examples=15, deadline=None)
@given(seeds, seeds)
def test_sequence_k2_off_policy_is_biased_and_the_ratio_repairs_it(seed_old, seed_step):
    old = random_logits(SEQS, seed_old)
    theta = old + 0.3 * (random_logits(SEQS, seed_step, 1.0) - SEQS.ref_logits)
    truth = grad_of(lambda t: enumerated_kl(SEQS, t), theta)
    assert rel_error(expected_term_gradient(SEQS, sequence_k2, theta, old), truth) > 1e-3
    # weighting each sample by pi_theta / pi_old turns the expectation back into one under pi_theta
    repaired = expected_term_gradient(SEQS, sequence_k2, theta, old, weight_by_ratio=True)
    assert rel_error(repaired, truth) < 1e-10


# --- item 5: the 1/#tokens factor ----------------------------------------------------------------------

def expected_normalized_gradient(problem, theta, beta, divide_by: str) -> torch.Tensor:
    """Exact expectation, over batches of two responses to one prompt (prompt drawn uniformly), of the
    gradient of L = -(1/D) sum_{i,t} G_i log pi(y_it | s_it), with G_i the penalized reward of response
    i held fixed and D the batch's token count ("tokens") or the constant 2 * max length ("constant")."""
    with torch.no_grad():
        probs = problem.probs(theta)
        lp = problem.token_logprobs(theta).sum(-1)
        G = problem.scores - beta * (lp - torch.log(problem.ref_probs))  # (P, N)
    lengths = problem.mask.sum(1)  # (N,)

    def loss(t):
        logp = problem.token_logprobs(t).sum(-1)  # (P, N): sum_t log pi(y_t | s_t)
        term = G * logp
        pair = term[:, :, None] + term[:, None, :]  # (P, N, N): responses i and j
        if divide_by == "tokens":
            denom = lengths[:, None] + lengths[None, :]
        else:
            denom = torch.full_like(lengths[:, None] + lengths[None, :], 2.0 * problem.length)
        w = probs[:, :, None] * probs[:, None, :]
        return -(w * pair / denom).sum((1, 2)).mean()

    return grad_of(loss, theta)


def cosine(a, b) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


@settings(max_examples=10, deadline=None)
@given(seeds, st.floats(0.2, 2.0))
def test_per_token_mean_is_parallel_to_the_gradient_for_fixed_lengths(seed, beta):
    theta = random_logits(SEQS, seed)
    got = expected_normalized_gradient(SEQS, theta, beta, "tokens")
    # every batch has 2T tokens: the expectation is exactly -grad J / T
    want = -toy.exact_objective_gradient(SEQS, theta, beta) / SEQS.length
    assert rel_error(got, want) < 1e-10


@settings(max_examples=10, deadline=None)
@given(seeds, st.floats(0.2, 2.0))
def test_per_token_mean_is_not_parallel_for_varying_lengths_but_a_constant_is(seed, beta):
    theta = random_logits(VARLEN, seed)
    grad_j = toy.exact_objective_gradient(VARLEN, theta, beta)
    by_tokens = expected_normalized_gradient(VARLEN, theta, beta, "tokens")
    assert cosine(-by_tokens, grad_j) < 1 - 1e-6
    by_constant = expected_normalized_gradient(VARLEN, theta, beta, "constant")
    assert rel_error(by_constant, -grad_j / VARLEN.length) < 1e-10


# --- item 6: the frontier's domain ---------------------------------------------------------------------

def kl_of_optimum(ref: np.ndarray, r: np.ndarray, beta: float) -> float:
    pi = optimal_policy(ref, r, beta)
    on = pi > 0  # 0 log 0 = 0: outputs the optimum has underflowed to zero add nothing
    return float(np.sum(pi[on] * (np.log(pi[on]) - np.log(ref[on]))))


problems = st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n),
    st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n)))


@settings(max_examples=30, deadline=None)
@given(problems, st.floats(0.3, 3.0))
def test_kl_of_the_optimum_falls_with_beta_at_rate_var_over_beta_cubed(problem, beta):
    w, r = (np.asarray(v, dtype=np.float64) for v in problem)
    ref = w / w.sum()
    pi = optimal_policy(ref, r, beta)
    var = float(pi @ r ** 2 - (pi @ r) ** 2)
    h = 1e-5 * beta
    slope = (kl_of_optimum(ref, r, beta + h) - kl_of_optimum(ref, r, beta - h)) / (2 * h)
    assert slope == pytest.approx(-var / beta ** 3, rel=1e-4, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(problems)
def test_kl_of_the_optimum_tends_to_minus_log_ref_mass_of_the_best(problem):
    w, r = (np.asarray(v, dtype=np.float64) for v in problem)
    r = np.round(r, 1)  # ties among the best outputs happen
    ref = w / w.sum()
    best = r == r.max()
    k_max = -math.log(ref[best].sum())
    kls = [kl_of_optimum(ref, r, b) for b in (10.0, 1.0, 0.1, 0.01, 1e-3)]
    assert all(a <= b + 1e-12 for a, b in zip(kls, kls[1:]))  # grows as beta shrinks
    assert all(k <= k_max + 1e-9 for k in kls)                 # never beyond K_max
    gap = np.sort(np.unique(r))
    if len(gap) > 1 and gap[-1] - gap[-2] >= 0.1:
        assert kls[-1] == pytest.approx(k_max, abs=1e-6)       # and reaches it in the limit


def test_a_constant_reward_has_no_frontier():
    ref = np.array([0.5, 0.3, 0.2])
    for beta in (0.01, 1.0, 100.0):
        assert kl_of_optimum(ref, np.full(3, 0.7), beta) == pytest.approx(0.0, abs=1e-12)


def test_the_sequence_problem_frontier_ends_at_k_max():
    best = SEQS.scores == SEQS.scores.max(1, keepdim=True).values
    k_max = float(-torch.log((SEQS.ref_probs * best).sum(1)).mean())
    front = toy.frontier(SEQS, np.geomspace(1e-3, 1e3, 60))
    assert (np.diff(front["kl"]) <= 1e-15).all()  # betas ascending: the KL never rises
    falling = front["beta"][1:] > 0.05  # and strictly falls until it is K_max to 15 digits
    assert (np.diff(front["kl"])[falling] < 0).all()
    assert front["kl"].max() <= k_max + 1e-12
    assert front["kl"][0] == pytest.approx(k_max, rel=1e-6)  # beta = 1e-3: nearly there


# --- item 7: the sign in k3's growth -------------------------------------------------------------------

def test_k3_grows_linearly_where_the_policy_prefers_the_token():
    """x = log pi_ref - log pi < 0 (the policy likes the token more): k3 = e^x - 1 - x is -x - 1 up to
    e^x < 1, so it grows by one per nat, one nat below k1 = -x; for x > 0 it grows like e^x."""
    x = np.array([-40.0, -20.0, -10.0, -5.0])
    logp, ref = np.zeros_like(x), x  # log pi = 0, log pi_ref = x
    est3, est1 = k3(logp, ref), k1(logp, ref)
    np.testing.assert_allclose(np.diff(est3), np.diff(-x), rtol=1e-2)
    np.testing.assert_allclose(est1 - est3, 1 - np.exp(x), rtol=1e-12)
    up = np.array([5.0, 10.0, 20.0])
    growth = np.diff(np.log(k3(-up, np.zeros(3))))  # log pi = -x, log pi_ref = 0
    np.testing.assert_allclose(growth, np.diff(up), rtol=1e-2)  # log k3 grows like x: exponential


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8), seeds)
def test_k3_minus_k1_averages_to_zero_under_the_policy(weights, seed):
    """Both estimators are unbiased, so the mean of k3 - k1 = e^x - 1 under pi is 0: the many tokens
    with x < 0, where k3 sits up to a nat below k1, are paid back by rare tokens with x > 0."""
    pi = np.asarray(weights) / np.sum(weights)
    ref = np.random.default_rng(seed).dirichlet(np.ones(len(pi)))
    gap = k3(np.log(pi), np.log(ref)) - k1(np.log(pi), np.log(ref))
    assert float(pi @ gap) == pytest.approx(0.0, abs=1e-12)


# --- the chapter's table helper ------------------------------------------------------------------------

def test_show_html_table_keeps_tokens_visible_and_returns_nothing(monkeypatch):
    import IPython.display

    from rlhf_course.tables import show_html_table

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    out = show_html_table(["response", "gold"], [("amazing . <eos>", 0.5)], [None, ".2f"])
    assert out is None and len(shown) == 1
    html = shown[0].data
    assert "amazing . &lt;eos&gt;" in html and "<eos>" not in html and ">0.50<" in html
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        show_html_table(["response", "gold"], [("only one",)])
