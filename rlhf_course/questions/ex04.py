"""Exercise 04: the optimal policy pi* = pi_ref exp(r / beta) / Z, its value beta log Z, and what it implies.

Covers seed card 004 ("Optimal Policy as a Product of Reference Policy and Exponentiated Reward"): the
reward 3 vs 1 question, the "double the reward, double the probability" claim, the small-beta question,
"Justifying the Reference Policy" and "Diagnosing Language Model Alignment Issues"; and its related cards
on Bradley-Terry and Plackett-Luce selection probabilities.
"""
import math

import numpy as np

from .base import Case, Question, choice
from ..objective import implicit_reward, log_partition, optimal_policy, optimal_value
from . import draws
from ..preference_models import bradley_terry_prob
from .ex03 import _hidden_exp_tilt

_REF, _R = [0.5, 0.3, 0.2], [1.0, 0.0, -1.0]  # the course's reference problem (TOOLCHAIN.md)
_REF2, _R2, _BETA2 = [0.25, 0.25, 0.25, 0.25], [2.0, -1.0, 0.5, 0.0], 0.5


def recover_reward(pi_star, ref_probs, beta, log_z):
    """``r(y) = beta log(pi*(y) / pi_ref(y)) + beta log Z``, with ``log_z`` one number per row."""
    return implicit_reward(pi_star, ref_probs, beta) + beta * np.asarray(log_z, dtype=np.float64)[..., None]


def _hidden_recover_reward(rng) -> tuple[Case, ...]:
    k, b = draws.size(rng, 3, 6), draws.size(rng, 2, 4)
    ref, r, beta = draws.probs(rng, (b, k)), rng.normal(size=(b, k)), draws.positive(rng)
    return (
        Case("a random pi* and its log Z", (optimal_policy(ref[0], r[0], beta), ref[0], beta,
                                            log_partition(ref[0], r[0], beta))),
        Case("a random batch: one log Z per row", (optimal_policy(ref, r, beta), ref, beta,
                                                   log_partition(ref, r, beta))),
    )


def _pi(ref, r, beta):
    return optimal_policy(ref, r, beta).tolist()


def _logz(ref, r, beta):
    return np.asarray(log_partition(ref, r, beta)).tolist()


_OVERFLOW = "exp(r / beta) overflows (or underflows) here: work in log space, subtract the largest " \
            "log pi_ref + r / beta before exponentiating (log-sum-exp)."

