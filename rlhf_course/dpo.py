"""Direct preference optimization, derived from the optimal policy (chapter 8).

From chapter 4, the maximizer of ``E[r] - beta KL(pi || pi_ref)`` satisfies, for every output ``y``,

    r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x).

Under the Bradley-Terry model a preference ``y_w > y_l`` has probability ``sigmoid(r(y_w) - r(y_l))``;
substituting the reward, ``beta log Z(x)`` cancels in the difference, and the negative log-likelihood of
the preferences becomes a loss on the policy alone:

    h(y) = log pi(y|x) - log pi_ref(y|x)                        (the implicit reward, divided by beta)
    L_DPO = -log sigmoid(beta (h(y_w) - h(y_l)))

At initialization (``pi = pi_ref``) ``h = 0`` and ``L_DPO = log 2``. For a ranking ``y_1 > y_2 > ... > y_K``
the Plackett-Luce model gives

    L_PL = -sum_{k=1}^{K-1} log( exp(beta h(y_k)) / sum_{j >= k} exp(beta h(y_j)) ),

which is ``L_DPO`` for ``K = 2``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validate import check_positive_scalar

__all__ = ["dpo_loss", "plackett_luce_loss", "bradley_terry_prob", "exact_dpo_loss", "train_toy_dpo"]


def _check_same(*named):
    shape = None
    for name, x in named:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
        if shape is None:
            shape = x.shape
        elif x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} like {named[0][0]}")


def dpo_loss(chosen_logp: torch.Tensor, rejected_logp: torch.Tensor, ref_chosen_logp: torch.Tensor,
             ref_rejected_logp: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """``L_DPO = mean -log sigmoid(beta ((logp_w - ref_logp_w) - (logp_l - ref_logp_l)))``.

    Arguments are sequence log-probabilities, one per preference pair (shape ``(batch,)``). Returns the
    mean loss and ``stats``: the implicit rewards' accuracy (fraction of pairs with ``h_w > h_l``) and margin.
    """
    _check_same(("chosen_logp", chosen_logp), ("rejected_logp", rejected_logp),
                ("ref_chosen_logp", ref_chosen_logp), ("ref_rejected_logp", ref_rejected_logp))
    beta = check_positive_scalar(beta, "beta")
    margin = beta * ((chosen_logp - ref_chosen_logp) - (rejected_logp - ref_rejected_logp))
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        stats = {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}
    return loss, stats


def plackett_luce_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """``L_PL`` for rankings: ``logp`` and ``ref_logp`` are ``(batch, K)``, each row ordered best first."""
    _check_same(("logp", logp), ("ref_logp", ref_logp))
    if logp.dim() != 2 or logp.shape[1] < 2:
        raise ValueError(f"logp must be (batch, K) with K >= 2 ranked outputs, got shape {tuple(logp.shape)}")
    beta = check_positive_scalar(beta, "beta")
    s = beta * (logp - ref_logp)
    # log sum_{j >= k} exp(s_j): a reversed cumulative log-sum-exp.
    tail = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
    return -(s - tail)[:, :-1].sum(1).mean()


def bradley_terry_prob(r_a, r_b) -> float:
    """``P(a > b) = sigmoid(r_a - r_b) = exp(r_a) / (exp(r_a) + exp(r_b))``."""
    d = float(r_a) - float(r_b)
    if not math.isfinite(d):
        raise ValueError(f"rewards must be finite, got {r_a!r} and {r_b!r}")
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


def exact_dpo_loss(logits: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float,
                   pair_probs: torch.Tensor | None = None) -> torch.Tensor:
    """The DPO loss in expectation over every ordered pair of a finite output set (no sampling noise).

    Pairs ``(a, b)`` are drawn with probability ``pair_probs[a, b]`` (default: ``pi_ref(a) pi_ref(b)``) and
    labelled ``a > b`` with the Bradley-Terry probability ``sigmoid(r_a - r_b)``. Its minimizer over the
    policy ``softmax(logits)`` is ``pi*_beta`` whenever every pair has positive probability.
    """
    if logits.dim() != 1 or ref_probs.shape != logits.shape or rewards.shape != logits.shape:
        raise ValueError("logits, ref_probs and rewards must be 1-D tensors of the same length")
    beta = check_positive_scalar(beta, "beta")
    h = torch.log_softmax(logits, -1) - torch.log(ref_probs)
    w = ref_probs[:, None] * ref_probs[None, :] if pair_probs is None else pair_probs
    p_ab = torch.sigmoid(rewards[:, None] - rewards[None, :])  # P(a preferred to b)
    margin = beta * (h[:, None] - h[None, :])
    return -(w * p_ab * F.logsigmoid(margin)).sum() / w.sum()


def train_toy_dpo(ref_probs, rewards, beta: float, steps: int = 2000, lr: float = 0.5) -> torch.Tensor:
    """Minimize :func:`exact_dpo_loss` from ``pi = pi_ref`` by gradient descent; returns the trained policy.

    The book compares the result with ``rlhf_course.objective.optimal_policy(ref_probs, rewards, beta)``.
    """
    ref = torch.as_tensor(ref_probs, dtype=torch.float64)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if bool((ref <= 0).any()):
        raise ValueError("ref_probs must be > 0 everywhere for DPO to see every pair")
    if not (isinstance(steps, int) and steps > 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    logits = torch.log(ref).clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        exact_dpo_loss(logits, ref, r, beta).backward()
        opt.step()
    return torch.softmax(logits.detach(), -1)
