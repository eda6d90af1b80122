"""Chapter 6's pipeline around the PPO trainer (:mod:`rlhf_course.ppo_trainer`): the reference model, the reward
model and the PPO run, each stage reused when its folder already holds it; the metrics file, checkpoints and exact
resume (through :mod:`rlhf_course.loop`); evaluation of sampled responses (:func:`judge`, the one evaluation path
of the course) and Gao et al.'s over-optimization fit; the ``rlhf-course ppo`` command.

Every iteration appends one line to ``metrics.jsonl``: proxy and gold reward, KL (k1 and k3 estimates of the
sequence KL), entropy, clip fraction, approximate KL between the policies before and after the update,
value loss, explained variance, response length, the world's log-probability of the responses (their
fluency) and a few sample texts. Every ``checkpoint_every`` iterations the whole state (models, optimizer,
beta, random number generator) is saved; a killed run started again with ``resume`` continues from its last
checkpoint exactly as if it had never stopped (on the CPU, bit for bit).

``rlhf-course ppo --preset default --beta 0.05 --out DIR`` runs it: ``DIR/sft`` and ``DIR/reward_model`` first
when they are missing, then the PPO run in ``DIR/ppo-beta0.05``. The trainer's names are re-exported here
(``from rlhf_course.ppo import PPOConfig, PPOTrainer, run_pipeline``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .device import pick_device
from .gpt import GPT
from .loop import RunInterrupted, refuse_or_check, run_iterations, write_summary
from .ppo_trainer import PPOBatch, PPOConfig, PPOTrainer
from .reward_model import PRESETS as RM_PRESETS
from .reward_model import RewardModel, RewardModelConfig, ensure_reward_model, load_reward_model
from .runs import check_same_config, config_dict, make_run_dir, read_json, write_json
from .scaling_laws import gao_rl_curve, gao_rl_fit  # noqa: F401 (re-exported: chapter 6 fits them here)
from .sft import PRESET_NAMES
from .sft import PRESETS as SFT_PRESETS
from .sft import SFTConfig, load_model
from .world import World

__all__ = ["PPOConfig", "PPOBatch", "PPOTrainer", "PRESETS", "Preset", "train_ppo", "run_pipeline", "run_name",
           "load_policy", "RunInterrupted", "prepare_run", "write_stages", "evaluate", "judge", "gao_rl_fit",
           "gao_rl_curve", "add_arguments", "run"]


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


def _metrics(step: int, cfg: PPOConfig, world: World, b: PPOBatch, P: int) -> dict:
    """One line of ``metrics.jsonl``: the batch's rewards, KL, diagnostics of the update, and its timings."""
    toks = b.tokens.cpu().numpy()
    B = toks.shape[0]
    beta, st = b.beta, b.stats
    # every float the record needs from the device, in one transfer (float32, as before)
    flat = torch.cat([b.mask.sum(1), b.score.float(), torch.stack([
        b.finished.float().mean(), b.kl_k1.mean(), b.kl_k3.mean(), (b.score - beta * b.kl_k1).mean()])]).cpu().numpy()
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
        "explained_variance": b.explained_variance,
        "length": float(lengths.mean()),
        "fluency": float(np.mean(j["fluency"])),        # world log-probability per response token
        "distinct": float(np.mean(j["distinct"])),      # distinct tokens / tokens, per response
        "samples": samples,
        **b.timings,
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
