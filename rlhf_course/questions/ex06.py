"""Exercise 06: PPO on a tiny language model, its rewards, its log-probabilities, and reward hacking.

Covers seed cards 003 ("Diagnosing undesirable model behavior": high reward, repetitive and unnatural text)
and 004 (decreasing beta makes outputs repetitive and nonsensical). The two function questions are the two
places where an RLHF implementation most often goes quietly wrong: where the sequence's score is put and
how padding is treated, and whether the log-probabilities are those of the distribution that sampled.

Nothing here imports torch at module level (the grader starts a fresh process per submission); the
reference implementations import the package's torch functions when they are called.
"""
from __future__ import annotations

import numpy as np

from .base import Case, Question, choice
from . import draws


def per_token_rewards_reference(score, logp, ref_logp, mask, beta):
    """``r_t = -beta (logp_t - ref_logp_t) + [t = last real token] score``, 0 on padding (numpy in and out)."""
    import torch

    from ..rl import kl_penalized_rewards

    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)):
        raise TypeError("beta must be a number")
    arrays = [np.asarray(a, dtype=np.float64) for a in (score, logp, ref_logp, mask)]
    score_t, logp_t, ref_t, mask_t = (torch.as_tensor(a) for a in arrays)
    if logp_t.dim() != 2 or ref_t.shape != logp_t.shape or mask_t.shape != logp_t.shape:
        raise ValueError("logp, ref_logp and mask must all have the same (batch, time) shape")
    rewards, _ = kl_penalized_rewards(score_t, logp_t, ref_t, mask_t, float(beta))
    return rewards.numpy()


