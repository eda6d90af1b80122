"""Tiny autoregressive models for chapter 2: bigrams, small enough that every sequence can be listed.

A bigram model draws the first token from ``softmax(start_logits)`` and each next token from
``softmax(transition_logits[y_{t-1}])``: the next token depends on the previous one only. Over a vocabulary of
``V`` tokens and responses of at most ``max_len`` tokens there are at most ``V ** max_len`` responses, so
:func:`enumerate_sequences` lists them all and :func:`exact_sequence_kl` gives the sequence KL exactly,

    KL(pi || pi_ref) = sum_y pi(y) (log pi(y) - log pi_ref(y)),   log pi(y) = sum_t m_t log pi(y_t | y_<t),

against which the sampled estimates of :mod:`rlhf_course.sequences` are checked. :func:`card000_example` is the
chapter's first example: two answers to one question under a reference fitted to a tiny corpus and a policy
rewarded for detail. numpy in, numpy out; torch in, torch out where a function says so.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from ._validate import (_np, as_float_array, as_logits, as_tokens, check_logprobs, check_positive_scalar,
                        check_same_kind, check_same_shape, check_time_axis, check_token_range, is_torch)
from .distributions import inverse_cdf, log_softmax
from .sequences import token_logprobs

__all__ = ["bigram_logits", "fit_bigram", "sample_bigram", "enumerate_sequences", "exact_sequence_kl",
           "card000_example"]

MAX_ENUMERATION = 2_000_000  # V ** max_len above this is refused: enumeration is for tiny models


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
    as_logits(start_logits, "start_logits")
    as_logits(transition_logits, "transition_logits")
    tokens = as_tokens(tokens)
    check_same_kind(start_logits, tokens, "the bigram tables and tokens")
    check_time_axis(tokens, "tokens")
    if tokens.shape[-1] == 0:
        raise ValueError("tokens must have at least one position")
    check_token_range(tokens, v)
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
    seqs = [as_tokens(s, f"sequences[{i}]") for i, s in enumerate(sequences)]
    for i, s in enumerate(seqs):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"sequences[{i}] must be a non-empty 1-d list of token ids")
        check_token_range(s, vocab_size, f"sequences[{i}]")
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
    of every response ``y`` (e.g. from :func:`enumerate_sequences` and
    :func:`rlhf_course.sequences.sequence_logprob`). Raises ``ValueError`` when ``pi``'s probabilities do not
    sum to one: the enumeration is then incomplete.
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
