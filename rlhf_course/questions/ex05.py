"""Exercise 05: from objective to algorithm. GAE, PPO's clipped surrogate, the KL-penalized per-token
rewards, the adaptive KL controller, and what each piece of PPO for RLHF does.

The function questions are graded against :mod:`rlhf_course.rl`, the implementation chapters 5 and 6 train
with; their references convert the plain inputs to torch tensors and back. torch is imported inside the
reference functions only, so that importing this module (as the grader's sandboxed workers do) stays light.

Seed cards covered: 001 ("RLHF Policy Optimization Objective": the use of the reward model's score within a
training step, the order of events in one iteration, A2C and the joint optimization of policy and value),
002 ("Stabilizing Policy Updates with a Divergence Penalty": the effect of ``- beta D(theta, theta_old)``,
and whether a larger penalty weight expands the trusted area).
"""
from __future__ import annotations

import numpy as np

from .base import Case, Question, choice
from . import draws


def _tensor(x):
    import torch

    return torch.as_tensor(x, dtype=torch.float64)


def gae_reference(rewards, values, mask, gamma, lam):
    """Advantages by generalized advantage estimation (``rl.gae``), as a numpy array."""
    from ..rl import gae

    advantages, _ = gae(_tensor(rewards), _tensor(values), _tensor(mask), float(gamma), float(lam))
    return advantages.numpy()


def clipped_loss_reference(logp, old_logp, advantages, mask, clip_eps):
    """PPO's clipped surrogate loss (``rl.clipped_policy_loss``), as a float."""
    from ..rl import clipped_policy_loss

    loss, _ = clipped_policy_loss(_tensor(logp), _tensor(old_logp), _tensor(advantages), _tensor(mask),
                                  float(clip_eps))
    return float(loss)


def kl_rewards_reference(score, logp, ref_logp, mask, beta):
    """Per-token rewards ``-beta (logp - ref_logp) + [t = T] score`` (``rl.kl_penalized_rewards``)."""
    from ..rl import kl_penalized_rewards

    rewards, _ = kl_penalized_rewards(_tensor(score), _tensor(logp), _tensor(ref_logp), _tensor(mask), float(beta))
    return rewards.numpy()


def _hidden_gae(rng) -> tuple[Case, ...]:
    b, t = draws.size(rng, 2, 4), draws.size(rng, 3, 6)
    mask = draws.prefix_mask(rng, b, t)
    return (
        Case("a random padded batch, random gamma and lambda",
             (rng.normal(size=(b, t)) * mask, rng.normal(size=(b, t)), mask, float(rng.uniform(0.8, 1.0)),
              float(rng.uniform(0.0, 1.0))),
             hint="each response ends at its last real token: the value after it is 0."),
        Case("random rewards and values, no padding, gamma 1",
             (rng.normal(size=(1, t)), rng.normal(size=(1, t)), np.ones((1, t)), 1.0, float(rng.uniform(0, 1)))),
        Case("random shapes that do not match raise ValueError",
             (rng.normal(size=(b, t)), rng.normal(size=(b, t + 1)), mask, 1.0, 0.95), raises="ValueError"),
    )


def _hidden_clipped_loss(rng) -> tuple[Case, ...]:
    b, t = draws.size(rng, 2, 4), draws.size(rng, 3, 6)
    mask = draws.prefix_mask(rng, b, t)
    old = draws.logps(rng, (b, t))
    eps = float(rng.uniform(0.1, 0.3))
    return (
        Case("a random padded batch with ratios inside and outside the clip range",
             (old + rng.normal(0, 0.4, (b, t)), old, rng.normal(size=(b, t)), mask, eps),
             hint="average over the tokens where mask = 1."),
        Case("random ratios close to 1", (old + rng.normal(0, 0.01, (b, t)), old, rng.normal(size=(b, t)),
                                          np.ones((b, t)), eps)),
        Case("a random clip_eps outside (0, 1) raises ValueError",
             (old, old, rng.normal(size=(b, t)), mask, float(rng.uniform(1.0, 3.0))), raises="ValueError"),
    )


def _hidden_kl_rewards(rng) -> tuple[Case, ...]:
    score, logp, ref_logp, mask, beta = draws.reward_inputs(rng)
    return (
        Case("a random padded batch: the score on each last real token", (score, logp, ref_logp, mask, beta)),
        Case("a random number of scores that is not one per response raises ValueError",
             (list(score) + [1.0], logp, ref_logp, mask, beta), raises="ValueError"),
    )


ADAPTIVE_BETA = 0.2 * (1 + min(max(8.0 / 6.0 - 1, -0.2), 0.2) * 128 / 10_000)  # = 0.200512 (TOOLCHAIN.md)

