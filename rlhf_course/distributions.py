"""Toy distributions for chapter 1: discretized Gaussians on a grid, fitting them by forward and reverse
KL, the Gaussian closed forms behind Schulman's estimator table, and the numerics of ``k3``.

Notation of the book. A policy ``pi`` and a reference ``pi_ref``; samples ``y ~ pi``;
``log r = log pi_ref(y) - log pi(y)``; the estimators ``k1 = -log r``, ``k2 = (log r)^2 / 2``,
``k3 = (r - 1) - log r`` of ``KL(pi || pi_ref)`` (see :mod:`rlhf_course.kl`).

Also the package's one ``log_softmax`` and one inverse-CDF sampler (``inverse_cdf``), which the other modules
import from here.

Everything here is numpy (no torch, no scipy): the chapter's figures and tables are computed by these
functions and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import kl as _kl
from ._validate import as_float_array, check_finite, check_probs, is_torch

__all__ = [
    "log_softmax",
    "inverse_cdf",
    "discretized_gaussian",
    "gaussian_mixture",
    "GaussianFit",
    "fit_gaussian",
    "gaussian_kl",
    "log_ratio_moments",
    "estimator_moments",
    "simulate_estimators",
    "k3_naive",
    "k3_series",
    "k3_relative_error",
]

ESTIMATORS = ("k1", "k2", "k3")


# --------------------------------------------------------------------------------------------------
# validation helpers local to this module


def _grid(grid) -> np.ndarray:
    g = as_float_array(grid, "grid")
    if type(g) is not np.ndarray:
        raise TypeError("grid must be a numpy array (or a list of numbers), not a torch tensor")
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"grid must be a 1-D array of at least 2 points, got shape {g.shape}")
    check_finite(g, "grid")
    if not (np.diff(g) > 0).all():
        raise ValueError("grid must be strictly increasing")
    return g.astype(np.float64)


def _real(x, name: str, positive: bool = False) -> np.ndarray:
    """A finite float64 number or array (``positive``: every entry > 0)."""
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a number or an array of numbers, got bool")
    a = as_float_array(x, name)
    if type(a) is not np.ndarray:
        raise TypeError(f"{name} must be a number or numpy array, not a torch tensor")
    check_finite(a, name)
    if positive and (a <= 0).any():
        raise ValueError(f"{name} must be > 0, got {a.min():g}")
    return a.astype(np.float64)


def _scalar(x, name: str, positive: bool = False) -> float:
    a = _real(x, name, positive)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a single number, got an array of shape {a.shape}")
    return float(a)


def _count(n, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


# --------------------------------------------------------------------------------------------------
# distributions on a grid


def log_softmax(z):
    """``log softmax(z) = z - log sum_j exp(z_j)`` over the last axis; numpy or torch, the kind it was given.

    The maximum is subtracted first (``(z - m) - log sum_j exp(z_j - m)``), so large logits neither overflow nor
    underflow. A ``-inf`` logit (a ruled-out outcome) gives ``-inf``. The package's one log-softmax.
    """
    if is_torch(z):
        import torch

        return torch.log_softmax(z, dim=-1)
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = z - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def inverse_cdf(p, u):
    """Inverse-CDF sampling: ``y = min{j : sum_{i <= j} p_i > u}`` for ``u ~ U[0, 1)``, numpy.

    ``p`` is ``(..., K)`` (distributions on the last axis) and ``u`` broadcasts against ``p[..., 0]``; the
    result has their broadcast shape. The strict ``> u`` never returns an outcome of probability 0 (not even at
    ``u = 0``), and the last cumulative sum is set to exactly 1, so rounding in ``cumsum`` cannot step past
    the last outcome. The package's one categorical sampler from given uniforms.
    """
    cum = np.cumsum(p, axis=-1)
    cum[..., -1] = 1.0
    return np.minimum((cum <= np.asarray(u)[..., None]).sum(-1), np.shape(p)[-1] - 1)


def discretized_gaussian(grid: ArrayLike, mean: ArrayLike, std: ArrayLike) -> np.ndarray:
    """A Gaussian restricted to the points of ``grid`` and renormalized:

        pi(y_j) = exp(-(y_j - mean)^2 / (2 std^2)) / sum_i exp(-(y_i - mean)^2 / (2 std^2)).

    ``mean`` and ``std`` may be arrays; they broadcast, and the result has shape
    ``broadcast(mean, std).shape + (len(grid),)``. Computed in log space, so a narrow Gaussian far from
    most of the grid gives tiny (possibly zero) probabilities, never NaN.
    """
    g = _grid(grid)
    m = _real(mean, "mean")
    s = _real(std, "std", positive=True)
    z = -((g - m[..., None]) ** 2) / (2 * s[..., None] ** 2)
    return np.exp(log_softmax(z))


def gaussian_mixture(grid: ArrayLike, means: ArrayLike, stds: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """A mixture ``sum_c w_c N(means_c, stds_c)`` restricted to ``grid`` and renormalized (1-D result).

    ``means``, ``stds`` and ``weights`` are 1-D and of one length; ``weights`` are >= 0 and sum to one.
    """
    g = _grid(grid)
    m = _real(means, "means")
    s = _real(stds, "stds", positive=True)
    w = _real(weights, "weights")
    if not (m.ndim == s.ndim == w.ndim == 1) or not (m.size == s.size == w.size):
        raise ValueError(f"means, stds and weights must be 1-D of one length, got shapes {m.shape}, {s.shape}, "
                         f"{w.shape}")
    check_probs(w, "weights")
    z = -((g - m[:, None]) ** 2) / (2 * s[:, None] ** 2) - np.log(s)[:, None]
    dens = (w[:, None] * np.exp(z)).sum(axis=0)
    return dens / dens.sum()


@dataclass(frozen=True)
class GaussianFit:
    """The discretized Gaussian that minimizes a KL divergence to a target on a grid."""

    direction: str  # "forward": min KL(target || q); "reverse": min KL(q || target)
    mean: float
    std: float
    probs: np.ndarray  # q on the grid
    kl: float  # the minimized divergence


def fit_gaussian(target: ArrayLike, grid: ArrayLike, direction: str, rounds: int = 6, points: int = 61) -> GaussianFit:
    """Fit a discretized Gaussian ``q = N(mean, std)`` on ``grid`` to ``target`` by minimizing

        forward:  KL(target || q) = sum_y target(y) log(target(y) / q(y))   (mass-covering)
        reverse:  KL(q || target) = sum_y q(y) log(q(y) / target(y))        (mode-seeking)

    over ``mean`` in ``[grid[0], grid[-1]]`` and ``std`` from half the grid spacing to the grid's length.
    The minimization is a grid search over ``(mean, std)`` (``points`` x ``points``, ``std`` on a log
    scale), refined ``rounds`` times around the best point: slow-ish but global, which matters for the
    reverse KL, whose landscape has one local minimum per mode of the target.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    g = _grid(grid)
    p = as_float_array(target, "target")
    if type(p) is not np.ndarray:
        raise TypeError("target must be a numpy array (or a list of numbers), not a torch tensor")
    if p.shape != g.shape:
        raise ValueError(f"target must have one probability per grid point: shapes {p.shape} and {g.shape}")
    check_probs(p, "target")
    rounds = _count(rounds, "rounds")
    points = _count(points, "points", minimum=5)

    dx = float(np.min(np.diff(g)))
    lo_m, hi_m = float(g[0]), float(g[-1])
    lo_s, hi_s = np.log(dx / 2), np.log(g[-1] - g[0])
    best = None
    for _ in range(rounds):
        means = np.linspace(lo_m, hi_m, points)
        log_stds = np.linspace(lo_s, hi_s, points)
        q = discretized_gaussian(g, means[:, None], np.exp(log_stds)[None, :])  # (points, points, K)
        d = _kl.kl_divergence(p, q) if direction == "forward" else _kl.kl_divergence(q, p)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        best = (means[i], float(np.exp(log_stds[j])), float(d[i, j]))
        # zoom in: keep two grid steps on each side of the best point
        step_m, step_s = means[1] - means[0], log_stds[1] - log_stds[0]
        lo_m, hi_m = means[i] - 2 * step_m, means[i] + 2 * step_m
        lo_s, hi_s = log_stds[j] - 2 * step_s, log_stds[j] + 2 * step_s
    mean, std, value = best
    return GaussianFit(direction, float(mean), std, discretized_gaussian(g, mean, std), value)


