"""Tests of rlhf_course.objective: the optimal policy pi* = pi_ref exp(r / beta) / Z and its companions.

Checked against the published reference numbers (TOOLCHAIN.md), against numerical maximization of the
objective (scipy over softmax logits, torch gradient ascent), against exact decimal arithmetic, and with
hypothesis for the properties chapter 4 states: normalization, optimality, the two limits of beta, the
ratio of two outputs, the recovered reward, stability, batching, numpy/torch agreement, zeros in pi_ref,
and a clear error for every kind of bad input.
"""
from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import softmax as sp_softmax

from rlhf_course.kl import kl_divergence
from rlhf_course.objective import (
    implicit_reward,
    log_partition,
    optimal_policy,
    optimal_value,
    rlhf_objective,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------------
# the published reference numbers (TOOLCHAIN.md)

REF = [0.5, 0.3, 0.2]
R = [1.0, 0.0, -1.0]
Z_REF = 1.732717
PI_STAR_REF = [0.784399, 0.173139, 0.042463]
KL_REF = 0.192245
VALUE_REF = 0.549691


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_reference_numbers(kind):
    conv = (lambda x: np.asarray(x)) if kind == "numpy" else (lambda x: torch.tensor(x, dtype=torch.float64))
    ref, r = conv(REF), conv(R)
    pi = optimal_policy(ref, r, 1.0)
    assert isinstance(pi, np.ndarray if kind == "numpy" else torch.Tensor)
    pi = np.asarray(pi)
    np.testing.assert_allclose(pi, PI_STAR_REF, atol=5e-7)
    assert math.exp(float(log_partition(ref, r, 1.0))) == pytest.approx(Z_REF, abs=5e-7)
    assert float(kl_divergence(conv(pi), ref)) == pytest.approx(KL_REF, abs=5e-7)
    assert float(optimal_value(ref, r, 1.0)) == pytest.approx(VALUE_REF, abs=5e-7)
    assert float(rlhf_objective(conv(pi), ref, r, 1.0)) == pytest.approx(VALUE_REF, abs=5e-7)
    # E[r] - beta KL at pi* is the same number, computed from its two parts
    assert float(np.dot(pi, R)) - KL_REF == pytest.approx(VALUE_REF, abs=2e-6)


def test_reference_numbers_by_hand():
    """The same numbers from the definition, with nothing from the package."""
    w = [p * math.exp(x) for p, x in zip(REF, R)]
    z = sum(w)
    assert z == pytest.approx(Z_REF, abs=5e-7)
    np.testing.assert_allclose([v / z for v in w], PI_STAR_REF, atol=5e-7)


def test_ratio_reward_3_vs_1_is_e_squared():
    """Card 004: rewards 3 and 1, equal reference probabilities, beta = 1: the ratio is e^2."""
    pi = optimal_policy([0.5, 0.5], [3.0, 1.0], 1.0)
    assert pi[0] / pi[1] == pytest.approx(math.e**2, rel=1e-12)


def test_doubling_a_reward_does_not_double_the_probability():
    """Card 004: a reward twice another's gives the ratio exp(r_Z / beta), not 2 (except at r_Z = beta ln 2)."""
    for r_z in [0.25, 1.0, 2.0, 5.0]:
        pi = optimal_policy([0.5, 0.5], [2 * r_z, r_z], 1.0)
        assert pi[0] / pi[1] == pytest.approx(math.exp(r_z), rel=1e-12)
        assert abs(pi[0] / pi[1] - 2.0) > 0.1
    pi = optimal_policy([0.5, 0.5], [2 * math.log(2), math.log(2)], 1.0)
    assert pi[0] / pi[1] == pytest.approx(2.0, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# against numerical maximization


def _random_problem(seed: int):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    ref = rng.dirichlet(np.ones(k))
    r = rng.normal(0, 2, size=k)
    beta = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    return ref, r, beta


def _objective_of_logits(theta, ref, r, beta):
    """J(softmax(theta)) written out independently of the package."""
    p = sp_softmax(theta)
    logp = theta - np.log(np.sum(np.exp(theta - theta.max()))) - theta.max()
    return float(np.sum(p * r) - beta * np.sum(p * (logp - np.log(ref))))


def _gradient_of_logits(theta, ref, r, beta):
    """dJ/dtheta_j = p_j (g_j - sum_k p_k g_k), with g = dJ/dp = r - beta (log p - log pi_ref) - beta."""
    p = sp_softmax(theta)
    g = r - beta * (np.log(p) - np.log(ref)) - beta
    return p * (g - p @ g)


@pytest.mark.parametrize("seed", range(6))
def test_matches_scipy_maximization(seed):
    ref, r, beta = _random_problem(seed)
    res = minimize(lambda th: -_objective_of_logits(th, ref, r, beta), np.zeros(len(ref)), method="BFGS",
                   jac=lambda th: -_gradient_of_logits(th, ref, r, beta), options={"gtol": 1e-12})
    p_num = sp_softmax(res.x)
    np.testing.assert_allclose(p_num, optimal_policy(ref, r, beta), atol=1e-7)
    assert -res.fun == pytest.approx(float(optimal_value(ref, r, beta)), abs=1e-9)
    # nothing the optimizer found beats the closed form
    assert -res.fun <= float(optimal_value(ref, r, beta)) + 1e-12


def _torch_objective(theta, ref_t, r_t, beta):
    """J(softmax(theta)) in torch, written out: E[r] - beta sum p (log p - log pi_ref)."""
    logp = torch.log_softmax(theta, -1)
    return (logp.exp() * r_t).sum() - beta * (logp.exp() * (logp - ref_t.log())).sum()


@pytest.mark.parametrize("seed", range(4))
def test_matches_torch_lbfgs(seed):
    """Autograd gradients of J over logits, followed to the top by L-BFGS, land on pi*."""
    ref, r, beta = _random_problem(100 + seed)
    ref_t, r_t = torch.tensor(ref), torch.tensor(r)
    theta = torch.zeros(len(ref), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=300, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -_torch_objective(theta, ref_t, r_t, beta)
        loss.backward()
        return loss

    opt.step(closure)
    p = torch.softmax(theta.detach(), -1).numpy()
    np.testing.assert_allclose(p, optimal_policy(ref, r, beta), atol=1e-7)
    j = float(_torch_objective(theta.detach(), ref_t, r_t, beta))
    assert j == pytest.approx(float(optimal_value(ref, r, beta)), abs=1e-12)


def test_torch_gradient_ascent_climbs_to_beta_log_z_and_never_above():
    """Plain first-order ascent (Adam on the logits): J rises towards beta log Z and never passes it."""
    ref, r, beta = _random_problem(7)
    best = float(optimal_value(ref, r, beta))
    ref_t, r_t = torch.tensor(ref), torch.tensor(r)
    theta = torch.zeros(len(ref), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    values = []
    for _ in range(1500):
        j = _torch_objective(theta, ref_t, r_t, beta)
        values.append(j.item())
        opt.zero_grad()
        (-j).backward()
        opt.step()
    values = np.array(values)
    assert values.max() <= best + 1e-12
    assert best - values[0] > 0.1 and best - values[-1] < 1e-4
    p = torch.softmax(theta.detach(), -1).numpy()
    np.testing.assert_allclose(p, optimal_policy(ref, r, beta), atol=1e-2)


# --------------------------------------------------------------------------------------------------
# hypothesis properties


@st.composite
def problems(draw, min_k=2, max_k=6, zeros=True, integer_rewards=False, beta=None):
    """(ref, r, beta): a reference with optional zeros (at least one positive entry), rewards, and beta."""
    k = draw(st.integers(min_k, max_k))
    w = draw(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k))
    if zeros:
        mask = draw(st.lists(st.booleans(), min_size=k, max_size=k))
        assume(any(not m for m in mask))
        w = [0.0 if m else x for x, m in zip(w, mask)]
    ref = np.asarray(w) / np.sum(w)
    if integer_rewards:
        r = np.asarray(draw(st.lists(st.integers(-3, 3), min_size=k, max_size=k)), dtype=float)
    else:
        r = np.asarray(draw(st.lists(st.floats(-10, 10), min_size=k, max_size=k)))
    b = draw(st.floats(0.05, 20.0)) if beta is None else beta
    return ref, r, b


@st.composite
def distributions(draw, k):
    w = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
    assume(sum(w) > 1e-3)
    return np.asarray(w) / np.sum(w)


@SETTINGS
@given(problems())
def test_normalized_and_inside_the_support(prob):
    ref, r, beta = prob
    pi = optimal_policy(ref, r, beta)
    assert np.all(pi >= 0)
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(pi[ref == 0] == 0)
    assert np.all(pi[ref > 0] > 0)  # |r| / beta <= 200 here: no supported output underflows


@SETTINGS
@given(problems(), st.data())
def test_no_distribution_beats_the_optimum(prob, data):
    ref, r, beta = prob
    p = data.draw(distributions(len(ref)))
    best = float(optimal_value(ref, r, beta))
    pi = optimal_policy(ref, r, beta)
    assert float(rlhf_objective(pi, ref, r, beta)) == pytest.approx(best, abs=1e-9 * (1 + abs(best)))
    j = float(rlhf_objective(p, ref, r, beta))
    assert j <= best + 1e-9 * (1 + abs(best))
    if np.any((p > 0) & (ref == 0)):
        assert j == -math.inf
    else:
        # the identity behind the proof: J(p) = beta log Z - beta KL(p || pi*)
        gap = beta * float(kl_divergence(p, pi))
        assert j == pytest.approx(best - gap, abs=1e-8 * (1 + abs(best) + gap))


@SETTINGS
@given(problems())
def test_large_beta_gives_the_reference(prob):
    ref, r, _ = prob
    spread = np.ptp(r)
    for beta in [1e2, 1e4, 1e8]:
        pi = optimal_policy(ref, r, beta)
        # pi*/pi_ref = exp(r / beta) / Z lies in [exp(-spread / beta), exp(spread / beta)]
        bound = ref * np.expm1(spread / beta) + 1e-15
        assert np.all(np.abs(pi - ref) <= bound)
    np.testing.assert_allclose(optimal_policy(ref, r, 1e12), ref, atol=1e-10)


@SETTINGS
@given(problems(integer_rewards=True))
def test_small_beta_gives_argmax_over_the_support_split_by_the_reference(prob):
    ref, r, _ = prob
    support = ref > 0
    best = r[support].max()
    winners = support & (r == best)
    limit = np.where(winners, ref, 0.0) / ref[winners].sum()
    for beta in [1e-2, 1e-3]:  # reward gaps are >= 1, so exp(-gap / beta) <= exp(-100)
        np.testing.assert_allclose(optimal_policy(ref, r, beta), limit, atol=1e-40, rtol=1e-12)
    # an output outside the support never wins, however large its reward
    r2 = np.where(support, r, 1e6)
    np.testing.assert_allclose(optimal_policy(ref, r2, 1e-3), limit, atol=1e-40, rtol=1e-12)


@SETTINGS
@given(problems(zeros=False))
def test_ratio_of_two_outputs(prob):
    ref, r, beta = prob
    pi = optimal_policy(ref, r, beta)
    logpi = np.log(pi)
    for a in range(len(ref)):
        for b in range(len(ref)):
            expected = (r[a] - r[b]) / beta + np.log(ref[a]) - np.log(ref[b])
            assert logpi[a] - logpi[b] == pytest.approx(expected, abs=1e-9 * (1 + abs(expected)))


@SETTINGS
@given(problems())
def test_implicit_reward_plus_beta_log_z_recovers_the_reward(prob):
    ref, r, beta = prob
    assume(np.max(np.abs(r)) / beta < 600)  # pi* of every supported output is representable
    pi = optimal_policy(ref, r, beta)
    rec = implicit_reward(pi, ref, beta) + beta * log_partition(ref, r, beta)
    s = ref > 0
    np.testing.assert_allclose(rec[s], r[s], atol=1e-9 * (1 + beta * np.max(np.abs(r) / beta)))
    assert np.all(np.isnan(rec[~s]))  # off the support, no reward is identified


@SETTINGS
@given(problems(), st.floats(-1e4, 1e4))
def test_only_reward_differences_matter(prob, shift):
    ref, r, beta = prob
    np.testing.assert_allclose(optimal_policy(ref, r + shift, beta), optimal_policy(ref, r, beta),
                               atol=1e-10, rtol=1e-6)
    assert float(log_partition(ref, r + shift, beta)) == pytest.approx(
        float(log_partition(ref, r, beta)) + shift / beta, rel=1e-9, abs=1e-9)


@SETTINGS
@given(problems(zeros=False))
def test_temperature_derivatives(prob):
    """d log Z / d(1/beta) = E_pi*[r], and E_pi*[r] falls and KL(pi* || pi_ref) falls as beta grows."""
    ref, r, beta = prob
    t, h = 1 / beta, 1e-5
    dlogz = (float(log_partition(ref, r, 1 / (t + h))) - float(log_partition(ref, r, 1 / (t - h)))) / (2 * h)
    pi = optimal_policy(ref, r, beta)
    assert dlogz == pytest.approx(float(pi @ r), abs=1e-5 * (1 + np.abs(r).max()))
    betas = np.geomspace(0.05, 50, 30)
    er = np.array([optimal_policy(ref, r, b) @ r for b in betas])
    kl = np.array([kl_divergence(optimal_policy(ref, r, b), ref) for b in betas])
    assert np.all(np.diff(er) <= 1e-12)
    assert np.all(np.diff(kl) <= 1e-12)


def test_bradley_terry_of_implicit_rewards_equals_that_of_rewards():
    """The DPO step: sigma(r_a - r_b) is unchanged when r is replaced by beta log(pi* / pi_ref) (Z cancels)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref, r, beta = _random_problem(int(rng.integers(1 << 30)))
        h = implicit_reward(optimal_policy(ref, r, beta), ref, beta)
        d_true = r[:, None] - r[None, :]
        d_impl = h[:, None] - h[None, :]
        np.testing.assert_allclose(1 / (1 + np.exp(-d_impl)), 1 / (1 + np.exp(-d_true)), atol=1e-12)


# --------------------------------------------------------------------------------------------------
# numerical stability


def _exact_optimal_policy(ref, r, beta, digits=60):
    """pi* in decimal arithmetic with ``digits`` significant digits: no overflow, no underflow."""
    with localcontext() as ctx:
        ctx.prec = digits
        w = [Decimal(float(p)) * (Decimal(float(x)) / Decimal(float(beta))).exp() if p > 0 else Decimal(0)
             for p, x in zip(ref, r)]
        z = sum(w)
        return [float(v / z) for v in w], float(z.ln())


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_stable_for_huge_reward_over_beta(beta):
    ref = [0.4, 0.3, 0.2, 0.1]
    r = [12.0, 11.99, -30.0, 11.9]  # r / beta up to 1200 (0.01), 120, 12
    exact, logz = _exact_optimal_policy(ref, r, beta)
    for kind in ["numpy", "torch"]:
        conv = np.asarray if kind == "numpy" else (lambda x: torch.tensor(x, dtype=torch.float64))
        pi = np.asarray(optimal_policy(conv(ref), conv(r), beta))
        assert np.all(np.isfinite(pi))
        np.testing.assert_allclose(pi, exact, rtol=1e-12, atol=1e-300)
        assert float(log_partition(conv(ref), conv(r), beta)) == pytest.approx(logz, rel=1e-13)
        assert float(optimal_value(conv(ref), conv(r), beta)) == pytest.approx(beta * logz, rel=1e-13)


@SETTINGS
@given(problems(), st.floats(1e2, 1e4))
def test_no_overflow_when_rewards_are_thousands_of_betas(prob, scale):
    ref, r, beta = prob
    r = r / max(np.abs(r).max(), 1e-3) * scale  # |r| up to scale
    beta = 1.0 if beta > 1 else beta  # r / beta up to 2e5
    for conv in (np.asarray, torch.from_numpy):
        pi = np.asarray(optimal_policy(conv(ref), conv(r), beta))
        assert np.all(np.isfinite(pi)) and pi.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.isfinite(float(log_partition(conv(ref), conv(r), beta)))
        assert np.isfinite(float(optimal_value(conv(ref), conv(r), beta)))
        assert np.isfinite(float(rlhf_objective(conv(pi), conv(ref), conv(r), beta)))
    # and right, not merely finite: against 60-digit decimal arithmetic
    exact, logz = _exact_optimal_policy(ref, r, beta)
    np.testing.assert_allclose(pi, exact, rtol=1e-9, atol=1e-300)
    assert float(log_partition(ref, r, beta)) == pytest.approx(logz, rel=1e-12, abs=1e-12)


def test_naive_formula_overflows_where_the_package_does_not():
    """The reason for log space: exp(r / beta) overflows float64 beyond r / beta = 709."""
    ref, r, beta = np.array([0.5, 0.5]), np.array([800.0, 799.0]), 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        naive = ref * np.exp(r / beta) / np.sum(ref * np.exp(r / beta))
    assert np.isnan(naive).all()
    np.testing.assert_allclose(optimal_policy(ref, r, beta), [1 / (1 + math.exp(-1)), 1 / (1 + math.e)])


# --------------------------------------------------------------------------------------------------
# batching, numpy/torch agreement, zeros


@SETTINGS
@given(st.integers(1, 4), st.data())
def test_batched_rows_equal_row_by_row(b, data):
    rows = [data.draw(problems(min_k=4, max_k=4, beta=0.7)) for _ in range(b)]
    ref = np.stack([p[0] for p in rows])
    r = np.stack([p[1] for p in rows])
    pi = optimal_policy(ref, r, 0.7)
    logz = log_partition(ref, r, 0.7)
    val = optimal_value(ref, r, 0.7)
    assert pi.shape == (b, 4) and logz.shape == (b,) and val.shape == (b,)
    for i in range(b):
        np.testing.assert_allclose(pi[i], optimal_policy(ref[i], r[i], 0.7), rtol=1e-14, atol=1e-300)
        assert logz[i] == pytest.approx(float(log_partition(ref[i], r[i], 0.7)), rel=1e-14)
    np.testing.assert_allclose(rlhf_objective(pi, ref, r, 0.7), val, rtol=1e-10, atol=1e-10)


def test_broadcasting_one_reference_over_many_rewards():
    ref = np.array([0.5, 0.3, 0.2])
    rs = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.5]])
    pi = optimal_policy(ref, rs, 1.0)
    assert pi.shape == (3, 3)
    np.testing.assert_allclose(pi[0], PI_STAR_REF, atol=5e-7)
    np.testing.assert_allclose(pi[1], ref, rtol=1e-14)  # equal rewards: nothing to prefer
    batch = np.stack([np.arange(3.0), -np.arange(3.0)])
    np.testing.assert_allclose(optimal_policy(torch.tensor(ref), torch.tensor(batch), 2.0).numpy(),
                               optimal_policy(ref, batch, 2.0), rtol=1e-12)


@SETTINGS
@given(problems())
def test_numpy_and_torch_agree(prob):
    ref, r, beta = prob
    t_ref, t_r = torch.from_numpy(ref), torch.from_numpy(r)
    np.testing.assert_allclose(optimal_policy(t_ref, t_r, beta).numpy(), optimal_policy(ref, r, beta),
                               rtol=1e-10, atol=1e-300)
    assert float(log_partition(t_ref, t_r, beta)) == pytest.approx(float(log_partition(ref, r, beta)), rel=1e-12)
    assert float(optimal_value(t_ref, t_r, beta)) == pytest.approx(float(optimal_value(ref, r, beta)), rel=1e-12)
    pi = optimal_policy(ref, r, beta)
    assert float(rlhf_objective(torch.from_numpy(pi), t_ref, t_r, beta)) == pytest.approx(
        float(rlhf_objective(pi, ref, r, beta)), rel=1e-10, abs=1e-12)
    a = implicit_reward(torch.from_numpy(pi), t_ref, beta).numpy()
    b = implicit_reward(pi, ref, beta)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)  # NaN in the same places (assert_allclose: equal_nan)


def test_torch_float32_keeps_its_dtype():
    ref = torch.tensor(REF, dtype=torch.float32)
    r = torch.tensor(R, dtype=torch.float32)
    pi = optimal_policy(ref, r, 1.0)
    assert pi.dtype == torch.float32
    np.testing.assert_allclose(pi.numpy(), PI_STAR_REF, atol=1e-6)
    assert log_partition(ref, r, 1.0).dtype == torch.float32


def test_zeros_in_the_reference():
    ref = np.array([0.0, 0.6, 0.4, 0.0])
    r = np.array([100.0, 1.0, 0.0, -5.0])
    pi = optimal_policy(ref, r, 0.1)
    assert pi[0] == 0.0 and pi[3] == 0.0  # the huge reward of output 0 buys it nothing
    np.testing.assert_allclose(pi[1:3], optimal_policy([0.6, 0.4], [1.0, 0.0], 0.1))
    assert float(log_partition(ref, r, 0.1)) == pytest.approx(float(log_partition([0.6, 0.4], [1.0, 0.0], 0.1)))
    assert float(rlhf_objective([1.0, 0.0, 0.0, 0.0], ref, r, 0.1)) == -math.inf
    ir = implicit_reward(pi, ref, 0.1)
    assert np.isnan(ir[0]) and np.isnan(ir[3]) and np.all(np.isfinite(ir[1:3]))
    t = optimal_policy(torch.tensor(ref), torch.tensor(r), 0.1)
    assert float(t[0]) == 0.0 and not torch.isnan(t).any()


def test_implicit_reward_of_a_policy_below_the_reference_is_minus_infinity():
    ir = implicit_reward([0.0, 1.0], [0.5, 0.5], 1.0)
    assert ir[0] == -math.inf and ir[1] == pytest.approx(math.log(2))


# --------------------------------------------------------------------------------------------------
# validation: every bad input fails loudly, saying what was expected

GOOD = (np.array(REF), np.array(R))


def _calls(ref, r, beta, probs=None):
    probs = np.array(PI_STAR_REF) / np.sum(PI_STAR_REF) if probs is None else probs
    return {
        "optimal_policy": lambda: optimal_policy(ref, r, beta),
        "log_partition": lambda: log_partition(ref, r, beta),
        "optimal_value": lambda: optimal_value(ref, r, beta),
        "rlhf_objective": lambda: rlhf_objective(probs, ref, r, beta),
    }


FUNCS = ["optimal_policy", "log_partition", "optimal_value", "rlhf_objective"]


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("beta, exc, msg", [
    (0.0, ValueError, r"beta must be a finite number > 0, got 0\.0"),
    (-1.0, ValueError, r"beta must be a finite number > 0, got -1\.0"),
    (float("nan"), ValueError, r"beta must be a finite number > 0, got nan"),
    (float("inf"), ValueError, r"beta must be a finite number > 0, got inf"),
    (True, TypeError, r"beta must be a positive number, got bool"),
    ("1.0", TypeError, r"beta must be a positive number, got str"),
    (None, TypeError, r"beta must be a positive number, got NoneType"),
    ([1.0], TypeError, r"beta must be a positive number, got list"),
])
def test_bad_beta(fn, beta, exc, msg):
    with pytest.raises(exc, match=msg):
        _calls(*GOOD, beta)[fn]()


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("ref, r, exc, msg", [
    ([0.5, float("nan"), 0.5], R, ValueError, r"ref_probs contains NaN"),
    (REF, [1.0, float("nan"), 0.0], ValueError, r"rewards contains NaN"),
    (REF, [1.0, float("inf"), 0.0], ValueError, r"rewards contains inf; expected finite values"),
    ([0.5, 0.3, 0.3], R, ValueError, r"ref_probs must sum to 1 along the last axis"),
    ([0.8, 0.4, -0.2], R, ValueError, r"ref_probs has negative entries"),
    (REF, [1.0, 0.0], ValueError, r"ref_probs and rewards must have the same number of categories"),
    ([[0.5, 0.5]] * 2, [[1.0, 0.0]] * 3, ValueError, r"ref_probs and rewards have shapes \(2, 2\) and \(3, 2\)"),
    (0.5, R, ValueError, r"must have at least one axis"),
    ("abc", R, TypeError, r"ref_probs must be an array of numbers, got str"),
    (REF, ["a", "b", "c"], TypeError, r"rewards must be an array of numbers"),
    ([[0.5, 0.5], [1.0]], R, TypeError, r"ref_probs must be an array of numbers"),
])
def test_bad_arrays(fn, ref, r, exc, msg):
    with pytest.raises(exc, match=msg):
        _calls(ref, r, 1.0)[fn]()


@pytest.mark.parametrize("fn", FUNCS)
def test_numpy_and_torch_cannot_be_mixed(fn):
    with pytest.raises(TypeError, match="must both be numpy arrays or both torch tensors, not a mix"):
        _calls(torch.tensor(REF), np.array(R), 1.0, probs=torch.tensor(PI_STAR_REF) / sum(PI_STAR_REF))[fn]()


def test_torch_validation():
    with pytest.raises(ValueError, match="ref_probs must sum to 1"):
        optimal_policy(torch.tensor([0.5, 0.6]), torch.tensor([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="rewards contains NaN"):
        log_partition(torch.tensor([0.5, 0.5]), torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        optimal_policy(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]), 0)


@pytest.mark.parametrize("probs, msg", [
    ([0.5, 0.6, 0.0], r"probs must sum to 1"),
    ([0.5, float("nan"), 0.5], r"probs contains NaN"),
    ([0.5, 0.5], r"probs and rewards must have the same number of categories"),
])
def test_rlhf_objective_validates_probs(probs, msg):
    with pytest.raises(ValueError, match=msg):
        rlhf_objective(probs, REF, R, 1.0)


@pytest.mark.parametrize("probs, ref, beta, exc, msg", [
    ([1.0, 0.0], [0.0, 1.0], 1.0, ValueError, r"probs puts mass where ref_probs is 0"),
    ([0.5, 0.6], [0.5, 0.5], 1.0, ValueError, r"probs must sum to 1"),
    ([0.5, 0.5], [0.5, 0.6], 1.0, ValueError, r"ref_probs must sum to 1"),
    ([0.5, 0.5], [0.5, 0.5, 0.0], 1.0, ValueError, r"same number of categories"),
    ([0.5, 0.5], [0.5, 0.5], 0.0, ValueError, r"beta must be a finite number > 0"),
    ([0.5, 0.5], [0.5, 0.5], False, TypeError, r"beta must be a positive number, got bool"),
    ([0.5, 0.5], [0.5, 0.5], "2", TypeError, r"beta must be a positive number, got str"),
])
def test_implicit_reward_validation(probs, ref, beta, exc, msg):
    with pytest.raises(exc, match=msg):
        implicit_reward(probs, ref, beta)
    if exc is ValueError and "mass where" in msg:
        with pytest.raises(exc, match=msg):
            implicit_reward(torch.tensor(probs), torch.tensor(ref), beta)
