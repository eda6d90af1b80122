"""Chapter 9: critic-free policy optimization (GRPO, Dr. GRPO, RLOO) for the tiny language model.

One iteration, on the models of chapter 6's pipeline (reference, reward model) and with the functions of
:mod:`rlhf_course.rl`; there is no value model:

1. **Rollout.** Draw ``n_prompts`` prompts and ``group_size`` responses to each (consecutive rows share a
   prompt), batched with the KV cache (:func:`rlhf_course.gpt.generate`).
2. **Score.** The reward model scores each response: ``r_i``. When the update needs them, one forward pass
   of the policy gives ``old_logp`` (the sampling policy's log-probabilities); one of the reference gives
   ``ref_logp``. With ``kl="reward"`` the KL goes into the reward, per response:
   ``r_i <- r_i - beta sum_t (old_logp_t - ref_logp_t)`` (k1 of the sequence, as PPO in chapter 6 does).
3. **Advantages.** ``A_i = (r_i - baseline_i) / scale_i`` within each group (:func:`rl.group_advantages`:
   ``center="mean"``, ``"loo"`` or ``"none"``; ``scale="std"`` or ``"none"``), the same for every token of
   response ``i``.
4. **Update.** ``ppo_epochs`` passes over the batch in ``minibatches``: per token
   ``l_t = -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) + beta kl_t`` with ``rho_t = pi_theta / pi_old`` and,
   for ``kl`` in ``k1, k2, k3, k3-ratio``, ``kl_t`` from :func:`rl.kl_loss_terms`; reduced over real tokens by
   :func:`rl.aggregate_loss` (``loss_agg``: ``"token-mean"``, ``"seq-mean-token-mean"``,
   ``"seq-mean-token-sum-norm"`` with ``max_len = max_new_tokens``). Adam, gradient norm clipped.

With one epoch and one minibatch (the default, as in TRL's default) the batch is used once, on-policy:
``old_logp`` is the detached ``logp`` of the update's own forward pass (``rho = 1``, its gradient the score
function), and the scoring forward pass of the policy is skipped unless ``kl="reward"`` needs it.

Every iteration appends a line to ``metrics.jsonl`` with the same names as a PPO run (``proxy``, ``gold``,
``kl``, ``length``, ...) and the names TRL's GRPO trainer logs where they exist (``reward``, ``reward_std``,
``frac_reward_zero_std``, ``completions/mean_length``, ``completions/clipped_ratio``,
``clip_ratio/region_mean``, ``entropy``). TRL's ``kl``, the mean over tokens of the k3 term, is logged as
``kl_token_k3``: here ``kl`` is the sequence KL of every other run of the course.

``rlhf-course grpo --preset default --group-size 4 --beta 0.05 --out DIR`` runs the missing stages of the
pipeline first (``DIR/sft``, ``DIR/reward_model``), then the GRPO run in ``DIR/grpo-...``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ._validate import check_config_ints, check_config_number
from .device import pick_device
from .gpt import GPT, _response_logprobs
from .kl import masked_log_ratio
from .loop import RunInterrupted, run_iterations, write_summary
from .ppo import judge, prepare_run
from .ppo_trainer import _masked, _to_device, sample_rollout
from .reward_model import PRESETS as RM_PRESETS
from .reward_model import RewardModelConfig, ensure_reward_model
from .rl import AGGREGATIONS, KL_ESTIMATORS, aggregate_loss, group_advantages, kl_loss_terms, masked_mean
from .runs import adam, autocast, check_same_config, grad_scaler, make_run_dir, read_json, scaled_step
from .sft import PRESETS as SFT_PRESETS
from .sft import SFTConfig, load_model
from .world import World

__all__ = ["GRPOConfig", "GRPO_PRESETS", "GRPOTrainer", "grpo_loss", "train_grpo", "run_grpo_pipeline",
           "grpo_run_name", "KL_PLACEMENTS", "RunInterrupted",
           "GRPOPreset", "add_arguments", "run"]

KL_PLACEMENTS = ("reward",) + KL_ESTIMATORS  # where the KL goes: in the reward (k1), or in the loss


@dataclass(frozen=True)
class GRPOConfig:
    """Every knob of the critic-free stage. Bad values raise ``ValueError`` naming the field and what is valid."""

    iterations: int = 120
    n_prompts: int = 16           # prompts per iteration; episodes per iteration = n_prompts * group_size
    group_size: int = 4           # responses per prompt, G
    max_new_tokens: int = 16
    temperature: float = 1.0
    lr: float = 1e-4
    ppo_epochs: int = 1           # passes over each batch (1: on-policy, the ratio is 1)
    minibatches: int = 1          # per pass
    clip_eps: float = 0.2
    beta: float = 0.1             # KL coefficient
    kl: str = "k3"                # "reward" (k1 in the reward) or the estimator in the loss: k1, k2, k3, k3-ratio
    center: str = "mean"          # group baseline: "mean" (GRPO, Dr. GRPO), "loo" (RLOO), "none"
    scale: str = "std"            # "std" (GRPO) or "none" (Dr. GRPO, RLOO)
    loss_agg: str = "seq-mean-token-mean"  # rl.AGGREGATIONS
    max_grad_norm: float = 1.0
    checkpoint_every: int = 25
    log_samples: int = 4
    seed: int = 0

    def __post_init__(self):
        check_config_ints(self, "iterations", "n_prompts", "group_size", "max_new_tokens", "ppo_epochs",
                          "minibatches", "checkpoint_every")
        if self.group_size < 2 and (self.center == "loo" or self.scale == "std"):
            raise ValueError(f"GRPOConfig.group_size must be >= 2 with center={self.center!r}, "
                             f"scale={self.scale!r}, got {self.group_size}")
        if self.batch_size % self.minibatches:
            raise ValueError(f"GRPOConfig: n_prompts * group_size ({self.batch_size}) must be divisible by "
                             f"minibatches ({self.minibatches})")
        if not (isinstance(self.log_samples, int) and 0 <= self.log_samples <= self.batch_size):
            raise ValueError(f"GRPOConfig.log_samples must be an integer in [0, n_prompts * group_size], "
                             f"got {self.log_samples!r}")
        for name, (lo, hi) in {"temperature": (0, None), "lr": (0, 1), "clip_eps": (0, 1),
                               "max_grad_norm": (0, None)}.items():
            check_config_number(self, name, lo, hi, lo_open=True, hi_open=True)
        check_config_number(self, "beta", 0)
        choices = {"kl": KL_PLACEMENTS, "center": ("mean", "loo", "none"), "scale": ("std", "none"),
                   "loss_agg": AGGREGATIONS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"GRPOConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"GRPOConfig.seed must be an integer, got {self.seed!r}")

    @property
    def batch_size(self) -> int:
        return self.n_prompts * self.group_size

    @property
    def on_policy(self) -> bool:
        """One pass, one minibatch: each batch is used once, by the policy that sampled it."""
        return self.ppo_epochs == 1 and self.minibatches == 1


@dataclass(frozen=True)
class GRPOPreset:
    sft: SFTConfig
    reward_model: RewardModelConfig
    grpo: GRPOConfig


GRPO_PRESETS = {
    "smoke": GRPOPreset(SFT_PRESETS["smoke"], RM_PRESETS["smoke"],
                        GRPOConfig(iterations=6, n_prompts=4, group_size=4, max_new_tokens=8, lr=1e-3,
                                   checkpoint_every=2, log_samples=2)),
    # the same episodes per iteration (64) and iterations as chapter 6's default PPO preset
    "default": GRPOPreset(SFT_PRESETS["default"], RM_PRESETS["default"], GRPOConfig()),
    "full": GRPOPreset(SFT_PRESETS["full"], RM_PRESETS["full"],
                       GRPOConfig(iterations=1000, n_prompts=64, group_size=8, lr=5e-5, checkpoint_every=50)),
}


def grpo_run_name(cfg: GRPOConfig) -> str:
    """``grpo-G4-k3-beta0.1-std-seq-mean-token-mean``: the folder of a run inside the pipeline folder."""
    return (f"grpo-G{cfg.group_size}-{cfg.center}-{cfg.scale}-{cfg.kl}-beta{cfg.beta:g}-{cfg.loss_agg}"
            + (f"-seed{cfg.seed}" if cfg.seed else ""))


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_eps: float, beta: float, kl: str,
              loss_agg: str, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
    """The critic-free loss of one minibatch and its statistics.

    Per token, with ``rho_t = exp(logp_t - old_logp_t)`` and the response's advantage ``A`` (``(B,)``,
    broadcast over its tokens):

        l_t = -min(rho_t A, clip(rho_t, 1 - clip_eps, 1 + clip_eps) A) + beta kl_t

    ``kl_t`` is :func:`rl.kl_loss_terms` (``kl`` in ``k1, k2, k3, k3-ratio``) or 0 for ``kl="reward"`` (the
    penalty is then in ``A`` already); reduced by :func:`rl.aggregate_loss` with ``loss_agg``. ``logp`` carries
    the gradient; ``old_logp`` and ``ref_logp`` are constants. Returns ``(loss, stats)`` with 0-d tensors
    ``clip_ratio`` (share of real tokens whose ratio was clipped, TRL's ``clip_ratio/region_mean``),
    ``kl_token_k3`` (mean k3 over real tokens; TRL logs it as ``kl``) and ``pg_loss``.
    """
    if kl not in KL_PLACEMENTS:
        raise ValueError(f"kl must be one of {KL_PLACEMENTS}, got {kl!r}")
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must be (B,) with B = {logp.shape[0]}, got {tuple(advantages.shape)}")
    old_logp = old_logp.detach()
    adv = advantages.detach()[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * adv, clipped_ratio * adv)
    per_token = pg
    if kl != "reward" and beta > 0:
        if ref_logp is None:
            raise ValueError(f"kl={kl!r} puts the KL in the loss: ref_logp is needed")
        per_token = pg + beta * kl_loss_terms(logp, ref_logp, kl, old_logp=old_logp)
    loss = aggregate_loss(per_token, mask, loss_agg, max_len=max_len)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        is_clipped = ((ratio < 1.0 - clip_eps) & (adv < 0)) | ((ratio > 1.0 + clip_eps) & (adv > 0))
        stats = {"pg_loss": aggregate_loss(pg, mask, loss_agg, max_len=max_len).detach(),
                 "clip_ratio": masked_mean(is_clipped.to(logp.dtype), m)}
        if ref_logp is not None:
            stats["kl_token_k3"] = masked_mean(kl_loss_terms(logp.detach(), ref_logp, "k3"), m)
    return loss, stats


_STATS = ("loss", "pg_loss", "clip_ratio", "kl_token_k3", "entropy")


class GRPOTrainer:
    """The state of a critic-free run (policy, reference, optimizer, random stream) and its :meth:`step`.

    ``reward_fn(tokens, mask, prompt_len) -> (B,)`` scores responses (the reward model); ``prompts`` are the
    ``(N, P)`` prompts groups are drawn from. The policy has no value head: nothing but the policy is trained.
    """

    def __init__(self, cfg: GRPOConfig, policy: GPT, reference: GPT, reward_fn, prompts: torch.Tensor,
                 eos_id: int | None, pad_id: int):
        if not isinstance(cfg, GRPOConfig):
            raise TypeError(f"cfg must be a GRPOConfig, got {type(cfg).__name__}")
        self.cfg, self.policy, self.reference, self.reward_fn = cfg, policy, reference, reward_fn
        self.prompts, self.eos_id, self.pad_id = prompts, eos_id, pad_id
        self.device = prompts.device
        reference.eval().requires_grad_(False)
        self.opt = adam(policy.parameters(), cfg.lr, self.device)
        self.scaler = grad_scaler(self.device)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    # -- 1. rollout: n_prompts groups of group_size responses ----------------------------------------
    @torch.no_grad()
    def rollout(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        self.policy.eval()
        idx = torch.randint(0, self.prompts.shape[0], (cfg.n_prompts,), generator=self.generator)
        idx = idx.repeat_interleave(cfg.group_size)  # consecutive rows share a prompt
        return sample_rollout(self.policy, self.prompts[_to_device(idx, self.device)], cfg.max_new_tokens,
                              cfg.temperature, self.eos_id, self.pad_id, self.generator)

    # -- 2-3. score and advantages ---------------------------------------------------------------------
    @torch.no_grad()
    def score(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict:
        cfg, P = self.cfg, self.prompts.shape[1]
        with autocast(self.device):
            ref_logp, _, _ = _response_logprobs(self.reference, tokens, P, cfg.temperature)
            score = self.reward_fn(tokens, mask, P).float()
            # the sampling policy's log-probabilities: needed before the update only off-policy or for the
            # KL in the reward; on-policy the update's own forward pass provides them (detached)
            old_logp = (_response_logprobs(self.policy, tokens, P, cfg.temperature)[0]
                        if not cfg.on_policy or cfg.kl == "reward" else None)
        ref_logp = _masked(ref_logp.float(), mask)
        reward = score
        if cfg.kl == "reward":
            old_logp = _masked(old_logp.float(), mask)
            reward = score - cfg.beta * masked_log_ratio(old_logp, ref_logp, mask).sum(1)
        elif old_logp is not None:
            old_logp = _masked(old_logp.float(), mask)
        advantages = group_advantages(reward, cfg.group_size, center=cfg.center, scale=cfg.scale)
        finished = ((tokens[:, P:] == self.eos_id).any(1) if self.eos_id is not None
                    else torch.ones_like(score, dtype=torch.bool))
        group_std = reward.reshape(-1, cfg.group_size).std(1)
        return {"tokens": tokens, "mask": mask, "score": score, "reward": reward, "finished": finished,
                "old_logp": old_logp, "ref_logp": ref_logp, "advantages": advantages, "group_std": group_std}

    # -- 4. the update ---------------------------------------------------------------------------------
    def update(self, b: dict) -> dict:
        cfg, P = self.cfg, self.prompts.shape[1]
        self.policy.train()
        stats, logp_sampled = [], None
        mb = cfg.batch_size // cfg.minibatches
        for _ in range(cfg.ppo_epochs):
            perm = (torch.arange(cfg.batch_size) if cfg.on_policy
                    else torch.randperm(cfg.batch_size, generator=self.generator))
            perm = _to_device(perm, self.device)
            for i in range(0, cfg.batch_size, mb):
                idx = perm[i:i + mb]
                m = b["mask"][idx]
                with autocast(self.device):
                    logp, _, entropy = _response_logprobs(self.policy, b["tokens"][idx], P, cfg.temperature,
                                                         True)
                logp = _masked(logp.float(), m)
                old = b["old_logp"][idx] if b["old_logp"] is not None else logp.detach()
                if logp_sampled is None:
                    logp_sampled = old  # (on-policy: the whole batch) for the sequence KL of the logs
                loss, st = grpo_loss(logp, old, b["ref_logp"][idx], b["advantages"][idx], m,
                                     clip_eps=cfg.clip_eps, beta=cfg.beta, kl=cfg.kl, loss_agg=cfg.loss_agg,
                                     max_len=cfg.max_new_tokens)
                scaled_step(loss, self.opt, self.scaler, self.policy.parameters(), cfg.max_grad_norm)
                stats.append(torch.stack([loss.detach().float(), st["pg_loss"].float(), st["clip_ratio"].float(),
                                          st["kl_token_k3"].float(), masked_mean(entropy.detach(), m).float()]))
        if b["old_logp"] is None:
            b["old_logp"] = logp_sampled
        rows = torch.stack(stats).tolist()  # one host transfer per update
        return {k: float(np.mean([r[j] for r in rows])) for j, k in enumerate(_STATS)}

    def step(self) -> dict:
        """One iteration: rollout, score, advantages, update. Returns the batch, its statistics and timings."""
        t0 = time.perf_counter()
        tokens, mask = self.rollout()
        t1 = time.perf_counter()
        b = self.score(tokens, mask)
        t2 = time.perf_counter()
        b["stats"] = self.update(b)
        t3 = time.perf_counter()
        b["seq_kl_k1"] = masked_log_ratio(b["old_logp"], b["ref_logp"], b["mask"]).sum(1)
        b["timings"] = {"time_rollout": t1 - t0, "time_score": t2 - t1, "time_update": t3 - t2,
                        "time_iteration": time.perf_counter() - t0}
        return b

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "value_model": None}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def _metrics(step: int, cfg: GRPOConfig, world: World, b: dict, P: int) -> dict:
    """One line of ``metrics.jsonl``: the course's names (as PPO's) and TRL's where they exist."""
    toks = b["tokens"].cpu().numpy()
    B, st = toks.shape[0], b["stats"]
    flat = torch.cat([b["mask"].sum(1).float(), b["score"], b["seq_kl_k1"], torch.stack([
        b["finished"].float().mean(), (b["group_std"] == 0).float().mean(), b["reward"].std(),
        b["reward"].mean()])]).cpu().numpy()
    lengths, sc, kl = flat[:B], flat[B:2 * B], flat[2 * B:3 * B]
    finished, zero_std, reward_std, reward = flat[3 * B:].tolist()
    j = judge(world, toks, lengths, P)
    samples = [{"prompt": world.tokenizer.decode(toks[i, :P]), "text": world.tokenizer.decode(toks[i, P:]),
                "proxy": float(sc[i]), "gold": float(j["gold"][i])} for i in range(cfg.log_samples)]
    return {
        "step": step, "episodes": (step + 1) * cfg.batch_size, "beta": cfg.beta,
        "proxy": float(sc.mean()), "gold": float(j["gold"].mean()),
        "sentiment": float(j["sentiment"].mean()), "errors": float(j["errors"].mean()), "finished": finished,
        "kl": float(kl.mean()),                          # sequence KL(pi || pi_ref), k1 estimate
        "objective": float((sc - cfg.beta * kl).mean()),
        "length": float(lengths.mean()), "fluency": float(j["fluency"].mean()),
        "distinct": float(j["distinct"].mean()),
        "loss": st["loss"], "policy_loss": st["pg_loss"],
        # TRL's GRPO trainer's names
        "reward": reward, "reward_std": reward_std, "frac_reward_zero_std": zero_std,
        "completions/mean_length": float(lengths.mean()), "completions/clipped_ratio": 1.0 - finished,
        "clip_ratio/region_mean": st["clip_ratio"], "entropy": st["entropy"], "kl_token_k3": st["kl_token_k3"],
        "samples": samples,
        **b["timings"],
    }


