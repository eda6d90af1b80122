"""Stage 3 of chapter 6: PPO for a language model, against the learned reward model, with a KL penalty.

One iteration, following the published implementation details of RLHF with PPO (Ziegler et al. 2019; the
"N implementation details of RLHF with PPO"), with the functions of chapter 5 (:mod:`rlhf_course.rl`):

1. **Rollout.** Sample ``batch_size`` prompts and one response each from the policy at temperature ``T``,
   batched, with the KV cache (:func:`rlhf_course.gpt.generate`). A response ends at ``<eos>`` or after
   ``max_new_tokens``; after its end it holds the distinct ``<pad>`` token, which the mask excludes.
2. **Score.** One forward pass of the policy gives ``old_logp_t = log softmax(logits_t / T)[y_t]`` and the
   values ``V_t``; one of the frozen reference gives ``ref_logp_t`` at the same temperature; the reward
   model gives one score per response. The gold reward is computed too, for the logs only.
3. **Rewards.** ``r_t = -beta (old_logp_t - ref_logp_t) + [t = T_last] score``: the KL penalty on every
   token, the score on the **last real token** of the response (its ``<eos>``, or its last token when it
   was cut off), the action that completed what the reward model judged (:func:`rl.kl_penalized_rewards`).
   Optionally the rewards are whitened (scaled to unit variance, mean kept).
4. **Advantages.** GAE with ``gamma``, ``lambda`` over each response, value 0 after its end
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

Every iteration appends one line to ``metrics.jsonl``: proxy and gold reward, KL (k1 and k3 estimates of the
sequence KL), entropy, clip fraction, approximate KL between the policies before and after the update,
value loss, explained variance, response length, the world's log-probability of the responses (their
fluency) and a few sample texts. Every ``checkpoint_every`` iterations the whole state (models, optimizer,
beta, random number generator) is saved; a killed run started again with ``resume`` continues from its last
checkpoint exactly as if it had never stopped (on the CPU, bit for bit).

``rlhf-course ppo --preset default --beta 0.05 --out DIR`` runs the pipeline: ``DIR/sft`` and
``DIR/reward_model`` first when they are missing, then the PPO run in ``DIR/ppo-beta0.05``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .device import pick_device
from .gpt import GPT, generate, response_logprobs
from .kl import k1, k3
from .loop import RunInterrupted, refuse_or_check, run_iterations, write_summary
from .reward_model import PRESETS as RM_PRESETS
from .reward_model import RewardModel, RewardModelConfig, ensure_reward_model, load_reward_model
from .rl import (AdaptiveKLController, FixedKLController, clipped_policy_loss, clipped_value_loss, gae,
                 kl_penalized_rewards, masked_mean, masked_var, whiten)
from .runs import autocast, check_same_config, config_dict, grad_scaler, make_run_dir, read_json, write_json
from .sft import PRESET_NAMES
from .sft import PRESETS as SFT_PRESETS
from .sft import SFTConfig, load_model
from .world import World

__all__ = ["PPOConfig", "PRESETS", "Preset", "PPOTrainer", "train_ppo", "run_pipeline", "run_name", "load_policy",
           "RunInterrupted", "evaluate", "judge", "gao_rl_fit", "gao_rl_curve"]


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
        ints = ("iterations", "batch_size", "minibatches", "ppo_epochs", "max_new_tokens", "checkpoint_every")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.log_samples, int) and 0 <= self.log_samples <= self.batch_size):
            raise ValueError(f"PPOConfig.log_samples must be an integer in [0, batch_size], got {self.log_samples!r}")
        if self.batch_size % self.minibatches:
            raise ValueError(f"PPOConfig.batch_size ({self.batch_size}) must be divisible by minibatches "
                             f"({self.minibatches})")

        def number(name, lo=None, hi=None, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"PPOConfig.{name} must be a finite number, got {v!r}")
            if lo is not None and (v < lo or (lo_open and v == lo)):
                raise ValueError(f"PPOConfig.{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
            if hi is not None and (v > hi or (hi_open and v == hi)):
                raise ValueError(f"PPOConfig.{name} must be {'<' if hi_open else '<='} {hi}, got {v!r}")

        number("temperature", 0, lo_open=True)
        number("lr", 0, 1, lo_open=True, hi_open=True)
        number("beta", 0)
        number("kl_horizon", 0, lo_open=True)
        number("gamma", 0, 1)
        number("lam", 0, 1)
        number("clip_eps", 0, 1, lo_open=True, hi_open=True)
        number("vf_clip_eps", 0, lo_open=True)
        number("vf_coef", 0)
        number("max_grad_norm", 0, lo_open=True)
        number("missing_eos_penalty", 0)
        if self.target_kl is not None:
            number("target_kl", 0, lo_open=True)
            if self.beta <= 0:
                raise ValueError("PPOConfig.beta must be > 0 when target_kl is set (the adaptive controller "
                                 "multiplies it)")
        for name in ("whiten_rewards", "whiten_advantages", "shared_value"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PPOConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"PPOConfig.seed must be an integer, got {self.seed!r}")


@dataclass(frozen=True)
class Preset:
    """The three stages' configurations that belong together."""

    sft: SFTConfig
    reward_model: RewardModelConfig
    ppo: PPOConfig


