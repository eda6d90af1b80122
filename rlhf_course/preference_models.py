"""The preference models of chapters 4 and 8: Bradley-Terry for pairs, Plackett-Luce for rankings.

With worths ``exp(s(y))`` (``s`` a reward, or an implicit reward ``beta h(y)``):

    Bradley-Terry    P(a > b) = exp(s(a)) / (exp(s(a)) + exp(s(b))) = sigmoid(s(a) - s(b))
    Plackett-Luce    P(y_1 > ... > y_K) = prod_{k=1}^{K-1} exp(s(y_k)) / sum_{j >= k} exp(s(y_j))

Plackett-Luce with ``K = 2`` is Bradley-Terry. The package's one copy of each: the reward model and DPO label
pairs with :func:`bradley_terry_prob`, and DPO's ranking loss is :func:`plackett_luce_nll`.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import check_positive_scalar, is_torch

__all__ = ["bradley_terry_prob", "plackett_luce_nll"]


def bradley_terry_prob(r_a, r_b, temperature: float = 1.0):
    """``P(a > b) = sigmoid((r_a - r_b) / temperature)``, elementwise (numpy; a float for scalar inputs).

    Computed as ``1 / (1 + e^-d)`` for ``d >= 0`` and ``e^d / (1 + e^d)`` for ``d < 0``, so ``e`` is only ever
    raised to a non-positive power: no overflow however far apart the rewards are.
    """
    temperature = check_positive_scalar(temperature, "temperature")
    d = (np.asarray(r_a, dtype=np.float64) - np.asarray(r_b, dtype=np.float64)) / temperature
    if not np.isfinite(d).all():
        raise ValueError(f"rewards must be finite, got {r_a!r} and {r_b!r}")
    if d.ndim == 0:
        d = float(d)
        return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))
    e = np.exp(-np.abs(d))
    return np.where(d >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def plackett_luce_nll(s):
    """``-log P(ranking)`` per row of scores ``s`` ``(n, K)`` (numpy or torch, the kind given), each row ordered
    best first:

        -sum_{k=1}^{K-1} (s_k - log sum_{j >= k} exp(s_j)).
    """
    # log sum_{j >= k} exp(s_j): a reversed cumulative log-sum-exp.
    if is_torch(s):
        import torch

        tail = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
        return -(s - tail)[:, :-1].sum(1)
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise ValueError(f"s must be a finite (n, K) array of scores, got shape {s.shape}")
    tail = np.logaddexp.accumulate(s[:, ::-1], axis=1)[:, ::-1]
    return -(s - tail)[:, :-1].sum(1)
