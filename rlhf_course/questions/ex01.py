"""Exercise 01: the per-sample penalty, KL between categorical distributions, and its estimators.

Covers seed card 000 ("Analysis of the Policy Regularization Penalty"): the penalty's value when the two
policies agree, and what that value does and does not say.
"""
import math

from .base import Case, Question, choice
from ..kl import k3, kl_divergence, log_ratio
from . import draws


def _hidden_penalty(rng) -> tuple[Case, ...]:
    b, t, n = draws.size(rng, 2, 4), draws.size(rng, 2, 5), draws.size(rng, 3, 7)
    return (
        Case("random log-probabilities of a batch of sequences x tokens",
             (draws.logps(rng, (b, t)), draws.logps(rng, (b, t)))),
        Case("random log-probabilities of single responses", (draws.logps(rng, n), draws.logps(rng, n))),
        Case("random shapes that do not match raise ValueError", (draws.logps(rng, n), draws.logps(rng, n + 1)),
             raises="ValueError"),
    )


def _hidden_kl(rng) -> tuple[Case, ...]:
    k, b = draws.size(rng, 3, 6), draws.size(rng, 2, 4)
    q_with_zero = draws.probs(rng, (k,))
    q_with_zero[-1] = 0.0
    return (
        Case("random distributions", (draws.probs(rng, (k,)), draws.probs(rng, (k,)))),
        Case("a random batch: one KL per row", (draws.probs(rng, (b, k)), draws.probs(rng, (b, k)))),
        Case("random p with zeros: their terms contribute nothing",
             (draws.probs(rng, (b, k), zeros=True), draws.probs(rng, (b, k)))),
        Case("random q = 0 where p > 0: infinite", (draws.probs(rng, (k,)), q_with_zero / q_with_zero.sum())),
        Case("a random p that does not sum to one raises ValueError",
             (1.5 * draws.probs(rng, (k,)), draws.probs(rng, (k,))), raises="ValueError"),
    )


def _hidden_k3(rng) -> tuple[Case, ...]:
    n = draws.size(rng, 3, 7)
    logp = draws.logps(rng, n)
    return (
        Case("random log-ratios", (logp, draws.logps(rng, n))),
        Case("random log-ratios below 1e-6 in size", (logp, logp + rng.uniform(-1e-6, 1e-6, n)), rtol=1e-5,
             atol=0.0, hint="exp(x) - 1 - x loses its digits near x = 0; use expm1(x) - x."),
    )


