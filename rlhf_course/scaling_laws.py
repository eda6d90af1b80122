"""Gao et al. (2022)'s functional forms of reward-model over-optimization, and their least-squares fits.

With ``d = sqrt(KL(pi || pi_ref))`` and the gold-reward gain ``R(d)`` over the reference (so ``R(0) = 0``):

    best-of-n    R(d) = d (a - b d)          peak at d = a / (2 b)
    RL           R(d) = d (a - b log d)      peak at d = exp(a / b - 1)

Both are linear in ``(a, b)``, so each fit is one least-squares solve on two features of ``d``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gao_rl_fit", "gao_rl_curve", "gao_bon_fit", "gao_bon_curve"]


def _xlogx(d: np.ndarray) -> np.ndarray:
    """``d log d``, 0 at ``d = 0`` (its limit)."""
    return np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)


def _fit(kl, gain, features) -> tuple[float, float, float]:
    """Least squares of ``gain`` on ``features(d)`` (``(n, 2)``), ``d = sqrt(KL)``: ``(a, b, r2)``."""
    kl = np.asarray(kl, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    if kl.shape != gain.shape or kl.ndim != 1 or kl.size < 2:
        raise ValueError("kl and gain must be 1-D arrays of the same length (at least 2 points)")
    if not (np.isfinite(kl).all() and np.isfinite(gain).all()):
        raise ValueError("kl and gain must be finite")
    X = features(np.sqrt(np.clip(kl, 0.0, None)))
    (a, b), *_ = np.linalg.lstsq(X, gain, rcond=None)
    pred = X @ np.array([a, b])
    ss = float(((gain - gain.mean()) ** 2).sum())
    r2 = 1.0 - float(((gain - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    return float(a), float(b), r2


def gao_rl_fit(kl, gain) -> dict:
    """Fit the RL form ``R(d) = d (a - b log d)`` to ``gain`` (the gold reward minus its value at the
    reference) at ``kl``, on the features ``d`` and ``-d log d``. Returns ``a``, ``b``, ``r2``, the ``d`` where
    the fitted curve peaks, ``exp(a / b - 1)``, and the gain there (both infinite when ``b <= 0``: no peak).
    """
    a, b, r2 = _fit(kl, gain, lambda d: np.stack([d, -_xlogx(d)], axis=1))
    peak = float(np.exp(a / b - 1.0)) if b > 0 else float("inf")
    return {"a": a, "b": b, "r2": r2, "peak_d": peak,
            "peak_gain": float(peak * (a - b * np.log(peak))) if np.isfinite(peak) else float("inf")}


def gao_rl_curve(d, a: float, b: float) -> np.ndarray:
    """``d (a - b log d)``, 0 at ``d = 0``."""
    d = np.asarray(d, dtype=np.float64)
    return np.where(d > 0, d * (a - b * np.log(np.where(d > 0, d, 1.0))), 0.0)


def gao_bon_fit(kl, gain) -> dict:
    """Fit the best-of-n form ``R(d) = d (a - b d)`` to ``gain`` (the gold reward minus its n = 1 value) at
    ``kl``, on the features ``d`` and ``-d^2``. Returns ``a``, ``b``, ``r2`` and the peak ``d = a / (2 b)``
    (infinite when ``b <= 0``).
    """
    a, b, r2 = _fit(kl, gain, lambda d: np.stack([d, -d * d], axis=1))
    return {"a": a, "b": b, "r2": r2, "peak_d": float(a / (2 * b)) if b > 0 else float("inf")}


def gao_bon_curve(d, a: float, b: float) -> np.ndarray:
    """``R(d) = d (a - b d)``."""
    d = np.asarray(d, dtype=np.float64)
    return d * (a - b * d)