def train_grpo(cfg: GRPOConfig, out: str | Path, sft_dir: str | Path, reward_dir: str | Path,
               device: str = "auto", resume: bool = False, progress: bool = True, stop_after: int | None = None,
               world: World | None = None) -> Path:
    """Run the critic-free stage; writes ``out/config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and, at the
    end, ``summary.json``. ``resume`` and ``stop_after`` as :func:`rlhf_course.ppo.train_ppo`."""
    world = world or World()
    t_start = time.perf_counter()
    out, dev, reference, reward_model = prepare_run(cfg, out, sft_dir, reward_dir, device, "GRPO run", resume)
    policy = load_model(sft_dir, device=dev, value_head=False)
    tok = world.tokenizer
    trainer = GRPOTrainer(cfg, policy, reference, reward_model, torch.as_tensor(world.prompts(), device=dev),
                          tok.eos_id, tok.pad_id)
    P = trainer.prompts.shape[1]
    seconds, records = run_iterations(trainer, lambda step, b: _metrics(step, cfg, world, b, P), out,
                                      cfg.iterations, cfg.checkpoint_every, desc=grpo_run_name(cfg),
                                      resume=resume, progress=progress, stop_after=stop_after)
    write_summary(out, device=str(dev), seconds=seconds, session_seconds=time.perf_counter() - t_start,
                  iterations=cfg.iterations, episodes=cfg.iterations * cfg.batch_size,
                  final=records[-1] if records else None)
    return out


