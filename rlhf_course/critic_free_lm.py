"""Reading the critic-free chapter's language-model runs: rewards at a matched KL, where the gold reward
turns, time per episode, and the runs beside best-of-n on Gao et al. (2022)'s axes.

Runs are read with :func:`rlhf_course.diagnose.load_run` (a :class:`~rlhf_course.diagnose.RunLog`) and
smoothed with :func:`rlhf_course.diagnose.smooth`; best-of-n comes from :mod:`rlhf_course.best_of_n`.
numpy only.
"""
from __future__ import annotations

import numpy as np

from .diagnose import smooth

__all__ = ["at_kl", "gold_turn", "matched_kl_table", "seconds_per_episode"]


def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


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
    g, p = smooth(_vector(gold, "gold"), window), smooth(_vector(proxy, "proxy"), window)
    if g.shape != p.shape:
        raise ValueError("gold and proxy must have the same length")
    i = int(np.argmax(g))
    turned = bool(g[-1] < g[i] - drop and p[-1] > p[i])
    return {"peak": i, "peak_gold": float(g[i]), "end_gold": float(g[-1]), "turned": turned}


def matched_kl_table(runs: dict, targets, window: int = 10) -> dict:
    """For each run (label -> RunLog or dict of ``kl``, ``gold``, ``proxy`` arrays) and each KL in
    ``targets``: the smoothed gold and proxy reward where the smoothed KL path first reaches it
    (``{label: {"gold": [...], "proxy": [...]}}``, NaN where the run never gets that far), and where its
    gold reward turned (:func:`gold_turn`, with the smoothed KL there)."""
    out = {}
    for label, r in runs.items():
        kl, gold, proxy = (smooth(_vector(r[k], k), window) for k in ("kl", "gold", "proxy"))
        turn = gold_turn(r["gold"], r["proxy"], window)
        out[label] = {"gold": [at_kl(kl, gold, t) for t in targets],
                      "proxy": [at_kl(kl, proxy, t) for t in targets],
                      "turn": {**turn, "kl": float(kl[turn["peak"]])}, "end_kl": float(kl[-1])}
    return out


def seconds_per_episode(run) -> float:
    """Wall time of a run's training iterations (``summary.json``'s ``seconds``) over its episodes."""
    s, c = run.summary, run.config
    # a GRPO run's summary counts its episodes; a PPO run has batch_size episodes per iteration
    episodes = s.get("episodes") or s["iterations"] * c["batch_size"]
    return float(s["seconds"]) / episodes
