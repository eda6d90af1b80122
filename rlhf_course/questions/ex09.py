"""Exercise 09: critic-free policy optimization and best-of-n. Group advantages (GRPO, Dr. GRPO, RLOO), the
token-mean and sequence-mean loss aggregations, the exact best-of-n distribution of a categorical, and what the
KL placement, the standard-deviation scaling and the best-of-n bound do.

The function questions are graded against the package functions the chapter and the GRPO trainer use
(:func:`rlhf_course.rl.group_advantages`, :func:`rlhf_course.rl.aggregate_loss`,
:func:`rlhf_course.objective.best_of_n_policy`); their references convert the plain inputs to torch or numpy and
back. torch is imported inside the reference functions only, so that importing this module (as the grader's
sandboxed workers do) stays light.

Seed cards covered: 003 ("KL-Divergence Penalty in RLHF Policy Optimization": where the penalty goes and which
placement has the gradient of KL(pi || pi_ref)), 004 ("Optimal Policy as a Product of Reference Policy and
Exponentiated Reward": the coefficient a group-normalized update really optimizes, and best-of-n as the cheapest
approximation of that policy).
"""
from __future__ import annotations

from .base import Case, Question, choice


def _tensor(x):
    import torch

    return torch.as_tensor(x, dtype=torch.float64)


def group_advantages_reference(rewards, group_size, center="mean", scale="std"):
    """``rl.group_advantages`` on a float64 tensor, as a numpy array."""
    from ..rl import group_advantages

    return group_advantages(_tensor(rewards), int(group_size), center=center, scale=scale).numpy()


def aggregate_loss_reference(per_token_loss, mask, mode):
    """``rl.aggregate_loss``, as a float."""
    from ..rl import aggregate_loss

    return float(aggregate_loss(_tensor(per_token_loss), _tensor(mask), mode))


def best_of_n_reference(ref_probs, rewards, n):
    """``objective.best_of_n_policy`` of one categorical, as a numpy array."""
    import numpy as np

    from ..objective import best_of_n_policy

    return np.asarray(best_of_n_policy(np.asarray(ref_probs, dtype=np.float64),
                                       np.asarray(rewards, dtype=np.float64), n))


def hidden_group_advantages(rng) -> tuple[Case, ...]:
    """Cases the student does not see: random groups (some with ties), every center/scale pair."""
    cases = []
    for center, scale in (("mean", "std"), ("mean", "none"), ("loo", "none"), ("loo", "std")):
        G = int(rng.integers(2, 7))
        size = G * int(rng.integers(1, 4))
        # half the time verifiable 0/1 rewards, where whole groups often tie (std 0)
        r = rng.choice([0.0, 1.0], size=size) if rng.random() < 0.5 else rng.normal(size=size)
        cases.append(Case(f"random groups, some with ties, center={center!r}, scale={scale!r}",
                          ([float(v) for v in r], G, center, scale)))
    return tuple(cases)


def hidden_aggregate_loss(rng) -> tuple[Case, ...]:
    """Random padded batches for both modes."""
    cases = []
    for mode in ("token-mean", "seq-mean-token-mean"):
        B, T = int(rng.integers(2, 5)), int(rng.integers(3, 7))
        lengths = rng.integers(1, T + 1, size=B)
        mask = [[1.0 if t < n else 0.0 for t in range(T)] for n in lengths]
        loss = rng.normal(size=(B, T)).round(3).tolist()
        cases.append(Case(f"a random padded batch, mode={mode!r}", (loss, mask, mode)))
    return tuple(cases)


def hidden_best_of_n(rng) -> tuple[Case, ...]:
    """Random categoricals, with and without ties."""
    cases = []
    for ties in (False, True):
        K = int(rng.integers(3, 7))
        p = rng.random(K) + 0.05
        p = (p / p.sum()).round(6)
        p[-1] = 1.0 - p[:-1].sum()
        r = rng.integers(0, 3, size=K).astype(float) if ties else rng.normal(size=K).round(3)
        n = int(rng.integers(2, 9))
        cases.append(Case(f"a random categorical{' with tied rewards' if ties else ''}",
                          ([float(v) for v in p], [float(v) for v in r], n)))
    return tuple(cases)


TWO_GROUPS = [1.0, 0.0, 0.0, 1.0, 0.2, 0.9, 0.4, 0.4]
LOSS = [[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, 9.0, 9.0], [-0.4, 0.8, 0.6, 7.0]]
MASK = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]

