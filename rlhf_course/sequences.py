"""From distributions to sequences: token log-probabilities, the masked sequence penalty, exact enumeration.

Notation of the book (chapter 2). A response ``y = (y_1, ..., y_T)`` to a prompt ``x`` is produced one token
at a time, so its probability factorizes (autoregressive factorization):

    log pi(y | x) = sum_t log pi(y_t | x, y_<t).

Batches are ``batch x time`` arrays. Responses of different lengths are padded to a common length ``T``
and a mask ``m_t`` (1 for a real token, 0 for padding) says which positions count. With ``logp[..., t] =
log pi(y_t | x, y_<t)`` and ``ref_logp[..., t] = log pi_ref(y_t | x, y_<t)``:

    token penalty       m_t (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))
    sequence penalty    sum_t m_t (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))
                        = log pi(y | x) - log pi_ref(y | x)

Values at padded positions (``m_t = 0``) are never read: they may hold anything, NaN and inf included,
and the result is the same. The chain rule of KL says that the expected sequence penalty is the sequence
KL, and also the expected sum of the next-token KLs:

    KL(pi(.|x) || pi_ref(.|x)) = E_{y ~ pi}[sum_t m_t (log pi(y_t|x,y_<t) - log pi_ref(y_t|x,y_<t))]
                               = E_{y ~ pi}[sum_t m_t KL(pi(.|x,y_<t) || pi_ref(.|x,y_<t))].

The functions that compute with arrays accept numpy arrays and torch tensors and return the kind they
were given; the torch path is differentiable and has no Python loop over tokens. The tiny autoregressive
models of the chapter, small enough that every sequence can be enumerated and every KL computed exactly, are
:mod:`rlhf_course.bigrams`'s. Torch is imported only when a tensor comes in, so importing this module stays
light.
"""
from __future__ import annotations

import numpy as np

from .distributions import log_softmax
from ._validate import (
    _np,
    as_float_array,
    as_logits,
    as_mask,
    as_tokens,
    check_logprobs,
    check_positive_scalar,
    check_same_kind,
    check_same_shape,
    check_time_axis,
    check_token_range,
    is_torch,
)

__all__ = ["token_logprobs", "token_penalties", "sequence_penalty", "sequence_logprob", "next_token_kl"]

# --------------------------------------------------------------------------------------------------
# token log-probabilities and penalties


def token_logprobs(logits, tokens, temperature: float = 1.0):
    """Log-probabilities ``log pi_tau(y_t | x, y_<t)`` of the given tokens, at a sampling temperature ``tau``.

    ``pi_tau(. | x, y_<t) = softmax(logits_t / tau)``: the same ``tau`` that was used to sample the tokens, so
    that the log-probabilities are those of the distribution the tokens came from. Computed as
    ``log_softmax(logits / tau)`` gathered at ``tokens`` (stable for large logits).

    Shapes: ``logits`` ``(..., T, V)`` (``V`` the vocabulary), ``tokens`` ``(..., T)`` integer ids in
    ``[0, V)``; returns ``(..., T)``. Logits may be ``-inf`` for tokens ruled out (their log-probability is
    ``-inf``). numpy in, numpy out; torch in, torch out (differentiable with respect to ``logits``).

    Raises ``ValueError`` for NaN or ``+inf`` logits, a row of logits that is ``-inf`` everywhere, token ids
    out of range or not whole numbers, shapes that do not match, or ``temperature <= 0``; ``TypeError`` for
    inputs that are not arrays of numbers or that mix numpy and torch.
    """
    temperature = check_positive_scalar(temperature, "temperature")
    logits = as_logits(logits, "logits")
    tokens = as_tokens(tokens)
    check_same_kind(logits, tokens, "logits and tokens")
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"tokens must have the shape of logits without its last (vocabulary) axis: logits "
                         f"{tuple(logits.shape)} needs tokens {tuple(logits.shape[:-1])}, got "
                         f"{tuple(tokens.shape)}")
    check_token_range(tokens, logits.shape[-1])
    logp_all = log_softmax(logits / temperature)
    if is_torch(logp_all):
        return logp_all.gather(-1, tokens.to(logp_all.device).unsqueeze(-1)).squeeze(-1)
    return np.take_along_axis(logp_all, tokens[..., None], axis=-1)[..., 0]


def _zeros_where_masked(values, mask):
    if is_torch(values):
        import torch

        return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    with np.errstate(invalid="ignore"):
        return np.where(mask, values, 0.0).astype(values.dtype, copy=False)


