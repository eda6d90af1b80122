"""Speed of chapter 6's PPO iteration: rollouts (episodes/s, generated tokens/s), seconds per PPO update,
seconds per iteration, peak memory, on the current device.

    python benchmarks/ppo.py                          # the default preset's setting, both value variants
    python benchmarks/ppo.py --setting reference      # TOOLCHAIN.md's reference setting (TRL / plain loop)
    python benchmarks/ppo.py --run runs/ch06          # trained models from a pipeline folder (real lengths)

Settings. ``reference`` is the setting the course's toolchain notes timed TRL and a plain PyTorch loop in:
a GPT-2-shaped model with 2 layers, 4 heads, d=128, 64 positions and a 64-token vocabulary (about 413k
parameters) for each of policy, reference, reward and value models; 64 prompts of 4 tokens per iteration;
16-token responses; 1 minibatch; 4 PPO epochs. Models are freshly initialized, prompts random, and every
response is exactly 16 tokens (no early end), as there. ``default`` is the default preset of
``rlhf-course ppo``: the same shapes, the world's prompts, responses ending at ``<eos>`` (with untrained
models they rarely do, so nearly 16 tokens; ``--run DIR`` uses the trained models of a pipeline folder).

Both value variants are timed side by side, iterations interleaved (``shared``: a value head on the
policy's trunk, the course's choice; ``separate``: a value model of its own, as in the TRL setting), and
medians are reported: timings on a shared machine vary from run to run. ``--compile both`` times each
value variant eager and with ``torch.compile`` (``PPOTrainer(compile=True)``), also interleaved; the
compile itself happens in the warm-up iterations and is reported separately.
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from rlhf_course.device import autocast_dtype, pick_device
from rlhf_course.gpt import GPT, count_parameters
from rlhf_course.ppo import PRESETS, PPOTrainer
from rlhf_course.reward_model import RewardModel, load_reward_model
from rlhf_course.sft import load_model
from rlhf_course.world import World

ANCHORS = {"TRL 1.12.0": 0.92, "plain PyTorch loop": 0.37}  # s/iteration, TOOLCHAIN.md, same setting


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / 1024 if sys.platform == "darwin" else r / 1024


def build(setting: str, value: str, device: torch.device, run: Path | None, seed: int = 0,
          compile: bool = False) -> PPOTrainer:
    world = World()
    tok = world.tokenizer
    cfg = replace(PRESETS["default"].ppo, shared_value=value == "shared", seed=seed)
    gcfg = PRESETS["default"].sft.gpt_config(world)
    torch.manual_seed(seed)
    if run is not None:
        reference = load_model(run / "sft", device=device)
        policy = load_model(run / "sft", device=device, value_head=value == "shared")
        value_model = None if value == "shared" else load_model(run / "sft", device=device, value_head=True)
        rm = load_reward_model(run / "reward_model", device=device)
    else:
        reference = GPT(gcfg).to(device)
        policy = GPT(replace(gcfg, value_head=value == "shared")).to(device)
        policy.load_state_dict(reference.state_dict(), strict=False)
        value_model = None if value == "shared" else GPT(replace(gcfg, value_head=True)).to(device)
        rm = RewardModel(gcfg).to(device)
    rm.requires_grad_(False)
    if setting == "reference":
        g = torch.Generator().manual_seed(seed)
        prompts = torch.randint(3, len(tok), (64, 4), generator=g).to(device)
        eos = None  # every response exactly 16 tokens
    else:
        prompts = torch.as_tensor(world.prompts(), device=device)
        eos = tok.eos_id
    return PPOTrainer(cfg, policy, reference, rm, prompts, eos, tok.pad_id, value_model, compile=compile)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=("default", "reference"), default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iterations", type=int, default=20, help="timed iterations per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant first")
    ap.add_argument("--value", choices=("shared", "separate", "both"), default="both")
    ap.add_argument("--run", type=Path, default=None, help="pipeline folder with trained sft/ and reward_model/")
    ap.add_argument("--compile", choices=("off", "on", "both"), default="off",
                    help="torch.compile the trainer's full-sequence forward passes (both: eager and compiled)")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    values = ["shared", "separate"] if args.value == "both" else [args.value]
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    variants = [v + ("+compile" if c else "") for v in values for c in compiles]
    print(f"device: {device} (mixed precision: {autocast_dtype(device) or 'none, float32'}); torch "
          f"{torch.__version__}; {torch.get_num_threads()} CPU threads; {platform.processor() or platform.machine()}")
    rss0 = peak_rss_mb()
    trainers = {v: build(args.setting, v.split("+")[0], device, args.run, compile=v.endswith("+compile"))
                for v in variants}
    t = trainers[variants[0]]
    print(f"setting: {args.setting}; {count_parameters(t.policy):,} parameters per model; "
          f"{t.cfg.batch_size} prompts of {t.prompts.shape[1]} tokens, responses up to {t.cfg.max_new_tokens} "
          f"tokens, {t.cfg.minibatches} minibatch, {t.cfg.ppo_epochs} PPO epochs")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = {v: [] for v in variants}
    warm = {v: 0.0 for v in variants}  # seconds of the warm-up iterations (compiling, for compiled variants)
    for i in range(args.warmup + args.iterations):
        for v in variants:  # interleaved, so that both see the same machine load
            t0 = time.perf_counter()
            b = trainers[v].step()
            if i < args.warmup:
                warm[v] += time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[v].append({**b.timings, "tokens": float(b.mask.sum()), "episodes": b.mask.shape[0]})
    print(f"medians over {args.iterations} iterations per variant (after {args.warmup} warm-up):")
    med = lambda xs: statistics.median(xs)  # noqa: E731
    for v in variants:
        ts = times[v]
        roll = med([x["time_rollout"] for x in ts])
        it = med([x["time_iteration"] for x in ts])
        print(f"  value {v:<16}  warm-up {warm[v]:5.1f} s; rollout {med([x['episodes'] / x['time_rollout'] for x in ts]):7.0f} episodes/s, "
              f"{med([x['tokens'] / x['time_rollout'] for x in ts]):8.0f} generated tokens/s ({roll * 1000:.0f} ms); "
              f"scoring {med([x['time_score'] for x in ts]) * 1000:.0f} ms; "
              f"update {med([x['time_update'] for x in ts]):.3f} s; iteration {it:.3f} s "
              f"({ts[0]['episodes'] / it:.0f} episodes/s)")
    if args.setting == "reference":
        print("  anchors in the same setting (TOOLCHAIN.md, 2 torch threads): "
              + ", ".join(f"{k} {s:.2f} s/iteration" for k, s in ANCHORS.items()))
    print(f"peak memory: {peak_rss_mb():.0f} MB resident for the process ({peak_rss_mb() - rss0:+.0f} MB during the "
          f"benchmark)" + (f"; CUDA peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
                           if device.type == "cuda" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
