"""Critic-free updates (RLOO, GRPO, Dr. GRPO) and best-of-n on a bandit with several prompts, exactly.

The problem is :func:`rlhf_course.toy.make_bandit`'s: prompts ``x``, ``K`` outputs each, a reference
``pi_ref(y | x)`` and a reward ``r(x, y)``; the policy is one row of logits ``theta_x`` per prompt, so
``grad_theta log pi(y | x) = e_y - pi(. | x)``. A critic-free update draws a *group* of ``G`` responses per
prompt from ``pi_old``, turns their rewards into advantages with :func:`rlhf_course.rl.group_advantages`
and ascends

    L(theta) = mean_i min(rho_i A_i, clip(rho_i, 1 - eps, 1 + eps) A_i) - beta mean_i k(y_i; theta),
    rho_i = pi_theta(y_i | x) / pi_old(y_i | x),

with ``k`` one of the KL terms of :func:`rlhf_course.rl.kl_loss_terms` (or no term, with the KL in the
reward: ``f(y) = r(y) - beta log(pi_old(y) / pi_ref(y))`` replaces ``r``). Because an advantage depends only
on the group, the *expected* update can be computed exactly: a group is a multiset of outputs, drawn with
its multinomial probability, and there are only ``C(G + K - 1, K - 1)`` of them. Everything reduces to the
expected advantage mass on each output,

    W^+(y) = E[ 1/G sum_i max(A_i, 0) [y_i = y] ],    W^-(y) = E[ 1/G sum_i min(A_i, 0) [y_i = y] ],

after which the expected gradient of the surrogate at any ``theta`` is
``sum_y (W^+(y) [rho(y) <= 1 + eps] + W^-(y) [rho(y) >= 1 - eps]) rho(y) (e_y - pi_theta)``. Iterating the
expected update gives the fixed point each variant converges to, free of sampling noise
(:func:`fixed_point`); :func:`gradient_moments` gives the mean and the exact variance of one group's
gradient estimate. Everything is float64 on the CPU.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from . import rl
from .kl import kl_divergence
from .objective import optimal_policy
from .toy import TabularProblem, beta_for_kl, make_bandit

__all__ = [
    "DEFAULT_REF", "DEFAULT_REWARDS", "make_group_bandit", "compositions", "group_probs", "advantage_weights",
    "gradient_moments", "kl_gradient", "expected_direction", "fixed_point", "tv_per_prompt",
    "nearest_optimum", "reward_std", "best_of_n_table", "variance_by_group_size", "kl_placement_errors",
    "PLACEMENTS", "CENTERS", "SCALES",
]

DTYPE = torch.float64
CENTERS = ("mean", "loo", "none", "value")  # "value": subtract the exact E_pi f (chapter 5's V^pi)
SCALES = ("std", "none")
PLACEMENTS = ("reward", "k1", "k2", "k3", "k3-ratio", "exact", "none")

# Three prompts: chapter 4's case; the same rewards on a scale ten times smaller; a hard prompt with a
# right answer (reward 1) that the reference gives 10% and two wrong ones (reward 0).
DEFAULT_REF = ((0.5, 0.3, 0.2), (0.5, 0.3, 0.2), (0.1, 0.45, 0.45))
DEFAULT_REWARDS = ((1.0, 0.0, -1.0), (0.1, 0.0, -0.1), (1.0, 0.0, 0.0))


def make_group_bandit(ref_probs=DEFAULT_REF, rewards=DEFAULT_REWARDS) -> TabularProblem:
    """The chapter's bandit (:func:`rlhf_course.toy.make_bandit` with :data:`DEFAULT_REF`,
    :data:`DEFAULT_REWARDS`): prompts whose rewards have very different spreads under the reference."""
    return make_bandit(ref_probs, rewards)


def _check_problem(problem) -> None:
    if not isinstance(problem, TabularProblem) or problem.length != 1:
        raise TypeError("problem must be a bandit (rlhf_course.toy.make_bandit / make_group_bandit)")


def _check_probs(problem: TabularProblem, probs) -> torch.Tensor:
    p = torch.as_tensor(probs, dtype=DTYPE)
    if tuple(p.shape) != tuple(problem.scores.shape):
        raise ValueError(f"probs must have shape (prompts, K) = {tuple(problem.scores.shape)}, "
                         f"got {tuple(p.shape)}")
    if (p < 0).any() or not torch.allclose(p.sum(-1), torch.ones(p.shape[0], dtype=DTYPE), atol=1e-9):
        raise ValueError("every row of probs must be >= 0 and sum to 1")
    return p


def _check_group(group_size, center: str, scale: str) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an int >= 2, got {group_size!r}")
    if group_size > 64:
        raise ValueError(f"group_size {group_size} is too large to enumerate here (at most 64)")
    if center not in CENTERS:
        raise ValueError(f"center must be one of {CENTERS}, got {center!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


@lru_cache(maxsize=64)
def compositions(K: int, G: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every group of ``G`` draws from ``K`` outputs, as a multiset: ``(counts (C, K), samples (C, G),
    log_coef (C,))`` with ``samples`` the outputs in ascending order and ``log_coef = log G! / prod_k c_k!``."""
    rows: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...], left: int) -> None:
        if len(prefix) == K - 1:
            rows.append(prefix + (left,))
            return
        for c in range(left, -1, -1):
            grow(prefix + (c,), left - c)

    grow((), G)
    counts = torch.tensor(rows, dtype=torch.long)
    samples = torch.stack([torch.repeat_interleave(torch.arange(K), c) for c in counts])
    log_coef = torch.tensor([math.lgamma(G + 1) - sum(math.lgamma(c + 1) for c in r) for r in rows],
                            dtype=DTYPE)
    return counts, samples, log_coef