QUESTIONS = [
    Question(
        id="04.optimal_policy",
        kind="function",
        points=3,
        title="the optimal policy pi* = pi_ref exp(r / beta) / Z, computed stably",
        reference=optimal_policy,
        guards=("rlhf_course.objective.optimal_policy",),
        hidden=_hidden_exp_tilt,
        cases=(
            Case("the course's reference problem", (_REF, _R, 1.0)),
            Case("equal rewards give back pi_ref", ([0.2, 0.3, 0.5], [2.0, 2.0, 2.0], 0.7),
                 hint="with equal rewards exp(r / beta) is a common factor that Z cancels."),
            Case("a large beta: close to pi_ref", (_REF, _R, 10.0)),
            Case("a zero in pi_ref stays zero, however large its reward", ([0.0, 0.6, 0.4], [50.0, 1.0, 0.0], 0.5),
                 hint="pi*(y) = 0 wherever pi_ref(y) = 0; make sure no nan comes out of log(0) or 0 * inf."),
            Case("r / beta = 2000", ([0.5, 0.5], [1000.0, 999.0], 0.5), hint=_OVERFLOW),
            Case("r / beta = -2000", ([0.5, 0.5], [-1000.0, -1001.0], 0.5), hint=_OVERFLOW),
            Case("a batch: one distribution per row", ([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]],
                                                       [[1.0, 0.0, -1.0], [0.0, 0.0, 3.0]], 1.0),
                 hint="normalize over the last axis only (keepdims=True)."),
            Case("beta = 0", (_REF, _R, 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
            Case("beta < 0", (_REF, _R, -1.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
        ),
        hint="pi* = softmax(log pi_ref + r / beta) over the last axis.",
    ),
    Question(
        id="04.optimal_value",
        kind="function",
        points=2,
        title="the optimal value beta log Z",
        reference=optimal_value,
        guards=("rlhf_course.objective.optimal_value", "rlhf_course.objective.log_partition"),
        hidden=_hidden_exp_tilt,
        cases=(
            Case("the course's reference problem (0.549691)", (_REF, _R, 1.0)),
            Case("equal rewards c: the value is c", ([0.2, 0.3, 0.5], [2.0, 2.0, 2.0], 0.7),
                 hint="with r = c everywhere, Z = exp(c / beta)."),
            Case("beta = 2", (_REF, _R, 2.0)),
            Case("r / beta = 2000", ([0.5, 0.5], [1000.0, 0.0], 0.5), hint=_OVERFLOW),
            Case("a batch: one value per row", ([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]],
                                                [[1.0, 0.0, -1.0], [0.0, 0.0, 3.0]], 1.0),
                 hint="reduce over the last axis only."),
            Case("beta = 0", (_REF, _R, 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
        ),
        hint="beta log Z with log Z = logsumexp(log pi_ref + r / beta) over the last axis.",
    ),
    Question(
        id="04.ratio_3_vs_1",
        kind="value",
        points=1,
        title="pi*(A) / pi*(B) for rewards 3 and 1",
        answer=math.exp(2.0),
        rtol=1e-4,
        hint="pi*(A) / pi*(B) = exp((r_A - r_B) / beta) pi_ref(A) / pi_ref(B); Z cancels.",
    ),
    choice(
        id="04.double_reward",
        title="does double the reward mean double the probability?",
        answer="B",
        choices=("A", "B"),
        feedback={
            "A": "Probabilities are exponential in the reward: with r_Y = 2 r_Z the ratio is "
                 "exp((r_Y - r_Z) / beta) = exp(r_Z / beta), which is 2 only when r_Z = beta ln 2 "
                 "(r_Z = 1, beta = 1 gives e = 2.72). And adding a constant to every reward changes no "
                 "probability, so 'twice the reward' says nothing about the policy by itself.",
        },
    ),
    choice(
        id="04.small_beta",
        points=2,
        title="why a small beta gives repetitive, high-reward outputs",
        answer="B",
        feedback={
            "A": "The other way round: beta weighs the pull towards pi_ref. A smaller beta weakens it, and "
                 "pi* moves away from the base model, towards what the reward scores highest.",
            "C": "beta acts like a temperature on the reward, but a small one makes pi* less random, not "
                 "more: as beta -> 0, pi* concentrates on the few highest-reward outputs. That concentration "
                 "is why the outputs repeat.",
            "D": "beta does not touch the reward model: the scores are the same for every beta. What changes "
                 "is how far from pi_ref the policy will go to collect them, including to outputs where the "
                 "reward model is wrong.",
        },
    ),
    Question(
        id="04.small_beta_limit",
        kind="value",
        points=2,
        title="the beta -> 0 limit: argmax over the support of pi_ref",
        answer=[0.0, 0.25, 0.75, 0.0, 0.0],
        atol=1e-6,
        rtol=0.0,
        hint="only outputs with pi_ref(y) > 0 and the highest reward among those survive, in proportion "
             "to pi_ref.",
    ),
    Question(
        id="04.recover_reward",
        kind="function",
        points=2,
        title="recover the reward from pi*: beta log(pi* / pi_ref) + beta log Z",
        reference=recover_reward,
        guards=("rlhf_course.questions.ex04.recover_reward", "rlhf_course.objective.implicit_reward"),
        hidden=_hidden_recover_reward,
        cases=(
            Case("the course's reference problem: r = [1, 0, -1]",
                 (_pi(_REF, _R, 1.0), _REF, 1.0, _logz(_REF, _R, 1.0))),
            Case("beta = 0.5", (_pi(_REF2, _R2, _BETA2), _REF2, _BETA2, _logz(_REF2, _R2, _BETA2)),
                 hint="both terms are multiplied by beta."),
            Case("a batch: one log Z per row",
                 ([_pi(_REF, _R, 1.0), _pi(_REF, [0.0, 2.0, 0.0], 1.0)], _REF, 1.0,
                  [_logz(_REF, _R, 1.0), _logz(_REF, [0.0, 2.0, 0.0], 1.0)]),
                 hint="log_z has one entry per row: add it to every entry of that row (log_z[..., None])."),
            Case("beta = 0", (_pi(_REF, _R, 1.0), _REF, 0.0, 0.5), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
        ),
        hint="invert pi*(y) = pi_ref(y) exp(r(y) / beta) / Z for r(y).",
    ),
    Question(
        id="04.bradley_terry",
        kind="value",
        points=1,
        title="a Bradley-Terry preference probability",
        name="p_a_over_b",
        answer=bradley_terry_prob(2.0, 0.5),
        rtol=1e-4,
        hint="P(a > b) = exp(r_a) / (exp(r_a) + exp(r_b)) = sigmoid(r_a - r_b).",
    ),
    Question(
        id="04.plackett_luce",
        kind="value",
        points=1,
        title="a Plackett-Luce ranking probability",
        name="p_ranking",
        answer=(math.exp(1.0) / (math.exp(1.0) + math.exp(0.0) + math.exp(-1.0)))
        * (math.exp(0.0) / (math.exp(0.0) + math.exp(-1.0))),  # a first among {a, b, c}, then b among {b, c}
        rtol=1e-4,
        hint="choose the first among all three with probability w / sum w, then the second among the "
             "remaining two; w(y) = exp(r(y)).",
    ),
    Question(
        id="04.preference_from_policy",
        kind="value",
        points=2,
        title="a preference probability from pi* and pi_ref alone (Z cancels)",
        name="p_from_policy",
        answer=bradley_terry_prob(0.5 * math.log(0.6 / 0.3), 0.5 * math.log(0.1 / 0.2)),
        rtol=1e-4,
        hint="r(y) = beta log(pi*(y) / pi_ref(y)) + beta log Z; in r(a) - r(b) the unknown beta log Z cancels.",
    ),
    choice(
        id="04.justify_reference",
        title="justifying the reference policy",
        answer="B",
        feedback={
            "A": "Maximizing E[r] alone has a maximizer: a point mass on the highest-reward output. The "
                 "trouble is which output that is when the reward model is imperfect.",
            "C": "Speed is not the point: the penalty changes which policy is optimal, not only how fast "
                 "training gets there.",
            "D": "Normalization comes from Z (a softmax), not from the KL term: E[r] alone is also "
                 "maximized over distributions.",
        },
    ),
    Question(
        id="04.diagnose",
        kind="matching",
        points=3,
        title="diagnosing alignment issues from the optimal policy",
        name="diagnosis",
        answer={"S1": "A", "S2": "B", "S3": "C"},
        choices=("S1", "S2", "S3"),
        hint="compare each symptom with pi* = pi_ref exp(r / beta) / Z at a large beta, at a small beta, and "
             "where pi_ref(y) = 0.",
    ),
]
