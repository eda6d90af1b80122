"""The KL penalty: exact KL between categorical distributions, and its per-sample estimators.

Notation of the book (chapter 1). A policy ``pi`` and a reference ``pi_ref`` over outcomes ``y``.
The per-sample penalty is the log-ratio

    log_ratio(y) = log pi(y) - log pi_ref(y),

and its expectation under ``pi`` is the Kullback-Leibler divergence

    KL(pi || pi_ref) = sum_y pi(y) (log pi(y) - log pi_ref(y)) = E_{y ~ pi}[log_ratio(y)].

The estimators ``k1``, ``k2``, ``k3`` (Schulman, "Approximating KL divergence", 2020) take the
log-probabilities of samples ``y ~ pi`` under both policies and return one value per sample; their mean
estimates ``KL(pi || pi_ref)``. With ``log r = log pi_ref(y) - log pi(y) = -log_ratio(y)``:

    k1 = -log r                 unbiased, high variance, can be negative
    k2 = (log r)^2 / 2          biased, low variance, >= 0
    k3 = (r - 1) - log r        unbiased, low variance, >= 0

Every function accepts numpy arrays and torch tensors and returns the kind it was given.
"""
from __future__ import annotations

import numpy as np

from ._validate import (
    as_float_array,
    check_broadcastable,
    check_logprobs,
    check_probs,
    check_same_kind,
    check_same_shape,
    is_torch,
)

__all__ = ["kl_divergence", "log_ratio", "masked_log_ratio", "k1", "k2", "k3", "k2_from_log_ratio", "k3_from_log_ratio",
           "entropy"]


def kl_divergence(p, q, axis: int = -1):
    """Exact ``KL(p || q) = sum_y p(y) (log p(y) - log q(y))`` over the last axis.

    Batched: leading axes broadcast, so ``p`` of shape ``(B, K)`` against ``q`` of shape ``(K,)`` gives
    ``B`` values. Terms with ``p(y) = 0`` contribute 0 (the limit of ``t log t``); a ``y`` with
    ``p(y) > 0 = q(y)`` makes the divergence ``inf``: ``q`` cannot produce what ``p`` does.

    Raises ``ValueError`` for NaN, negative entries, rows that do not sum to one, or shapes that do not match.
    """
    if axis != -1:
        raise ValueError("kl_divergence reduces the last axis; move the category axis last (axis=-1)")
    p = as_float_array(p, "p")
    q = as_float_array(q, "q")
    check_same_kind(p, q, "p and q")
    check_broadcastable(p, q, "p and q")
    check_probs(p, "p")
    check_probs(q, "q")
    if is_torch(p):
        import torch

        p, q = torch.broadcast_tensors(p, q)
        # Take logs only where p > 0: log(0) in the branch torch.where discards would still send NaN
        # through the gradient.
        pos = p > 0
        log_p = torch.log(torch.where(pos, p, torch.ones_like(p)))
        log_q = torch.log(torch.where(pos, q, torch.ones_like(q)))
        return torch.where(pos, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)
    p, q = np.broadcast_arrays(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def entropy(p):
    """Shannon entropy ``H(p) = -sum_y p(y) log p(y)`` over the last axis, in nats."""
    p = as_float_array(p, "p")
    check_probs(p, "p")
    if is_torch(p):
        import torch

        pos = p > 0
        return -torch.where(pos, p * torch.log(torch.where(pos, p, torch.ones_like(p))), torch.zeros_like(p)).sum(dim=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def _log_ratio_checked(logp, ref_logp):
    logp = as_float_array(logp, "logp")
    ref_logp = as_float_array(ref_logp, "ref_logp")
    check_same_kind(logp, ref_logp, "logp and ref_logp")
    check_same_shape(logp, ref_logp, "logp and ref_logp")
    check_logprobs(logp, "logp")
    # A sample can be impossible under the reference (log pi_ref = -inf): the penalty is then +inf.
    check_logprobs(ref_logp, "ref_logp", allow_neg_inf=True)
    return logp - ref_logp


def log_ratio(logp, ref_logp):
    """The per-sample penalty ``log pi(y) - log pi_ref(y)``, elementwise.

    Zero where the two policies agree on ``y``; positive where ``pi`` makes ``y`` more likely than the
    reference does; negative where less. Its mean over ``y ~ pi`` is ``KL(pi || pi_ref) >= 0``, but single
    values can have either sign.
    """
    return _log_ratio_checked(logp, ref_logp)


def k1(logp, ref_logp):
    """Estimator ``k1 = log pi(y) - log pi_ref(y) = -log r`` for samples ``y ~ pi`` (unbiased, can be < 0)."""
    return _log_ratio_checked(logp, ref_logp)


def k2(logp, ref_logp):
    """Estimator ``k2 = (log r)^2 / 2`` for samples ``y ~ pi`` (biased, always >= 0, low variance)."""
    return k2_from_log_ratio(_log_ratio_checked(logp, ref_logp))


def k3(logp, ref_logp):
    """Estimator ``k3 = (r - 1) - log r`` with ``log r = log pi_ref(y) - log pi(y)``, for ``y ~ pi``.

    Unbiased (``E_pi[r] = 1``) and never negative (``e^x >= 1 + x``). Computed as ``expm1(x) - x`` with
    ``x = log r``: the naive ``exp(x) - 1 - x`` subtracts nearly equal numbers when ``pi`` and ``pi_ref``
    are close, which is exactly where RLHF runs live, and loses all its digits there.
    """
    return k3_from_log_ratio(_log_ratio_checked(logp, ref_logp))


def k2_from_log_ratio(log_ratio):
    """``k2 = x^2 / 2`` from ``x = log pi(y) - log pi_ref(y)``, unvalidated: for trainers' inner loops (no copies,
    no device sync), where the log-ratio is already formed. :func:`k2` is the checked entry point."""
    return 0.5 * log_ratio ** 2


def k3_from_log_ratio(log_ratio):
    """``k3 = expm1(x) - x`` with ``x = log r = -(log pi(y) - log pi_ref(y))``, unvalidated: for trainers' inner
    loops. :func:`k3` is the checked entry point (and says why ``expm1``)."""
    x = -log_ratio
    if is_torch(x):
        import torch

        return torch.expm1(x) - x
    return np.expm1(x) - x


def masked_log_ratio(logp, ref_logp, mask):
    """``(log pi(y_t) - log pi_ref(y_t)) * mask_t`` for ``(batch, time)`` torch tensors, exactly 0 on padding.

    The one place the per-token log-ratio of a padded batch is formed. The reference is masked *before*
    the subtraction (``where``), so a padded position whose ``ref_logp`` is ``-inf`` gives 0, never
    ``inf * 0 = NaN`` (and no NaN in the gradient). On finite inputs the result is bit-identical to
    ``(logp - ref_logp) * mask``. No validation copies here: this runs in the trainers' inner loops;
    the public callers (``rl.kl_penalized_rewards``) validate.
    """
    import torch

    real = mask != 0
    return (logp - torch.where(real, ref_logp, logp)) * mask
