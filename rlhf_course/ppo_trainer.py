"""Stage 3 of chapter 6: PPO for a language model, against the learned reward model, with a KL penalty.

One iteration, following the published implementation details of RLHF with PPO (Ziegler et al. 2019; the
"N implementation details of RLHF with PPO"), with the functions of chapter 5 (:mod:`rlhf_course.rl`):

1. **Rollout.** Sample ``batch_size`` prompts and one response each from the policy at temperature ``tau``,
   batched, with the KV cache (:func:`rlhf_course.gpt.generate`). A response ends at ``<eos>`` or after
   ``max_new_tokens``; after its end it holds the distinct ``<pad>`` token, which the mask excludes.
2. **Score.** One forward pass of the policy gives ``old_logp_t = log softmax(logits_t / tau)[y_t]`` and the
   values ``V_t``; one of the frozen reference gives ``ref_logp_t`` at the same temperature; the reward
   model gives one score per response. The gold reward is computed too, for the logs only.
3. **Rewards.** ``r_t = -beta (old_logp_t - ref_logp_t) + [t = T_last] score``: the KL penalty on every
   token, the score on the **last real token** of the response (its ``<eos>``, or its last token when it
   was cut off), the action that completed what the reward model judged (:func:`rl.kl_penalized_rewards`).
   Optionally the rewards are whitened (scaled to unit variance, mean kept).
4. **Advantages.** GAE with ``gamma`` and ``lam`` (GAE's lambda) over each response, value 0 after its end
   (:func:`rl.gae`); advantages whitened over the batch's real tokens.
5. **Update.** ``ppo_epochs`` passes over the batch in ``minibatches`` shuffled minibatches: the clipped
   policy loss plus ``vf_coef`` times the clipped value loss (:func:`rl.clipped_policy_loss`,
   :func:`rl.clipped_value_loss`), Adam with ``eps=1e-5``, gradient norm clipped. Every operation is
   batched over tokens: there is no Python loop over positions in the update.
6. **beta.** Fixed, or adapted toward a target KL (:class:`rl.AdaptiveKLController`).

The value function is a scalar head on the policy's own trunk (``shared_value=True``, the default),
initialized to zero; sharing the trunk halves the update's cost, measured in ``benchmarks/ppo.py``.
``shared_value=False`` trains a separate value model (a copy of the reference model's trunk with a zero head).
No dropout anywhere (the tiny GPT has none).

This module is the configuration, the batch and the trainer; :mod:`rlhf_course.ppo` runs them (the stages,
the metrics file, checkpoints, evaluation, the command line) and is where the book imports them from.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import check_config_ints, check_config_number
from .gpt import GPT, _response_logprobs, generate
from .rl import (AdaptiveKLController, FixedKLController, gae, kl_penalized_rewards, masked_mean, masked_var,
                 whiten)
from .runs import adam, autocast, grad_scaler, scaled_step

__all__ = ["PPOConfig", "PPOBatch", "PPOTrainer", "sample_rollout"]


@dataclass(frozen=True)
class PPOConfig:
    """Every knob of the PPO stage. Bad values raise ``ValueError`` naming the field and the valid range."""

    iterations: int = 120
    batch_size: int = 64          # episodes (prompt, response) per iteration
    minibatches: int = 1          # per PPO epoch
    ppo_epochs: int = 4
    max_new_tokens: int = 16
    temperature: float = 1.0      # sampling temperature; log-probabilities use the same one
    lr: float = 1e-4
    beta: float = 0.3             # KL coefficient (the starting value when adaptive)
    target_kl: float | None = None  # set: adapt beta toward this sequence KL (nats); None: beta fixed
    kl_horizon: float = 10_000.0  # adaptive controller's horizon, in episodes
    gamma: float = 1.0
    lam: float = 0.95
    clip_eps: float = 0.2
    vf_clip_eps: float = 0.2
    vf_coef: float = 0.1
    whiten_rewards: bool = False
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    shared_value: bool = True     # value head on the policy's trunk (True) or a separate value model
    missing_eos_penalty: float = 0.0  # subtracted from the score of responses cut off without <eos>
    checkpoint_every: int = 25
    log_samples: int = 4
    seed: int = 0

    def __post_init__(self):
        check_config_ints(self, "iterations", "batch_size", "minibatches", "ppo_epochs", "max_new_tokens",
                          "checkpoint_every")
        if not (isinstance(self.log_samples, int) and 0 <= self.log_samples <= self.batch_size):
            raise ValueError(f"PPOConfig.log_samples must be an integer in [0, batch_size], got {self.log_samples!r}")
        if self.batch_size % self.minibatches:
            raise ValueError(f"PPOConfig.batch_size ({self.batch_size}) must be divisible by minibatches "
                             f"({self.minibatches})")

        check_config_number(self, "temperature", 0, lo_open=True)
        check_config_number(self, "lr", 0, 1, lo_open=True, hi_open=True)
        check_config_number(self, "beta", 0)
        check_config_number(self, "kl_horizon", 0, lo_open=True)
        check_config_number(self, "gamma", 0, 1)
        check_config_number(self, "lam", 0, 1)
        check_config_number(self, "clip_eps", 0, 1, lo_open=True, hi_open=True)
        check_config_number(self, "vf_clip_eps", 0, lo_open=True)
        check_config_number(self, "vf_coef", 0)
        check_config_number(self, "max_grad_norm", 0, lo_open=True)
        check_config_number(self, "missing_eos_penalty", 0)
        if self.target_kl is not None:
            check_config_number(self, "target_kl", 0, lo_open=True)
            if self.beta <= 0:
                raise ValueError("PPOConfig.beta must be > 0 when target_kl is set (the adaptive controller "
                                 "multiplies it)")
        for name in ("whiten_rewards", "whiten_advantages", "shared_value"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PPOConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"PPOConfig.seed must be an integer, got {self.seed!r}")


@dataclass
class PPOBatch:
    """One iteration's episodes, filled in the order :meth:`PPOTrainer.step` computes them.

    Per-token tensors are ``(B, R)`` over the response (``R`` the batch's longest) and exactly 0 on padding.
    """

    tokens: torch.Tensor          # (B, P + R) prompt and response; <pad> after a response's end
    mask: torch.Tensor            # (B, R) 1 on real response tokens
    # 2. score: one forward pass each of the policy, the reference and the reward model
    score: torch.Tensor           # (B,) reward model score, minus missing_eos_penalty when cut off
    finished: torch.Tensor        # (B,) the response ended with <eos>
    old_logp: torch.Tensor        # log pi_old(y_t | s_t), the policy that sampled (temperature tau)
    ref_logp: torch.Tensor        # log pi_ref(y_t | s_t)
    old_values: torch.Tensor      # V_old(s_t)
    # 3. rewards
    beta: float = math.nan        # the KL coefficient the rewards used
    rewards: torch.Tensor | None = None   # r_t = -beta log(pi_old / pi_ref)_t + [t = T_last] score
    kl_k1: torch.Tensor | None = None     # (B,) sequence KL estimate sum_t log rho_t, rho = pi_old / pi_ref
    kl_k3: torch.Tensor | None = None     # (B,) sum_t (1 / rho_t - 1) + log rho_t, from the same log-ratio
    # 4. advantages
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None   # A_t + V_old(s_t) before whitening: the value targets
    explained_variance: torch.Tensor | float = math.nan  # of the returns by V_old; a float after step
    # 5. update
    stats: dict = field(default_factory=dict)    # the update's statistics, means over its minibatches
    timings: dict = field(default_factory=dict)  # seconds per phase


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero at padding, whatever ``x`` holds there (banned-token log-probabilities are about -1e9)."""
    return torch.where(mask.bool(), x, torch.zeros_like(x))


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(R - V) / Var(R)`` over real tokens: 1 when the values predict the returns, <= 0 when useless;
    NaN when the returns do not vary. A 0-d tensor on the batch's device (no host transfer here)."""
    var_r = masked_var(returns, mask, unbiased=False)
    ev = 1.0 - masked_var(returns - values, mask, unbiased=False) / var_r
    return torch.where(var_r > 0, ev, torch.full_like(ev, float("nan")))


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor moved to ``device``; to CUDA through pinned memory without blocking (a plain ``.to`` from
    pageable memory waits for the GPU to finish its queue: a host-device sync)."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def sample_rollout(policy: GPT, prompts: torch.Tensor, max_new_tokens: int, temperature: float, eos_id, pad_id,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One response per prompt row, sampled at ``temperature`` (mixed precision where it pays): ``tokens``
    ``(B, P + R)`` and the response ``mask`` ``(B, R)``, cut after the longest response, ``R``, so that later
    passes do not run over columns of padding only."""
    with autocast(prompts.device):
        tokens, mask, _ = generate(policy, prompts, max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                                   temperature=temperature, generator=generator)
    R = int(mask.sum(1).max())  # one host read per rollout
    return tokens[:, :prompts.shape[1] + R], mask[:, :R]


def _ppo_losses(logp, old_logp, advantages, values, old_values, returns, m, clip_eps: float, vf_clip_eps: float):
    """:func:`rl.clipped_policy_loss` and :func:`rl.clipped_value_loss` on one minibatch, the same operations
    in the same order (a test checks the results are bitwise equal), with the statistics kept as 0-d tensors
    and without the input checks: those read values back to the host (a sync per check on a GPU), and the
    trainer's inputs were checked once per iteration, where :meth:`PPOTrainer.score` made them.

    Returns ``(pg_loss, vf_loss, clipfrac, approx_kl, vf_clipfrac)``.
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg_loss = masked_mean(torch.maximum(unclipped, clipped), m)
    v_clipped = old_values + torch.clamp(values - old_values, -vf_clip_eps, vf_clip_eps)
    err, err_clipped = (values - returns) ** 2, (v_clipped - returns) ** 2
    vf_loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), m)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(logp.dtype), m)
        approx_kl = masked_mean(0.5 * log_ratio ** 2, m)
        vf_clipfrac = masked_mean((err_clipped > err).to(values.dtype), m)
    return pg_loss, vf_loss, clipfrac, approx_kl, vf_clipfrac


