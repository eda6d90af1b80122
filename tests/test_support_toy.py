"""Tests of rlhf_course.support_toy: chapter 3's customer-support toy problem, its metrics and its training runs.

The data are checked for what the chapter says of them (distributions, the reward model's error, the flattery loop);
``metrics`` against sums written out by hand with ``math``; ``train`` against the penalized update computed directly,
``pi_{k+1} = pi_k exp(A_k / lambda) / Z`` (``lambda = step_penalty``), step by step,
against its fixed point ``optimal_policy(REF, PROXY, beta)`` and against the second-order size of a small step;
and every argument's validation.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_course.objective import optimal_policy
from rlhf_course.support_toy import (
    FLATTERY,
    FOLLOW_UP,
    GOLD,
    HELPFUL,
    PROMPTS,
    PROXY,
    REF,
    RESPONSES,
    RM_ERROR,
    metrics,
    sample,
    train,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N, K = len(PROMPTS), len(RESPONSES)


# --------------------------------------------------------------------------------------------------
# the data


def test_the_arrays_are_a_policy_and_rewards():
    for a in (REF, GOLD, RM_ERROR, PROXY):
        assert a.shape == (N, K) and a.dtype == np.float64 and np.isfinite(a).all()
    assert (REF > 0).all()
    np.testing.assert_allclose(REF.sum(-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(PROXY, GOLD + RM_ERROR)


def test_the_arrays_are_read_only():
    for a in (REF, GOLD, RM_ERROR, PROXY):
        with pytest.raises(ValueError, match="read-only"):
            a[0, 0] = 1.0
    variant = PROXY.copy()
    variant[0, 0] = 1.0  # a copy is a variant of the problem
    assert PROXY[0, 0] != 1.0


def test_the_names_and_indices():
    assert (RESPONSES[HELPFUL], RESPONSES[FOLLOW_UP], RESPONSES[FLATTERY]) == (
        "helpful answer", "helpful + follow-up", "flattery loop")
    assert len(set(PROMPTS)) == N and len(set(RESPONSES)) == K


def test_the_flattery_loop_is_what_the_chapter_says():
    # rare under the reference, the worst response for raters, the best for the reward model, and its largest error
    assert (REF[:, FLATTERY] == REF.min(-1)).all() and REF[:, FLATTERY].max() < 0.02
    assert (GOLD[:, FLATTERY] == GOLD.min(-1)).all()
    assert (PROXY.argmax(-1) == FLATTERY).all()
    ordinary = np.delete(RM_ERROR, FLATTERY, axis=1)
    assert RM_ERROR[:, FLATTERY].min() > 10 * np.abs(ordinary).max()


# --------------------------------------------------------------------------------------------------
# metrics


def _by_hand(p, proxy, gold, ref, w):
    """The five averages, written out as sums over prompts and responses."""
    out = dict.fromkeys(("reward", "gold", "kl", "entropy", "flattery"), 0.0)
    for x in range(len(p)):
        out["reward"] += w[x] * sum(p[x][y] * proxy[x][y] for y in range(K))
        out["gold"] += w[x] * sum(p[x][y] * gold[x][y] for y in range(K))
        out["kl"] += w[x] * sum(p[x][y] * math.log(p[x][y] / ref[x][y]) for y in range(K) if p[x][y] > 0)
        out["entropy"] -= w[x] * sum(p[x][y] * math.log(p[x][y]) for y in range(K) if p[x][y] > 0)
        out["flattery"] += w[x] * p[x][FLATTERY]
    return out


def _close(got, want):
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k


def test_metrics_at_the_reference():
    m = metrics(REF)
    _close(m, _by_hand(REF.tolist(), PROXY.tolist(), GOLD.tolist(), REF.tolist(), [1 / 3] * 3))
    assert m["kl"] == 0.0
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_of_the_flattery_loop_by_hand():
    p = np.zeros((N, K))
    p[:, FLATTERY] = 1.0
    m = metrics(p)
    # proxy rewards -1.5 + 3.6, -1.5 + 3.5, -1.5 + 3.4; pi_ref(flattery) = 0.005, 0.002, 0.010
    _close(m, {"reward": 2.0, "gold": -1.5, "kl": (math.log(200) + math.log(500) + math.log(100)) / 3,
               "entropy": 0.0, "flattery": 1.0})


def test_metrics_weights_pick_prompts():
    p = optimal_policy(REF, PROXY, 0.3)
    one = metrics(p, weights=[0.0, 1.0, 0.0])
    _close(one, _by_hand(p[1:2].tolist(), PROXY[1:2].tolist(), GOLD[1:2].tolist(), REF[1:2].tolist(), [1.0]))
    uniform = metrics(p, weights=[1 / 3] * 3)
    _close(uniform, metrics(p))


@SETTINGS
@given(st.lists(st.floats(0.01, 1.0), min_size=N * K, max_size=N * K),
       st.lists(st.floats(0.0, 1.0), min_size=N, max_size=N).filter(lambda w: sum(w) > 0.01),
       st.floats(-3.0, 3.0))
def test_metrics_match_the_sums(raw, raw_w, shift):
    p = np.array(raw).reshape(N, K)
    p /= p.sum(-1, keepdims=True)
    w = np.array(raw_w) / sum(raw_w)
    proxy, gold = PROXY + shift, GOLD - shift  # a variant of the problem
    _close(metrics(p, proxy, gold, REF, w), _by_hand(p.tolist(), proxy.tolist(), gold.tolist(), REF.tolist(), w))


@pytest.mark.parametrize("kwargs, match", [
    ({"p": np.full((N, K), 0.2)}, "sum to 1"),
    ({"p": REF[0]}, "shape"),
    ({"p": np.full((N, K + 1), 1 / (K + 1))}, "shape"),
    ({"p": REF, "proxy": PROXY[:2]}, "same shape"),
    ({"p": REF, "gold": np.where(GOLD > 0, np.nan, GOLD)}, "NaN"),
    ({"p": REF, "weights": [0.5, 0.5]}, "one entry per prompt"),
    ({"p": REF, "weights": [0.5, 0.5, 0.5]}, "sum to 1"),
    ({"p": REF, "weights": [1.5, -0.5, 0.0]}, "negative"),
])
def test_metrics_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics(**kwargs)


# --------------------------------------------------------------------------------------------------
# sample


def test_sample_follows_the_distribution():
    p = np.tile(REF[0], (200_000, 1))
    y = sample(p, np.random.default_rng(0))
    assert y.shape == (len(p),) and y.min() >= 0 and y.max() < K
    freq = np.bincount(y, minlength=K) / len(y)
    se = np.sqrt(REF[0] * (1 - REF[0]) / len(y))
    assert (np.abs(freq - REF[0]) < 5 * se).all()


def test_sample_one_hot_rows_and_reproducibility():
    p = np.eye(K)[[5, 0, 3, 3, 1]]
    np.testing.assert_array_equal(sample(p, np.random.default_rng(1)), [5, 0, 3, 3, 1])
    q = optimal_policy(REF, PROXY, 0.2)[[0, 1, 2, 0]]
    np.testing.assert_array_equal(sample(q, np.random.default_rng(7)), sample(q, np.random.default_rng(7)))


def test_sample_rejects_bad_inputs():
    with pytest.raises(TypeError, match="Generator"):
        sample(REF, 0)
    with pytest.raises(ValueError, match="shape"):
        sample(REF[0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="sum to 1"):
        sample(REF * 2, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------
# train


def _tilt(pi, a, step_penalty):
    """pi exp(A / step_penalty) / Z, row by row, computed directly."""
    w = pi * np.exp(a / step_penalty)
    return w / w.sum(-1, keepdims=True)


@pytest.mark.parametrize("beta, step_penalty, noise, seed", [(0.5, 2.0, 0.0, 0), (0.5, 0.7, 0.4, 3), (0.0, 1.0, 0.3, 1),
                                                    (5.0, 10.0, 0.3, 2)])
def test_the_first_two_steps_are_the_penalized_update(beta, step_penalty, noise, seed):
    rng = np.random.default_rng(seed)
    r_hat = [PROXY + noise * rng.standard_normal(PROXY.shape) for _ in range(2)]
    # step 1: pi_0 = pi_ref, so the penalty is 0 and A_0 = r_hat_0
    pi1 = _tilt(REF, r_hat[0], step_penalty)
    # step 2: A_1 = r_hat_1 - beta (log pi_1 - log pi_ref)
    pi2 = _tilt(pi1, r_hat[1] - beta * np.log(pi1 / REF), step_penalty)
    one, two = train(beta, step_penalty, 1, noise, seed), train(beta, step_penalty, 2, noise, seed)
    np.testing.assert_allclose(one["policy"], pi1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(two["policy"], pi2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(two["policy"], optimal_policy(pi1, r_hat[1] - beta * np.log(pi1 / REF), step_penalty),
                               rtol=1e-12)
    # the log: one entry per iterate; step_kl[k] = KL(pi_k || pi_{k-1}) averaged over prompts
    assert all(len(v) == 3 for k, v in two.items() if k != "policy")
    assert np.isnan(two["step_kl"][0])
    assert two["step_kl"][1] == pytest.approx(np.mean((pi1 * np.log(pi1 / REF)).sum(-1)), rel=1e-10)
    assert two["step_kl"][2] == pytest.approx(np.mean((pi2 * np.log(pi2 / pi1)).sum(-1)), rel=1e-10)
    for k, pi in enumerate((REF, pi1, pi2)):
        for key, v in metrics(pi).items():
            assert two[key][k] == pytest.approx(v, rel=1e-10, abs=1e-14), (key, k)
    np.testing.assert_array_equal(two["beta"], [beta] * 3)


def test_zero_iterations_logs_the_reference():
    log = train(0.5, 1.0, 0)
    np.testing.assert_allclose(log["policy"], REF, rtol=1e-15)
    assert log["kl"].tolist() == [0.0] and np.isnan(log["step_kl"]).all()


def test_the_same_seed_gives_the_same_noise():
    a, b = train(0.5, 1.0, 5, noise=0.5, seed=9), train(0.5, 1.0, 5, noise=0.5, seed=9)
    np.testing.assert_array_equal(a["policy"], b["policy"])
    assert not np.array_equal(a["policy"], train(0.5, 1.0, 5, noise=0.5, seed=10)["policy"])


def test_a_large_step_penalty_gives_tiny_steps():
    step_penalties = [1.0, 10.0, 100.0, 1e4]
    steps = [train(0.5, step_penalty, 1)["step_kl"][1] for step_penalty in step_penalties]
    assert all(a > b for a, b in zip(steps, steps[1:]))  # larger step_penalty, smaller step (the chapter's theorem)
    big = train(0.5, 1e4, 1)
    assert np.abs(big["policy"] - REF).max() < 1e-3
    # second order: KL(pi_1 || pi_ref) = Var_{pi_ref}(r) / (2 step_penalty^2) + O(step_penalty^-3)
    var = (REF * PROXY**2).sum(-1) - (REF * PROXY).sum(-1) ** 2
    assert 1e8 * big["step_kl"][1] == pytest.approx(np.mean(var) / 2, rel=1e-3)


@pytest.mark.parametrize("beta, step_penalty", [(0.5, 2.0), (0.12, 1.0), (0.5, 0.3)])
def test_runs_converge_to_the_optimum(beta, step_penalty):
    # without noise and with step_penalty > beta / 2, the fixed point of the update is pi*_beta
    # (chapter 3, overshooting)
    log = train(beta, step_penalty, 300)
    np.testing.assert_allclose(log["policy"], optimal_policy(REF, PROXY, beta), atol=1e-9)


def test_no_reference_ends_on_the_flattery_loop():
    log = train(0.0, 2.0, 150)
    assert log["flattery"][-1] > 0.99 and np.all(np.diff(log["reward"]) > -1e-12)


def test_a_schedule_and_a_flipped_reward():
    log = train(lambda k: 0.5 if k < 2 else 0.1, 1.0, 4)
    np.testing.assert_array_equal(log["beta"], [0.5, 0.5, 0.1, 0.1, 0.1])
    flipped = train(0.5, 2.0, 1, reward_sign=-1)
    np.testing.assert_allclose(flipped["policy"], _tilt(REF, -PROXY, 2.0), rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"beta": -0.1}, "beta must be a finite number >= 0"),
    ({"beta": float("nan")}, "beta must be a finite number >= 0"),
    ({"beta": lambda k: -1.0}, r"beta\(0\) must be a finite number >= 0"),
    ({"step_penalty": 0.0}, "step_penalty must be a finite number > 0"),
    ({"step_penalty": -1.0}, "step_penalty must be a finite number > 0"),
    ({"step_penalty": float("inf")}, "step_penalty must be a finite number > 0"),
    ({"iterations": -1}, "iterations must be >= 0"),
    ({"noise": -0.1}, "noise must be a finite number >= 0"),
    ({"reward_sign": 2.0}, "reward_sign must be 1 or -1"),
])
def test_train_rejects_bad_arguments(kwargs, match):
    args = {"beta": 0.5, "step_penalty": 1.0, "iterations": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        train(**args)


@pytest.mark.parametrize("kwargs", [{"iterations": 2.0}, {"iterations": True}, {"step_penalty": "1"}, {"beta": None}])
def test_train_rejects_arguments_of_the_wrong_type(kwargs):
    with pytest.raises(TypeError):
        train(**({"beta": 0.5, "step_penalty": 1.0, "iterations": 3} | kwargs))


def test_import_is_light():
    code = ("import sys, rlhf_course.support_toy; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