def token_penalties(logp, ref_logp, mask=None):
    """Per-token penalties ``m_t (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))``, shape ``(..., T)``.

    Exactly 0 at padded positions (``m_t = 0``), whatever ``logp`` and ``ref_logp`` hold there. Their sum
    over ``t`` is :func:`sequence_penalty`; a per-token reward in RLHF is ``-beta`` times these.

    ``mask`` (0/1, bool or numbers, the shape of ``logp``) defaults to all ones. At real positions ``logp``
    must be finite and at most 0; ``ref_logp`` may be ``-inf`` (a token the reference rules out: the
    penalty is ``+inf``).
    """
    logp = as_float_array(logp, "logp")
    ref_logp = as_float_array(ref_logp, "ref_logp")
    check_same_kind(logp, ref_logp, "logp and ref_logp")
    check_same_shape(logp, ref_logp, "logp and ref_logp")
    check_time_axis(logp, "logp")
    m = as_mask(mask, logp)
    mn = _np(m)
    check_logprobs(_np(logp)[mn], "logp (at unmasked positions)")
    check_logprobs(_np(ref_logp)[mn], "ref_logp (at unmasked positions)", allow_neg_inf=True)
    if is_torch(logp) and ref_logp.dtype != logp.dtype:
        ref_logp = ref_logp.to(logp.dtype)
    with np.errstate(invalid="ignore"):
        diff = logp - ref_logp
    return _zeros_where_masked(diff, m)


def sequence_penalty(logp, ref_logp, mask=None):
    """The sequence penalty ``sum_t m_t (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))``.

    Equal to ``log pi(y | x) - log pi_ref(y | x)`` for the unpadded response (autoregressive factorization);
    its expectation over ``y ~ pi`` is ``KL(pi(.|x) || pi_ref(.|x))`` over sequences (chain rule of KL).

    Shapes: ``logp``, ``ref_logp`` and ``mask`` are ``(..., T)`` (batch x time); returns ``(...)``, one
    penalty per sequence. Padded positions (``m_t = 0``) never change the result. See
    :func:`token_penalties` for what is validated.
    """
    return token_penalties(logp, ref_logp, mask).sum(-1)


def sequence_logprob(logp, mask=None):
    """``log pi(y | x) = sum_t m_t log pi(y_t | x, y_<t)``: shape ``(..., T)`` in, ``(...)`` out."""
    logp = as_float_array(logp, "logp")
    check_time_axis(logp, "logp")
    m = as_mask(mask, logp)
    check_logprobs(_np(logp)[_np(m)], "logp (at unmasked positions)", allow_neg_inf=True)
    return _zeros_where_masked(logp, m).sum(-1)


def next_token_kl(logits, ref_logits, mask=None, temperature: float = 1.0):
    """Per-position KL of the next-token distributions, ``m_t KL(pi_tau(.|x,y_<t) || pi_ref,tau(.|x,y_<t))``.

    ``KL_t = sum_v pi(v | x, y_<t) (log pi(v | x, y_<t) - log pi_ref(v | x, y_<t))``, a sum over the
    whole vocabulary at each prefix, with both distributions ``softmax(logits / tau)`` (``tau = temperature``).
    Its sum over ``t`` has the same expectation as the sequence penalty (chain rule of KL), without sampling
    the token ``y_t``.

    Shapes: ``logits`` and ``ref_logits`` ``(..., T, V)``, ``mask`` ``(..., T)``; returns ``(..., T)``,
    0 at padded positions. Tokens with ``pi(v) = 0`` contribute 0; ``pi(v) > 0 = pi_ref(v)`` gives ``inf``.
    """
    temperature = check_positive_scalar(temperature, "temperature")
    logits = as_logits(logits, "logits")
    ref_logits = as_logits(ref_logits, "ref_logits")
    check_same_kind(logits, ref_logits, "logits and ref_logits")
    check_same_shape(logits, ref_logits, "logits and ref_logits")
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (..., T, V) with a time axis, got {tuple(logits.shape)}")
    lp = log_softmax(logits / temperature)
    lq = log_softmax(ref_logits / temperature)
    m = as_mask(mask, lp[..., 0])
    if is_torch(lp):
        import torch

        p = lp.exp()
        zero = torch.zeros((), dtype=lp.dtype, device=lp.device)
        # Set both logs to 0 where p = 0 before multiplying: 0 * (-inf) would be NaN, in the values and
        # in the gradients (torch.where differentiates both branches).
        lp_safe = torch.where(p > 0, lp, zero)
        lq_safe = torch.where(p > 0, lq, zero)
        kl = (p * (lp_safe - lq_safe)).sum(-1)
        return torch.where(m, kl, zero)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return np.where(m, terms.sum(-1), 0.0)