# --------------------------------------------------------------------------------------------------
# Gaussians: closed forms and Schulman's estimator table


def gaussian_kl(mean_p: ArrayLike, std_p: ArrayLike, mean_q: ArrayLike, std_q: ArrayLike) -> float | np.ndarray:
    """``KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)) = log(std_q / std_p)
    + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2``. Arrays broadcast."""
    mp, sp = _real(mean_p, "mean_p"), _real(std_p, "std_p", positive=True)
    mq, sq = _real(mean_q, "mean_q"), _real(std_q, "std_q", positive=True)
    out = np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    return float(out) if out.ndim == 0 else out


def log_ratio_moments(mean_pi: float, mean_ref: float, std: float = 1.0) -> tuple[float, float]:
    """Mean and variance of ``log r = log pi_ref(y) - log pi(y)`` for ``y ~ pi``, where
    ``pi = N(mean_pi, std^2)`` and ``pi_ref = N(mean_ref, std^2)``.

    With ``d = (mean_ref - mean_pi) / std``, ``log r = d (y - mean_pi) / std - d^2 / 2`` is Gaussian:
    mean ``m = -d^2 / 2`` (so ``KL = -m = d^2 / 2``) and variance ``v = d^2``.
    """
    mean_pi, mean_ref = _scalar(mean_pi, "mean_pi"), _scalar(mean_ref, "mean_ref")
    std = _scalar(std, "std", positive=True)
    d = (mean_ref - mean_pi) / std
    return -(d**2) / 2, d**2


