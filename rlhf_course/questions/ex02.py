"""Exercise 02: from distributions to sequences.

Covers seed card 003 ("KL-Divergence Penalty in RLHF Policy Optimization": the penalty is the difference of
log-probabilities under the policy and the reference, summed over the tokens of the sequence) and card 000's
question on Response A ("Yes.") against Response B (the long affirmative): which pays the larger penalty, and
why, computed with the chapter's tiny reference model and a policy rewarded for detail.
"""
import math

import numpy as np

from .base import Case, Question, choice
from ..bigrams import bigram_logits, card000_example, enumerate_sequences, exact_sequence_kl
from ..sequences import sequence_logprob, sequence_penalty, token_logprobs
from . import draws


def _hidden_token_logprobs(rng) -> tuple[Case, ...]:
    b, t, v = draws.size(rng, 2, 3), draws.size(rng, 2, 4), draws.size(rng, 3, 6)
    return (
        Case("random logits of one sequence, temperature 1",
             (rng.normal(0, 2, (t, v)), rng.integers(0, v, t), 1.0)),
        Case("a random batch at a random temperature",
             (rng.normal(0, 2, (b, t, v)), rng.integers(0, v, (b, t)), draws.positive(rng, 0.3, 3.0)),
             hint="divide the logits by the temperature before the log-softmax."),
        Case("large random logits: a stable log-softmax",
             (rng.normal(0, 500, (t, v)), rng.integers(0, v, t), 1.0), rtol=1e-9),
        Case("a random temperature <= 0 raises ValueError",
             (rng.normal(0, 2, (t, v)), rng.integers(0, v, t), -float(rng.uniform(0, 2))), raises="ValueError"),
    )


def _hidden_sequence_penalty(rng) -> tuple[Case, ...]:
    b, t = draws.size(rng, 2, 4), draws.size(rng, 3, 6)
    mask = draws.prefix_mask(rng, b, t)
    garbage = np.where(mask > 0, draws.logps(rng, (b, t)), -rng.uniform(10, 100, (b, t)))
    return (
        Case("a random padded batch: padding never counts", (garbage, draws.logps(rng, (b, t)), mask)),
        Case("one random sequence, no padding", (draws.logps(rng, t), draws.logps(rng, t), np.ones(t))),
        Case("random shapes that do not match raise ValueError",
             (draws.logps(rng, (b, t)), draws.logps(rng, t), mask), raises="ValueError"),
    )


# The exercise's version of card 000: a policy with a larger detail reward than the chapter's.
CARD000_DETAIL = 0.5

# A two-token toy over the tokens {a, b} (ids 0 and 1), every response exactly two tokens long.
TOY_POLICY = ([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]])     # pi(y1), pi(y2 | y1): row = y1
TOY_REFERENCE = ([0.8, 0.2], [[0.5, 0.5], [0.5, 0.5]])  # pi_ref(y1), pi_ref(y2 | y1)


def _card000_penalties() -> list[float]:
    ex = card000_example(CARD000_DETAIL)
    return [float(v) for v in sequence_penalty(ex["logp"], ex["ref_logp"], ex["mask"])]


def _toy_sequence_kl() -> float:
    """The toy's KL over whole responses, by enumerating the four of them."""
    tokens, mask = enumerate_sequences(2, 2)

    def seq_logp(model):
        start, trans = (np.log(np.asarray(a, dtype=np.float64)) for a in model)
        return sequence_logprob(token_logprobs(bigram_logits(tokens, start, trans), tokens), mask)

    return exact_sequence_kl(seq_logp(TOY_POLICY), seq_logp(TOY_REFERENCE))


_LN3 = math.log(3.0)

