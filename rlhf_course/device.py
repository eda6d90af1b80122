"""``device="auto"``: CUDA when present, then Apple's MPS, then the CPU; and the precision used there.

By default CUDA trains with mixed precision (bfloat16 where the device supports it, else float16 with loss
scaling) and every other device in float32. :func:`precision` overrides that inside a ``with`` block, so
that one device can be checked in several precisions (``benchmarks/device_check.py``: float32 on CUDA to
compare with the CPU; float16 with the grad scaler on a GPU that has bfloat16; mixed precision on the CPU,
to exercise those code paths where there is no GPU).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_OVERRIDE: list[str] = []  # innermost precision() block last


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``device``; ``"auto"`` picks CUDA, then MPS, then CPU.

    Raises ``ValueError`` for an unknown name and for a device that is not available here.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto' or 'cpu', got {type(device).__name__}")
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (optionally 'cuda:N'), got {device!r}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device here; use 'auto' or 'cpu'")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but it is not available here; use 'auto' or 'cpu'")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision to use on ``device``: bfloat16 on CUDA that supports it, else float16 on CUDA,
    none elsewhere (CPU and MPS train in float32); inside :func:`precision` what it asks for."""
    mode = _OVERRIDE[-1] if _OVERRIDE else "auto"
    if mode != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def precision(mode: str) -> Iterator[None]:
    """Within the block, train and score in ``mode`` on every device: ``"fp32"`` (no autocast), ``"bf16"``
    (bfloat16 autocast), ``"fp16"`` (float16 autocast with loss scaling) or ``"auto"`` (the default rule).

    It is read when a stage starts (its grad scaler) and at every autocast: a whole run belongs inside.
    """
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")
    _OVERRIDE.append(mode)
    try:
        yield
    finally:
        _OVERRIDE.pop()