def rollout_logprobs_reference(logits, tokens, temperature, mask):
    """``log softmax(logits / T)`` at the sampled tokens, 0 on padding (numpy in and out)."""
    from ..sequences import token_logprobs

    logits = np.asarray(logits, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if mask.shape != logits.shape[:-1]:
        raise ValueError("mask must have the shape of tokens (batch, time)")
    lp = token_logprobs(logits, tokens, temperature)
    return np.where(mask != 0, lp, 0.0)


def _hidden_per_token_rewards(rng) -> tuple[Case, ...]:
    b, t = draws.size(rng, 2, 4), draws.size(rng, 2, 6)
    mask = draws.prefix_mask(rng, b, t)
    padded = np.where(mask > 0, draws.logps(rng, (b, t)), -rng.uniform(10, 100, (b, t)))
    hole = np.ones((1, t + 2))
    hole[0, 1] = 0.0
    return (
        Case("a random padded batch, whatever the padding holds",
             (rng.normal(size=b), padded, draws.logps(rng, (b, t)), mask, draws.positive(rng)),
             hint="the score goes on each response's last real token; padded positions get exactly 0."),
        Case("a random mask with a hole raises ValueError",
             (rng.normal(size=1), draws.logps(rng, (1, t + 2)), draws.logps(rng, (1, t + 2)), hole, 0.1),
             raises="ValueError"),
    )


def _hidden_rollout_logprobs(rng) -> tuple[Case, ...]:
    b, t, v = draws.size(rng, 2, 3), draws.size(rng, 2, 4), draws.size(rng, 3, 6)
    mask = draws.prefix_mask(rng, b, t)
    return (
        Case("a random padded batch at a random temperature",
             (rng.normal(0, 2, (b, t, v)), rng.integers(0, v, (b, t)), draws.positive(rng, 0.3, 3.0), mask),
             hint="divide the logits by T before the log-softmax, as the sampler did; padding gets 0."),
        Case("large random logits: stable", (rng.normal(0, 500, (1, t, v)), rng.integers(0, v, (1, t)), 1.0,
                                             np.ones((1, t)))),
    )


_LOGP = [[-0.5, -1.2, -0.1, -2.0], [-0.3, -0.9, -4.0, -4.0]]
_REF = [[-0.7, -1.0, -0.1, -1.5], [-0.3, -1.4, -0.5, -0.5]]
_MASK = [[1, 1, 1, 1], [1, 1, 0, 0]]

_LOGITS = [[[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]],
           [[0.3, -0.2, 0.1], [5.0, 1.0, -2.0], [9.0, 9.0, 9.0]]]
_TOKENS = [[0, 2, 1], [1, 0, 0]]

QUESTIONS = [
    Question(
        id="06.per_token_rewards",
        kind="function",
        points=3,
        title="per-token rewards with the KL penalty, for a batch of padded responses",
        reference=per_token_rewards_reference,
        guards=("rlhf_course.questions.ex06.per_token_rewards_reference", "rlhf_course.rl.kl_penalized_rewards",
                "rlhf_course.diagnose.correct_rewards"),
        hidden=_hidden_per_token_rewards,
        cases=(
            Case("one response, no padding", ([1.5], [_LOGP[0]], [_REF[0]], [_MASK[0]], 0.1)),
            Case("a padded batch: the score goes on each response's last real token",
                 ([1.0, -2.0], _LOGP, _REF, _MASK, 0.1),
                 hint="the second response has 2 real tokens: its score belongs at index 1, not at the end "
                      "of the row."),
            Case("whatever sits in the padding is never used", ([1.0, -2.0], _LOGP,
                 [_REF[0], [-0.3, -1.4, -50.0, -80.0]], _MASK, 0.5),
                 hint="multiply the penalty by the mask: padded positions get reward exactly 0."),
            Case("beta = 0: only the score", ([0.7, 0.2], _LOGP, _REF, _MASK, 0.0)),
            Case("responses of one token", ([3.0, -1.0], [[-0.2, -9.0], [-1.1, -9.0]], [[-0.4, -1.0], [-0.6, -1.0]],
                                            [[1, 0], [1, 0]], 1.0)),
            Case("a mask with a hole is not a response", ([1.0], [[-0.1, -0.2, -0.3]], [[-0.1, -0.2, -0.3]],
                                                         [[1, 0, 1]], 0.1), raises="ValueError",
                 hint="a response is a prefix of real tokens followed by padding; reject other masks."),
            Case("shapes that do not match", ([1.0], [[-0.1, -0.2]], [[-0.1, -0.2, -0.3]], [[1, 1]], 0.1),
                 raises="ValueError"),
            Case("a negative beta", ([1.0], [[-0.1]], [[-0.2]], [[1]], -0.1), raises="ValueError"),
        ),
        hint="r_t = -beta (logp_t - ref_logp_t) on every real token, plus the score on the last real token.",
    ),
    Question(
        id="06.rollout_logprobs",
        kind="function",
        points=3,
        title="log-probabilities of sampled tokens, at the sampling temperature",
        reference=rollout_logprobs_reference,
        guards=("rlhf_course.questions.ex06.rollout_logprobs_reference", "rlhf_course.sequences.token_logprobs",
                "rlhf_course.diagnose.correct_sampling_logprobs"),
        hidden=_hidden_rollout_logprobs,
        cases=(
            Case("temperature 1", ([_LOGITS[0]], [_TOKENS[0]], 1.0, [[1, 1, 1]])),
            Case("temperature 0.5: the distribution the tokens were sampled from",
                 ([_LOGITS[0]], [_TOKENS[0]], 0.5, [[1, 1, 1]]),
                 hint="divide the logits by T before the log-softmax, as the sampler did."),
            Case("temperature 2", (_LOGITS, _TOKENS, 2.0, [[1, 1, 1], [1, 1, 1]])),
            Case("padding gets 0", (_LOGITS, _TOKENS, 1.0, [[1, 1, 1], [1, 0, 0]])),
            Case("large logits: stable", ([[[1000.0, 0.0, -1000.0], [0.0, 800.0, 790.0]]], [[0, 2]], 1.0, [[1, 1]]),
                 hint="subtract the maximum before exponentiating (a log-sum-exp), or exp overflows."),
            Case("temperature 0 is not a distribution", ([_LOGITS[0]], [_TOKENS[0]], 0.0, [[1, 1, 1]]),
                 raises="ValueError"),
        ),
        atol=1e-8,
        hint="log_softmax(logits / T) over the last axis, picked at each token (tokens arrive as floats: cast "
             "them to int), then 0 where mask is 0.",
    ),
    choice(
        id="06.which_token",
        title="which token receives the reward model's score",
        answer="C",
        feedback={
            "A": "Spreading the score over the tokens is a different reward, and it credits tokens for a judgement "
                 "made of the whole response; the implementations follow Ziegler et al. and add it once.",
            "B": "The first token has not seen the response the reward model judged.",
            "D": "Padding is not an action of the policy: the mask removes it from every loss.",
        },
    ),
    choice(
        id="06.hacking_signs",
        title="the logged signature of reward hacking",
        answer="B",
        feedback={
            "A": "Proxy and gold rising together, with KL growing slowly, is a run that is working.",
            "C": "A clip fraction of 0.2 says the updates are large, not that the reward is being gamed.",
            "D": "A falling value loss says the value head is learning the returns, whatever they reward.",
        },
    ),
    choice(
        id="06.repetitive_text",
        title="high reward, repetitive and unnatural text: the cause in the objective",
        answer="D",
        feedback={
            "A": "A more accurate reward model would be harder to exploit; the problem is where it is inaccurate.",
            "B": "A small learning rate makes training slower, not the text repetitive.",
            "C": "The value head only lowers the variance of the gradient; it does not change what is optimized.",
        },
    ),
    choice(
        id="06.smaller_beta",
        title="what decreasing beta does to the optimal policy",
        answer="A",
        feedback={
            "B": "pi* = pi_ref exp(r / beta) / Z: a smaller beta sharpens the exponent, so the reward counts more.",
            "C": "The reward model is frozen during PPO: beta changes the policy, not the reward model.",
            "D": "Entropy falls, not rises, as the policy concentrates on the highest-scoring responses.",
        },
    ),
]