QUESTIONS = [
    Question(
        id="02.token_logprobs",
        kind="function",
        points=3,
        title="token log-probabilities from logits, with a temperature",
        reference=token_logprobs,
        guards=("rlhf_course.sequences.token_logprobs",),
        hidden=_hidden_token_logprobs,
        cases=(
            Case("one position, softmax([0, ln 3]) = [1/4, 3/4]", ([[0.0, _LN3]], [1], 1.0)),
            Case("three positions", ([[0.0, _LN3], [2.0, 0.0], [0.0, 0.0]], [0, 0, 1], 1.0),
                 hint="one log-probability per position: the entry of log_softmax(logits) at that position's token."),
            Case("temperature 0.5 sharpens", ([[0.0, _LN3, -1.0], [1.0, 0.0, 0.5]], [1, 2], 0.5),
                 hint="divide the logits by the temperature before the log-softmax."),
            Case("temperature 2 flattens", ([[0.0, _LN3, -1.0], [1.0, 0.0, 0.5]], [1, 2], 2.0),
                 hint="divide the logits by the temperature before the log-softmax."),
            Case("a batch: 2 sequences x 2 positions x 3 tokens",
                 ([[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [-2.0, 0.0, 2.0]]],
                  [[2, 0], [1, 1]], 1.0),
                 hint="the vocabulary is the last axis; gather along it (np.take_along_axis)."),
            Case("large logits: a stable log-softmax", ([[1000.0, 0.0, -1000.0]], [2], 1.0), rtol=1e-9,
                 hint="exp(1000) overflows: subtract the largest logit first, log_softmax(z) = z - max - "
                      "log(sum(exp(z - max)))."),
            Case("temperature 0 is not a temperature", ([[0.0, 1.0]], [0], 0.0), raises="ValueError",
                 hint="check temperature > 0 and raise ValueError otherwise."),
            Case("negative temperature", ([[0.0, 1.0]], [0], -1.0), raises="ValueError",
                 hint="check temperature > 0 and raise ValueError otherwise."),
        ),
        hint="log_softmax(logits / temperature) over the last axis, then pick each position's token "
             "(tokens arrive as a float array of whole numbers: convert them with .astype(int)).",
    ),
    Question(
        id="02.sequence_penalty",
        kind="function",
        points=3,
        title="the masked sequence penalty sum_t m_t (log pi - log pi_ref)",
        reference=sequence_penalty,
        guards=("rlhf_course.sequences.sequence_penalty",),
        hidden=_hidden_sequence_penalty,
        cases=(
            Case("one sequence, no padding", ([-0.1, -0.2, -1.0], [-0.3, -0.5, -1.0], [1, 1, 1])),
            Case("a batch of two, no padding",
                 ([[-0.1, -0.2, -1.0], [-2.0, -0.5, -0.7]], [[-0.3, -0.5, -1.0], [-1.0, -0.5, -0.2]],
                  [[1, 1, 1], [1, 1, 1]]),
                 hint="one penalty per sequence: sum over the last (time) axis only."),
            Case("padding at the end is ignored, whatever it holds",
                 ([-0.1, -0.2, -3.0, -50.0], [-0.3, -0.5, -7.0, -1.0], [1, 1, 0, 0]),
                 hint="multiply (or np.where) by the mask before summing: padded positions count 0."),
            Case("a padded batch of different lengths",
                 ([[-0.1, -0.2, -1.0, -9.0], [-2.0, -3.0, 0.0, 0.0]], [[-0.3, -0.5, -1.0, -1.0],
                  [-1.0, -0.1, -7.0, -7.0]], [[1, 1, 1, 0], [1, 1, 0, 0]]),
                 hint="padded positions count 0."),
            Case("a sequence that is all padding", ([-0.4, -0.6], [-0.1, -0.2], [0, 0]),
                 hint="with no real token the penalty is 0."),
            Case("logp and ref_logp of different shapes", ([-0.1, -0.2, -0.3], [-0.1, -0.2], [1, 1, 1]),
                 raises="ValueError",
                 hint="check that logp, ref_logp and mask have the same shape; raise ValueError if not."),
            Case("a batch against one reference row: would broadcast silently",
                 ([[-0.1, -0.2, -0.3], [-1.0, -2.0, -3.0]], [-0.2, -0.2, -0.2], [[1, 1, 1], [1, 1, 1]]),
                 raises="ValueError",
                 hint="numpy broadcasts shapes (2, 3) and (3,) without a word, pairing every sequence with the "
                      "same reference row: compare the shapes yourself and raise ValueError."),
            Case("a mask of another shape", ([-0.1, -0.2], [-0.1, -0.3], [1, 1, 0]), raises="ValueError",
                 hint="check that logp, ref_logp and mask have the same shape; raise ValueError if not."),
        ),
        hint="sum over the last axis of mask * (logp - ref_logp).",
    ),
    choice(
        id="02.sum_of_token_ratios",
        title="why the per-token log-ratios add up to the sequence log-ratio",
        answer="B",
        feedback={
            "A": "The tokens are not independent: each is conditioned on the ones before it. The factorization "
                 "pi(y|x) = prod_t pi(y_t | x, y_<t) is exact for any autoregressive model, dependent tokens and all.",
            "C": "It is exact, not an approximation: the log of a product is the sum of the logs, for any two "
                 "autoregressive models, close or not.",
            "D": "The identity holds for one response, with no expectation anywhere. Additivity of the KL over "
                 "tokens (the chain rule) is a different statement, about expectations over y ~ pi.",
        },
    ),
    Question(
        id="02.penalty_parts",
        kind="matching",
        points=2,
        title="the parts of the sequence penalty and their roles",
        answer={"policy_logprob": "B", "reference_logprob": "C", "sum_over_tokens": "D", "mask": "A"},
        choices=("policy_logprob", "reference_logprob", "sum_over_tokens", "mask"),
        hint="one of the five roles belongs to none of the four parts: the penalty never sees a reward.",
    ),
    Question(
        id="02.expected_penalty",
        kind="value",
        points=2,
        title="the expected sequence penalty of the two-token toy (the sequence KL)",
        answer=_toy_sequence_kl(),
        rtol=1e-4,
        hint="either enumerate the four responses, sum_y pi(y) (log pi(y) - log pi_ref(y)), or use the chain "
             "rule: KL of the first token plus the expected KL of the second given the first.",
    ),
    Question(
        id="02.card000_penalties",
        kind="value",
        points=2,
        title="the penalties of Response A and Response B",
        answer=_card000_penalties(),
        rtol=1e-4,
        atol=1e-6,
        hint="for each response, sum over its tokens of logp - ref_logp; answer [penalty_A, penalty_B].",
    ),
    choice(
        id="02.larger_penalty",
        title="which response pays the larger penalty, and why (card 000)",
        answer="B",
        feedback={
            "A": "The penalty is log pi(y) - log pi_ref(y): a high reference probability makes it smaller, not "
                 "larger. Here the policy, rewarded for detail, gives \"Yes.\" less probability than the "
                 "reference does, so A's penalty is negative.",
            "C": "Length alone costs nothing: a token on which the policy and the reference agree adds "
                 "log 1 = 0. Look at the per-token penalties of B: many are close to 0, a few carry most of "
                 "the total, and some are negative.",
            "D": "Being generated by the policy does not make a penalty zero; it is zero only where "
                 "pi(y) = pi_ref(y), and here the two models disagree about both responses.",
        },
    ),
    choice(
        id="02.zero_sequence_penalty",
        title="a sequence penalty of zero from per-token log-ratios +0.7 and -0.7",
        answer="B",
        feedback={
            "A": "The per-token log-ratios are +0.7 and -0.7, not 0: the models disagree on both tokens. "
                 "Only their sum, the log-ratio of the whole response, is 0.",
            "C": "The penalty adds signed log-ratios, not their absolute values.",
            "D": "A negative token log-ratio lowers the sum, but the first token's +0.7 cancels it exactly.",
        },
    ),
]
