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
models of the chapter are bigram models (the next token depends on the previous one only), small enough
that every sequence can be enumerated and every KL computed exactly. Torch is imported only when a tensor
comes in, so importing this module stays light.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from .distributions import inverse_cdf, log_softmax
from ._validate import (
    _np,
    as_float_array,
    check_logprobs,
    check_no_nan,
    check_positive_scalar,
    check_same_kind,
    check_same_shape,
    is_torch,
)

__all__ = [
    "token_logprobs",
    "token_penalties",
    "sequence_penalty",
    "sequence_logprob",
    "next_token_kl",
    "bigram_logits",
    "fit_bigram",
    "sample_bigram",
    "enumerate_sequences",
    "exact_sequence_kl",
    "card000_example",
]

MAX_ENUMERATION = 2_000_000  # V ** max_len above this is refused: enumeration is for tiny models


# --------------------------------------------------------------------------------------------------
# validation helpers for this module's inputs (token ids and masks)


def _as_tokens(tokens: Any, name: str = "tokens"):
    """Token ids as an int64 numpy array or a long tensor; whole-valued floats are accepted."""
    if is_torch(tokens):
        if tokens.is_floating_point():
            check_no_nan(tokens, name)
            if not bool((tokens == tokens.round()).all()):
                raise ValueError(f"{name} must be integer token ids, got non-integer values")
        elif tokens.dtype.is_complex or str(tokens.dtype) == "torch.bool":
            raise TypeError(f"{name} must be integer token ids, got dtype {tokens.dtype}")
        return tokens.long()
    if isinstance(tokens, (str, bytes, dict)) or tokens is None:
        raise TypeError(f"{name} must be an array of integer token ids, got {type(tokens).__name__}")
    try:
        arr = np.asarray(tokens)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of integer token ids: {exc}") from None
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be an array of integer token ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integer token ids, got non-integer values")
    return arr.astype(np.int64)


def _check_token_range(tokens, vocab_size: int, name: str = "tokens") -> None:
    t = _np(tokens)
    if t.size and (t.min() < 0 or t.max() >= vocab_size):
        raise ValueError(f"{name} must be ids in [0, {vocab_size}) (the vocabulary of the logits), "
                         f"got values from {t.min()} to {t.max()}")


def _as_mask(mask: Any, like, name: str = "mask"):
    """A 0/1 mask of the same shape and kind as ``like``, as booleans (numpy) or a bool tensor (torch)."""
    if mask is None:
        if is_torch(like):
            import torch

            return torch.ones(like.shape, dtype=torch.bool, device=like.device)
        return np.ones(like.shape, dtype=bool)
    if is_torch(mask) != is_torch(like):
        raise TypeError(f"{name} must be of the same kind as the log-probabilities "
                        "(both numpy arrays or both torch tensors), not a mix")
    if not is_torch(mask):
        if isinstance(mask, (str, bytes, dict)):
            raise TypeError(f"{name} must be an array of 0s and 1s, got {type(mask).__name__}")
        try:
            mask = np.asarray(mask)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of 0s and 1s: {exc}") from None
        if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
            raise TypeError(f"{name} must be an array of 0s and 1s, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"{name} must have the shape of the log-probabilities (batch x time), "
                         f"got {tuple(mask.shape)} and {tuple(like.shape)}")
    m = _np(mask)
    if m.dtype != bool:
        with np.errstate(invalid="ignore"):
            if np.isnan(m).any() or not np.isin(m, (0, 1)).all():
                raise ValueError(f"{name} must hold only 0 and 1 (1 = a real token, 0 = padding)")
    if is_torch(mask):
        return mask.to(device=like.device) != 0
    return m != 0


def _check_time_axis(x, name: str) -> None:
    if x.ndim == 0:
        raise ValueError(f"{name} must have a time axis (shape (..., T)), got a scalar")


# --------------------------------------------------------------------------------------------------
# token log-probabilities and penalties