def group_probs(probs: torch.Tensor, G: int) -> torch.Tensor:
    """Multinomial probability of every group of :func:`compositions` under each prompt's ``probs``: ``(P, C)``."""
    counts, _, log_coef = compositions(probs.shape[-1], G)
    logp = torch.xlogy(counts[None].to(DTYPE), probs[:, None, :]).sum(-1)  # 0 log 0 = 0
    return torch.exp(log_coef[None] + logp)


def _rewards(problem: TabularProblem, probs_old: torch.Tensor, beta_in_reward: float) -> torch.Tensor:
    """``f(y) = r(y) - beta log(pi_old(y) / pi_ref(y))`` (``r`` itself when ``beta_in_reward`` is 0)."""
    if beta_in_reward == 0:
        return problem.scores
    return problem.scores - beta_in_reward * (torch.log(probs_old) - torch.log(problem.ref_probs))


def _group_advantages(problem, probs_old, G, center, scale, beta_in_reward, eps):
    """Advantages of every group: ``(P, C, G)``, with the groups' probabilities ``(P, C)``."""
    _, samples, _ = compositions(problem.vocab, G)
    f = _rewards(problem, probs_old, beta_in_reward)
    if center == "value":  # the exact baseline E_pi f, then group_advantages without centering
        f = f - (probs_old * f).sum(-1, keepdim=True)
    r = f[:, samples]  # (P, C, G)
    adv = rl.group_advantages(r.reshape(-1), G, center="none" if center == "value" else center,
                              scale=scale, eps=eps)
    return adv.reshape(r.shape), group_probs(probs_old, G)


def advantage_weights(problem: TabularProblem, probs_old, group_size: int, center: str = "mean",
                      scale: str = "std", beta_in_reward: float = 0.0,
                      eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W^+, W^-)``, each ``(P, K)``: the expected positive and negative advantage mass on each output,
    ``W^+(y) = E[1/G sum_i max(A_i, 0) [y_i = y]]`` over groups of ``group_size`` draws from ``probs_old``.

    ``center``/``scale`` are :func:`rlhf_course.rl.group_advantages`'s (``center="value"`` subtracts the
    exact ``E_pi f`` instead); ``beta_in_reward > 0`` puts the KL in the reward.
    """
    _check_problem(problem)
    p = _check_probs(problem, probs_old)
    _check_group(group_size, center, scale)
    adv, w = _group_advantages(problem, p, group_size, center, scale, float(beta_in_reward), eps)
    _, samples, _ = compositions(problem.vocab, group_size)
    onehot = torch.nn.functional.one_hot(samples, problem.vocab).to(DTYPE)  # (C, G, K)
    pos = torch.einsum("pc,pcg,cgk->pk", w, adv.clamp(min=0), onehot) / group_size
    neg = torch.einsum("pc,pcg,cgk->pk", w, adv.clamp(max=0), onehot) / group_size
    return pos, neg


def gradient_moments(problem: TabularProblem, probs, group_size: int, center: str = "loo",
                     scale: str = "none", beta_in_reward: float = 0.0,
                     eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(P, K)`` and total variance ``(P,)`` (trace of the covariance) of one group's on-policy
    gradient estimate ``g = 1/G sum_i A_i grad_theta log pi(y_i)``, ``grad log pi(y) = e_y - pi``, exactly."""
    _check_problem(problem)
    p = _check_probs(problem, probs)
    _check_group(group_size, center, scale)
    adv, w = _group_advantages(problem, p, group_size, center, scale, float(beta_in_reward), eps)
    _, samples, _ = compositions(problem.vocab, group_size)
    onehot = torch.nn.functional.one_hot(samples, problem.vocab).to(DTYPE)  # (C, G, K)
    score = onehot[None] - p[:, None, None, :]  # (P, C, G, K)
    g = (adv[..., None] * score).mean(2)  # (P, C, K)
    mean = (w[..., None] * g).sum(1)
    var = (w * ((g - mean[:, None]) ** 2).sum(-1)).sum(1)
    return mean, var


