"""rlhf_course.toy: the enumerable problems, the exact quantities, the estimators' expected gradients, and
every trainer's convergence to the exact optimum pi*_beta."""
import itertools
import math

import numpy as np
import pytest
import torch

from rlhf_course import toy
from rlhf_course.kl import kl_divergence
from rlhf_course.objective import optimal_policy

torch.set_num_threads(1)
D = torch.float64
BANDIT = toy.make_bandit()
SEQS = toy.make_sequences()
EOS = toy.make_sequences(eos=True)
PROBLEMS = {"bandit": BANDIT, "sequences": SEQS}


def random_logits(problem, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return problem.ref_logits + scale * torch.randn(problem.ref_logits.shape, generator=g, dtype=D)


# --------------------------------------------------------------------------------------------------
# the problems


def test_bandit_is_chapter_4s_reference_case():
    """TOOLCHAIN.md: pi_ref=[.5,.3,.2], r=[1,0,-1], beta=1 gives pi*=[.784399,.173139,.042463]."""
    np.testing.assert_allclose(toy.optimum(BANDIT, 1.0)[0].numpy(), [0.784399, 0.173139, 0.042463], atol=1e-6)
    np.testing.assert_allclose(BANDIT.ref_probs.numpy(), [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]], atol=1e-15)


def test_sequences_enumerate_every_response():
    assert (SEQS.n_responses, SEQS.n_states, SEQS.length) == (27, 13, 3)
    assert sorted(SEQS.labels) == sorted("".join(p) for p in itertools.product("abc", repeat=3))
    # responses of length 1..3 that end with "." or reach length 3, with no "." before the end
    assert EOS.n_responses == 1 + 2 + 4 * 3 and EOS.n_states == 1 + 2 + 4
    assert {lab for lab in EOS.labels if len(lab) < 3} == {".", "a.", "b."}
    for p in (SEQS, EOS):
        torch.testing.assert_close(p.ref_probs.sum(-1), torch.ones(p.n_prompts, dtype=D))
        lengths = p.mask.sum(1)
        assert all(len(lab) == int(n) for lab, n in zip(p.labels, lengths))


@pytest.mark.parametrize("problem", [SEQS, EOS], ids=["sequences", "with end token"])
def test_response_probabilities_are_the_autoregressive_product(problem):
    logits = random_logits(problem, seed=3)
    probs = problem.probs(logits)
    token_probs = torch.softmax(logits, -1)
    eos = problem.eos
    names = "abcdefghijklmnopqrstuvwxyz"
    states = {(): 0}  # rebuild the state numbering independently: breadth first, content tokens in order
    content = [v for v in range(problem.vocab) if v != eos]
    layer = [()]
    for _ in range(problem.length - 1):
        layer = [q + (v,) for q in layer for v in content]
        for q in layer:
            states[q] = len(states)
    for x in range(problem.n_prompts):
        for n, label in enumerate(problem.labels):
            y = tuple(eos if ch == "." else names.index(ch) for ch in label)
            want = 1.0
            for t_, v in enumerate(y):
                want *= float(token_probs[x, states[y[:t_]], v])
            assert float(probs[x, n]) == pytest.approx(want, rel=1e-12)


def test_sequence_rewards():
    i = SEQS.labels.index
    assert float(SEQS.scores[0, i("aba")]) == 1.0 and float(SEQS.scores[0, i("aab")]) == 0.5
    assert float(SEQS.scores[0, i("ccc")]) == 0.0 and float(SEQS.scores[1, i("aab")]) == pytest.approx(2 / 3)
    assert float(EOS.scores[0, EOS.labels.index("ab.")]) == 1.0  # the end token is not scored


def test_exact_values_match_a_direct_conditional_expectation():
    problem = EOS
    logits = random_logits(problem, seed=1)
    probs = problem.probs(logits)
    g = torch.Generator().manual_seed(2)
    rewards = torch.randn(problem.n_prompts, problem.n_responses, problem.length, generator=g, dtype=D) * problem.mask
    v = toy.exact_values(problem, probs, rewards)
    for x in range(problem.n_prompts):
        for n, label in enumerate(problem.labels):
            for t_ in range(len(label)):
                same = [m for m, other in enumerate(problem.labels) if other[:t_] == label[:t_] and len(other) > t_]
                w = probs[x, same]
                ret = torch.stack([rewards[x, m, t_:].sum() for m in same])
                assert float(v[x, n, t_]) == pytest.approx(float((w * ret).sum() / w.sum()), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# the gradient of the KL-regularized objective, and what each estimator's expectation is


def test_policy_gradient_theorem_by_enumeration():
    """grad J = E[grad log pi(y) (r(y) - beta log(pi(y) / pi_ref(y)))]: the "+1" term has expectation 0."""
    for problem in (BANDIT, SEQS, EOS):
        logits = random_logits(problem, seed=4)
        beta = 0.7
        exact = toy.exact_objective_gradient(problem, logits, beta)
        theta = logits.clone().requires_grad_(True)
        seq_logp = problem.token_logprobs(theta).sum(-1)
        with torch.no_grad():
            probs = seq_logp.exp()
            penalized = problem.scores - beta * (seq_logp - problem.ref_probs.log())
        surrogate = (probs * penalized * seq_logp).sum(-1).mean()
        (g,) = torch.autograd.grad(surrogate, theta)
        torch.testing.assert_close(g, exact, rtol=1e-10, atol=1e-12)


def _expected(problem, logits, beta, **kw):
    return toy.gradient_estimates(problem, logits, method="reinforce", beta=beta, estimate="exact", repeats=1,
                                  **kw)[0]


def _grad_of(problem, logits, fn):
    theta = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(problem.probs(theta)).mean(), theta)
    return g


