"""The pieces of PPO for RLHF, one implementation each, shared by the toy problems (chapter 5) and the
language-model run (chapter 6). All functions take torch tensors shaped ``(batch, time)`` with a float
``mask`` (1 for real response tokens, 0 for padding), and have no Python loop over tokens.

Notation (chapter 5). For a response ``y_1..y_T`` to prompt ``x``, token ``t`` has log-probabilities
``logp_t = log pi(y_t | x, y_<t)``, ``ref_logp_t`` under ``pi_ref``, ``old_logp_t`` under the policy that
sampled it; ``V_t`` is the value estimate before token ``t``.

    per-token reward     r_t = -beta (logp_t - ref_logp_t) + [t = T] score(x, y)
    TD error             delta_t = r_t + gamma V_{t+1} - V_t,      V_{T+1} = 0
    GAE                  A_t = sum_{s >= t} (gamma lambda)^{s - t} delta_s
    returns              R_t = A_t + V_t
    ratio                rho_t = exp(logp_t - old_logp_t)
    clipped surrogate    L_pi = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))
    clipped value loss   L_V = 1/2 mean_t max((V_t - R_t)^2, (V_old_t + clip(V_t - V_old_t, -eps_v, eps_v) - R_t)^2)
    adaptive beta        beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon)   (Ziegler et al. 2019)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from . import kl as _kl

__all__ = [
    "group_advantages", "aggregate_loss", "kl_loss_terms", "KL_ESTIMATORS", "AGGREGATIONS",
    "masked_mean", "masked_sum", "masked_var", "whiten", "last_token_index", "kl_penalized_rewards",
    "gae", "clipped_policy_loss", "clipped_value_loss", "FixedKLController", "AdaptiveKLController",
]


def _check_bt(name: str, x, like: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor shaped (batch, time), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be shaped (batch, time), got shape {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(like.shape)} like the mask")
    if x.is_floating_point() and torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN")


def _check_mask(mask) -> torch.Tensor:
    _check_bt("mask", mask)
    m = mask.to(torch.float32) if mask.dtype == torch.bool else mask
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must contain only 0 and 1")
    return m


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum_t mask_t x_t`` (over ``dim``, or everything)."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the unmasked entries only: padding never changes it."""
    mask = mask.to(x.dtype)
    if dim is None:
        return masked_sum(x, mask) / mask.sum().clamp(min=1)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the unmasked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        if n < 2:
            raise ValueError("masked_var needs at least two unmasked entries for the unbiased estimate")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalize ``x`` to unit variance over the unmasked entries (and zero mean if ``shift_mean``).

    Padded entries are returned as 0 so that they cannot leak into later sums. The variance is the unbiased
    one; a single unmasked entry has no spread, its variance counts as 0 (it is whitened to 0, or left at its
    value without the shift) instead of raising as :func:`masked_var` does.
    """
    mask = _check_mask(mask).to(x.dtype)
    mean, n = masked_mean(x, mask), mask.sum()
    # n / (n - 1) with n - 1 floored at 1: the same bits as masked_var(x, mask) for n >= 2
    var = masked_var(x, mask, unbiased=False) * n / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (masks are contiguous from the start of the response)."""
    mask = _check_mask(mask)
    lengths = mask.sum(1).long()
    if bool((lengths == 0).any()):
        raise ValueError("every response needs at least one unmasked token to receive its score")
    expect = (torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]).to(mask.dtype)
    if not torch.equal(expect, mask):
        raise ValueError("mask must be 1 on a prefix of each row (the response) and 0 after it (padding)")
    return lengths - 1


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``r_t = -beta (logp_t - ref_logp_t) + [t = T] score``, and the per-token log-ratio.

    The sequence-level score is added at the last real token (the token that completed the response,
    the one whose action the reward model judged); padding gets reward 0. Returns ``(rewards, log_ratio)``,
    both ``(batch, time)`` and zero on padding.
    """
    mask = _check_mask(mask)
    _check_bt("logp", logp, mask)
    _check_bt("ref_logp", ref_logp, mask)
    if not isinstance(score, torch.Tensor) or score.shape != (mask.shape[0],):
        raise ValueError(f"score must be a tensor of shape ({mask.shape[0]},): one score per response")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    # One log-ratio for the package: masks before subtracting, so -inf on padding gives 0, not NaN.
    log_ratio = _kl.masked_log_ratio(logp, ref_logp, mask)
    rewards = -beta * log_ratio
    last = last_token_index(mask)
    rewards = rewards.scatter_add(1, last[:, None], score.to(rewards.dtype)[:, None])
    return rewards * mask, log_ratio


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over each masked response; returns ``(advantages, returns)``.

    The value after the last real token is 0 (the episode ends with the response). Computed as one
    matrix product with the discount matrix ``D[s, t] = (gamma lambda)^(s - t)`` for ``s >= t``: no loop.
    """
    mask = _check_mask(mask)
    _check_bt("rewards", rewards, mask)
    _check_bt("values", values, mask)
    if not (0 <= gamma <= 1 and 0 <= lam <= 1):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    dtype = torch.promote_types(rewards.dtype, values.dtype)  # e.g. float32 values with float64 rewards
    rewards, values, mask = rewards.to(dtype), values.to(dtype), mask.to(dtype)
    values = values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1) * mask.roll(-1, 1)
    next_values[:, -1] = 0.0
    deltas = (rewards + gamma * next_values - values) * mask
    T = rewards.shape[1]
    steps = torch.arange(T, device=rewards.device, dtype=values.dtype)
    power = steps[:, None] - steps[None, :]  # s - t for row s, column t
    discount = torch.where(power >= 0, (gamma * lam) ** power.clamp(min=0), torch.zeros_like(power))
    advantages = (deltas @ discount) * mask
    return advantages, (advantages + values) * mask


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip_eps: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate ``L_pi`` (to minimize), with diagnostics.

    Returns ``(loss, stats)`` with ``stats = {"clipfrac", "approx_kl"}``: the fraction of tokens where the
    clipped term was the active one, and ``mean 1/2 (logp - old_logp)^2``, the drift of this update.
    """
    mask = _check_mask(mask)
    for name, x in (("logp", logp), ("old_logp", old_logp), ("advantages", advantages)):
        _check_bt(name, x, mask)
    if not 0 < clip_eps < 1:
        raise ValueError(f"clip_eps must lie in (0, 1), got {clip_eps}")
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(logp.dtype), mask).item(),
            "approx_kl": masked_mean(_kl.k2_from_log_ratio(log_ratio), mask).item(),
        }
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip_eps: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO's clipped value loss ``L_V`` (to minimize); ``stats = {"vf_clipfrac"}``."""
    mask = _check_mask(mask)
    for name, x in (("values", values), ("old_values", old_values), ("returns", returns)):
        _check_bt(name, x, mask)
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    err, err_clipped = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((err_clipped > err).to(values.dtype), mask).item()}
    return loss, stats