def estimator_moments(mean_pi: float, mean_ref: float, std: float = 1.0) -> dict[str, dict[str, float]]:
    """Exact mean, bias and standard deviation of ``k1``, ``k2``, ``k3`` for one sample ``y ~ pi``,
    ``pi = N(mean_pi, std^2)``, ``pi_ref = N(mean_ref, std^2)`` (Schulman's setting).

    ``log r = L ~ N(m, v)`` (:func:`log_ratio_moments`), and with the Gaussian moments
    ``E[L^2] = v + m^2``, ``E[L^4] = m^4 + 6 m^2 v + 3 v^2``, ``E[e^L] = e^{m + v/2}``,
    ``E[e^{2L}] = e^{2m + 2v}``, ``Cov(e^L, L) = v E[e^L]``:

        k1 = -L:             E = -m,                   Var = v
        k2 = L^2 / 2:        E = (v + m^2) / 2,        Var = m^2 v + v^2 / 2
        k3 = e^L - 1 - L:    E = e^{m + v/2} - 1 - m,  Var = e^{2m + v}(e^v - 1) + v - 2 v e^{m + v/2}

    Returns ``{"kl": {...}, "k1": {"mean", "bias", "std", "bias/true", "std/true"}, ...}``; the ratios
    are ``nan`` when the true KL is 0.
    """
    m, v = log_ratio_moments(mean_pi, mean_ref, std)
    true = -m
    e_r = np.exp(m + v / 2)
    moments = {
        "k1": (-m, v),
        "k2": ((v + m**2) / 2, m**2 * v + v**2 / 2),
        "k3": (e_r - 1 - m, np.exp(2 * m + v) * np.expm1(v) + v - 2 * v * e_r),
    }
    out: dict[str, dict[str, float]] = {"kl": {"value": true}}
    for k, (mean, var) in moments.items():
        out[k] = _summary(float(mean), float(np.sqrt(max(var, 0.0))), true)
    return out


def _summary(mean: float, sd: float, true: float) -> dict[str, float]:
    ratio = (lambda x: x / true) if true > 0 else (lambda x: float("nan"))
    return {"mean": mean, "bias": mean - true, "std": sd, "bias/true": ratio(mean - true), "std/true": ratio(sd)}


