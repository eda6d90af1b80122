"""Exercise 08: direct preference optimization, derived from the optimal policy.

The DPO loss on sequence log-probabilities (and its value ``log 2`` at initialization), the implicit reward
``beta log(pi(y|x) / pi_ref(y|x))`` of a whole response from per-token log-probabilities, why the partition
function cancels, and a Plackett-Luce ranking probability in terms of implicit rewards (seed card 004's
related cards on Bradley-Terry and Plackett-Luce).

Torch is imported only inside the reference functions: the grader's workers import this module and must
stay light.
"""
import math

import numpy as np

from .base import Case, Question, choice
from . import draws
from ..preference_models import plackett_luce_nll


def dpo_loss(chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp, beta):
    """Mean over pairs of ``-log sigmoid(beta ((logp_w - ref_logp_w) - (logp_l - ref_logp_l)))``."""
    import torch

    from ..dpo import dpo_loss as _dpo_loss

    t = [torch.as_tensor(np.asarray(a, dtype=np.float64))
         for a in (chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp)]
    loss, _ = _dpo_loss(*t, beta)
    return float(loss)


def implicit_reward(logp, ref_logp, mask, beta):
    """``beta sum_t m_t (log pi(y_t|x,y_<t) - log pi_ref(y_t|x,y_<t)) = beta log(pi(y|x) / pi_ref(y|x))``."""
    from .._validate import check_positive_scalar
    from ..sequences import sequence_penalty

    return check_positive_scalar(beta, "beta") * sequence_penalty(logp, ref_logp, mask)


def _hidden_dpo_loss(rng) -> tuple[Case, ...]:
    n = draws.size(rng, 2, 6)
    four = [-rng.uniform(1, 30, n) for _ in range(4)]
    big = [four[0] - 800.0, four[1], four[2], four[3]]
    return (
        Case("random pairs of sequence log-probabilities and a random beta", (*four, draws.positive(rng))),
        Case("random pairs with a margin of hundreds: stable", (*big, 1.0), rtol=1e-9,
             hint="-log sigmoid(z) = np.logaddexp(0, -z)."),
        Case("a random beta <= 0 raises ValueError", (*four, -float(rng.uniform(0, 1))), raises="ValueError"),
    )


def _hidden_implicit_reward(rng) -> tuple[Case, ...]:
    b, t = draws.size(rng, 2, 4), draws.size(rng, 2, 6)
    mask = draws.prefix_mask(rng, b, t)
    banned = np.where(mask > 0, draws.logps(rng, (b, t)), _BIG)
    return (
        Case("a random padded batch: padded positions do not count",
             (banned, draws.logps(rng, (b, t)), mask, draws.positive(rng))),
        Case("a random mask of another shape raises ValueError",
             (draws.logps(rng, t), draws.logps(rng, t), np.ones(t + 1), 0.1), raises="ValueError"),
    )


def _pl_probability(scores, order) -> float:
    ranked = np.asarray(scores, dtype=np.float64)[list(order)][None]
    return float(np.exp(-plackett_luce_nll(ranked)[0]))


_PL_BETA = 0.5
_PL_LOGP = (-4.0, -6.5, -5.0)       # log pi(y | x) of responses A, B, C
_PL_REF = (-5.0, -5.5, -5.4)        # log pi_ref(y | x)
_PL_SCORES = tuple(_PL_BETA * (a - b) for a, b in zip(_PL_LOGP, _PL_REF))  # implicit rewards
_PL_ORDER = (0, 2, 1)               # the ranking A > C > B

_BIG = -1e9  # what a banned token's log-probability looks like at a padded position