_STATS = ("policy_loss", "value_loss", "clipfrac", "approx_kl", "vf_clipfrac", "entropy")


class PPOTrainer:
    """The state of a PPO run (models, optimizer, beta, random stream) and its iteration, :meth:`step`.

    ``reward_fn(tokens, mask, prompt_len) -> (B,)`` scores responses (the reward model). ``prompts`` are
    the ``(N, P)`` prompts episodes are drawn from. With ``value_model=None`` the policy must have a value
    head (the shared trunk); otherwise ``value_model`` (a GPT with a value head) is trained beside it.

    ``compile=True`` runs the full-sequence forward passes (scoring and the update, forward and backward)
    through ``torch.compile``; generation (one position at a time with the cache) stays eager. Compiled
    kernels round differently: such a run is not bitwise equal to an eager one.

    Host-device syncs per iteration (what makes a GPU wait for Python): one per generated token (has every
    response ended?), read asynchronously on CUDA while the next token's forward pass runs; one for the
    batch's longest response; the input checks of the :mod:`rl` functions in :meth:`rewards` and
    :meth:`advantages`; one transfer of the update's statistics; one of the iteration's scalars in :meth:`step`.
    The forward passes skip the public functions' input checks (:func:`rlhf_course.gpt._response_logprobs`):
    their inputs are the trainer's own tensors.
    """

    def __init__(self, cfg: PPOConfig, policy: GPT, reference: GPT, reward_fn, prompts: torch.Tensor,
                 eos_id: int | None, pad_id: int, value_model: GPT | None = None, compile: bool = False):
        if value_model is None and policy.value_head is None:
            raise ValueError("the policy needs a value head when no separate value model is given")
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.cfg, self.policy, self.reference, self.reward_fn = cfg, policy, reference, reward_fn
        self.value_model, self.prompts, self.eos_id, self.pad_id = value_model, prompts, eos_id, pad_id
        self.device = prompts.device
        reference.eval().requires_grad_(False)
        self.params = list(policy.parameters()) + (list(value_model.parameters()) if value_model is not None else [])
        self.opt = adam(self.params, cfg.lr, self.device)
        self.scaler = grad_scaler(self.device)
        self.kl_ctl = (AdaptiveKLController(cfg.beta, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl is not None
                       else FixedKLController(cfg.beta))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.compiled = compile
        # dynamic=True: the response length changes from batch to batch; one graph serves every length
        self._logprobs = torch.compile(_response_logprobs, dynamic=True) if compile else _response_logprobs

    def step(self) -> PPOBatch:
        """One iteration: rollout, score, rewards, advantages, update, beta. Returns the filled batch."""
        t0 = time.perf_counter()
        tokens, mask = self.rollout()
        t1 = time.perf_counter()
        b = self.score(tokens, mask)
        self.rewards(b)
        self.advantages(b)
        t2 = time.perf_counter()
        b.stats = self.update(b)
        t3 = time.perf_counter()
        # the iteration's scalars in one transfer; beta moves after the update, for the next batch
        kl_mean, b.explained_variance = torch.stack([b.kl_k1.mean(), b.explained_variance]).tolist()
        self.kl_ctl.update(kl_mean, self.cfg.batch_size)
        b.timings = {"time_rollout": t1 - t0, "time_score": t2 - t1, "time_update": t3 - t2,
                     "time_iteration": time.perf_counter() - t0}
        return b

    # -- 1. rollout ----------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample prompts and responses; ``(tokens, mask)`` trimmed to the batch's longest response."""
        cfg = self.cfg
        self.policy.eval()
        idx = torch.randint(0, self.prompts.shape[0], (cfg.batch_size,), generator=self.generator)
        return sample_rollout(self.policy, self.prompts[_to_device(idx, self.device)], cfg.max_new_tokens,
                              cfg.temperature, self.eos_id, self.pad_id, self.generator)

    # -- 2. score ------------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, tokens: torch.Tensor, mask: torch.Tensor) -> PPOBatch:
        """``old_logp``, ``ref_logp`` and ``old_values`` per token (0 on padding), the reward model's score."""
        cfg, P = self.cfg, self.prompts.shape[1]
        with autocast(self.device):
            old_logp, old_values, _ = self._logp_values(tokens, P)
            ref_logp, _, _ = self._logprobs(self.reference, tokens, P, cfg.temperature)
            score = self.reward_fn(tokens, mask, P).float()
        finished = (tokens[:, P:] == self.eos_id).any(1) if self.eos_id is not None else torch.ones_like(score).bool()
        if cfg.missing_eos_penalty:
            score = torch.where(finished, score, score - cfg.missing_eos_penalty)
        return PPOBatch(tokens, mask, score, finished, old_logp=_masked(old_logp, mask),
                        ref_logp=_masked(ref_logp, mask), old_values=_masked(old_values, mask))

    # -- 3. rewards ----------------------------------------------------------------------------------
    @torch.no_grad()
    def rewards(self, b: PPOBatch) -> PPOBatch:
        """``r_t = -beta log rho_t + [t = T_last] score`` with ``log rho_t = old_logp_t - ref_logp_t``, and the
        sequence KL estimates ``k1 = sum_t log rho_t``, ``k3 = sum_t (1/rho_t - 1 + log rho_t)`` of that same
        log-ratio (:mod:`rlhf_course.kl`), at the ``beta`` applied here."""
        b.beta = self.kl_ctl.beta
        # the KL penalty on every token, the score on the last real token
        b.rewards, log_ratio = kl_penalized_rewards(b.score, b.old_logp, b.ref_logp, b.mask, b.beta)
        if self.cfg.whiten_rewards:
            b.rewards = whiten(b.rewards, b.mask, shift_mean=False)
        b.kl_k1 = log_ratio.sum(1)  # log_ratio is already 0 on padding
        x = -log_ratio  # kl.k3 from the log-ratio in hand, without its input checks (a copy to the host)
        b.kl_k3 = ((torch.expm1(x) - x) * b.mask).sum(1)
        return b

    # -- 4. advantages -------------------------------------------------------------------------------
    @torch.no_grad()
    def advantages(self, b: PPOBatch) -> PPOBatch:
        """GAE over each response (:func:`rl.gae`), ``returns = A + V_old``; advantages then whitened."""
        cfg = self.cfg
        b.advantages, b.returns = gae(b.rewards, b.old_values, b.mask, cfg.gamma, cfg.lam)
        b.explained_variance = _explained_variance(b.old_values, b.returns, b.mask)
        if cfg.whiten_advantages:
            b.advantages = whiten(b.advantages, b.mask)
        return b

    # -- 5. the update ---------------------------------------------------------------------------------
    def update(self, b: PPOBatch) -> dict:
        """``ppo_epochs`` passes of shuffled minibatches; every operation batched over tokens. Returns the
        means over minibatches of the statistics of :meth:`loss`."""
        cfg = self.cfg
        self.policy.train()
        if self.value_model is not None:
            self.value_model.train()
        rows = []  # per minibatch, the statistics as a (6,) tensor: read back once, after the loop
        mb = cfg.batch_size // cfg.minibatches
        for _ in range(cfg.ppo_epochs):
            perm = _to_device(torch.randperm(cfg.batch_size, generator=self.generator), self.device)
            for i in range(0, cfg.batch_size, mb):
                loss, stats = self.loss(b, perm[i:i + mb])
                scaled_step(loss, self.opt, self.scaler, self.params, cfg.max_grad_norm)
                rows.append(torch.stack([stats[k].float() for k in _STATS]))
        rows = torch.stack(rows).tolist()  # one host transfer per update; float32 values, as .item() gave
        return {k: float(np.mean([r[j] for r in rows])) for j, k in enumerate(_STATS)}

    def loss(self, b: PPOBatch, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The PPO loss on minibatch ``idx`` of batch ``b``: ``L_pi + vf_coef L_V``, both means over real tokens
        (:func:`_ppo_losses`). Returns ``(loss, stats)``, ``stats`` the 0-d tensors named in ``_STATS``
        (left on the device: reading them is a sync)."""
        cfg, P = self.cfg, self.prompts.shape[1]
        m = b.mask[idx]
        with autocast(self.device):
            logp, values, entropy = self._logp_values(b.tokens[idx], P, with_entropy=True)
        logp, values = _masked(logp, m), _masked(values, m)
        pg_loss, vf_loss, clipfrac, approx_kl, vf_clipfrac = _ppo_losses(
            logp, b.old_logp[idx], b.advantages[idx], values, b.old_values[idx], b.returns[idx], m,
            cfg.clip_eps, cfg.vf_clip_eps)
        loss = pg_loss + cfg.vf_coef * vf_loss
        stats = {"policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(), "clipfrac": clipfrac,
                 "approx_kl": approx_kl, "vf_clipfrac": vf_clipfrac, "entropy": masked_mean(entropy.detach(), m)}
        return loss, stats

    def _logp_values(self, tokens: torch.Tensor, P: int, with_entropy: bool = False):
        """The policy's ``(logp, values, entropy)``; the values from the value model when there is one."""
        logp, values, entropy = self._logprobs(self.policy, tokens, P, self.cfg.temperature, with_entropy)
        if self.value_model is not None:
            # the trunk and the value head only: the value model's LM head and log-probs would be thrown away
            values = self.value_model.values(self.value_model.hidden(tokens))[:, P - 1:-1]
        return logp, values, entropy

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(),
                "value_model": self.value_model.state_dict() if self.value_model is not None else None,
                "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "beta": self.kl_ctl.beta,
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value_model is not None:
            self.value_model.load_state_dict(state["value_model"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.kl_ctl.beta = state["beta"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