QUESTIONS = [
    Question(
        id="01.penalty",
        kind="function",
        points=2,
        title="the per-sample penalty log pi(y) - log pi_ref(y)",
        reference=log_ratio,
        guards=("rlhf_course.kl.log_ratio",),
        hidden=_hidden_penalty,
        cases=(
            Case("policies agree", ([-0.5, -1.2, -3.0], [-0.5, -1.2, -3.0])),
            Case("policy more likely than reference", ([-0.1], [-2.3])),
            Case("policy less likely: a negative penalty", ([-2.3], [-0.1]),
                 hint="the penalty is log pi - log pi_ref, in that order; it can be negative."),
            Case("a batch of sequences x tokens", ([[-0.2, -1.0], [-3.0, -0.7]], [[-0.4, -1.0], [-2.0, -0.1]])),
            Case("shapes that do not match", ([-0.1, -0.2, -0.3], [-0.1, -0.2]), raises="ValueError",
                 hint="mismatched shapes should raise ValueError, not broadcast silently."),
        ),
        hint="subtract the reference's log-probability from the policy's, elementwise.",
    ),
    Question(
        id="01.penalty_when_equal",
        kind="value",
        points=1,
        title="the penalty when pi(y) = pi_ref(y)",
        answer=0.0,
        atol=1e-12,
        hint="log a - log a.",
    ),
    choice(
        id="01.penalty_meaning",
        title="what a zero penalty on one response signifies",
        answer="B",
        feedback={
            "A": "One response says nothing about the others: the policy may have moved mass among them.",
            "C": "KL is an expectation over all responses; a zero on one response does not make it zero.",
            "D": "Single-sample penalties can be negative (pi(y) < pi_ref(y)); only their expectation, "
                 "the KL, is never negative.",
        },
    ),
    Question(
        id="01.negative_penalty",
        kind="value",
        points=1,
        title="the penalty of a response the policy has made less likely",
        answer=math.log(0.2) - math.log(0.4),
        rtol=1e-4,
        hint="pi(y) = 0.2 and pi_ref(y) = 0.4: the penalty is log(0.2) - log(0.4).",
    ),
    Question(
        id="01.kl_divergence",
        kind="function",
        points=3,
        title="exact KL(p || q) between categorical distributions",
        reference=kl_divergence,
        guards=("rlhf_course.kl.kl_divergence",),
        hidden=_hidden_kl,
        cases=(
            Case("identical distributions", ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5])),
            Case("p=[.98,.01,.01], q=[.01,.01,.98] (0.97 ln 98)", ([0.98, 0.01, 0.01], [0.01, 0.01, 0.98])),
            Case("p=[.49,.02,.49], q=[.01,.98,.01] (0.96 ln 49)", ([0.49, 0.02, 0.49], [0.01, 0.98, 0.01])),
            Case("a zero in p contributes nothing", ([0.0, 0.5, 0.5], [0.2, 0.4, 0.4]),
                 hint="0 log 0 = 0: skip the terms where p(y) = 0."),
            Case("q = 0 where p > 0: infinite", ([0.5, 0.5, 0.0], [1.0, 0.0, 0.0]),
                 hint="where p(y) > 0 = q(y) the divergence is inf; make sure that is what comes out, not nan."),
            Case("a batch: one KL per row", ([[0.5, 0.5], [0.9, 0.1]], [[0.5, 0.5], [0.5, 0.5]]),
                 hint="reduce over the last axis only."),
            Case("p does not sum to one", ([0.5, 0.6], [0.5, 0.5]), raises="ValueError",
                 hint="validate: rows of p and q must sum to 1."),
            Case("negative probability", ([1.2, -0.2], [0.5, 0.5]), raises="ValueError",
                 hint="validate: probabilities are >= 0."),
        ),
        hint="sum over y of p(y) (log p(y) - log q(y)), over the last axis.",
    ),
    choice(
        id="01.reverse_kl_fit",
        title="forward or reverse KL: fitting one mode to two",
        answer="C",
        feedback={
            "A": "That is what minimizing the forward KL(p || q) does: it must cover every mode of p.",
            "B": "KL is not symmetric: the two fits differ.",
            "D": "Reverse KL(q || p) is finite as long as q puts no mass where p has none; a single mode of p "
                 "satisfies that.",
        },
    ),
    Question(
        id="01.k3",
        kind="function",
        points=2,
        title="the k3 estimator, computed stably",
        reference=k3,
        guards=("rlhf_course.kl.k3",),
        hidden=_hidden_k3,
        cases=(
            Case("log r = 1 gives e - 2", ([-2.0], [-1.0])),
            Case("several samples", ([-0.3, -1.5, -2.2], [-0.9, -1.1, -2.2])),
            Case("close policies: log r = -1e-6", ([0.0], [-1e-6]), rtol=1e-6, atol=0.0,
                 hint="exp(x) - 1 - x loses its digits near x = 0; use expm1(x) - x."),
            Case("very close policies: log r = 1e-9", ([-1e-9], [0.0]), rtol=1e-4, atol=0.0,
                 hint="exp(x) - 1 - x loses its digits near x = 0; use expm1(x) - x."),
        ),
        hint="with log r = ref_logp - logp, k3 = (r - 1) - log r; compute r - 1 as expm1(log r).",
    ),
    Question(
        id="01.estimators",
        kind="matching",
        points=3,
        title="the properties of k1, k2 and k3",
        name="estimator_properties",
        answer={"k1": "A", "k2": "B", "k3": "C"},
        choices=("k1", "k2", "k3"),
        hint="compute E[k] and the sign of each estimator on a few samples.",
    ),
    choice(
        id="01.support",
        title="a response the reference can never produce",
        name="support_answer",
        answer="D",
        feedback={
            "A": "log pi_ref(y) = -inf, so the penalty on that response is +inf, not 0.",
            "B": "The KL sums pi(y) (log pi(y) - log pi_ref(y)) over y with pi(y) > 0; one infinite term "
                 "makes the sum infinite, whatever its weight.",
            "C": "Clipping is a practical patch in some implementations; mathematically the divergence is infinite.",
        },
    ),
]