def run_grpo_pipeline(preset: str | GRPOPreset = "default", out: str | Path = "runs/ch06", device: str = "auto",
                      resume: bool = True, progress: bool = True, **overrides) -> Path:
    """Reference and reward model (reused when ``out`` holds them, trained otherwise), then the GRPO run
    ``out/grpo_run_name(cfg)``, reused when finished, resumed when not. ``overrides`` replace fields of the
    preset's :class:`GRPOConfig` (``group_size=8``, ``kl="k2"``, ...)."""
    if isinstance(preset, str):
        if preset not in GRPO_PRESETS:
            raise ValueError(f"preset must be one of {tuple(GRPO_PRESETS)}, got {preset!r}")
        preset = GRPO_PRESETS[preset]
    cfg = replace(preset.grpo, **overrides)
    out = make_run_dir(out)
    rm_dir = ensure_reward_model(preset.reward_model, preset.sft, out, device=device, progress=progress)
    run_dir = out / grpo_run_name(cfg)
    if (run_dir / "summary.json").exists():
        check_same_config(run_dir / "config.json", cfg, "GRPO run")
        return run_dir
    return train_grpo(cfg, run_dir, out / "sft", rm_dir, device=device, resume=resume, progress=progress)


# --------------------------------------------------------------------------------------------------
# command line: rlhf-course grpo


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=tuple(GRPO_PRESETS), default="default",
                        help="smoke (seconds, for tests), default (minutes on a CPU), full (GPU-sized)")
    parser.add_argument("--group-size", type=int, default=None, help="responses per prompt, G")
    parser.add_argument("--n-prompts", type=int, default=None, help="prompts per iteration")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient")
    parser.add_argument("--kl", choices=KL_PLACEMENTS, default=None,
                        help="where the KL goes: 'reward' (k1 in the reward) or its estimator in the loss")
    parser.add_argument("--center", choices=("mean", "loo", "none"), default=None,
                        help="group baseline: mean (GRPO), loo (RLOO), none")
    parser.add_argument("--scale", choices=("std", "none"), default=None,
                        help="divide by the group's reward std (GRPO) or not (Dr. GRPO, RLOO)")
    parser.add_argument("--loss-agg", choices=AGGREGATIONS, default=None, help="loss aggregation over tokens")
    parser.add_argument("--ppo-epochs", type=int, default=None, help="passes over each batch")
    parser.add_argument("--iterations", type=int, default=None, help="iterations (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the GRPO stage")
    parser.add_argument("--out", required=True, help="pipeline folder: OUT/sft, OUT/reward_model, OUT/grpo-...")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")


