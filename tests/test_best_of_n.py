"""best-of-n on a categorical: exact distribution against enumeration, properties, the KL bound."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_course import kl, objective


def _enumerate(p, r, n):
    """Sum over all n-tuples of outcomes; ties split uniformly over the tied best *samples*."""
    K = len(p)
    out = np.zeros(K)
    for tup in itertools.product(range(K), repeat=n):
        prob = math.prod(p[i] for i in tup)
        best = max(r[i] for i in tup)
        winners = [i for i in tup if r[i] == best]
        for i in winners:
            out[i] += prob / len(winners)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("r", [[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 3.0], [2.0, 2.0, 2.0, 0.0], [1.0] * 4])
def test_best_of_n_matches_enumeration_with_ties(n, r):
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.allclose(objective.best_of_n_policy(p, np.array(r), n), _enumerate(p, r, n), atol=1e-12)


def test_best_of_n_batched_and_torch():
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    r = np.array([0.0, 1.0, 1.0])
    got = objective.best_of_n_policy(p, r, 3)
    for b in range(2):
        assert np.allclose(got[b], _enumerate(p[b], r, 3))
    t = objective.best_of_n_policy(torch.tensor(p), torch.tensor(r), 3)
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), got)


probs = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6).map(lambda v: np.array(v) / sum(v))


@settings(max_examples=80, deadline=None)
@given(probs, st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_best_of_n_sums_to_one_monotone_and_kl_below_bound(p, n, seed):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 3, size=len(p)).astype(float)  # few values: ties are common
    pi = objective.best_of_n_policy(p, r, n)
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)
    # monotone in reward: the likelihood ratio pi_n / pi_ref never decreases with the reward
    ratio = pi / p
    order = np.argsort(r, kind="stable")
    assert np.all(np.diff(ratio[order]) >= -1e-12)
    assert float(kl.kl_divergence(pi, p)) <= objective.best_of_n_kl_bound(n) + 1e-12


@pytest.mark.parametrize("n", [2, 4, 16])
def test_best_of_n_kl_approaches_bound_without_ties(n):
    K = 4000
    p = np.full(K, 1.0 / K)
    pi = objective.best_of_n_policy(p, np.arange(K, dtype=float), n)
    b = objective.best_of_n_kl_bound(n)
    assert float(kl.kl_divergence(pi, p)) <= b and float(kl.kl_divergence(pi, p)) == pytest.approx(b, abs=5e-3)


def test_kl_bound_reference_numbers():
    # TOOLCHAIN.md reference numbers
    assert objective.best_of_n_kl_bound(2) == pytest.approx(0.1931, abs=5e-5)
    assert objective.best_of_n_kl_bound(4) == pytest.approx(0.6363, abs=5e-5)
    assert objective.best_of_n_kl_bound(16) == pytest.approx(1.8351, abs=5e-5)
    assert objective.best_of_n_kl_bound(1) == 0.0


def test_best_of_n_rejects_bad_arguments():
    p = np.array([0.5, 0.5])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            objective.best_of_n_policy(p, np.array([0.0, 1.0]), bad)
    with pytest.raises(ValueError):
        objective.best_of_n_policy(np.array([0.5, 0.6]), np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError):
        objective.best_of_n_policy(p, np.array([0.0, np.nan]), 2)
    with pytest.raises(ValueError):
        objective.best_of_n_kl_bound(0)


from rlhf_course import best_of_n as bon  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_expected_best_of_n_matches_subset_enumeration(n):
    rng = np.random.default_rng(n)
    proxy, gold = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    got = bon.expected_best_of_n(proxy, gold, [n])
    want_g, want_p = [], []
    for b in range(3):
        subs = list(itertools.combinations(range(6), n))
        best = [max(s, key=lambda i: proxy[b, i]) for s in subs]
        want_g.append(np.mean([gold[b, i] for i in best]))
        want_p.append(np.mean([proxy[b, i] for i in best]))
    assert got["gold"][0] == pytest.approx(np.mean(want_g), abs=1e-12)
    assert got["proxy"][0] == pytest.approx(np.mean(want_p), abs=1e-12)
    assert got["kl"][0] == pytest.approx(objective.best_of_n_kl_bound(n))


def test_order_statistic_weights_sum_to_one_and_reject_bad_n():
    for N, n in [(64, 1), (64, 17), (64, 64), (5, 3)]:
        assert bon.order_statistic_weights(N, n).sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        bon.order_statistic_weights(4, 5)
    with pytest.raises(ValueError):
        bon.expected_best_of_n(np.zeros((2, 3)), np.zeros((2, 4)))


def test_gao_bon_fit_recovers_parameters():
    kl = np.array([objective.best_of_n_kl_bound(n) for n in range(1, 65)])
    d = np.sqrt(kl)
    fit = bon.gao_bon_fit(kl, bon.gao_bon_curve(d, 0.8, 0.3))
    assert fit["a"] == pytest.approx(0.8) and fit["b"] == pytest.approx(0.3) and fit["r2"] == pytest.approx(1.0)
    assert fit["peak_d"] == pytest.approx(0.8 / 0.6)
