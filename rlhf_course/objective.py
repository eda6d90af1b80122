"""The RLHF objective and its maximizer, on a finite set of outputs (chapters 3 and 4).

For one prompt with outputs ``y``, reference ``pi_ref``, reward ``r`` and ``beta > 0``:

    J(pi) = E_{y ~ pi}[r(y)] - beta KL(pi || pi_ref)                      (the RLHF objective)
    pi*(y) = pi_ref(y) exp(r(y) / beta) / Z,   Z = sum_y pi_ref(y) exp(r(y) / beta)
    max_pi J(pi) = J(pi*) = beta log Z
    r(y) = beta log(pi*(y) / pi_ref(y)) + beta log Z                     (the reward, recovered)

Arrays are batched over leading axes: the outputs are the last axis. Everything is computed in log space
(``log Z`` by log-sum-exp), so ``r / beta`` in the thousands neither overflows nor underflows.
Outputs with ``pi_ref(y) = 0`` get ``pi*(y) = 0``: the optimum never leaves the reference's support.
numpy arrays and torch tensors are both accepted; the result has the kind of ``ref_probs``.
"""
from __future__ import annotations

import numpy as np

from ._validate import (
    as_float_array,
    check_broadcastable,
    check_finite,
    check_positive_scalar,
    check_probs,
    check_same_kind,
    is_torch,
)
from .distributions import log_softmax
from .kl import kl_divergence

__all__ = ["best_of_n_policy", "best_of_n_kl_bound", "optimal_policy", "log_optimal_policy", "log_partition",
           "optimal_value", "rlhf_objective", "implicit_reward"]


def _inputs(ref_probs, rewards, beta):
    ref = as_float_array(ref_probs, "ref_probs")
    r = as_float_array(rewards, "rewards")
    check_same_kind(ref, r, "ref_probs and rewards")
    check_broadcastable(ref, r, "ref_probs and rewards")
    check_probs(ref, "ref_probs")
    check_finite(r, "rewards")
    return ref, r, check_positive_scalar(beta, "beta")


def _logits(ref, r, beta):
    """``log pi_ref + r / beta``, with -inf outside the reference's support."""
    if is_torch(ref):
        import torch

        return torch.log(ref) + r / beta
    with np.errstate(divide="ignore"):
        return np.log(ref) + r / beta


def _logsumexp(z):
    if is_torch(z):
        import torch

        return torch.logsumexp(z, dim=-1)
    m = np.max(z, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True)))[..., 0]


def log_partition(ref_probs, rewards, beta: float):
    """``log Z = log sum_y pi_ref(y) exp(r(y) / beta)``, by log-sum-exp over the last axis."""
    ref, r, beta = _inputs(ref_probs, rewards, beta)
    return _logsumexp(_logits(ref, r, beta))


def optimal_policy(ref_probs, rewards, beta: float):
    """``pi*(y) = pi_ref(y) exp(r(y) / beta) / Z``: the maximizer of the RLHF objective.

    ``beta -> inf`` gives back ``pi_ref``; ``beta -> 0`` puts all mass on the highest-reward outputs
    in the support of ``pi_ref`` (in proportion to ``pi_ref`` among ties).
    """
    ref, r, beta = _inputs(ref_probs, rewards, beta)
    z = _logits(ref, r, beta)
    if is_torch(z):
        import torch

        return torch.softmax(z, dim=-1)
    # log_softmax shifts by the maximum before it subtracts log sum exp: z - (m + log s) in one step rounds at
    # the size of m (r / beta of 1e5 gives errors of 1e-11 in pi, and sums off 1 by more than 1e-12)
    return np.exp(log_softmax(z))


def log_optimal_policy(ref_logp, rewards, beta: float):
    """``log pi*(y) = log_softmax(log pi_ref(y) + r(y) / beta)``: :func:`optimal_policy` in log space.

    Takes and returns log-probabilities, so an iteration ``pi_{k+1} = pi*(pi_k, A_k, lam)`` (chapter 3's
    penalized update, :func:`rlhf_course.support_toy.train`) carries ``log pi_k`` exactly from one iterate to the
    next instead of going through ``exp`` and ``log`` at each step. numpy or torch, the kind of ``ref_logp``.
    """
    logp = as_float_array(ref_logp, "ref_logp")
    r = as_float_array(rewards, "rewards")
    check_same_kind(logp, r, "ref_logp and rewards")
    check_broadcastable(logp, r, "ref_logp and rewards")
    check_finite(r, "rewards")
    return log_softmax(logp + r / check_positive_scalar(beta, "beta"))


def optimal_value(ref_probs, rewards, beta: float):
    """``max_pi J(pi) = J(pi*) = beta log Z``."""
    return check_positive_scalar(beta, "beta") * log_partition(ref_probs, rewards, beta)