PRESETS = {
    # seconds: for the tests
    "smoke": Preset(SFT_PRESETS["smoke"], RM_PRESETS["smoke"],
                    PPOConfig(iterations=6, batch_size=16, max_new_tokens=8, lr=1e-3, checkpoint_every=2,
                              log_samples=2)),
    # minutes on a 2-core CPU: the chapter
    "default": Preset(SFT_PRESETS["default"], RM_PRESETS["default"], PPOConfig()),
    # a GPU-sized run
    "full": Preset(SFT_PRESETS["full"], RM_PRESETS["full"],
                   PPOConfig(iterations=1000, batch_size=256, minibatches=4, lr=5e-5, checkpoint_every=50)),
}


def run_name(cfg: PPOConfig) -> str:
    """The folder name of a PPO run inside the pipeline folder: ``ppo-beta0.05`` or ``ppo-target6``."""
    return f"ppo-target{cfg.target_kl:g}" if cfg.target_kl is not None else f"ppo-beta{cfg.beta:g}"


# --------------------------------------------------------------------------------------------------
# one iteration


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
    batch's longest response; the input checks of the :mod:`rl` functions in :meth:`score`; one transfer of
    the update's statistics; one of the iteration's scalars in :meth:`step`.
    """

    def __init__(self, cfg: PPOConfig, policy: GPT, reference: GPT, reward_fn, prompts: torch.Tensor,
                 eos_id: int | None, pad_id: int, value_model: GPT | None = None, compile: bool = False):
        if value_model is None and policy.value_head is None:
            raise ValueError("the policy needs a value head when no separate value model is given")
        self.cfg, self.policy, self.reference, self.reward_fn = cfg, policy, reference, reward_fn
        self.value_model, self.prompts, self.eos_id, self.pad_id = value_model, prompts, eos_id, pad_id
        self.device = prompts.device
        reference.eval().requires_grad_(False)
        self.params = list(policy.parameters()) + (list(value_model.parameters()) if value_model is not None else [])
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, eps=1e-5)
        self.scaler = grad_scaler(self.device)
        self.kl_ctl = (AdaptiveKLController(cfg.beta, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl is not None
                       else FixedKLController(cfg.beta))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.compiled = compile
        # dynamic=True: the response length changes from batch to batch; one graph serves every length
        self._logprobs = torch.compile(response_logprobs, dynamic=True) if compile else response_logprobs

    # -- 1. rollout ----------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample prompts and responses; ``(tokens, mask)`` trimmed to the batch's longest response."""
        cfg = self.cfg
        self.policy.eval()
        idx = torch.randint(0, self.prompts.shape[0], (cfg.batch_size,), generator=self.generator)
        prompts = self.prompts[_to_device(idx, self.device)]
        with autocast(self.device):
            tokens, mask, _ = generate(self.policy, prompts, cfg.max_new_tokens, eos_id=self.eos_id,
                                       pad_id=self.pad_id, temperature=cfg.temperature, generator=self.generator)
        R = int(mask.sum(1).max())
        return tokens[:, :prompts.shape[1] + R], mask[:, :R]

    def _logp_values(self, tokens: torch.Tensor, P: int, with_entropy: bool = False):
        logp, values, entropy = self._logprobs(self.policy, tokens, P, self.cfg.temperature, with_entropy)
        if self.value_model is not None:
            _, values, _ = self._logprobs(self.value_model, tokens, P, self.cfg.temperature)
        return logp, values, entropy

    # -- 2-4. score, rewards, advantages -------------------------------------------------------------
    @torch.no_grad()
    def score(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict:
        cfg, P = self.cfg, self.prompts.shape[1]
        with autocast(self.device):
            old_logp, old_values, _ = self._logp_values(tokens, P)
            ref_logp, _, _ = self._logprobs(self.reference, tokens, P, cfg.temperature)
            score = self.reward_fn(tokens, mask, P).float()
        old_logp, ref_logp, old_values = _masked(old_logp, mask), _masked(ref_logp, mask), _masked(old_values, mask)
        finished = (tokens[:, P:] == self.eos_id).any(1) if self.eos_id is not None else torch.ones_like(score).bool()
        if cfg.missing_eos_penalty:
            score = torch.where(finished, score, score - cfg.missing_eos_penalty)
        # the KL penalty on every token, the score on the last real token (rl.kl_penalized_rewards)
        beta = self.kl_ctl.beta
        rewards, _ = kl_penalized_rewards(score, old_logp, ref_logp, mask, beta)
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        explained_var = _explained_variance(old_values, returns, mask)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        return {"tokens": tokens, "mask": mask, "score": score, "finished": finished, "old_logp": old_logp,
                "ref_logp": ref_logp, "old_values": old_values, "rewards": rewards, "advantages": advantages,
                "returns": returns, "beta": beta, "explained_variance": explained_var}

    # -- 5. the update ---------------------------------------------------------------------------------
    def update(self, b: dict) -> dict:
        """``ppo_epochs`` passes of shuffled minibatches; every operation batched over tokens."""
        cfg = self.cfg
        self.policy.train()
        if self.value_model is not None:
            self.value_model.train()
        stats = []  # per minibatch, the six statistics as a (6,) tensor: read back once, after the loop
        mb = cfg.batch_size // cfg.minibatches
        for _ in range(cfg.ppo_epochs):
            perm = _to_device(torch.randperm(cfg.batch_size, generator=self.generator), self.device)
            for i in range(0, cfg.batch_size, mb):
                loss, row = self._minibatch_loss(b, perm[i:i + mb])
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.scaler.step(self.opt)
                self.scaler.update()
                stats.append(row)
        rows = torch.stack(stats).tolist()  # one host transfer per update; float32 values, as .item() gave
        return {k: float(np.mean([r[j] for r in rows])) for j, k in enumerate(_STATS)}

    def _minibatch_loss(self, b: dict, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss` without host transfers: ``(loss, stats)``, ``stats`` a ``(6,)`` tensor in ``_STATS`` order."""
        cfg, P = self.cfg, self.prompts.shape[1]
        m = b["mask"][idx]
        with autocast(self.device):
            logp, values, entropy = self._logp_values(b["tokens"][idx], P, with_entropy=True)
        logp, values = _masked(logp, m), _masked(values, m)
        pg_loss, vf_loss, clipfrac, approx_kl, vf_clipfrac = _ppo_losses(
            logp, b["old_logp"][idx], b["advantages"][idx], values, b["old_values"][idx], b["returns"][idx], m,
            cfg.clip_eps, cfg.vf_clip_eps)
        loss = pg_loss + cfg.vf_coef * vf_loss
        row = torch.stack([pg_loss.detach().float(), vf_loss.detach().float(), clipfrac.float(), approx_kl.float(),
                           vf_clipfrac.float(), masked_mean(entropy.detach(), m).float()])
        return loss, row

    def loss(self, b: dict, idx: torch.Tensor):
        """The PPO loss on minibatch ``idx`` of batch ``b``: ``L_pi + vf_coef L_V``, both means over real tokens.

        Returns ``(loss, policy_loss, value_loss, policy_stats, value_stats, entropy)``.
        """
        cfg, P = self.cfg, self.prompts.shape[1]
        m = b["mask"][idx]
        with autocast(self.device):
            logp, values, entropy = self._logp_values(b["tokens"][idx], P, with_entropy=True)
        logp, values = _masked(logp, m), _masked(values, m)
        pg_loss, pg_stats = clipped_policy_loss(logp, b["old_logp"][idx], b["advantages"][idx], m, cfg.clip_eps)
        vf_loss, vf_stats = clipped_value_loss(values, b["old_values"][idx], b["returns"][idx], m, cfg.vf_clip_eps)
        loss = pg_loss + cfg.vf_coef * vf_loss
        return loss, pg_loss, vf_loss, pg_stats, vf_stats, masked_mean(entropy.detach(), m).item()

    def step(self) -> dict:
        """One iteration: rollout, score, update, beta. Returns the batch, its statistics and timings."""
        t0 = time.perf_counter()
        tokens, mask = self.rollout()
        t1 = time.perf_counter()
        b = self.score(tokens, mask)
        t2 = time.perf_counter()
        stats = self.update(b)
        t3 = time.perf_counter()
        m = b["mask"]
        b["seq_kl_k1"] = (k1(b["old_logp"], b["ref_logp"]) * m).sum(1)
        b["seq_kl_k3"] = (k3(b["old_logp"], b["ref_logp"]) * m).sum(1)
        # the iteration's scalars in one transfer
        kl_mean, b["explained_variance"] = torch.stack([b["seq_kl_k1"].mean(), b["explained_variance"]]).tolist()
        self.kl_ctl.update(kl_mean, self.cfg.batch_size)
        b["stats"] = stats
        b["timings"] = {"time_rollout": t1 - t0, "time_score": t2 - t1, "time_update": t3 - t2,
                        "time_iteration": time.perf_counter() - t0}
        return b

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


def load_policy(run_dir: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The policy of a PPO or GRPO run (its last checkpoint), for sampling and evaluation."""
    run_dir = Path(run_dir)
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    sft_dir = run_dir / read_json(run_dir / "stages.json")["sft"]  # relative to the run (or absolute)
    # a value head on the policy's trunk (PPO's shared value) is in its weights; GRPO's policy has none
    has_head = any(k.startswith("value_head.") for k in ckpt["policy"])
    policy = load_model(sft_dir, device="cpu", value_head=has_head)
    policy.load_state_dict(ckpt["policy"])
    policy.eval()
    return policy.to(pick_device(device) if isinstance(device, str) else device)


def train_ppo(cfg: PPOConfig, out: str | Path, sft_dir: str | Path, reward_dir: str | Path, device: str = "auto",
              resume: bool = False, progress: bool = True, stop_after: int | None = None,
              world: World | None = None, compile: bool = False) -> Path:
    """Run PPO; writes ``out/config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and, at the end, ``summary.json``.

    ``resume=True`` continues from ``out/checkpoint.pt`` (the metrics logged after it are dropped and
    recomputed). Without it, a folder that already holds a run is refused. ``stop_after=n`` stops after
    ``n`` iterations of this session by raising :class:`RunInterrupted` (a stand-in for a kill, for tests).
    ``compile=True``: :class:`PPOTrainer` with ``torch.compile`` (how a run executes, not what it computes,
    so it is not part of ``config.json``; compiled kernels round differently, so not bitwise equal).
    """
    world = world or World()
    t_start = time.perf_counter()
    out, dev, reference, reward_model = prepare_run(cfg, out, sft_dir, reward_dir, device, "PPO run", resume)
    policy = load_model(sft_dir, device=dev, value_head=cfg.shared_value)
    value_model = None if cfg.shared_value else load_model(sft_dir, device=dev, value_head=True)
    tok = world.tokenizer
    trainer = PPOTrainer(cfg, policy, reference, reward_model, torch.as_tensor(world.prompts(), device=dev),
                         tok.eos_id, tok.pad_id, value_model, compile=compile)
    P = trainer.prompts.shape[1]
    seconds, records = run_iterations(trainer, lambda step, b: _metrics(step, cfg, world, b, P), out,
                                      cfg.iterations, cfg.checkpoint_every, desc=f"ppo {run_name(cfg)}",
                                      resume=resume, progress=progress, stop_after=stop_after)
    write_summary(out, device=str(dev), seconds=seconds, session_seconds=time.perf_counter() - t_start,
                  iterations=cfg.iterations, final_beta=trainer.kl_ctl.beta,
                  final=records[-1] if records else None)
    return out


def prepare_run(cfg, out: str | Path, sft_dir: str | Path, reward_dir: str | Path, device: str, what: str,
                resume: bool) -> tuple[Path, torch.device, GPT, RewardModel]:
    """What every RL stage on the tiny LM does first: refuse a folder that holds another run (unless
    ``resume``), write ``config.json`` and ``stages.json``, seed torch with ``cfg.seed``, and load the frozen
    reference and reward model. Returns ``(out, device, reference, reward_model)``."""
    dev = pick_device(device)
    out = Path(out)
    refuse_or_check(out, cfg, what, resume)
    out = make_run_dir(out)
    write_json(out / "config.json", config_dict(cfg))
    write_stages(out, sft_dir, reward_dir)
    torch.manual_seed(cfg.seed)
    reference = load_model(sft_dir, device=dev)
    reward_model = load_reward_model(reward_dir, device=dev)
    reward_model.requires_grad_(False)
    return out, dev, reference, reward_model


def write_stages(out: Path, sft_dir: str | Path, reward_dir: str | Path) -> None:
    """``stages.json``: where the run's reference and reward model are, relative to the run folder (so the
    pipeline folder can be moved as a whole)."""
    write_json(out / "stages.json", {k: os.path.relpath(Path(v).resolve(), out.resolve())
                                     for k, v in (("sft", sft_dir), ("reward_model", reward_dir))})


def judge(world: World, toks: np.ndarray, lengths: np.ndarray, P: int) -> dict:
    """The world's verdict on responses (``toks`` are prompt and response, the response from ``P`` on):
    ``gold`` (:meth:`World.gold_reward`'s formula, from one :meth:`World.analyze`), its parts ``sentiment``,
    ``errors``, ``finished``; ``fluency``, the world's log-probability per response token; ``distinct``, the
    share of distinct tokens in each response. ``(B,)`` numpy arrays; the one evaluation path of the course."""
    a = world.analyze(toks, count_from=P)
    gold = a["sentiment"] - world.error_weight * (a["errors"] + 1.0 - a["finished"])
    return {"gold": gold, "sentiment": a["sentiment"], "errors": a["errors"], "finished": a["finished"],
            "fluency": (a["logp"] - world.log_prob(toks[:, :P])) / lengths,
            "distinct": _distinct_share(toks[:, P:], lengths)}


def _distinct_share(resp: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row, distinct tokens among the first ``lengths[i]`` over ``max(1, lengths[i])``, without a Python
    loop over rows: sort each row's real tokens (padding replaced by -1) and count where the value changes."""
    n = lengths.astype(np.int64)
    real = np.arange(resp.shape[1])[None, :] < n[:, None]
    s = np.sort(np.where(real, resp, -1), axis=1)
    new = np.concatenate([s[:, :1] >= 0, (s[:, 1:] != s[:, :-1]) & (s[:, 1:] >= 0)], axis=1)
    return new.sum(1) / np.maximum(1, n)


def _metrics(step: int, cfg: PPOConfig, world: World, b: dict, P: int) -> dict:
    """One line of ``metrics.jsonl``: the batch's rewards, KL, and diagnostics of the update."""
    toks = b["tokens"].cpu().numpy()
    B = toks.shape[0]
    beta, st = b["beta"], b["stats"]
    # every float the record needs from the device, in one transfer (float32, as before)
    flat = torch.cat([b["mask"].sum(1), b["score"].float(), torch.stack([
        b["finished"].float().mean(), b["seq_kl_k1"].mean(), b["seq_kl_k3"].mean(),
        (b["score"] - beta * b["seq_kl_k1"]).mean()])]).cpu().numpy()
    lengths, sc = flat[:B], flat[B:2 * B]
    finished, kl, kl_k3, objective = flat[2 * B:].tolist()
    j = judge(world, toks, lengths, P)
    gold = j["gold"]
    samples = [{"prompt": world.tokenizer.decode(toks[i, :P]), "text": world.tokenizer.decode(toks[i, P:]),
                "proxy": float(sc[i]), "gold": float(gold[i])} for i in range(cfg.log_samples)]
    return {
        "step": step,
        "episodes": (step + 1) * cfg.batch_size,
        "beta": beta,
        "proxy": float(sc.mean()),                      # reward model score
        "gold": float(np.mean(gold)),                   # the world's gold reward
        "sentiment": float(np.mean(j["sentiment"])),
        "errors": float(np.mean(j["errors"])),
        "finished": finished,
        "kl": kl,                                       # sequence KL(pi || pi_ref), k1 estimate
        "kl_k3": kl_k3,                                 # the same, k3 estimate
        "objective": objective,
        "entropy": st["entropy"],                       # per token, of softmax(logits / T)
        "clipfrac": st["clipfrac"],
        "approx_kl": st["approx_kl"],                   # between the policy before and during the update
        "vf_clipfrac": st["vf_clipfrac"],
        "policy_loss": st["policy_loss"],
        "value_loss": st["value_loss"],
        "explained_variance": b["explained_variance"],
        "length": float(lengths.mean()),
        "fluency": float(np.mean(j["fluency"])),        # world log-probability per response token
        "distinct": float(np.mean(j["distinct"])),      # distinct tokens / tokens, per response
        "samples": samples,
    }


# --------------------------------------------------------------------------------------------------
# evaluation and over-optimization


@torch.no_grad()
def evaluate(model: GPT, reward_model: RewardModel, world: World, n: int = 256, seed: int = 0,
             max_new_tokens: int = 16, temperature: float = 1.0, prompt_idx=None) -> dict:
    """Sample ``n`` responses of ``model`` and judge them: proxy (reward model) and gold reward, the gold's
    parts, fluency (the world's log-probability per response token) and the share of distinct tokens.

    Returns a dict of ``(n,)`` numpy arrays plus ``prompt`` and ``text`` (lists of strings), and the sampled
    ``tokens``/``mask`` tensors with the ``prompt_len`` they start after.
    """
    from .reward_model import sample_responses, score_batched

    gen = torch.Generator().manual_seed(seed)
    if prompt_idx is not None:
        prompt_idx = torch.as_tensor(prompt_idx)
        n = len(prompt_idx)
    tokens, mask = sample_responses(model, world, n, max_new_tokens, temperature, gen, prompt_idx=prompt_idx)
    P = world.prompts().shape[1]
    proxy = score_batched(reward_model, tokens, mask, P).cpu().numpy()
    toks = tokens.cpu().numpy()
    lengths = mask.sum(1).cpu().numpy()
    dec = world.tokenizer.decode
    return {"prompt": [dec(t[:P]) for t in toks], "text": [dec(t[P:]) for t in toks], "proxy": proxy,
            **judge(world, toks, lengths, P), "length": lengths, "tokens": tokens, "mask": mask, "prompt_len": P}


def gao_rl_fit(kl, gain) -> dict:
    """Fit Gao et al. (2022)'s functional form for RL, ``R(d) = d (a - b log d)`` with ``d = sqrt(KL)``.

    ``gain`` is the gold reward minus its value at the reference (so ``R(0) = 0``). The form is linear in
    ``(a, b)``: least squares on the features ``d`` and ``-d log d``. Returns ``a``, ``b``, ``r2``, and the
    ``d`` where the fitted curve peaks, ``exp(a / b - 1)`` (infinite when ``b <= 0``: no peak).
    """
    kl = np.asarray(kl, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    if kl.shape != gain.shape or kl.ndim != 1 or kl.size < 2:
        raise ValueError("kl and gain must be 1-D arrays of the same length (at least 2 points)")
    if not (np.isfinite(kl).all() and np.isfinite(gain).all()):
        raise ValueError("kl and gain must be finite")
    d = np.sqrt(np.clip(kl, 0.0, None))
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    X = np.stack([d, -dlogd], axis=1)
    (a, b), *_ = np.linalg.lstsq(X, gain, rcond=None)
    pred = X @ np.array([a, b])
    ss = float(((gain - gain.mean()) ** 2).sum())
    r2 = 1.0 - float(((gain - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    peak = float(np.exp(a / b - 1.0)) if b > 0 else float("inf")
    return {"a": float(a), "b": float(b), "r2": r2, "peak_d": peak,
            "peak_gain": float(peak * (a - b * np.log(peak))) if np.isfinite(peak) else float("inf")}


def gao_rl_curve(d, a: float, b: float) -> np.ndarray:
    """``d (a - b log d)``, 0 at ``d = 0``."""
    d = np.asarray(d, dtype=np.float64)
    return np.where(d > 0, d * (a - b * np.log(np.where(d > 0, d, 1.0))), 0.0)


# --------------------------------------------------------------------------------------------------
# the whole pipeline


def run_pipeline(preset: str | Preset = "default", out: str | Path = "runs/ch06", beta: float | None = None,
                 target_kl: float | None = None, device: str = "auto", resume: bool = True,
                 progress: bool = True, compile: bool = False, **overrides) -> Path:
    """Reference model, reward model, PPO: each stage reused when ``out`` already holds it (with the same
    configuration), run otherwise; an unfinished PPO run is resumed from its checkpoint. Returns the PPO
    run's folder ``out/ppo-beta{beta}`` (or ``out/ppo-target{target_kl}``).

    ``overrides`` replace fields of the preset's :class:`PPOConfig` (e.g. ``iterations=300``);
    ``compile=True`` compiles the PPO stage's forward passes (:class:`PPOTrainer`).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESET_NAMES}, got {preset!r}")
        preset = PRESETS[preset]
    cfg = preset.ppo
    if beta is not None:
        overrides["beta"] = beta
    if target_kl is not None:
        overrides["target_kl"] = target_kl
    cfg = replace(cfg, **overrides)
    out = make_run_dir(out)
    rm_dir = ensure_reward_model(preset.reward_model, preset.sft, out, device=device, progress=progress)
    run_dir = out / run_name(cfg)
    if (run_dir / "summary.json").exists():
        check_same_config(run_dir / "config.json", cfg, "PPO run")
        return run_dir
    return train_ppo(cfg, run_dir, out / "sft", rm_dir, device=device, resume=resume, progress=progress,
                     compile=compile)


# --------------------------------------------------------------------------------------------------
# command line: rlhf-course ppo


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default",
                        help="smoke (seconds, for tests), default (minutes on a CPU), full (GPU-sized)")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient (default: the preset's)")
    parser.add_argument("--target-kl", type=float, default=None,
                        help="adapt beta toward this KL in nats (adaptive controller); beta is the start value")
    parser.add_argument("--iterations", type=int, default=None, help="PPO iterations (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the PPO stage")
    parser.add_argument("--out", required=True, help="pipeline folder: OUT/sft, OUT/reward_model, OUT/ppo-beta<B>")
    parser.add_argument("--device", default="auto", help="auto (CUDA with mixed precision, then MPS, then CPU), "
                                                         "cpu, cuda or mps")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT from its last checkpoint")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the PPO stage's full-sequence forward passes (pays off on a GPU; "
                             "on a CPU the compile takes longer than it saves in short runs)")


def run(args) -> int:
    try:
        pick_device(args.device)
        preset = PRESETS[args.preset]
        overrides = {k: v for k, v in (("beta", args.beta), ("target_kl", args.target_kl),
                                       ("iterations", args.iterations), ("seed", args.seed)) if v is not None}
        cfg = replace(preset.ppo, **overrides)
        out = make_run_dir(args.out)
        rm_dir = ensure_reward_model(preset.reward_model, preset.sft, out, device=args.device)
        run_dir = out / run_name(cfg)
        if (run_dir / "summary.json").exists() and not args.resume:
            check_same_config(run_dir / "config.json", cfg, "PPO run")
            print(f"{run_dir} is already a finished run")
        else:
            train_ppo(cfg, run_dir, out / "sft", rm_dir, device=args.device, resume=args.resume,
                      compile=args.compile)
    except ValueError as exc:  # bad values, a folder made otherwise: a message, not a traceback
        print(f"error: {exc}")
        return 2
    s = read_json(run_dir / "summary.json")
    f = s["final"]
    print(f"PPO run in {run_dir}: {s['iterations']} iterations in {s['seconds']:.1f} s on {s['device']}; last "
          f"iteration: proxy reward {f['proxy']:.3f}, gold reward {f['gold']:.3f}, KL {f['kl']:.3f} nats")
    return 0
