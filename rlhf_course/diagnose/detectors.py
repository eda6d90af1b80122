"""Detectors of the usual failures of a PPO run, read off its logged metrics the way a practitioner does, and
measures of degenerate text on its samples (chapter 7). Each detector returns a :class:`Finding`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .logs import RunLog


# ==================================================================================================
# detectors


def _series(x, name: str) -> np.ndarray:
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(f"{name} must be a sequence of numbers (one per step), got {type(x).__name__}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence (one value per step), got shape {a.shape}")
    return a


def smooth(x, window: int = 5) -> np.ndarray:
    """Trailing moving average over the last ``window`` steps, ignoring NaN (shorter at the start)."""
    a = _series(x, "x")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    ok = np.isfinite(a)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, a, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, a.size + 1)
    lo = np.maximum(idx - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[idx] - c[lo]) / (n[idx] - n[lo])


@dataclass(frozen=True)
class Finding:
    """What a detector concluded: whether it ``fired``, at which step index (``step``, or None), the
    measured ``value`` it is based on, and a sentence saying so."""

    name: str
    fired: bool
    step: int | None
    value: float
    message: str

    def __str__(self) -> str:
        return f"[{'!!' if self.fired else 'ok'}] {self.name}: {self.message}"


def detect_overoptimization(proxy, gold, min_drop: float = 0.1, window: int = 5) -> Finding:
    """Goodhart's law in a log: the (smoothed) gold reward peaks and ends at least ``min_drop`` below its
    peak, while the proxy reward ends above its value at the gold peak. ``step`` is the gold peak: the
    checkpoint to keep. ``value`` is the gold reward lost since the peak."""
    proxy, gold = _series(proxy, "proxy"), _series(gold, "gold")
    if proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold must have one value per step each, got {proxy.size} and {gold.size}")
    sp, sg = smooth(proxy, window), smooth(gold, window)
    peak = int(np.nanargmax(sg))
    drop = float(sg[peak] - sg[-1])
    proxy_gain = float(sp[-1] - sp[peak])
    fired = drop >= min_drop and proxy_gain > 0
    msg = (f"gold reward peaked at step index {peak} ({sg[peak]:.3f}) and ends at {sg[-1]:.3f} (lost {drop:.3f}) "
           f"while the proxy reward went from {sp[peak]:.3f} to {sp[-1]:.3f}")
    return Finding("over-optimization", fired, peak if fired else None, drop, msg)


def detect_kl_blowup(kl, limit: float) -> Finding:
    """The KL to the reference passes ``limit`` nats (per response), or is not finite. ``step`` is the
    first step index where it does; ``value`` the largest finite KL seen."""
    kl = _series(kl, "kl")
    if not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a finite number > 0, got {limit!r}")
    bad = ~np.isfinite(kl) | (np.nan_to_num(kl, nan=np.inf) > limit)
    first = int(np.argmax(bad)) if bad.any() else None
    finite = kl[np.isfinite(kl)]
    top = float(finite.max()) if finite.size else float("nan")
    msg = (f"KL to the reference passes {limit:g} at step index {first} (largest {top:.3f})" if first is not None
           else f"KL to the reference stays below {limit:g} (largest {top:.3f})")
    return Finding("KL blow-up", first is not None, first, top, msg)


def detect_entropy_collapse(entropy, fraction: float = 0.5, window: int = 3) -> Finding:
    """The (smoothed) entropy falls below ``fraction`` of its first value. ``value`` is the smallest
    smoothed entropy over the first one."""
    entropy = _series(entropy, "entropy")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    s = smooth(entropy, window)
    start = entropy[np.isfinite(entropy)][0]
    ratio = s / start
    below = np.nan_to_num(ratio, nan=np.inf) < fraction
    first = int(np.argmax(below)) if below.any() else None
    low = float(np.nanmin(ratio))
    msg = (f"entropy falls below {fraction:g} of its start ({start:.3f}) at step index {first}; lowest "
           f"{low:.2f} of it" if first is not None else f"entropy stays above {fraction:g} of its start "
           f"({start:.3f}); lowest {low:.2f} of it")
    return Finding("entropy collapse", first is not None, first, low, msg)


def detect_update_spikes(approx_kl, clipfrac, approx_kl_limit: float = 0.05, clip_limit: float = 0.3) -> Finding:
    """Updates that moved the policy too far from the one that sampled the batch: approximate KL between
    them above ``approx_kl_limit``, or a clip fraction above ``clip_limit``. ``value`` is the share of
    steps that spiked; ``step`` the first."""
    approx_kl, clipfrac = _series(approx_kl, "approx_kl"), _series(clipfrac, "clipfrac")
    if approx_kl.shape != clipfrac.shape:
        raise ValueError("approx_kl and clipfrac must have one value per step each")
    spike = (np.nan_to_num(approx_kl, nan=np.inf) > approx_kl_limit) | (np.nan_to_num(clipfrac) > clip_limit)
    first = int(np.argmax(spike)) if spike.any() else None
    share = float(spike.mean())
    msg = (f"{spike.sum()} of {spike.size} updates spiked (approx KL > {approx_kl_limit:g} or clip fraction > "
           f"{clip_limit:g}), first at step index {first}; largest approx KL {np.nanmax(approx_kl):.3g}, "
           f"largest clip fraction {np.nanmax(clipfrac):.3f}")
    return Finding("update spikes", first is not None, first, share, msg)


def detect_oscillation(series, limit: float, start: int = 0, name: str = "the reward") -> Finding:
    """A metric (by default the reward) jumps between consecutive steps: the standard deviation of its
    step-to-step differences, from step index ``start`` on, is above ``limit``. ``value`` is that standard
    deviation."""
    series = _series(series, "series")
    d = np.diff(series[start:])
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError("need at least three finite values after `start` to measure step-to-step jumps")
    jitter = float(d.std())
    fired = jitter > limit
    return Finding("oscillation", fired, start if fired else None, jitter,
                   f"step-to-step changes of {name} have standard deviation {jitter:.3f} (limit {limit:g})")


# the keys a chapter-6 run logs, by role (the first one present is used)
ROLE_KEYS = {
    "proxy": ("proxy", "reward", "proxy_reward", "score", "rm_score"),
    "gold": ("gold", "gold_reward"),
    "kl": ("kl", "kl_k1", "kl_k3", "kl_ref"),
    "entropy": ("entropy",),
    "approx_kl": ("approx_kl",),
    "clipfrac": ("clipfrac", "clip_fraction"),
}


def _role(run, role: str):
    cols = run.columns if isinstance(run, RunLog) else run
    for k in ROLE_KEYS[role]:
        if k in cols:
            return np.asarray(cols[k], dtype=np.float64)
    return None


def diagnose(run, kl_limit: float = 10.0, min_gold_drop: float = 0.1, entropy_fraction: float = 0.5,
             approx_kl_limit: float = 0.05, clip_limit: float = 0.3) -> list[Finding]:
    """Every detector whose metrics ``run`` (a :class:`RunLog` or a dict of columns) has, in one list."""
    out = []
    proxy, gold = _role(run, "proxy"), _role(run, "gold")
    if proxy is not None and gold is not None:
        out.append(detect_overoptimization(proxy, gold, min_gold_drop))
    if (kl := _role(run, "kl")) is not None:
        out.append(detect_kl_blowup(kl, kl_limit))
    if (ent := _role(run, "entropy")) is not None:
        out.append(detect_entropy_collapse(ent, entropy_fraction))
    akl, cf = _role(run, "approx_kl"), _role(run, "clipfrac")
    if akl is not None and cf is not None:
        out.append(detect_update_spikes(akl, cf, approx_kl_limit, clip_limit))
    return out


# --------------------------------------------------------------------------------------------------
# the samples


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be strings (or a list of strings)")
    return texts


def repetition_rate(texts, n: int = 2) -> float:
    """Mean over texts of the share of a text's word n-grams that already occurred earlier in the same text.

    0 for text that never repeats itself; close to 1 for "great great great great ...". Texts shorter than
    ``n + 1`` words count as 0. A list of texts gives the mean over them.
    """
    texts = _check_texts(texts)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not texts:
        raise ValueError("texts is empty")
    rates = []
    for t in texts:
        grams = _ngrams(t.split(), n)
        seen, rep = set(), 0
        for g in grams:
            rep += g in seen
            seen.add(g)
        rates.append(rep / len(grams) if grams else 0.0)
    return float(np.mean(rates))


def distinct_n(texts, n: int = 2) -> float:
    """Distinct word n-grams over all n-grams of a set of texts (1 = no n-gram repeats anywhere)."""
    texts = _check_texts(texts)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    grams = [g for t in texts for g in _ngrams(t.split(), n)]
    if not grams:
        raise ValueError(f"the texts hold no {n}-gram")
    return len(set(grams)) / len(grams)