@dataclass
class FixedKLController:
    """A constant KL coefficient ``beta``."""

    beta: float

    def __post_init__(self):
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")

    def update(self, kl: float, n_steps: int) -> float:
        return self.beta


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): steer the observed KL toward ``target`` by moving ``beta``.

    ``beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n_steps / horizon)``: a proportional controller
    whose error is clipped so that one noisy batch cannot swing ``beta`` far.
    """

    beta: float
    target: float
    horizon: float

    def __post_init__(self):
        for name in ("beta", "target", "horizon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

    def update(self, kl: float, n_steps: int) -> float:
        if not math.isfinite(kl):
            raise ValueError(f"observed KL must be finite, got {kl}")
        if isinstance(n_steps, bool) or not (isinstance(n_steps, numbers.Real) and math.isfinite(n_steps)
                                             and n_steps >= 0):
            raise ValueError(f"n_steps must be a finite number >= 0, got {n_steps!r}")
        if 0.2 * n_steps / self.horizon >= 1:
            # the factor 1 - 0.2 n / horizon would be <= 0: beta would change sign or vanish
            raise ValueError(f"n_steps / horizon = {n_steps / self.horizon:g} is too large: it must be < 5 so "
                             f"that beta stays positive")
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta


# --- Critic-free methods (chapter 9): group baselines, loss aggregation, KL in the loss ---------------

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3", "k3-ratio")


def group_advantages(rewards, group_size: int, *, center: str = "mean", scale: str = "std",
                     eps: float = 1e-6):
    """Group-relative advantages for ``B = n_prompts * group_size`` responses, consecutive ones sharing a prompt.

    For response ``i`` of group ``g`` with rewards ``r_1..r_G``:

        center="mean"   A_i = r_i - mean_j r_j                      (GRPO, Dr. GRPO)
        center="loo"    A_i = r_i - 1/(G-1) sum_{j != i} r_j         (RLOO; = G/(G-1) (r_i - mean))
        center="none"   A_i = r_i
        scale="std"     A_i <- A_i / (std_j r_j + eps)               (unbiased std, as torch.std; GRPO)

    A group whose rewards are all equal has std 0 and gets advantages exactly 0 when centred (never NaN).
    Accepts a 1-D numpy array or torch tensor and returns the same kind and shape.
    """
    if center not in ("mean", "loo", "none"):
        raise ValueError(f"center must be 'mean', 'loo' or 'none', got {center!r}")
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    is_np = not isinstance(rewards, torch.Tensor)
    r = torch.as_tensor(rewards) if is_np else rewards
    if not r.is_floating_point():
        r = r.to(torch.get_default_dtype())
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D (n_prompts * group_size,), got shape {tuple(r.shape)}")
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards must be finite (no NaN or inf)")
    if r.numel() == 0 or r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards cannot be split into groups of {group_size}")
    if group_size < 2 and (center == "loo" or scale == "std"):
        raise ValueError(f"center={center!r}, scale={scale!r} needs group_size >= 2, got {group_size}")
    g = r.reshape(-1, group_size)
    mean = g.mean(dim=1, keepdim=True)
    if center == "mean":
        a = g - mean
    elif center == "loo":
        a = g - (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)
    else:
        a = g
    if scale == "std":
        std = g.std(dim=1, keepdim=True)
        a = a / (std + eps)
        if center != "none":
            # An all-equal group: the centred rewards are rounding noise; make them exactly 0.
            a = torch.where(std == 0, torch.zeros_like(a), a)
    out = a.reshape(-1)
    return out.numpy() if is_np else out


def aggregate_loss(per_token_loss: torch.Tensor, mask: torch.Tensor, mode: str, *,
                   max_len: int | None = None) -> torch.Tensor:
    """Reduce a ``(batch, time)`` per-token loss ``l_{i,t}`` over real tokens to a scalar (verl's mode names).

        "token-mean"                sum_{i,t} m_{i,t} l_{i,t} / sum_{i,t} m_{i,t}          (DAPO)
        "seq-mean-token-mean"       1/B sum_i [sum_t m_{i,t} l_{i,t} / sum_t m_{i,t}]      (GRPO as published)
        "seq-mean-token-sum-norm"   1/B sum_i [sum_t m_{i,t} l_{i,t} / max_len]            (Dr. GRPO)

    ``max_len`` (a constant, e.g. the maximum response length) defaults to the time dimension.
    """
    mask = _check_mask(mask)
    _check_bt("per_token_loss", per_token_loss, mask)
    if mode not in AGGREGATIONS:
        raise ValueError(f"mode must be one of {AGGREGATIONS}, got {mode!r}")
    mask = mask.to(per_token_loss.dtype)
    if mode == "token-mean":
        return masked_sum(per_token_loss, mask) / mask.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        return (masked_sum(per_token_loss, mask, 1) / mask.sum(1).clamp(min=1)).mean()
    if max_len is None:
        max_len = per_token_loss.shape[1]
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    return (masked_sum(per_token_loss, mask, 1) / max_len).mean()


def kl_loss_terms(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str, *,
                  old_logp: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token KL terms to add to the loss (times beta), for tokens sampled from ``pi_old``.

    With ``x_t = logp_t - ref_logp_t`` (built on ``kl.k1``/``kl.k2``/``kl.k3``):

        "k1"        x_t                      (its gradient is the score function times 1, not the KL's)
        "k2"        x_t^2 / 2                (gradient on-policy = gradient of KL(pi || pi_ref))
        "k3"        exp(-x_t) - 1 + x_t
        "k3-ratio"  rho_t * k3_t,  rho_t = exp(logp_t - old_logp_t), the importance ratio (pi_theta / pi_old),
                    as TRL's GRPO trainer weights the KL when sampling is off-policy

    ``logp`` carries the gradient; ``ref_logp`` and ``old_logp`` are treated as constants (detached).
    Returns a tensor of ``logp``'s shape; aggregate it with ``aggregate_loss`` and the mask.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    if not isinstance(logp, torch.Tensor) or not isinstance(ref_logp, torch.Tensor):
        raise TypeError("logp and ref_logp must be torch tensors")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} differ in shape")
    ref_logp = ref_logp.detach()
    if estimator == "k1":
        return _kl.k1(logp, ref_logp)
    if estimator == "k2":
        return _kl.k2(logp, ref_logp)
    k3 = _kl.k3(logp, ref_logp)
    if estimator == "k3":
        return k3
    if old_logp is None:
        raise ValueError("estimator 'k3-ratio' needs old_logp (the sampling policy's log-probabilities)")
    if not isinstance(old_logp, torch.Tensor) or old_logp.shape != logp.shape:
        raise ValueError("old_logp must be a torch tensor shaped like logp")
    return torch.exp(logp - old_logp.detach()) * k3
