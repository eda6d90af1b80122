"""Reading the critic-free chapter's language-model runs: smoothed paths, rewards at a matched KL, where the
gold reward turns, and Gao et al. (2022)'s best-of-n functional form.

Gao et al. write ``d = sqrt(KL(pi || pi_ref))`` and fit the gold reward gained over the reference with
``R_BoN(d) = d (a - b d)`` for best-of-n and ``R_RL(d) = d (a - b log d)`` for RL
(:func:`rlhf_course.ppo.gao_rl_fit`). Both are linear in ``(a, b)``: least squares on two features. numpy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["smooth", "gao_bon_fit", "gao_bon_curve", "at_kl", "gold_turn"]


def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def smooth(x, window: int = 10) -> np.ndarray:
    """Trailing running mean over ``window`` iterations (shorter at the start): the value an iteration's
    batch mean would have with ``window`` times the batch."""
    a = _vector(x, "x")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    c = np.cumsum(np.concatenate([[0.0], a]))
    idx = np.arange(1, a.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def gao_bon_fit(kl, gain) -> dict:
    """Least-squares fit of ``gain = d (a - b d)``, ``d = sqrt(kl)``: ``{"a", "b", "r2", "peak_d",
    "peak_gain"}``, the peak at ``d* = a / (2 b)`` (infinite when ``b <= 0``)."""
    kl, gain = _vector(kl, "kl"), _vector(gain, "gain")
    if kl.shape != gain.shape or kl.size < 2:
        raise ValueError("kl and gain must have the same length, at least 2")
    if (kl < 0).any():
        raise ValueError("kl must be >= 0")
    d = np.sqrt(kl)
    X = np.stack([d, -d * d], axis=1)
    (a, b), *_ = np.linalg.lstsq(X, gain, rcond=None)
    ss = float(((gain - gain.mean()) ** 2).sum())
    r2 = 1.0 - float(((gain - X @ np.array([a, b])) ** 2).sum()) / ss if ss > 0 else float("nan")
    peak = float(a / (2 * b)) if b > 0 else float("inf")
    return {"a": float(a), "b": float(b), "r2": r2, "peak_d": peak,
            "peak_gain": float(a * a / (4 * b)) if b > 0 else float("inf")}


def gao_bon_curve(d, a: float, b: float) -> np.ndarray:
    """``d (a - b d)``."""
    d = np.asarray(d, dtype=np.float64)
    return d * (a - b * d)


def at_kl(kl, values, target: float) -> float:
    """``values`` at the first point where the path ``kl`` reaches ``target``, linearly interpolated between
    the two iterations around it; NaN when the path never gets there."""
    kl, values = _vector(kl, "kl"), _vector(values, "values")
    if kl.shape != values.shape:
        raise ValueError("kl and values must have the same length")
    above = np.nonzero(kl >= target)[0]
    if above.size == 0:
        return float("nan")
    j = int(above[0])
    if j == 0:
        return float(values[0])
    k0, k1 = kl[j - 1], kl[j]
    w = (target - k0) / (k1 - k0) if k1 > k0 else 1.0
    return float(values[j - 1] + w * (values[j] - values[j - 1]))


def gold_turn(gold, proxy, window: int = 10, drop: float = 0.1) -> dict:
    """Where over-optimization shows in a run: the iteration where the smoothed gold reward peaks, and
    whether it then fell by more than ``drop`` while the smoothed proxy reward ended higher than at that
    peak (``{"peak": int, "peak_gold": float, "end_gold": float, "turned": bool}``)."""
    g, p = smooth(gold, window), smooth(proxy, window)
    if g.shape != p.shape:
        raise ValueError("gold and proxy must have the same length")
    i = int(np.argmax(g))
    turned = bool(g[-1] < g[i] - drop and p[-1] > p[i])
    return {"peak": i, "peak_gold": float(g[i]), "end_gold": float(g[-1]), "turned": turned}