def kl_gradient(problem: TabularProblem, logits, old_logits, placement: str) -> torch.Tensor:
    """Expected gradient, on responses drawn from ``pi_old``, of the KL part of the loss: ``(P, K)``.

    ``"exact"``: ``grad KL(pi_theta || pi_ref)`` itself; ``"k1"``, ``"k2"``, ``"k3"``, ``"k3-ratio"``:
    ``grad_theta sum_y pi_old(y) k(y; theta)`` with ``k`` from :func:`rlhf_course.rl.kl_loss_terms`;
    ``"reward"``: the KL folded into the reward at rollout, ``-log(pi_old / pi_ref)``, as the surrogate
    differentiates it, ``grad_theta sum_y pi_old(y) rho(y) log(pi_old(y) / pi_ref(y))``; ``"none"``: 0.
    """
    _check_problem(problem)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    theta = torch.as_tensor(logits, dtype=DTYPE).detach().clone().requires_grad_(True)
    old = torch.log_softmax(torch.as_tensor(old_logits, dtype=DTYPE), -1).detach()
    logp = torch.log_softmax(theta, -1)
    ref = torch.log(problem.ref_probs)
    if placement == "none":
        return torch.zeros_like(theta)
    if placement == "exact":
        loss = kl_divergence(torch.exp(logp), problem.ref_probs).sum()
    elif placement == "reward":
        loss = (torch.exp(old) * torch.exp(logp - old) * (old - ref)).sum()
    else:
        terms = rl.kl_loss_terms(logp, ref, placement, old_logp=old)
        loss = (torch.exp(old) * terms).sum()
    (g,) = torch.autograd.grad(loss, theta)
    return g


def expected_direction(problem: TabularProblem, logits, old_logits, weights, beta: float, placement: str,
                       clip_eps: float | None = None) -> torch.Tensor:
    """The expected ascent direction of the loss at ``logits`` for a batch drawn at ``old_logits``:
    the surrogate's part from ``weights = (W^+, W^-)`` minus ``beta`` times :func:`kl_gradient` (none for
    ``placement="reward"``, whose KL is inside the weights)."""
    theta = torch.as_tensor(logits, dtype=DTYPE)
    pi = torch.softmax(theta, -1)
    rho = pi / torch.softmax(torch.as_tensor(old_logits, dtype=DTYPE), -1)
    pos, neg = weights
    if clip_eps is not None:  # a token whose ratio passed the clip in its advantage's direction: no gradient
        pos = torch.where(rho <= 1 + clip_eps, pos, torch.zeros_like(pos))
        neg = torch.where(rho >= 1 - clip_eps, neg, torch.zeros_like(neg))
    c = (pos + neg) * rho
    direction = c - c.sum(-1, keepdim=True) * pi
    if placement not in ("reward", "none"):
        direction = direction - beta * kl_gradient(problem, theta, old_logits, placement)
    return direction


def _on_policy_residual(problem, theta, beta, group_size, center, scale, placement, clip_eps, eps):
    w = advantage_weights(problem, torch.softmax(theta, -1), group_size, center, scale,
                          beta if placement == "reward" else 0.0, eps)
    return expected_direction(problem, theta, theta, w, beta, placement, clip_eps)


def _polish(problem, theta, beta, group_size, center, scale, placement, clip_eps, eps):
    """Newton-type root finding (scipy's hybrid method) on the on-policy expected update, from ``theta``
    (each prompt's last logit held at 0: logits are defined up to a constant)."""
    from scipy import optimize

    P, K = theta.shape

    def full(z):
        th = torch.zeros(P, K, dtype=DTYPE)
        th[:, :-1] = torch.as_tensor(np.clip(np.nan_to_num(z), -60.0, 60.0).reshape(P, K - 1))
        return th

    def F(z):
        d = _on_policy_residual(problem, full(z), beta, group_size, center, scale, placement, clip_eps, eps)
        return d[:, :-1].reshape(-1).numpy()

    z0 = (theta - theta[:, -1:])[:, :-1].reshape(-1).numpy()
    try:
        sol = optimize.root(F, z0, method="hybr", tol=1e-14)
    except ValueError:  # a trial point the update cannot be evaluated at: keep the iterate
        return theta
    return full(sol.x)


