"""Speed of the critic-free iteration (``rlhf_course.grpo``) beside PPO's, in one run, iterations interleaved.

    python benchmarks/grpo.py                         # TOOLCHAIN.md's reference setting
    python benchmarks/grpo.py --iterations 30 --group-size 8

The reference setting is ``benchmarks/ppo.py``'s: GPT-2-shaped models of 2 layers, 4 heads, d=128 (about
413k parameters each), 64 episodes of random 4-token prompts and exactly 16-token responses per iteration.
GRPO draws them as 64 / G prompts with G responses each and uses each batch once (one epoch, one minibatch,
the default of ``GRPOConfig``, as TRL's); PPO runs its 4 epochs with the value head on the shared trunk and
with a separate value model. Medians are printed; timings on a shared machine vary from run to run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppo import build, peak_rss_mb  # noqa: E402  (the PPO benchmark's models and prompts)

from rlhf_course.device import pick_device  # noqa: E402
from rlhf_course.grpo import GRPOConfig, GRPOTrainer  # noqa: E402


def build_grpo(device: torch.device, group_size: int, epochs: int, seed: int = 0) -> GRPOTrainer:
    """GRPO on the same models and prompts as ``benchmarks/ppo.py``'s reference setting."""
    ppo = build("reference", "shared", device, None, seed=seed)
    policy = ppo.reference.__class__(replace(ppo.reference.cfg, value_head=False)).to(device)
    policy.load_state_dict(ppo.reference.state_dict())
    cfg = replace(GRPOConfig(), n_prompts=ppo.cfg.batch_size // group_size, group_size=group_size,
                  max_new_tokens=ppo.cfg.max_new_tokens, ppo_epochs=epochs, seed=seed)
    return GRPOTrainer(cfg, policy, ppo.reference, ppo.reward_fn, ppo.prompts, None, ppo.pad_id)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iterations", type=int, default=20, help="timed iterations per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant first")
    ap.add_argument("--group-size", type=int, default=4)
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    print(f"device: {device}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads")
    trainers = {f"GRPO G={args.group_size}, 1 epoch": build_grpo(device, args.group_size, 1),
                f"GRPO G={args.group_size}, 4 epochs": build_grpo(device, args.group_size, 4),
                "PPO, shared value trunk": build("reference", "shared", device, None),
                "PPO, separate value model": build("reference", "separate", device, None)}
    times = {k: [] for k in trainers}
    for i in range(args.warmup + args.iterations):
        for name, tr in trainers.items():  # interleaved: every variant sees the same machine load
            b = tr.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                # GRPO's batch is a dict, PPO's a PPOBatch
                timings, mask = (b["timings"], b["mask"]) if isinstance(b, dict) else (b.timings, b.mask)
                times[name].append({**timings, "episodes": mask.shape[0]})
    med = statistics.median
    print(f"medians over {args.iterations} iterations (after {args.warmup} warm-up), 64 episodes each:")
    for name, ts in times.items():
        it = med(x["time_iteration"] for x in ts)
        print(f"  {name:<28} rollout {med(x['time_rollout'] for x in ts) * 1000:5.0f} ms, scoring "
              f"{med(x['time_score'] for x in ts) * 1000:4.0f} ms, update {med(x['time_update'] for x in ts):.3f} s; "
              f"iteration {it:.3f} s ({ts[0]['episodes'] / it:.0f} episodes/s)")
    print(f"peak memory: {peak_rss_mb():.0f} MB resident")
    return 0


if __name__ == "__main__":
    sys.exit(main())