@pytest.mark.parametrize("kw", [
    dict(kl="reward", kl_per_token=True, baseline="none"),
    dict(kl="reward", kl_per_token=True, baseline="exact", lam=0.5),
    dict(kl="reward", kl_per_token=False, baseline="none"),
    dict(kl="reward", kl_per_token=False, baseline="exact", lam=0.95),
    dict(kl="loss", kl_estimator="exact", baseline="none"),
    dict(kl="loss", kl_estimator="k2", baseline="exact"),
], ids=["per token", "per token, V baseline, GAE", "per response", "per response, V baseline",
        "loss: exact KL", "loss: k2"])
@pytest.mark.parametrize("name", ["bandit", "sequences", "eos"])
def test_unbiased_estimators_have_the_exact_gradient_in_expectation(name, kw):
    problem = {"bandit": BANDIT, "sequences": SEQS, "eos": EOS}[name]
    logits = random_logits(problem, seed=5)
    torch.testing.assert_close(_expected(problem, logits, 0.6, **kw),
                               toy.exact_objective_gradient(problem, logits, 0.6), rtol=1e-9, atol=1e-12)


def test_k1_and_k3_as_loss_terms_have_other_gradients():
    """k1 as a loss term contributes nothing in expectation (E_pi[grad log pi] = 0); k3 contributes the
    gradient of the *forward* KL(pi_ref || pi)."""
    beta = 0.6
    for problem in (BANDIT, SEQS):
        logits = random_logits(problem, seed=6)
        reward_only = _grad_of(problem, logits, lambda p: (p * problem.scores).sum(-1))
        torch.testing.assert_close(_expected(problem, logits, beta, kl="loss", kl_estimator="k1", baseline="none"),
                                   reward_only, rtol=1e-9, atol=1e-12)
        forward = _grad_of(problem, logits, lambda p: (p * problem.scores).sum(-1)
                           - beta * kl_divergence(problem.ref_probs, p))
        torch.testing.assert_close(_expected(problem, logits, beta, kl="loss", kl_estimator="k3", baseline="none"),
                                   forward, rtol=1e-9, atol=1e-12)


def test_sampled_estimates_average_to_the_exact_gradient():
    """The leave-one-out baseline keeps REINFORCE unbiased: the mean of many small-batch estimates is
    within 4 standard errors of grad J in every coordinate."""
    logits = random_logits(BANDIT, seed=7)
    est = toy.gradient_estimates(BANDIT, logits, method="reinforce", beta=0.5, samples_per_prompt=8, repeats=400,
                                 baseline="loo")
    exact = toy.exact_objective_gradient(BANDIT, logits, 0.5)
    se = est.std(0) / math.sqrt(est.shape[0])
    assert bool(((est.mean(0) - exact).abs() <= 4 * se + 1e-12).all())


@pytest.mark.parametrize("problem", [BANDIT, SEQS, EOS], ids=["bandit", "sequences", "eos"])
def test_logits_of_gives_back_the_distribution(problem):
    p = toy.optimum(problem, 0.4)
    torch.testing.assert_close(problem.probs(toy.logits_of(problem, p)), p, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="shape"):
        toy.logits_of(problem, p[:, :-1])


@pytest.mark.parametrize("problem", [BANDIT, SEQS], ids=["bandit", "sequences"])
def test_kl_in_the_reward_has_zero_variance_at_the_optimum(problem):
    """At pi*, r(y) - beta log(pi*(y)/pi_ref(y)) = beta log Z for every y, and the per-token return-to-go
    depends on the prefix only: with a per-response leave-one-out or a value baseline every advantage is 0
    and every sampled gradient is exactly 0. The KL as a separate loss term does not share this."""
    beta = 0.5
    logits = toy.logits_of(problem, toy.optimum(problem, beta))
    common = dict(method="reinforce", beta=beta, samples_per_prompt=16, repeats=10)
    for kw in (dict(kl_per_token=False, baseline="loo"), dict(kl_per_token=True, baseline="exact")):
        assert float(toy.gradient_estimates(problem, logits, **common, **kw).abs().max()) < 1e-12
    as_loss = toy.gradient_estimates(problem, logits, kl="loss", **common)
    assert float(as_loss.std(0).max()) > 1e-3