def fixed_point(problem: TabularProblem, beta: float, group_size: int, center: str = "mean",
                scale: str = "std", placement: str = "k3-ratio", ppo_epochs: int = 1, lr: float = 1.0,
                iterations: int = 400, clip_eps: float | None = None, init=None, polish: bool = True,
                eps: float = 1e-6) -> dict:
    """Where the expected update of a variant leads: ``iterations`` iterations of the expected update
    (``ppo_epochs`` plain gradient steps of size ``lr`` per batch drawn at ``pi_old``) from ``pi_ref`` (or
    ``init`` logits), then, with ``polish``, a root of the on-policy expected update found from there
    (kept only where it is closer to stationary and within total variation 0.05 of the iterate).

    A fixed point of the multi-epoch iteration has ``pi = pi_old`` and ratio 1 for every output, so it is
    a zero of the on-policy update: the residual returned is that update's largest entry. Returns
    ``probs`` ``(P, K)``, ``path`` ``(iterations + 1, P, K)`` and ``residual``.
    """
    _check_problem(problem)
    _check_group(group_size, center, scale)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if isinstance(beta, bool) or not (isinstance(beta, (int, float)) and beta >= 0):
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    if isinstance(ppo_epochs, bool) or not isinstance(ppo_epochs, int) or ppo_epochs < 1:
        raise ValueError(f"ppo_epochs must be an int >= 1, got {ppo_epochs!r}")
    theta = (torch.log(problem.ref_probs) if init is None else torch.as_tensor(init, dtype=DTYPE)).clone()
    path = [torch.softmax(theta, -1)]
    args = (beta, group_size, center, scale, placement, clip_eps, eps)
    for _ in range(iterations):
        old = theta.clone()
        w = advantage_weights(problem, torch.softmax(old, -1), group_size, center, scale,
                              beta if placement == "reward" else 0.0, eps)
        for _ in range(ppo_epochs):
            theta = theta + lr * expected_direction(problem, theta, old, w, beta, placement, clip_eps)
        theta = theta - theta.mean(-1, keepdim=True)  # logits are defined up to a constant per prompt
        path.append(torch.softmax(theta, -1))
    residual = float(_on_policy_residual(problem, theta, *args).abs().max())
    if polish:
        cand = _polish(problem, theta, *args)
        res = float(_on_policy_residual(problem, cand, *args).abs().max())
        close = float(tv_per_prompt(torch.softmax(cand, -1), torch.softmax(theta, -1)).max()) < 0.05
        if res < residual and close:
            theta, residual = cand, res
    return {"probs": torch.softmax(theta, -1), "path": torch.stack(path), "residual": residual}


def tv_per_prompt(p, q) -> np.ndarray:
    """``1/2 sum_y |p(y | x) - q(y | x)|`` for each prompt: ``(P,)``."""
    p, q = torch.as_tensor(p, dtype=DTYPE), torch.as_tensor(q, dtype=DTYPE)
    return (0.5 * (p - q).abs().sum(-1)).numpy()


def reward_std(problem: TabularProblem, probs) -> np.ndarray:
    """``sigma_x(pi) = sqrt(Var_{y ~ pi(. | x)} r(x, y))`` per prompt: ``(P,)``."""
    p = _check_probs(problem, probs)
    mu = (p * problem.scores).sum(-1, keepdim=True)
    return torch.sqrt((p * (problem.scores - mu) ** 2).sum(-1)).numpy()


def nearest_optimum(problem: TabularProblem, probs, lo: float = 1e-3, hi: float = 1e3) -> dict:
    """Per prompt, the ``beta'`` whose ``pi*_{beta'}`` is closest to ``probs`` in total variation (golden
    section on ``log beta'``), that ``beta'`` and the distance: ``{"beta": (P,), "tv": (P,)}``."""
    p = _check_probs(problem, probs)
    betas, tvs = [], []
    for x in range(problem.n_prompts):
        def dist(log_b, x=x):
            opt = optimal_policy(problem.ref_probs[x], problem.scores[x], math.exp(log_b))
            return float(0.5 * (opt - p[x]).abs().sum())

        grid = np.linspace(math.log(lo), math.log(hi), 241)
        i = int(np.argmin([dist(g) for g in grid]))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        g = (math.sqrt(5) - 1) / 2
        for _ in range(80):
            c, d = b - g * (b - a), a + g * (b - a)
            a, b = (a, d) if dist(c) < dist(d) else (c, b)
        betas.append(math.exp(0.5 * (a + b)))
        tvs.append(dist(0.5 * (a + b)))
    return {"beta": np.asarray(betas), "tv": np.asarray(tvs)}