def simulate_estimators(mean_pi: float, mean_ref: float, std: float = 1.0, n: int = 1_000_000,
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """Schulman's experiment by simulation: draw ``n`` samples ``y ~ pi = N(mean_pi, std^2)``, evaluate
    ``k1``, ``k2``, ``k3`` (from :mod:`rlhf_course.kl`) on each, and compare their sample mean and standard
    deviation with the closed-form ``KL(pi || pi_ref) = (mean_pi - mean_ref)^2 / (2 std^2)``.

    Returns the same layout as :func:`estimator_moments`, plus ``"se"`` per estimator: the Monte Carlo
    standard error of its ``bias/true`` (``std / (sqrt(n) KL)``), to read the simulated bias against.

    The estimators take log-probabilities (``<= 0``), and Gaussian log-densities can be positive; they
    depend only on the difference ``log pi(y) - log pi_ref(y)``, so both log-densities are passed without
    their shared constant ``-log(std sqrt(2 pi))``, which makes them ``<= 0``.
    """
    mean_pi, mean_ref = _scalar(mean_pi, "mean_pi"), _scalar(mean_ref, "mean_ref")
    std = _scalar(std, "std", positive=True)
    n = _count(n, "n", minimum=2)
    rng = np.random.default_rng(seed)
    y = rng.normal(mean_pi, std, size=n)
    logp = -0.5 * ((y - mean_pi) / std) ** 2
    ref_logp = -0.5 * ((y - mean_ref) / std) ** 2
    true = gaussian_kl(mean_pi, std, mean_ref, std)
    out: dict[str, dict[str, float]] = {"kl": {"value": true}}
    for k, fn in zip(ESTIMATORS, (_kl.k1, _kl.k2, _kl.k3)):
        vals = fn(logp, ref_logp)
        s = _summary(float(vals.mean()), float(vals.std(ddof=1)), true)
        s["se"] = float(s["std/true"] / np.sqrt(n))
        out[k] = s
    return out


# --------------------------------------------------------------------------------------------------
# the numerics of k3 = e^x - 1 - x, with x = log r


def k3_naive(x: ArrayLike) -> np.ndarray:
    """``k3`` written as it reads, ``exp(x) - 1 - x``, in the dtype of ``x`` (numpy).

    Shown in the book to be wrong: for small ``|x|`` it subtracts nearly equal numbers and keeps only
    rounding error. :func:`rlhf_course.kl.k3` computes ``expm1(x) - x`` instead.
    """
    a = as_float_array(x, "x")
    if type(a) is not np.ndarray:
        raise TypeError("x must be a numpy array or a number, not a torch tensor")
    one = a.dtype.type(1)
    return np.exp(a) - one - a


def k3_series(x: ArrayLike, terms: int = 30) -> np.ndarray:
    """An accurate float64 reference for ``k3(x) = e^x - 1 - x``.

    For ``|x| < 1`` the Taylor series ``sum_{j>=2} x^j / j!`` (``terms`` terms, evaluated by Horner's rule:
    every term has the sign pattern of ``x``'s powers, no cancellation for ``x > 0`` and a tiny,
    well-conditioned one for ``x < 0``); elsewhere ``expm1(x) - x`` in float64, whose cancellation costs at
    most a factor ``|x| / k3(x) <= 3`` in relative error there.
    """
    a = _real(x, "x")
    terms = _count(terms, "terms", minimum=2)
    # Horner: x^2 (1/2! + x (1/3! + x (1/4! + ...)))
    acc = np.zeros_like(a)
    fact = [1.0]
    for j in range(1, terms + 2):
        fact.append(fact[-1] * j)
    for j in range(terms + 1, 1, -1):
        acc = acc * a + 1.0 / fact[j]
    small = a * a * acc
    return np.where(np.abs(a) < 1, small, np.expm1(a) - a)


def k3_relative_error(x: ArrayLike, dtype, method: str) -> np.ndarray:
    """Relative error ``|k3_computed(x) - k3(x)| / k3(x)`` of ``k3`` computed in ``dtype``
    (``np.float32`` or ``np.float64``) by ``method``: ``"naive"`` (``exp(x) - 1 - x``) or ``"expm1"``
    (``expm1(x) - x``, as :func:`rlhf_course.kl.k3` does). The reference is :func:`k3_series` at the
    ``x`` actually representable in ``dtype``. ``x`` must be nonzero (``k3(0) = 0``).
    """
    if method not in ("naive", "expm1"):
        raise ValueError(f"method must be 'naive' or 'expm1', got {method!r}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    a = _real(x, "x").astype(dt)
    if (a == 0).any():
        raise ValueError("x must be nonzero (in the chosen dtype): the relative error at k3(0) = 0 is undefined")
    computed = k3_naive(a) if method == "naive" else np.expm1(a) - a
    exact = k3_series(a.astype(np.float64))
    return np.abs(computed.astype(np.float64) - exact) / exact
