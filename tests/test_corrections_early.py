"""Checks of corrected statements in the early chapters (KL, sequences, objective, case studies, optimal policy).

Each test states the claim it checks, as the chapter now words it, and computes it independently of the
chapter's own cells: by enumeration, by finite differences, or from the definitions.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import softmax

from rlhf_course.kl import entropy, kl_divergence
from rlhf_course.objective import optimal_policy, rlhf_objective
from rlhf_course.bigrams import bigram_logits, card000_example, enumerate_sequences
from rlhf_course.sequences import sequence_logprob, sequence_penalty, token_logprobs
from rlhf_course.support_toy import FLATTERY, PROXY, REF, train

# --- the KL chapter: how often a sample meets a negative penalty ---------------------------------------


def p_negative(pi: np.ndarray, ref: np.ndarray) -> float:
    """P_{y ~ pi}(log pi(y) - log pi_ref(y) < 0), by enumerating the responses pi samples."""
    return float(sum(p for p, q in zip(pi, ref) if 0 < p < q))


def distributions(k: int, zeros: bool):
    """Probability vectors on k outcomes; with ``zeros``, some entries may be exactly 0."""
    weight = st.floats(0.0, 1.0) if zeros else st.floats(1e-3, 1.0)
    return st.lists(weight, min_size=k, max_size=k).filter(lambda w: sum(w) > 1e-3).map(
        lambda w: np.array(w) / sum(w))


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(distributions(k, False), distributions(k, False))))
def test_a_full_support_policy_that_differs_meets_negative_penalties(pair):
    """Policy with every response possible (a softmax), pi != pi_ref: P(negative penalty) > 0."""
    pi, ref = pair
    if np.allclose(pi, ref, rtol=0, atol=1e-9):
        return
    assert p_negative(pi, ref) > 0


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(distributions(k, True), distributions(k, True))))
def test_never_meeting_a_negative_penalty_means_a_dropped_response(pair):
    """P(negative penalty) = 0 and pi != pi_ref force pi(y) = 0 < pi_ref(y) for some y."""
    pi, ref = pair
    if p_negative(pi, ref) == 0 and not np.allclose(pi, ref, rtol=0, atol=1e-9):
        assert np.any((pi == 0) & (ref > 0))


def test_the_chapter_examples_of_negative_penalties():
    # Most samples negative, KL still positive.
    pi, ref = np.array([0.6, 0.4]), np.array([0.9, 0.1])
    assert p_negative(pi, ref) == pytest.approx(0.6)
    assert kl_divergence(pi, ref) == pytest.approx(0.6 * np.log(0.6 / 0.9) + 0.4 * np.log(4.0))
    assert kl_divergence(pi, ref) > 0
    # No sample negative: every sample pays exactly the KL, log 2.
    pi, ref = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    assert p_negative(pi, ref) == 0
    assert kl_divergence(pi, ref) == pytest.approx(np.log(2))


# --- the sequence chapter: the mean of the per-token penalties is not the sequence KL ----------------------


def random_bigram_pair(seed: int, vocab: int):
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 1, vocab), rng.normal(0, 1, (vocab, vocab))) for _ in range(2)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_sum_is_the_kl_and_expected_mean_is_not(seed):
    vocab, max_len = 3, 5
    (pi_model, ref_model) = random_bigram_pair(seed, vocab)
    tokens, mask = enumerate_sequences(vocab, max_len, eos=0)
    logp = token_logprobs(bigram_logits(tokens, *pi_model), tokens)
    ref_logp = token_logprobs(bigram_logits(tokens, *ref_model), tokens)
    seq_logp, seq_ref_logp = sequence_logprob(logp, mask), sequence_logprob(ref_logp, mask)
    prob = np.exp(seq_logp)
    # the KL over whole responses, straight from the definition
    kl = float(np.sum(prob * (seq_logp - seq_ref_logp)))
    pen = sequence_penalty(logp, ref_logp, mask)
    assert np.sum(prob * pen) == pytest.approx(kl, abs=1e-12)
    mean_expectation = float(np.sum(prob * pen / mask.sum(-1)))
    assert abs(mean_expectation - kl) > 0.05 * kl


def test_card000_mean_shrinks_the_gap_and_credits_a_negative_penalty_less():
    ex = card000_example()
    mask = ex["mask"]
    pen = sequence_penalty(ex["logp"], ex["ref_logp"], mask)
    n = mask.sum(-1)
    # A is made less likely (negative penalty), B more likely; B is longer
    assert pen[0] < 0 < pen[1] and n[1] > n[0] > 1
    mean = pen / n
    assert pen[0] < mean[0] < 0          # the mean credits A less
    assert 0 < mean[1] < pen[1]          # and charges B less
    assert 0 < mean[1] - mean[0] < pen[1] - pen[0]


# --- the objective chapter: the batch-average baseline scales the gradient by (n - 1) / n ------------------


def objective_and_gradient(theta, ref, reward, beta):
    """J(softmax(theta)) and its gradient by central finite differences (independent of the score function)."""
    def J(t):
        return float(rlhf_objective(softmax(t), ref, reward, beta))

    h = 1e-6
    grad = np.array([(J(theta + h * e) - J(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    return J(theta), grad


@pytest.mark.parametrize("n", [2, 3, 4])
def test_batch_average_baseline_is_the_leave_one_out_update_scaled(n):
    ref = np.array([0.5, 0.3, 0.2])
    reward = np.array([1.0, 0.2, -0.5])
    beta = 0.4
    theta = np.array([0.3, -0.2, 0.5])
    pi = softmax(theta)
    _, grad_J = objective_and_gradient(theta, ref, reward, beta)
    # the penalized reward of each response, and its score function grad log pi(y)
    R = reward - beta * (np.log(pi) - np.log(ref))
    score = np.eye(3) - pi
    mean_update = np.zeros(3)
    loo_update = np.zeros(3)
    # the exact expectation over every batch of n responses
    for batch in itertools.product(range(3), repeat=n):
        weight = np.prod(pi[list(batch)])
        Rb = R[list(batch)]
        for i, y in enumerate(batch):
            others = (Rb.sum() - Rb[i]) / (n - 1)
            mean_update += weight * (Rb[i] - Rb.mean()) * score[y] / n
            loo_update += weight * (Rb[i] - others) * score[y] / n
    np.testing.assert_allclose(loo_update, grad_J, atol=1e-8)
    np.testing.assert_allclose(mean_update, (n - 1) / n * grad_J, atol=1e-8)


# --- the optimal-policy chapter: at small beta the mass splits between two texts ----------------------------


def test_small_beta_splits_the_mass_between_the_tied_best_texts():
    # the sunset toy's reference and rewards (book/04_optimal_policy.ipynb)
    ref = np.array([0.25, 0.2, 0.15, 0.25, 0.148, 0.0008, 0.0007, 0.0005])
    reward = np.array([0.0, 0.0, 2.0, 1.0, 2.0, 5.0, 5.0, 4.0])
    split = np.array([8, 7]) / 15  # the tied best texts, in the ratio of their reference probabilities
    for beta in (0.2, 0.1):
        p = optimal_policy(ref, reward, beta)
        assert p[5] / p[6] == pytest.approx(8 / 7, rel=1e-12)
        assert p[5] + p[6] > 0.99
        # entropy near that of an 8:7 coin, about log 2, and far from the 0 of one repeated text
        assert entropy(p) == pytest.approx(-(split * np.log(split)).sum(), abs=0.02)
        assert entropy(p) > 0.6


# --- the case studies -------------------------------------------------------------------------------------


def test_reward_only_run_ends_at_the_point_mass_kl():
    """beta = 0: the KL stops at -log pi_ref(flattery loop), averaged over prompts, the point mass's KL."""
    run = train(beta=0.0, step_penalty=2.0, iterations=60, noise=0.3, seed=1)
    point_mass = np.zeros_like(REF)
    point_mass[:, FLATTERY] = 1.0
    assert run["kl"][-1] == pytest.approx(float(kl_divergence(point_mass, REF).mean()), abs=1e-6)
    # the flattery loop is each prompt's least likely response: no policy has a larger KL
    assert np.all(REF.argmin(-1) == FLATTERY)
    assert np.all(run["kl"] <= float(-np.log(REF[:, FLATTERY]).mean()) + 1e-9)


def test_small_steps_compound_beyond_the_sum_of_their_kls():
    run = train(beta=0.05, step_penalty=8.0, iterations=80)
    steps = run["step_kl"][1:]
    assert steps.max() < 0.01
    assert run["kl"][-1] > 20 * steps.sum()
    # what adds up along a path in one direction is roughly the root-KL of each step
    assert 0.75 < run["kl"][-1] / np.sqrt(steps).sum() ** 2 < 1.25


def test_reward_ranking_threshold_for_the_first_prompt():
    """Below the threshold the optimum's probabilities follow the reward's order; above it they do not."""
    ref, r = REF[0], PROXY[0]
    betas = np.geomspace(0.05, 1.0, 400)
    agrees = np.array([np.array_equal(np.argsort(-(np.log(ref) + r / b)), np.argsort(-r)) for b in betas])
    threshold = min((r[a] - r[b]) / np.log(ref[b] / ref[a])
                    for a in range(len(r)) for b in range(len(r)) if r[a] > r[b] and ref[a] < ref[b])
    assert np.all(agrees[betas < threshold]) and not np.any(agrees[betas > threshold])
    assert np.argmax(optimal_policy(ref, r, 0.99 * threshold)) == FLATTERY
