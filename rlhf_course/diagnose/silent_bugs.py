"""The silent bug set (chapter 7): six small pieces of a PPO trainer, each with one real bug that raises no
error and produces plausible numbers.

Each has its correct counterpart, from :mod:`rlhf_course.rl`, :mod:`rlhf_course.sequences` and
:mod:`rlhf_course.kl` or written here with them, and :data:`SILENT_BUGS` says which is which. The pieces
carry the docstrings a trainer would (what they are meant to do), not their bug: reading them to find it
is the exercise. They take and return numpy arrays (torch tensors are converted); torch is imported by
the functions that need it, so that the exercise's questions can import this module in a light process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..distributions import log_softmax


# ==================================================================================================
# the silent bug set: six trainer pieces with one real bug each (numpy in, numpy out)


def _np_in(x, dtype=np.float64) -> np.ndarray:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(logits.shape).clip(1e-20, 1 - 1e-7)
    return np.argmax(logits - np.log(-np.log(u)), axis=-1)


# ---- the six pieces (as a trainer would write them) ----------------------------------------------


def per_token_rewards(score, logp, ref_logp, mask, beta):
    """Per-token rewards of a batch of responses padded to a common length (``mask`` 1 on real tokens):
    a KL penalty ``-beta (logp - ref_logp)`` on every token, plus the reward model's score for the
    whole response at its end."""
    logp, ref_logp, mask = _np_in(logp), _np_in(ref_logp), _np_in(mask)
    rewards = -beta * (logp - ref_logp) * mask
    rewards[:, -1] += _np_in(score)
    return rewards * mask


def response_mask(response, eos_id):
    """Mask of the real tokens of sampled responses (``(batch, time)``, padded after each response ends):
    1 for a response token, 0 for padding."""
    response = _np_in(response, np.int64)
    pad_id = eos_id  # the tokenizer has no padding token: pad with the end token, as is commonly done
    return (response != pad_id).astype(np.float64)


def sample_with_temperature(logits, temperature, rng):
    """One sampling step at a temperature: ``y ~ softmax(logits / tau)`` for each row of ``logits``
    ``(batch, vocab)``; returns the tokens and their log-probabilities, kept for PPO's ratio."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(logits / temperature, rng)
    logp = np.take_along_axis(log_softmax(logits), tokens[:, None], -1)[:, 0]
    return tokens, logp


def sample_top_k(logits, k, rng):
    """One top-k sampling step: keep each row's ``k`` most likely tokens, sample among them in proportion
    to their probabilities; returns the tokens and their log-probabilities, kept for PPO's ratio."""
    logits = _np_in(logits)
    kth = np.sort(logits, axis=-1)[:, -k][:, None]
    tokens = _gumbel_argmax(np.where(logits >= kth, logits, -np.inf), rng)
    logp = np.take_along_axis(log_softmax(logits), tokens[:, None], -1)[:, 0]
    return tokens, logp


def shaped_rewards(score, logp, ref_logp, mask, beta):
    """Per-token rewards with the KL penalty against the reference, the score added at each response's
    last real token (``mask`` is 1 on a prefix of each row)."""
    logp, ref_logp, mask = _np_in(logp), _np_in(ref_logp), _np_in(mask)
    rewards = beta * (logp - ref_logp) * mask
    last = mask.sum(1).astype(np.int64) - 1
    rewards[np.arange(len(last)), last] += _np_in(score)
    return rewards


def k3_estimate(logp, ref_logp):
    """The k3 estimate of the KL to the reference for each sampled token, ``(r - 1) - log r`` with
    ``log r = ref_logp - logp``; inputs in the trainer's float32."""
    x = np.asarray(_np_in(ref_logp, np.float32) - _np_in(logp, np.float32), dtype=np.float32)
    return np.exp(x) - np.float32(1) - x


# ---- the correct pieces --------------------------------------------------------------------------


def correct_rewards(score, logp, ref_logp, mask, beta):
    """``r_t = -beta (logp_t - ref_logp_t) + [t = T] score``: :func:`rlhf_course.rl.kl_penalized_rewards`,
    with numpy in and out (torch is imported here, lazily)."""
    import torch

    from ..rl import kl_penalized_rewards

    t = lambda x: torch.as_tensor(_np_in(x))  # noqa: E731
    rewards, _ = kl_penalized_rewards(t(score), t(logp), t(ref_logp), t(mask), float(beta))
    return rewards.numpy()


def correct_response_mask(response, eos_id):
    """1 up to and including each row's first ``eos_id``, 0 after it (rows with no end token: all 1).
    The rule of :func:`rlhf_course.gpt.generate`, which pads with a distinct padding token."""
    response = _np_in(response, np.int64)
    if response.ndim != 2:
        raise ValueError(f"response must be (batch, time), got shape {response.shape}")
    is_eos = response == eos_id
    first = np.where(is_eos.any(1), is_eos.argmax(1), response.shape[1])
    return (np.arange(response.shape[1])[None, :] <= first[:, None]).astype(np.float64)


