"""The loop every RL stage of the tiny language model shares (``ppo``, ``grpo``): iterations with a progress
bar, one line of ``metrics.jsonl`` each, a checkpoint every ``checkpoint_every`` iterations, exact resume.

A trainer provides ``step() -> batch``, ``state_dict()`` and ``load_state_dict(state)``; the stage provides
``metrics(step, batch) -> dict`` (the batch's timings included). A run killed at any moment and started again
with ``resume=True`` drops the metric lines logged after its last checkpoint and continues from that
checkpoint: on the CPU the continued run is bit for bit the run that never stopped (the checkpoint holds the
random streams too).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .runs import append_jsonl, check_same_config, read_jsonl, save_atomic, truncate_jsonl, write_json

__all__ = ["RunInterrupted", "refuse_or_check", "run_iterations",
           "write_summary"]


class RunInterrupted(RuntimeError):
    """Raised when a run stops early on purpose (``stop_after=n``): a stand-in for a kill, for the tests."""


def refuse_or_check(out: Path, cfg, what: str, resume: bool) -> None:
    """A folder that already holds a run is refused unless ``resume``; a resumed run must have the same config."""
    if out.exists() and ((out / "checkpoint.pt").exists() or (out / "metrics.jsonl").exists()):
        if not resume:
            raise ValueError(f"{out} already holds a {what}; pass resume=True (--resume) to continue it, or "
                             f"use another output folder")
        check_same_config(out / "config.json", cfg, what)


def run_iterations(trainer, metrics: Callable[[int, object], dict], out: Path, iterations: int,
                   checkpoint_every: int, *, desc: str, resume: bool = False, progress: bool = True,
                   stop_after: int | None = None) -> tuple[float, list[dict]]:
    """Run ``trainer.step()`` until ``iterations``; returns ``(seconds of training, the metric records)``.

    ``seconds`` adds up the iterations of every session of the run (a resumed run counts its earlier ones).
    """
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    start, seconds = 0, 0.0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        trainer.load_state_dict(state)
        start, seconds = state["step"] + 1, state["seconds"]
        truncate_jsonl(metrics_path, state["step"])
    elif metrics_path.exists():
        metrics_path.unlink()  # killed before its first checkpoint: start over
    bar = tqdm(range(start, iterations), desc=desc, disable=not progress, leave=False, initial=start,
               total=iterations)
    for n_session, step in enumerate(bar, start=1):
        t0 = time.perf_counter()
        b = trainer.step()
        record = metrics(step, b)
        seconds += time.perf_counter() - t0
        record["seconds"] = seconds
        append_jsonl(metrics_path, record)
        bar.set_postfix(proxy=f"{record['proxy']:.2f}", gold=f"{record['gold']:.2f}", kl=f"{record['kl']:.2f}")
        last = step == iterations - 1
        if (step + 1) % checkpoint_every == 0 or last:
            save_atomic({**trainer.state_dict(), "step": step, "seconds": seconds}, ckpt_path)
        if stop_after is not None and n_session >= stop_after and not last:
            bar.close()
            raise RunInterrupted(f"stopped after {n_session} iterations (at step {step}), as asked")
    bar.close()
    return seconds, read_jsonl(metrics_path)


def write_summary(out: Path, **fields) -> None:
    """``summary.json``, written last: its presence means the run finished."""
    write_json(out / "summary.json", fields)