def best_of_n_table(ref_probs, rewards, ns) -> dict[str, np.ndarray]:
    """For each ``n``: the exact best-of-n policy's KL from the reference, the bound
    ``log n - (n - 1)/n``, its expected reward, the reward of ``pi*_beta`` at the same KL (the ``beta``
    found by bisection) and the total variation between the two. ``ref_probs``, ``rewards``: ``(K,)``."""
    from .objective import best_of_n_policy

    ref = torch.as_tensor(np.asarray(ref_probs, dtype=np.float64))
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float64))
    problem = make_bandit(ref[None], r[None])
    out: dict[str, list] = {k: [] for k in ("n", "kl", "bound", "reward", "opt_reward", "opt_beta", "tv")}
    for n in ns:
        bon = torch.as_tensor(best_of_n_policy(ref.numpy(), r.numpy(), int(n)))
        kl = float(kl_divergence(bon, ref))
        out["n"].append(int(n))
        out["kl"].append(kl)
        out["bound"].append(math.log(n) - (n - 1) / n)
        out["reward"].append(float((bon * r).sum()))
        if kl <= 0:
            opt, b = ref, math.inf
        else:
            b = beta_for_kl(problem, kl)
            opt = optimal_policy(ref, r, b)
        out["opt_beta"].append(b)
        out["opt_reward"].append(float((opt * r).sum()))
        out["tv"].append(float(0.5 * (opt - bon).abs().sum()))
    return {k: np.asarray(v) for k, v in out.items()}


def variance_by_group_size(problem: TabularProblem, probs, sizes, centers=("none", "value", "mean", "loo"),
                           prompt: int = 0) -> dict[str, np.ndarray]:
    """The exact total variance of one group's gradient estimate on ``prompt`` for each group size and
    centering (no scaling): ``{center: (len(sizes),)}``, plus ``"rloo_excess"``, the closed form of RLOO's
    variance above the true-value baseline's, ``(sigma^2 E|e_y - pi|^2 + |grad J|^2) / (G (G - 1))``."""
    p = _check_probs(problem, probs)
    out = {c: np.array([float(gradient_moments(problem, p, int(G), c, "none")[1][prompt]) for G in sizes])
           for c in centers}
    grad = gradient_moments(problem, p, 2, "value", "none")[0][prompt]
    r, q = problem.scores[prompt], p[prompt]
    sigma2 = float((q * (r - (q * r).sum()) ** 2).sum())
    spread = float(1 - (q ** 2).sum())
    out["rloo_excess"] = np.array([(sigma2 * spread + float((grad ** 2).sum())) / (G * (G - 1)) for G in sizes])
    return out


def kl_placement_errors(problem: TabularProblem, old_logits, beta: float, group_size: int = 4, ppo_epochs: int = 4,
                        lr: float = 2.0, placements=("reward", "k1", "k2", "k3", "k3-ratio")) -> dict:
    """From ``pi_old``, take ``ppo_epochs - 1`` expected steps of the RLOO surrogate with the unbiased KL term
    (``k3-ratio``), and at each epoch compare every placement's expected KL gradient (:func:`kl_gradient`)
    with the true ``grad KL(pi_theta || pi_ref)``: cosine (NaN where the expected gradient is 0) and relative
    error ``|g - grad KL| / |grad KL|``, over all prompts' logits. Also ``step_kl``: ``KL(pi_old || pi_theta)``
    (largest over prompts) at each epoch."""
    old = torch.as_tensor(old_logits, dtype=DTYPE)
    theta = old.clone()
    w = advantage_weights(problem, torch.softmax(old, -1), group_size, "loo", "none")
    out: dict = {pl: {"cos": [], "rel": []} for pl in placements}
    out["step_kl"] = []
    for e in range(ppo_epochs):
        true = kl_gradient(problem, theta, theta, "exact")
        for pl in placements:
            g = kl_gradient(problem, theta, old, pl)
            small = float(g.norm()) < 1e-12 * float(true.norm())
            out[pl]["cos"].append(float("nan") if small else float((g * true).sum() / (g.norm() * true.norm())))
            out[pl]["rel"].append(float((g - true).norm() / true.norm()))
        out["step_kl"].append(float(kl_divergence(torch.softmax(old, -1), torch.softmax(theta, -1)).max()))
        theta = theta + lr * expected_direction(problem, theta, old, w, beta, "k3-ratio")
    return {k: ({m: np.asarray(v) for m, v in d.items()} if isinstance(d, dict) else np.asarray(d))
            for k, d in out.items()}