# --------------------------------------------------------------------------------------------------
# convergence of every method to pi*_beta


BETAS = (0.5, 1.0, 2.0)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
@pytest.mark.parametrize("method", list(toy.FAST))
def test_every_method_converges_to_the_exact_optimum(method, problem_name, beta):
    problem = PROBLEMS[problem_name]
    run = toy.train(problem, beta=beta, seed=0, **toy.FAST[method])
    target = toy.optimum(problem, beta).numpy()
    start = toy.tv_distance(problem.ref_probs, target)
    assert start > 0.05  # there is a way to go
    assert run.tv_to(target)[-1] < 0.01


@pytest.mark.parametrize("method", ["REINFORCE, KL in reward (per token)", "A2C", "PPO, clipped surrogate",
                                    "PPO, penalty J - kappa D"])
def test_convergence_with_padding(method):
    """Variable-length responses (an end token, padded batches) converge to the same exact optimum."""
    run = toy.train(EOS, beta=0.5, **toy.FAST[method])
    assert run.tv_to(toy.optimum(EOS, 0.5).numpy())[-1] < 0.01


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
@pytest.mark.parametrize("method", list(toy.FAST_ADAPTIVE))
def test_adaptive_beta_finds_the_optimum_with_the_target_kl(method, problem_name):
    """Ziegler's controller moves beta until KL(pi || pi_ref) = target: the run ends at pi*_{beta*} with
    beta* the (exactly computed) coefficient whose optimum has that KL."""
    problem = PROBLEMS[problem_name]
    target_kl = 0.1
    beta_star = toy.beta_for_kl(problem, target_kl)
    run = toy.train(problem, beta=0.5, target_kl=target_kl, **toy.FAST_ADAPTIVE[method])
    assert abs(beta_star - 0.5) > 0.2  # beta had to move
    assert run.beta[-1] == pytest.approx(beta_star, rel=0.03)
    assert run.kl[-1] == pytest.approx(target_kl, rel=0.05)
    assert run.tv_to(toy.optimum(problem, beta_star).numpy())[-1] < 0.01


def test_k3_as_a_loss_term_converges_to_the_forward_kl_optimum():
    beta = 0.5
    for problem in (BANDIT, SEQS):
        run = toy.train(problem, method="reinforce", beta=beta, kl="loss", kl_estimator="k3", estimate="exact",
                        baseline="none", iterations=300)
        forward = toy.forward_kl_optimum(problem, beta)
        assert run.tv_to(forward.numpy())[-1] < 1e-4
        assert toy.tv_distance(forward, toy.optimum(problem, beta)) > 0.05


def test_forward_kl_optimum_is_stationary():
    beta = 0.4
    pi = toy.forward_kl_optimum(SEQS, beta)
    ref, r = SEQS.ref_probs, SEQS.scores
    torch.testing.assert_close(pi.sum(-1), torch.ones(2, dtype=D))
    mean_r = (pi * r).sum(-1, keepdim=True)
    torch.testing.assert_close(pi * (r - mean_r), beta * (pi - ref), atol=1e-9, rtol=0)


def test_a2c_is_ppo_with_one_step_per_batch():
    """At the first step of an update the ratio is 1 and the values are the old values: PPO's clipped
    losses then have A2C's gradients, so PPO with one epoch of one minibatch *is* A2C, step for step."""
    a2c = toy.train(SEQS, method="a2c", beta=0.5, iterations=5, samples_per_prompt=64)
    ppo = toy.train(SEQS, method="ppo", beta=0.5, iterations=5, samples_per_prompt=64, ppo_epochs=1, minibatches=1)
    torch.testing.assert_close(a2c.logits, ppo.logits, rtol=1e-10, atol=1e-12)


def test_runs_are_reproducible_and_start_at_the_reference():
    a = toy.train(BANDIT, method="ppo", iterations=3, samples_per_prompt=32)
    b = toy.train(BANDIT, method="ppo", iterations=3, samples_per_prompt=32)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_allclose(a.probs[0], BANDIT.ref_probs.numpy())
    assert a.probs.shape == (4, 2, 3) and a.kl[0] == 0.0
    c = toy.train(BANDIT, method="ppo", iterations=3, samples_per_prompt=32, seed=1)
    assert not np.array_equal(a.probs, c.probs)