def topk_logits(logits, k: int):
    """Logits of the top-``k`` distribution: each row's ``k`` largest kept, the others ``-inf`` (ties at
    the ``k``-th value kept)."""
    logits = _np_in(logits)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be an integer in [1, {logits.shape[-1]}], got {k!r}")
    kth = np.sort(logits, axis=-1)[..., -k][..., None]
    return np.where(logits >= kth, logits, -np.inf)


def correct_sampling_logprobs(logits, tokens, temperature: float = 1.0, top_k: int | None = None):
    """Log-probabilities of ``tokens`` under the distribution they were sampled from: ``softmax`` of the
    logits divided by the temperature, restricted to the top ``k`` when ``top_k`` is set. Built on
    :func:`rlhf_course.sequences.token_logprobs` (the temperature) and :func:`topk_logits`."""
    from ..sequences import token_logprobs

    logits = _np_in(logits)
    if top_k is not None:
        logits = topk_logits(logits, int(top_k))
    return token_logprobs(logits, _np_in(tokens, np.int64), temperature)


def correct_sample_with_temperature(logits, temperature, rng):
    """:func:`sample_with_temperature` done right: the log-probabilities are those of ``softmax(logits / tau)``,
    the distribution the tokens came from (the same random draws give the same tokens)."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(logits / temperature, rng)
    return tokens, correct_sampling_logprobs(logits, tokens, temperature)


def correct_sample_top_k(logits, k, rng):
    """:func:`sample_top_k` done right: the log-probabilities are those of the top-``k`` distribution
    (the same random draws give the same tokens)."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(topk_logits(logits, k), rng)
    return tokens, correct_sampling_logprobs(logits, tokens, 1.0, k)


def correct_k3(logp, ref_logp):
    """k3 computed stably, ``expm1(x) - x``: :func:`rlhf_course.kl.k3`."""
    from ..kl import k3

    return k3(_np_in(logp, np.float32), _np_in(ref_logp, np.float32))


@dataclass(frozen=True)
class SilentBug:
    """One piece of the silent bug set: the buggy ``piece``, its ``correct`` counterpart (same call), what
    the bug is, and what it does to a run."""

    key: str
    title: str
    piece: Callable
    correct: Callable
    bug: str
    effect: str


SILENT_BUGS: dict[str, SilentBug] = {b.key: b for b in (
    SilentBug("wrong_token", "score on the wrong token", per_token_rewards, correct_rewards,
              "the score is added at the last column of the padded batch, not at each response's last real "
              "token; multiplied by the mask, it vanishes from every response shorter than the batch",
              "only responses as long as the batch are ever scored: the policy learns to write long, and the "
              "reward model's preferences never reach the others"),
    SilentBug("pad_is_eos", "pad equal to EOS", response_mask, correct_response_mask,
              "the padding token is the end token, so the mask `response != pad` also masks each response's "
              "own end token",
              "the end token never enters the loss, the KL or the score position: the choice to stop is "
              "never trained nor penalized, and the score is read one token early"),
    SilentBug("no_temperature", "log-probs without the sampling temperature", sample_with_temperature,
              correct_sample_with_temperature,
              "tokens are sampled from softmax(logits / tau) but their log-probabilities are those of "
              "softmax(logits)",
              "PPO's ratio is not 1 on the first update, before any step (positive approximate KL and clip "
              "fraction from the start), and the KL estimates refer to another distribution"),
    SilentBug("topk_full_softmax", "top-k sampling scored with full-softmax log-probs", sample_top_k,
              correct_sample_top_k,
              "tokens are sampled from the top-k distribution but scored under the full softmax",
              "the stored log-probabilities are too low by log(mass of the top k): importance ratios and KL "
              "estimates use a distribution that did not produce the samples"),
    SilentBug("kl_sign", "a KL term with the wrong sign", shaped_rewards, correct_rewards,
              "the per-token penalty is +beta (logp - ref_logp): moving away from the reference is rewarded",
              "the KL grows steadily, faster with a larger beta: the knob meant to hold the policy pushes it"),
    SilentBug("k3_unstable", "k3 computed unstably", k3_estimate, correct_k3,
              "exp(x) - 1 - x in float32 subtracts nearly equal numbers when the policies are close",
              "the logged KL is noise (or exactly 0) early in a run and wrong by large factors while the "
              "policies are close"),
)}

# the pieces under neutral labels, in an order unrelated to the bug list (the exercise asks which is which)
PIECES: dict[str, Callable] = {
    "piece_1": sample_top_k, "piece_2": shaped_rewards, "piece_3": response_mask,
    "piece_4": k3_estimate, "piece_5": per_token_rewards, "piece_6": sample_with_temperature,
}