QUESTIONS = [
    Question(
        id="09.group_advantages",
        kind="function",
        points=3,
        title="group advantages: GRPO, Dr. GRPO and RLOO",
        reference=group_advantages_reference,
        guards=("rlhf_course.rl.group_advantages",),
        hidden=hidden_group_advantages,
        cases=(
            Case("GRPO: two groups of four, centred and scaled", (TWO_GROUPS, 4, "mean", "std"),
                 hint="divide by the group's sample standard deviation (ddof=1, as torch.std) plus eps = 1e-6."),
            Case("Dr. GRPO: centred only", (TWO_GROUPS, 4, "mean", "none")),
            Case("RLOO: minus the mean of the other responses", (TWO_GROUPS, 4, "loo", "none"),
                 hint="for response i, subtract (sum of the group - r_i) / (G - 1)."),
            Case("groups of two", ([3.0, 1.0, -2.0, 2.0, 0.5, 0.5], 2, "loo", "none")),
            Case("a group whose rewards are all equal gets advantages 0 (never NaN)",
                 ([0.5, 0.5, 0.5, 1.0, 2.0, 4.0], 3, "mean", "std"),
                 hint="where the standard deviation is 0, every advantage of that group is 0."),
            Case("no centring, no scaling: the rewards themselves", ([0.3, -1.0, 2.0, 0.0], 2, "none", "none")),
            Case("a batch that is not a whole number of groups", ([1.0, 2.0, 3.0, 4.0, 5.0], 2, "mean", "std"),
                 raises="ValueError", hint="len(rewards) must be divisible by group_size."),
            Case("leave-one-out needs at least two responses per group", ([1.0, 2.0, 3.0], 1, "loo", "none"),
                 raises="ValueError"),
        ),
        rtol=1e-7,
        hint="reshape the rewards to (n_prompts, group_size), compute per row, and flatten back.",
    ),
    Question(
        id="09.aggregate_loss",
        kind="function",
        points=2,
        title="token-mean and sequence-mean loss aggregation",
        reference=aggregate_loss_reference,
        guards=("rlhf_course.rl.aggregate_loss",),
        hidden=hidden_aggregate_loss,
        cases=(
            Case("token-mean over a padded batch (DAPO)", (LOSS, MASK, "token-mean"),
                 hint="sum the loss over every real token of the batch and divide by their number."),
            Case("seq-mean-token-mean over the same batch (GRPO)", (LOSS, MASK, "seq-mean-token-mean"),
                 hint="average each response over its own real tokens, then average the responses."),
            Case("equal lengths: both modes agree", ([[1.0, 2.0], [3.0, -4.0]], [[1.0, 1.0], [1.0, 1.0]],
                                                     "token-mean")),
            Case("one long and one short response", ([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]],
                                                     [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]],
                                                     "seq-mean-token-mean")),
            Case("an unknown mode", (LOSS, MASK, "sum"), raises="ValueError"),
        ),
        rtol=1e-9,
        atol=1e-12,
        hint="padding (mask 0) must never count, whatever the loss holds there.",
    ),
    Question(
        id="09.best_of_n",
        kind="function",
        points=3,
        title="the exact best-of-n distribution of a categorical",
        name="best_of_n_policy",
        reference=best_of_n_reference,
        guards=("rlhf_course.objective.best_of_n_policy",),
        hidden=hidden_best_of_n,
        cases=(
            Case("the reference case, n = 2", ([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 2),
                 hint="order the outputs by reward; P(best = y) = F(y)^n - F(y-)^n with F the reference's CDF."),
            Case("n = 1 is the reference itself", ([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 1)),
            Case("rewards in no particular order", ([0.2, 0.5, 0.3], [0.3, -1.0, 2.0], 4)),
            Case("ties share in proportion to the reference", ([0.4, 0.2, 0.3, 0.1], [1.0, 1.0, 0.0, 2.0], 3),
                 hint="tied outputs share F(y)^n - F(y-)^n of their reward level in proportion to pi_ref."),
            Case("n = 0", ([0.5, 0.5], [1.0, 0.0], 0), raises="ValueError"),
            Case("ref_probs that do not sum to 1", ([0.5, 0.6], [1.0, 0.0], 2), raises="ValueError"),
        ),
        rtol=1e-9,
        atol=1e-12,
    ),
    Question(
        id="09.drgrpo_beta",
        kind="value",
        points=1,
        title="the KL coefficient Dr. GRPO really optimizes",
        answer=0.5 * 4 / 3,
        hint="centring on the group mean scales the expected reward gradient by (G - 1)/G, not the KL term's.",
    ),
    choice(
        id="09.kl_placement",
        title="which KL term has the reverse-KL gradient on-policy",
        answer="C",
        feedback={
            "A": "k1 = log pi - log pi_ref as a loss term has expected gradient E[grad log pi] = 0 on-policy: "
                 "the penalty does nothing.",
            "B": "k3 as a loss term differentiates the forward KL(pi_ref || pi): its expected gradient is "
                 "-E_{pi_ref}[grad log pi]. Training converges, to the forward-KL optimum.",
            "D": "All three estimate the KL's value without bias, but the gradient of an unbiased estimate is not "
                 "an unbiased estimate of the gradient (Tang and Munos 2025).",
        },
    ),
    choice(
        id="09.std_scaling",
        title="why dividing by the group's standard deviation changes the objective",
        answer="B",
        feedback={
            "A": "With the KL in the loss, the penalty's gradient is not divided: the balance between reward and "
                 "penalty changes per prompt, so the fixed point moves (to pi*_{beta'} with a per-prompt beta').",
            "C": "The length of responses enters through the loss aggregation, not through the advantage's scale.",
            "D": "Dividing by a positive number never flips a sign; the ranking of responses within a group is kept.",
        },
    ),
    choice(
        id="09.bon_bound",
        title="why best-of-n's KL cannot exceed log n - (n - 1)/n",
        answer="A",
        feedback={
            "B": "The KL of the best of n draws is not a sum over draws: it is the KL of one distribution, that "
                 "of the winner, and it grows like log n, not n.",
            "C": "Best-of-n makes the best output more likely than the reference does, so pi_BoN(y) > pi_ref(y) "
                 "there; if it were smaller everywhere, both could not sum to 1.",
            "D": "The ratio is indeed at most n, which gives KL <= log n; the tighter bound comes from the exact "
                 "continuous case, KL(Beta(n, 1) || Uniform) = log n - (n - 1)/n, not from ties.",
        },
    ),
]