def _checked_logits(logits, name: str):
    logits = as_float_array(logits, name)
    if logits.ndim < 1:
        raise ValueError(f"{name} must have a vocabulary axis last (shape (..., T, V)), got a scalar")
    if logits.shape[-1] == 0:
        raise ValueError(f"{name} has an empty vocabulary axis")
    check_no_nan(logits, name)
    a = _np(logits)
    if np.isposinf(a).any():
        raise ValueError(f"{name} contains +inf; logits must be finite or -inf (a token ruled out)")
    if np.isneginf(a).all(axis=-1).any():
        raise ValueError(f"{name} has a row that is -inf everywhere: no token is possible there")
    return logits


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
    logits = _checked_logits(logits, "logits")
    tokens = _as_tokens(tokens)
    check_same_kind(logits, tokens, "logits and tokens")
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"tokens must have the shape of logits without its last (vocabulary) axis: logits "
                         f"{tuple(logits.shape)} needs tokens {tuple(logits.shape[:-1])}, got "
                         f"{tuple(tokens.shape)}")
    _check_token_range(tokens, logits.shape[-1])
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
    _check_time_axis(logp, "logp")
    m = _as_mask(mask, logp)
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
    _check_time_axis(logp, "logp")
    m = _as_mask(mask, logp)
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
    logits = _checked_logits(logits, "logits")
    ref_logits = _checked_logits(ref_logits, "ref_logits")
    check_same_kind(logits, ref_logits, "logits and ref_logits")
    check_same_shape(logits, ref_logits, "logits and ref_logits")
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (..., T, V) with a time axis, got {tuple(logits.shape)}")
    lp = log_softmax(logits / temperature)
    lq = log_softmax(ref_logits / temperature)
    m = _as_mask(mask, lp[..., 0])
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


# --------------------------------------------------------------------------------------------------
# tiny autoregressive models: bigrams


def bigram_logits(tokens, start_logits, transition_logits):
    """Next-token logits of a bigram model at every position of ``tokens``.

    Position 0 gets ``start_logits`` (the first token's distribution given the prompt); position ``t > 0``
    gets ``transition_logits[y_{t-1}]``. Shapes: ``tokens`` ``(..., T)``, ``start_logits`` ``(V,)``,
    ``transition_logits`` ``(V, V)`` (row = previous token); returns ``(..., T, V)``. With torch tables the
    result is differentiable with respect to both.
    """
    start_logits = as_float_array(start_logits, "start_logits")
    transition_logits = as_float_array(transition_logits, "transition_logits")
    check_same_kind(start_logits, transition_logits, "start_logits and transition_logits")
    if start_logits.ndim != 1:
        raise ValueError(f"start_logits must have shape (V,), got {tuple(start_logits.shape)}")
    v = start_logits.shape[0]
    if tuple(transition_logits.shape) != (v, v):
        raise ValueError(f"transition_logits must have shape (V, V) = ({v}, {v}), "
                         f"got {tuple(transition_logits.shape)}")
    _checked_logits(start_logits, "start_logits")
    _checked_logits(transition_logits, "transition_logits")
    tokens = _as_tokens(tokens)
    check_same_kind(start_logits, tokens, "the bigram tables and tokens")
    _check_time_axis(tokens, "tokens")
    if tokens.shape[-1] == 0:
        raise ValueError("tokens must have at least one position")
    _check_token_range(tokens, v)
    prev = tokens[..., :-1]
    if is_torch(tokens):
        import torch

        first = start_logits.expand(*tokens.shape[:-1], 1, v)
        return torch.cat([first, transition_logits[prev.to(transition_logits.device)]], dim=-2)
    first = np.broadcast_to(start_logits, (*tokens.shape[:-1], 1, v))
    return np.concatenate([first, transition_logits[prev]], axis=-2)


