"""Run directories and their files, shared by the stages of chapter 6 (``sft``, ``reward_model``, ``ppo``).

A stage writes into its own folder: ``config.json`` (what was asked for), ``metrics.jsonl`` (one JSON object
per logged step), ``summary.json`` (written last: its presence means the stage finished), and its model
or checkpoint. Files are written atomically (to a temporary name, then renamed), so a run killed at any
moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from .device import autocast_dtype

__all__ = ["make_run_dir", "write_json", "read_json", "append_jsonl", "read_jsonl", "truncate_jsonl",
           "save_atomic", "autocast", "grad_scaler", "adam", "scaled_step", "config_dict", "check_same_config"]


def make_run_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents). The topmost folder created here gets a ``.gitignore`` of ``*``: run
    outputs (models, checkpoints, metrics) never end up in a repository by accident."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if not path.exists():
        top = path
        while not top.parent.exists():
            top = top.parent
        path.mkdir(parents=True)
        (top / ".gitignore").write_text("# outputs of rlhf-course runs\n*\n")
    return path


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else (1e308 if x > 0 else -1e308)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        return _jsonable(x.item())
    return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a line; flushed and synced, so a killed run keeps every finished line."""
    with open(path, "a") as f:
        f.write(json.dumps(_jsonable(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete records of a JSON-lines file (a torn last line from a killed run is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_jsonl(path: str | os.PathLike, keep_until_step: int) -> None:
    """Keep the records with ``step <= keep_until_step`` (used when a run resumes from a checkpoint)."""
    path = Path(path)
    kept = [r for r in read_jsonl(path) if r.get("step", -1) <= keep_until_step]
    tmp = _tmp(path)
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    path = Path(path)
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def autocast(device: torch.device):
    """Mixed precision where it pays (CUDA: bfloat16 or float16), a no-op context elsewhere.

    The same code runs on every device: on the CPU the context is created disabled.
    """
    dtype = autocast_dtype(device)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 training on CUDA; a pass-through (disabled) scaler everywhere else."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)


def adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """The trainers' Adam (``eps = 1e-5``, as in the PPO implementations the course follows). On CUDA the fused
    kernel (one launch for all parameters instead of several per tensor). On the CPU the default kernel: the
    fused one saves about 2 ms a step there (measured on the tiny GPT) but moves the weights in the last bits
    (1e-7 after 20 steps), and the book's runs, bit-for-bit resumable, are computed with the default one."""
    return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True if device.type == "cuda" else None)


def scaled_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params,
                max_grad_norm: float) -> None:
    """One optimizer step on ``loss``: gradients zeroed, back-propagated through the (possibly disabled) loss
    scaler, unscaled so that the norm is clipped to ``max_grad_norm`` on the true gradients, then stepped.
    The scaler skips the step when float16 gradients overflowed, and adapts its scale."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(opt)
    scaler.update()


def config_dict(cfg: Any) -> dict:
    """A dataclass config as plain JSON data (nested dataclasses included)."""
    if not is_dataclass(cfg):
        raise TypeError(f"expected a dataclass config, got {type(cfg).__name__}")
    return _jsonable(asdict(cfg))


def check_same_config(path: Path, cfg: Any, what: str) -> None:
    """Refuse to reuse a stage folder made with another configuration (a clear error, nothing overwritten)."""
    want = config_dict(cfg)
    have = read_json(path)
    if have != want:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise ValueError(f"{path.parent} holds a {what} made with another configuration (differs in: "
                         f"{', '.join(diff)}); use another output folder, or remove that one")