def rlhf_objective(probs, ref_probs, rewards, beta: float):
    """``J(pi) = sum_y pi(y) r(y) - beta KL(pi || pi_ref)``, over the last axis.

    ``-inf`` when ``pi`` puts mass where ``pi_ref`` has none (the KL is infinite there).
    """
    p = as_float_array(probs, "probs")
    ref, r, beta = _inputs(ref_probs, rewards, beta)
    check_same_kind(p, ref, "probs and ref_probs")
    check_broadcastable(p, r, "probs and rewards")
    check_probs(p, "probs")
    return (p * r).sum(-1) - beta * kl_divergence(p, ref)


def implicit_reward(probs, ref_probs, beta: float):
    """``beta log(pi(y) / pi_ref(y))``: the reward ``pi`` is optimal for, up to the constant ``beta log Z``.

    For ``pi = pi*`` (of some reward ``r``) this is ``r(y) - beta log Z``: the reward, shifted by a constant
    per prompt. Defined on the support of ``pi_ref``: outputs with ``pi_ref(y) = 0`` (where any reward is
    consistent with ``pi*``) give NaN; ``pi(y) = 0 < pi_ref(y)`` gives ``-inf``. Raises ``ValueError``
    when ``pi`` puts mass outside the support of ``pi_ref`` (no finite reward produces that).
    """
    p = as_float_array(probs, "probs")
    ref = as_float_array(ref_probs, "ref_probs")
    check_same_kind(p, ref, "probs and ref_probs")
    check_broadcastable(p, ref, "probs and ref_probs")
    check_probs(p, "probs")
    check_probs(ref, "ref_probs")
    beta = check_positive_scalar(beta, "beta")
    if is_torch(p):
        import torch

        if bool(((p > 0) & (ref == 0)).any()):
            raise ValueError("probs puts mass where ref_probs is 0: no finite reward makes that optimal")
        return torch.where(ref > 0, beta * (torch.log(p) - torch.log(ref)), torch.full_like(p * ref, float("nan")))
    p, ref = np.broadcast_arrays(p, ref)
    if ((p > 0) & (ref == 0)).any():
        raise ValueError("probs puts mass where ref_probs is 0: no finite reward makes that optimal")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref > 0, beta * (np.log(p) - np.log(ref)), np.nan)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return int(n)


def best_of_n_policy(ref_probs, rewards, n: int):
    """Exact distribution of best-of-n: draw ``n`` samples from ``pi_ref``, keep one with the highest reward.

    Ties are broken uniformly among the tied best samples. With ``F_<(y) = P_ref(r < r(y))`` and
    ``F_<=(y) = P_ref(r <= r(y))``, the best reward equals ``r(y)`` with probability ``F_<=^n - F_<^n``,
    and by exchangeability the kept sample is then distributed as ``pi_ref`` restricted to that tie class:

        pi_n(y) = pi_ref(y) / (F_<=(y) - F_<(y)) * (F_<=(y)^n - F_<(y)^n).

    Without ties this is ``F_<=^n - F_<^n`` per outcome. Batched over leading axes like ``optimal_policy``;
    the result has the kind of ``ref_probs``. ``n = 1`` gives ``pi_ref``.
    """
    n = _check_n(n)
    ref = as_float_array(ref_probs, "ref_probs")
    r = as_float_array(rewards, "rewards")
    check_same_kind(ref, r, "ref_probs and rewards")
    check_broadcastable(ref, r, "ref_probs and rewards")
    check_probs(ref, "ref_probs")
    check_finite(r, "rewards")
    torch_in = is_torch(ref)
    if torch_in:
        import torch

        dtype, device = ref.dtype, ref.device
        ref, r = ref.detach().cpu().double().numpy(), r.detach().cpu().double().numpy()
    p, r = np.broadcast_arrays(np.asarray(ref, dtype=np.float64), np.asarray(r, dtype=np.float64))
    less = r[..., None, :] < r[..., :, None]  # [..., y, y']: r(y') < r(y)
    equal = r[..., None, :] == r[..., :, None]
    f_lt = (less * p[..., None, :]).sum(-1)
    p_tie = (equal * p[..., None, :]).sum(-1)
    f_le = f_lt + p_tie
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p > 0, p / np.where(p_tie > 0, p_tie, 1.0) * (f_le ** n - f_lt ** n), 0.0)
    if torch_in:
        return torch.as_tensor(out, dtype=dtype, device=device)
    return out


def best_of_n_kl_bound(n: int) -> float:
    """``log n - (n - 1) / n``: the upper bound on ``KL(pi_n || pi_ref)`` for best-of-n (Beirami et al. 2024).

    It is reached in the limit of no ties (continuous rewards); ties only lower the KL.
    """
    n = _check_n(n)
    return float(np.log(n) - (n - 1) / n)