def fit_bigram(sequences: Sequence[Sequence[int]], vocab_size: int, weights=None, smoothing: float = 0.01):
    """Fit a bigram model by (weighted) counting, with add-``smoothing`` on every count.

    ``sequences`` are lists of token ids (each response with its end-of-sequence token); ``weights`` gives
    how many times each counts (default 1 each). Returns numpy log-probabilities ``(start, transition)``
    of shapes ``(V,)`` and ``(V, V)``, usable as logits by :func:`bigram_logits`:

        pi(v | start) ∝ smoothing + sum_i w_i [y_i1 = v],
        pi(v | u)     ∝ smoothing + sum_i w_i #{t : y_i,t-1 = u, y_it = v}.

    Smoothing keeps every token possible everywhere, so every KL between two fitted models is finite.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    smoothing = check_positive_scalar(smoothing, "smoothing")
    if isinstance(sequences, (str, bytes)) or len(sequences) == 0:
        raise ValueError("sequences must be a non-empty list of token-id lists")
    seqs = [_as_tokens(s, f"sequences[{i}]") for i, s in enumerate(sequences)]
    for i, s in enumerate(seqs):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"sequences[{i}] must be a non-empty 1-d list of token ids")
        _check_token_range(s, vocab_size, f"sequences[{i}]")
    w = np.ones(len(seqs)) if weights is None else as_float_array(weights, "weights")
    if is_torch(w):
        raise TypeError("weights must be a list or numpy array")
    if w.shape != (len(seqs),):
        raise ValueError(f"weights must have one entry per sequence ({len(seqs)}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    start = np.full(vocab_size, smoothing)
    trans = np.full((vocab_size, vocab_size), smoothing)
    for s, wi in zip(seqs, w):
        start[s[0]] += wi
        np.add.at(trans, (s[:-1], s[1:]), wi)
    start_logp = np.log(start) - np.log(start.sum())
    trans_logp = np.log(trans) - np.log(trans.sum(axis=1, keepdims=True))
    return start_logp, trans_logp


def sample_bigram(start_logits, transition_logits, n: int, max_len: int, eos: int | None = None,
                  temperature: float = 1.0, seed: int | None = 0):
    """Sample ``n`` responses from a bigram model at a temperature (numpy).

    Each response stops after its first ``eos`` token (kept, mask 1) or at ``max_len`` tokens; positions
    after the end are padded with ``eos`` (mask 0). Returns ``(tokens, mask)``: int64 ``(n, max_len)`` and
    float ``(n, max_len)``. One vectorized draw per position, over the whole batch.
    """
    start = _np(as_float_array(start_logits, "start_logits"))
    trans = _np(as_float_array(transition_logits, "transition_logits"))
    temperature = check_positive_scalar(temperature, "temperature")
    for val, name in ((n, "n"), (max_len, "max_len")):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    bigram_logits(np.zeros((1, 1), dtype=np.int64), start, trans)  # validates the tables
    v = start.shape[0]
    if eos is not None and not (0 <= eos < v):
        raise ValueError(f"eos must be a token id in [0, {v}), got {eos}")
    rng = np.random.default_rng(seed)
    tokens = np.full((n, max_len), eos if eos is not None else 0, dtype=np.int64)
    mask = np.zeros((n, max_len))
    alive = np.ones(n, dtype=bool)
    prev = None
    for t in range(max_len):
        logits = start[None, :].repeat(n, 0) if prev is None else trans[prev]
        p = np.exp(log_softmax(logits / temperature))
        draw = inverse_cdf(p, rng.random(n))
        tokens[alive, t] = draw[alive]
        mask[alive, t] = 1.0
        prev = tokens[:, t]
        if eos is not None:
            alive &= draw != eos
        if not alive.any():
            break
    return tokens, mask


def enumerate_sequences(vocab_size: int, max_len: int, eos: int | None = None, pad: int | None = None):
    """Every response of a model over ``vocab_size`` tokens, up to ``max_len`` tokens, padded and masked.

    Without ``eos``: all ``V ** max_len`` sequences of exactly ``max_len`` tokens. With ``eos``: every
    response that ends at its first ``eos`` (included, mask 1) plus every response of ``max_len`` tokens
    with no ``eos`` (truncated); positions after the end hold ``pad`` (default ``eos``) with mask 0.
    Under any autoregressive model these responses have probabilities that sum to one, so sums over them
    are exact expectations. Returns ``(tokens, mask)``: int64 and float64 arrays of shape ``(N, max_len)``.
    """
    for val, name in ((vocab_size, "vocab_size"), (max_len, "max_len")):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if vocab_size ** max_len > MAX_ENUMERATION:
        raise ValueError(f"{vocab_size} ** {max_len} sequences is too many to enumerate "
                         f"(limit {MAX_ENUMERATION}); enumeration is for tiny models")
    if eos is not None and not (0 <= eos < vocab_size):
        raise ValueError(f"eos must be a token id in [0, {vocab_size}), got {eos}")
    pad = eos if pad is None else pad
    if pad is not None and not (0 <= pad < vocab_size):
        raise ValueError(f"pad must be a token id in [0, {vocab_size}), got {pad}")
    allseq = np.array(list(itertools.product(range(vocab_size), repeat=max_len)), dtype=np.int64)
    allseq = allseq.reshape(-1, max_len)
    if eos is None:
        return allseq, np.ones(allseq.shape)
    is_eos = allseq == eos
    ended_before = np.cumsum(is_eos, axis=1) - is_eos  # eos count strictly before t
    mask = (ended_before == 0).astype(np.float64)
    allseq = np.where(mask > 0, allseq, pad)
    tokens, first = np.unique(allseq, axis=0, return_index=True)
    return tokens, mask[first]


def exact_sequence_kl(seq_logp, ref_seq_logp, atol: float = 1e-6) -> float:
    """Exact ``KL(pi || pi_ref) = sum_y pi(y) (log pi(y) - log pi_ref(y))`` over a complete enumeration.

    ``seq_logp`` and ``ref_seq_logp`` are the log-probabilities ``log pi(y | x)`` and ``log pi_ref(y | x)``
    of every response ``y`` (e.g. from :func:`enumerate_sequences` and :func:`sequence_logprob`). Raises
    ``ValueError`` when ``pi``'s probabilities do not sum to one: the enumeration is then incomplete.
    """
    lp = np.asarray(_np(as_float_array(seq_logp, "seq_logp")), dtype=np.float64)
    lq = np.asarray(_np(as_float_array(ref_seq_logp, "ref_seq_logp")), dtype=np.float64)
    check_same_shape(lp, lq, "seq_logp and ref_seq_logp")
    if lp.ndim != 1:
        raise ValueError(f"seq_logp must be 1-d (one entry per response), got shape {lp.shape}")
    check_logprobs(lp, "seq_logp", allow_neg_inf=True)
    check_logprobs(lq, "ref_seq_logp", allow_neg_inf=True)
    p = np.exp(lp)
    total = math.fsum(p)
    if abs(total - 1.0) > atol:
        raise ValueError(f"pi's sequence probabilities sum to {total:.8g}, not 1: the enumeration is incomplete")
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return float(math.fsum(terms))


# --------------------------------------------------------------------------------------------------
# card 000's two responses, with a tiny reference model and a policy rewarded for detail

_RESPONSE_A = "Yes ."
_RESPONSE_B = ("Affirmative , the data you have presented aligns with the expected parameters , and therefore , "
               "the conclusion you have reached is indeed correct and validated .")
# A tiny corpus of answers to "Is my conclusion correct?", with how often the reference model saw each.
_CORPUS = (
    ("Yes .", 60.0),
    ("Yes , that is correct .", 15.0),
    ("Affirmative .", 8.0),
    ("Yes , the conclusion you have reached is correct .", 8.0),
    ("Yes , the data you have presented is correct .", 5.0),
    ("Affirmative , the data you have presented aligns with the expected parameters .", 3.0),
    (_RESPONSE_B, 1.0),
)
EOS = "<eos>"


def card000_example(detail: float = 0.25, smoothing: float = 0.01) -> dict:
    """Card 000's responses A ("Yes.") and B (the long affirmative) under a tiny reference and policy.

    Both models are bigrams fitted by :func:`fit_bigram` on a small corpus of answers. The reference counts
    each answer as often as it was seen (``"Yes ."`` dominates). The policy, "rewarded for detail", is fitted
    on the same answers reweighted by ``exp(detail * length)`` (length in tokens, end token included):
    longer answers count for more. ``detail = 0`` makes the policy equal to the reference.

    Returns a dict with the vocabulary ``vocab`` (id 0 is ``<eos>``), the two responses as token lists
    ``tokens_A``/``tokens_B`` (end token included), padded ``tokens`` and ``mask`` (2 x T, A first), the
    per-token log-probabilities ``logp`` (policy) and ``ref_logp`` (reference), 2 x T, zero at padding, and
    the fitted tables ``policy`` and ``reference`` (each ``(start_logp, transition_logp)``).
    """
    if isinstance(detail, bool) or not isinstance(detail, (int, float, np.integer, np.floating)):
        raise TypeError(f"detail must be a number, got {type(detail).__name__}")
    if not np.isfinite(detail):
        raise ValueError(f"detail must be finite, got {detail}")
    words = sorted({w for text, _ in _CORPUS for w in text.split()}, key=lambda w: (w.lower(), w))
    vocab = [EOS] + words
    ids = {w: i for i, w in enumerate(vocab)}

    def encode(text: str) -> list[int]:
        return [ids[w] for w in text.split()] + [ids[EOS]]

    seqs = [encode(text) for text, _ in _CORPUS]
    counts = np.array([c for _, c in _CORPUS])
    lengths = np.array([len(s) for s in seqs], dtype=np.float64)
    tilt = counts * np.exp(detail * (lengths - lengths.max()))  # shifted for range; normalized below
    pol_w = tilt / tilt.sum() * counts.sum()  # same total weight, so smoothing weighs the same
    reference = fit_bigram(seqs, len(vocab), counts, smoothing)
    policy = fit_bigram(seqs, len(vocab), pol_w, smoothing)
    tokens_a, tokens_b = encode(_RESPONSE_A), encode(_RESPONSE_B)
    t_max = max(len(tokens_a), len(tokens_b))
    tokens = np.zeros((2, t_max), dtype=np.int64)
    mask = np.zeros((2, t_max))
    for row, toks in enumerate((tokens_a, tokens_b)):
        tokens[row, : len(toks)] = toks
        mask[row, : len(toks)] = 1.0
    logp = np.where(mask > 0, token_logprobs(bigram_logits(tokens, *policy), tokens), 0.0)
    ref_logp = np.where(mask > 0, token_logprobs(bigram_logits(tokens, *reference), tokens), 0.0)
    return {
        "vocab": vocab,
        "tokens_A": tokens_a,
        "tokens_B": tokens_b,
        "tokens": tokens,
        "mask": mask,
        "logp": logp,
        "ref_logp": ref_logp,
        "policy": policy,
        "reference": reference,
    }