QUESTIONS = [
    Question(
        id="08.dpo_loss",
        kind="function",
        points=3,
        title="the DPO loss from sequence log-probabilities",
        reference=dpo_loss,
        guards=("rlhf_course.dpo.dpo_loss", "rlhf_course.questions.ex08.dpo_loss"),
        hidden=_hidden_dpo_loss,
        cases=(
            Case("at initialization (pi = pi_ref) the loss is log 2",
                 ([-3.0, -7.5, -0.2], [-5.0, -9.5, -2.2], [-3.0, -7.5, -0.2], [-5.0, -9.5, -2.2], 0.1),
                 hint="with pi = pi_ref every implicit reward is 0, the margin is 0, and -log sigmoid(0) = log 2."),
            Case("one pair: -log sigmoid(1)", ([-1.0], [-3.0], [-2.0], [-2.0], 0.5),
                 hint="margin = beta ((logp_w - ref_logp_w) - (logp_l - ref_logp_l)) = 0.5 * (1 - (-1)) = 1."),
            Case("a batch of pairs: the mean over pairs",
                 ([-12.0, -8.3, -20.1, -4.4], [-10.5, -9.9, -18.0, -6.0], [-11.0, -8.0, -21.0, -4.0],
                  [-10.0, -10.0, -18.5, -5.5], 0.2),
                 hint="average -log sigmoid(margin) over the pairs, not the sum."),
            Case("the reference's log-probabilities matter, not only the policy's",
                 ([-5.0, -5.0], [-5.0, -5.0], [-4.0, -6.0], [-6.0, -4.0], 1.0),
                 hint="the same policy log-probabilities with different reference ones give different losses: "
                      "the implicit reward is logp - ref_logp."),
            Case("a pair ranked the wrong way by a large margin", ([-900.0], [-1.0], [-2.0], [-2.0], 1.0),
                 rtol=1e-9,
                 hint="-log sigmoid(z) = log(1 + exp(-z)) overflows for z = -899 when computed naively; use "
                      "np.logaddexp(0, -z)."),
            Case("a pair ranked the right way by a large margin", ([-1.0], [-900.0], [-2.0], [-2.0], 1.0),
                 atol=1e-12,
                 hint="-log sigmoid(899) is about exp(-899), essentially 0: np.logaddexp(0, -z) gets it right."),
            Case("beta = 0", ([-1.0], [-2.0], [-1.0], [-2.0], 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
            Case("arrays of different lengths", ([-1.0, -2.0], [-2.0], [-1.0, -2.0], [-2.0, -3.0], 0.1),
                 raises="ValueError",
                 hint="one entry per pair in each of the four arrays: raise ValueError when the shapes differ."),
        ),
        hint="margin = beta ((chosen_logp - ref_chosen_logp) - (rejected_logp - ref_rejected_logp)); the loss is "
             "the mean of -log sigmoid(margin) = logaddexp(0, -margin).",
    ),
    Question(
        id="08.implicit_reward",
        kind="function",
        points=2,
        title="the implicit reward of whole responses, from per-token log-probabilities",
        reference=implicit_reward,
        guards=("rlhf_course.questions.ex08.implicit_reward", "rlhf_course.sequences.sequence_penalty"),
        hidden=_hidden_implicit_reward,
        cases=(
            Case("one response of three tokens", ([-0.5, -1.2, -0.1], [-0.7, -1.0, -0.3], [1, 1, 1], 0.1)),
            Case("the policy equals the reference: 0", ([-0.5, -1.2], [-0.5, -1.2], [1, 1], 0.3)),
            Case("a batch with padding: padded positions do not count",
                 ([[-0.2, -0.9, _BIG, _BIG], [-1.5, -0.3, -0.4, -2.2]],
                  [[-0.4, -0.6, -3.0, -0.1], [-1.0, -0.5, -0.2, -2.5]],
                  [[1, 1, 0, 0], [1, 1, 1, 1]], 0.5),
                 hint="the first response's padded positions hold -1e9 (a banned token's log-probability): "
                      "multiply the difference by the mask, or select with it, before summing over t."),
            Case("beta scales the reward", ([-2.0, -1.0], [-1.0, -1.5], [1, 1], 2.0),
                 hint="the implicit reward is beta times the sequence log-ratio."),
            Case("beta = 0", ([-0.5], [-0.7], [1], 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
            Case("mask of another shape", ([-0.5, -1.0], [-0.7, -1.1], [1, 1, 1], 0.1), raises="ValueError",
                 hint="the mask must have the shape of the log-probabilities: raise ValueError otherwise."),
        ),
        hint="beta * sum over t of mask_t (logp_t - ref_logp_t), over the last axis.",
    ),
    Question(
        id="08.loss_at_init",
        kind="value",
        points=1,
        title="the DPO loss at initialization",
        answer=math.log(2.0),
        hint="at initialization pi = pi_ref, so every margin is 0 and each pair contributes -log sigmoid(0).",
    ),
    choice(
        id="08.why_z_cancels",
        points=2,
        title="why the partition function cancels in the DPO loss",
        answer="B",
        feedback={
            "A": "Z(x) = sum_y pi_ref(y|x) exp(r(x, y) / beta) is not 1 in general (it is 1 only when the reward "
                 "is 0 wherever pi_ref puts mass). Dividing by Z is what makes pi* normalized; Z itself is "
                 "whatever that takes.",
            "C": "DPO never estimates Z: no sum over responses appears in the loss. It does not need to, because "
                 "beta log Z(x) enters both implicit rewards of a pair the same way.",
            "D": "Subtracting log pi_ref turns the policy into the implicit reward; it does not remove Z. The "
                 "reward is beta log(pi*/pi_ref) + beta log Z(x), and the second term is what cancels, in the "
                 "difference of two such rewards for the same prompt.",
        },
    ),
    Question(
        id="08.plackett_luce",
        kind="value",
        points=1,
        title="a Plackett-Luce ranking probability from implicit rewards",
        name="p_ranking",
        answer=_pl_probability(_PL_SCORES, _PL_ORDER),
        rtol=1e-4,
        hint="the implicit rewards are s = beta (logp - ref_logp) = [0.5, -0.5, 0.2]; A is chosen first among "
             "all three with probability e^{s_A} / (e^{s_A} + e^{s_B} + e^{s_C}), then C among {B, C}.",
    ),
]