QUESTIONS = [
    Question(
        id="05.gae",
        kind="function",
        points=3,
        title="generalized advantage estimation over padded responses",
        reference=gae_reference,
        guards=("rlhf_course.rl.gae",),
        hidden=_hidden_gae,
        cases=(
            Case("rewards [0, 0, 1], values 0.5, gamma 1, lambda 0.95 (advantages 0.45125, 0.475, 0.5)",
                 ([[0.0, 0.0, 1.0]], [[0.5, 0.5, 0.5]], [[1.0, 1.0, 1.0]], 1.0, 0.95)),
            Case("lambda = 0: the TD errors", ([[0.0, 0.0, 1.0]], [[0.5, 0.5, 0.5]], [[1.0, 1.0, 1.0]], 1.0, 0.0),
                 hint="with lambda = 0, A_t = r_t + gamma V_{t+1} - V_t, and V after the last token is 0."),
            Case("lambda = 1: return-to-go minus value",
                 ([[1.0, -2.0, 3.0]], [[0.3, 0.1, -0.4]], [[1.0, 1.0, 1.0]], 1.0, 1.0)),
            Case("a padded batch (the values in the padding must not matter)",
                 ([[0.0, 0.0, 1.0, 0.0], [0.5, -0.2, 0.0, 0.0]], [[0.5, 0.5, 0.5, 9.0], [0.1, 0.3, -7.0, 4.0]],
                  [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]], 1.0, 0.95),
                 hint="each response ends at its last real token: the value after it is 0, and the advantages on "
                      "padding are 0."),
            Case("gamma = 0.9, lambda = 0.8, responses of lengths 2 and 3",
                 ([[0.2, 1.0, 0.0], [-0.1, 0.4, 0.7]], [[0.3, 0.6, 0.4], [0.2, 0.1, 0.5]],
                  [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], 0.9, 0.8),
                 hint="delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lambda A_{t+1}."),
            Case("shapes that do not match", ([[0.0, 1.0]], [[0.5, 0.5, 0.5]], [[1.0, 1.0, 1.0]], 1.0, 0.95),
                 raises="ValueError", hint="check that rewards, values and mask have the same shape."),
        ),
        hint="loop backwards over the tokens: A_t = delta_t + gamma lambda A_{t+1}, with A and V zero after the "
             "last real token.",
    ),
    Question(
        id="05.clipped_loss",
        kind="function",
        points=3,
        title="PPO's clipped surrogate loss",
        reference=clipped_loss_reference,
        guards=("rlhf_course.rl.clipped_policy_loss",),
        hidden=_hidden_clipped_loss,
        cases=(
            Case("one token, ratio 1.1 inside the range", ([[-0.9046898]], [[-1.0]], [[1.0]], [[1.0]], 0.2)),
            Case("A > 0 and ratio 1.5: clipped at 1 + eps", ([[-0.5945349]], [[-1.0]], [[1.0]], [[1.0]], 0.2),
                 hint="min(rho A, clip(rho, 1 - eps, 1 + eps) A), then the loss is minus its mean."),
            Case("A < 0 and ratio 0.5: clipped at 1 - eps", ([[-1.6931472]], [[-1.0]], [[-1.0]], [[1.0]], 0.2),
                 hint="for a negative advantage the clip takes effect below 1 - eps."),
            Case("A < 0 and ratio 1.5: not clipped (pessimistic)", ([[-0.5945349]], [[-1.0]], [[-1.0]], [[1.0]], 0.2),
                 hint="the minimum keeps the unclipped term when it is the worse one."),
            Case("a padded batch: mean over real tokens only",
                 ([[-0.2, -1.5, -0.7], [-2.0, -0.1, -5.0]], [[-0.3, -1.0, -0.7], [-1.5, -0.1, -0.2]],
                  [[1.0, -0.5, 2.0], [0.3, 1.2, 9.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], 0.2),
                 hint="average over the tokens where mask = 1 (divide by mask.sum()), not over all entries."),
            Case("clip_eps outside (0, 1)", ([[-1.0]], [[-1.0]], [[1.0]], [[1.0]], 1.5), raises="ValueError",
                 hint="validate clip_eps: it must lie strictly between 0 and 1."),
        ),
        hint="ratio = exp(logp - old_logp); per token min(ratio A, clip(ratio, 1 - eps, 1 + eps) A); the loss is "
             "minus its mean over real tokens, returned as a float.",
    ),
    Question(
        id="05.kl_rewards",
        kind="function",
        points=3,
        title="the KL-penalized per-token rewards of padded responses",
        reference=kl_rewards_reference,
        guards=("rlhf_course.rl.kl_penalized_rewards", "rlhf_course.diagnose.correct_rewards"),
        hidden=_hidden_kl_rewards,
        cases=(
            Case("one response of three tokens", ([2.0], [[-0.5, -1.0, -0.2]], [[-0.7, -0.9, -0.9]],
                                                  [[1.0, 1.0, 1.0]], 0.1)),
            Case("a padded batch: the score goes on the last real token",
                 ([2.0, -1.0], [[-0.5, -1.0, -0.2, -3.0], [-1.2, -0.1, -9.0, -9.0]],
                  [[-0.7, -0.9, -0.9, -1.0], [-1.0, -0.4, -1.0, -1.0]], [[1, 1, 1, 1], [1, 1, 0, 0]], 0.1),
                 hint="response i ends at index mask[i].sum() - 1; its padding gets reward 0."),
            Case("beta = 0: only the score", ([1.0, 3.0], [[-1.0, -1.0], [-2.0, -0.5]], [[-2.0, -0.3], [-1.0, -1.0]],
                                              [[1, 0], [1, 1]], 0.0)),
            Case("one-token responses", ([0.5, -0.5, 1.5], [[-0.1], [-2.0], [-0.7]], [[-0.4], [-1.0], [-0.7]],
                                         [[1], [1], [1]], 0.3)),
            Case("one score per response", ([1.0, 2.0, 3.0], [[-1.0, -1.0]], [[-1.0, -1.0]], [[1, 1]], 0.1),
                 raises="ValueError", hint="there must be exactly one score per row of logp."),
        ),
        hint="r_t = -beta (logp_t - ref_logp_t) on every real token, plus the score on the last real token; 0 on "
             "padding.",
    ),
    Question(
        id="05.adaptive_beta",
        kind="value",
        points=1,
        title="one update of the adaptive KL controller",
        answer=ADAPTIVE_BETA,
        hint="beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon): the error 8/6 - 1 is above 0.2.",
    ),
    choice(
        id="05.clip_bounds",
        title="what PPO's clipping bounds",
        answer="B",
        feedback={
            "A": "That is the job of the KL penalty toward the reference (and of the adaptive controller, which "
                 "tunes its coefficient). Clipping compares the new policy with the one that sampled the batch.",
            "C": "Clipping changes the objective, not the optimizer: the step size is set by the learning rate and "
                 "the optimizer, and ratios can end up outside [1 - eps, 1 + eps] (the chapter measures it).",
            "D": "The advantages are not clipped; the probability ratio inside the objective is.",
        },
    ),
    choice(
        id="05.trust_penalty",
        title="the effect of - beta D(theta, theta_old)",
        answer="C",
        feedback={
            "A": "theta_old is the previous iteration's policy, not the reference model: the term limits each "
                 "update, not the total drift since the start.",
            "B": "Subtracting a divergence makes large changes costlier, so updates get smaller, not larger.",
            "D": "The term does not change the reward signal; it changes how far one update may go to chase it.",
        },
    ),
    choice(
        id="05.penalty_weight",
        title="does a larger penalty weight expand the trusted area?",
        answer="B",
        choices=("A", "B"),
        feedback={
            "A": "A larger weight makes every unit of divergence costlier, so the maximizer of J - beta D sits "
                 "closer to theta_old: the trusted area shrinks (per token, the best ratio kappa / (kappa - A) "
                 "moves toward 1 as kappa grows).",
        },
    ),
    choice(
        id="05.k3_loss",
        title="k3 of the log-ratio as a separate loss term",
        answer="C",
        feedback={
            "A": "k3 estimates the KL's value without bias, but its gradient on samples from pi_theta is, in "
                 "expectation, the gradient of the forward KL(pi_ref || pi_theta).",
            "B": "That is k1 (the plain log-ratio): its expected gradient is E[grad log pi] = 0.",
            "D": "The expected update is a well-defined gradient ascent; the chapter's run converges, just not to "
                 "pi*_beta.",
        },
    ),
    choice(
        id="05.a2c_joint",
        title="A2C: the joint optimization of policy and value",
        answer="D",
        feedback={
            "A": "The critic is trained alongside the policy, on every batch: the advantages it gives change as "
                 "the policy changes, so a critic frozen in advance would describe the wrong policy.",
            "B": "The reward model still scores the responses; the critic only estimates the expected return from "
                 "each prefix, to turn scores into advantages.",
            "C": "The value loss is added with a positive coefficient: both parts are minimized.",
        },
    ),
    choice(
        id="05.score_use",
        title="the reward model's score within one training step",
        answer="A",
        feedback={
            "B": "There is no target text to imitate: the policy's own samples are reinforced or discouraged "
                 "according to their advantages.",
            "C": "The reward model is fixed during policy optimization; its score is the signal, not something "
                 "it learns from here.",
            "D": "The reference model's log-probabilities enter through the KL penalty; the score is added to the "
                 "reward of the response's last token.",
        },
    ),
    Question(
        id="05.loop_order",
        kind="ordering",
        points=2,
        title="the order of events in one iteration of PPO for RLHF",
        answer=("B", "D", "E", "A", "C"),
        choices=("A", "B", "C", "D", "E"),
        hint="nothing can be scored before it exists, and advantages need rewards.",
    ),
]