def run(args) -> int:
    names = {"group_size": args.group_size, "n_prompts": args.n_prompts, "beta": args.beta, "kl": args.kl,
             "center": args.center, "scale": args.scale, "loss_agg": args.loss_agg,
             "ppo_epochs": args.ppo_epochs, "iterations": args.iterations, "seed": args.seed}
    try:
        pick_device(args.device)
        preset = GRPO_PRESETS[args.preset]
        cfg = replace(preset.grpo, **{k: v for k, v in names.items() if v is not None})
        out = make_run_dir(args.out)
        rm_dir = ensure_reward_model(preset.reward_model, preset.sft, out, device=args.device)
        run_dir = out / grpo_run_name(cfg)
        if (run_dir / "summary.json").exists() and not args.resume:
            check_same_config(run_dir / "config.json", cfg, "GRPO run")
            print(f"{run_dir} is already a finished run")
        else:
            train_grpo(cfg, run_dir, out / "sft", rm_dir, device=args.device, resume=args.resume)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    s = read_json(run_dir / "summary.json")
    f = s["final"]
    print(f"GRPO run in {run_dir}: {s['iterations']} iterations ({s['episodes']} episodes) in {s['seconds']:.1f} s "
          f"on {s['device']}; last iteration: proxy reward {f['proxy']:.3f}, gold reward {f['gold']:.3f}, "
          f"KL {f['kl']:.3f} nats")
    return 0