def test_clipping_bounds_the_ratio_with_plain_gradient_steps():
    """Expected updates, 10 epochs per batch: the bare surrogate jumps far from pi_old; the clipped one
    keeps every ratio near [1 - eps, 1 + eps]; the penalty keeps each step's KL small."""
    b1 = toy.make_bandit([[0.5, 0.3, 0.2]], [[1.0, 0.0, -1.0]])
    common = dict(method="ppo", beta=1.0, iterations=10, lr=1.0, lr_decay=False, optimizer="sgd", ppo_epochs=10,
                  estimate="exact", baseline="exact")
    runs = {s: toy.train(b1, surrogate=s, **common) for s in ("plain", "clip")}
    runs["penalty"] = toy.train(b1, surrogate="penalty", trust_coef=3.0, **common)

    def max_ratio_change(run):
        return float(np.abs(run.probs[1:] / run.probs[:-1] - 1).max())

    assert max_ratio_change(runs["plain"]) > 2.0
    assert max_ratio_change(runs["clip"]) < 0.2 * 2
    assert runs["penalty"].stats["step_kl"].max() < 0.05 < runs["plain"].stats["step_kl"].max()


# --------------------------------------------------------------------------------------------------
# the reward-KL frontier


def test_no_policy_beats_the_frontier():
    """Random policies, and every iterate of trained runs, have at most the frontier's reward at their KL."""
    rng = np.random.default_rng(0)
    for problem in (BANDIT, SEQS):
        probs = rng.dirichlet(np.ones(problem.n_responses), size=(12, problem.n_prompts))
        rewards = (probs * problem.scores.numpy()).sum(-1).mean(-1)
        kls = np.array([float(kl_divergence(torch.as_tensor(p), problem.ref_probs).mean()) for p in probs])
        assert (rewards <= toy.frontier_at(problem, kls) + 1e-9).all()
    run = toy.train(SEQS, beta=0.5, **toy.FAST["PPO, clipped surrogate"])
    pick = np.r_[0:len(run.kl):5, len(run.kl) - 1]
    assert (run.reward[pick] <= toy.frontier_at(SEQS, run.kl[pick]) + 1e-9).all()
    # and the run ends on the frontier, at the point of its own beta
    assert run.reward[-1] == pytest.approx(float(toy.frontier_at(SEQS, [run.kl[-1]])[0]), abs=2e-3)


def test_frontier_points_are_the_optima():
    f = toy.frontier(BANDIT, [0.5, 1.0, 2.0])
    assert np.all(np.diff(f["kl"]) < 0) and np.all(np.diff(f["reward"]) < 0)  # more beta: less KL, less reward
    pi = optimal_policy(BANDIT.ref_probs, BANDIT.scores, 1.0)
    assert f["reward"][1] == pytest.approx(float((pi * BANDIT.scores).sum(-1).mean()))
    assert toy.beta_for_kl(BANDIT, float(f["kl"][1])) == pytest.approx(1.0, rel=1e-9)


# --------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("kw, match", [
    (dict(method="sarsa"), "method"),
    (dict(beta=-1.0), "beta"),
    (dict(lr=0.0), "lr"),
    (dict(iterations=0), "iterations"),
    (dict(samples_per_prompt=1), "samples_per_prompt"),
    (dict(surrogate="trpo"), "surrogate"),
    (dict(clip_eps=1.5), "clip_eps"),
    (dict(lam=1.2), "lam"),
    (dict(kl="both"), "kl"),
    (dict(kl="loss", method="ppo"), "kl='loss'"),
    (dict(method="reinforce", baseline="learned"), "actor-critic"),
    (dict(method="a2c", baseline="loo"), "baseline"),
    (dict(estimate="exact", method="reinforce", baseline="loo"), "estimate='exact'"),
    (dict(estimate="exact", method="ppo", baseline="exact", minibatches=4), "minibatches=1"),
    (dict(method="a2c", ppo_epochs=3), "PPO's"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(target_kl=-0.1), "target_kl"),
    (dict(seed=1.5), "seed"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        toy.Config(**kw)


def test_other_validation():
    with pytest.raises(ValueError, match="too short"):
        toy.train(BANDIT, target_kl=0.1, kl_horizon=100.0, iterations=1)
    with pytest.raises(TypeError, match="TabularProblem"):
        toy.train("bandit")
    with pytest.raises(ValueError, match="shape"):
        BANDIT.probs(torch.zeros(2, 1, 4, dtype=D))
    with pytest.raises(ValueError, match="sum to 1"):
        toy.make_bandit([[0.5, 0.6]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="same shape"):
        toy.make_bandit([[0.5, 0.5]], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="too many"):
        toy.make_sequences(vocab=10, length=5)
    with pytest.raises(ValueError, match="outside the range"):
        toy.beta_for_kl(BANDIT, 50.0)
    with pytest.raises(ValueError, match="method must be 'reinforce'"):
        toy.gradient_estimates(BANDIT, BANDIT.ref_logits, method="ppo")
