"""Input validation shared by the package's public functions.

Every public function accepts numpy arrays (or anything ``np.asarray`` takes) and torch tensors, and
returns the same kind it was given. Torch is never imported here: a tensor is recognised by its type's
module, so importing the package stays cheap where torch is not needed (the grader's workers, the
first chapters).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def as_float_array(x: Any, name: str):
    """Return ``x`` as a floating-point numpy array or torch tensor, rejecting what cannot be one.

    Integers and lists become float64 numpy arrays; float tensors and arrays keep their dtype.
    """
    if is_torch(x):
        if not x.is_floating_point():
            x = x.double()
        return x
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def _np(x) -> np.ndarray:
    """A numpy view of ``x`` for checks only (tensors are detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if is_torch(x) else x


def check_no_nan(x, name: str) -> None:
    if np.isnan(_np(x)).any():
        raise ValueError(f"{name} contains NaN")


def check_finite(x, name: str) -> None:
    check_no_nan(x, name)
    if np.isinf(_np(x)).any():
        raise ValueError(f"{name} contains inf; expected finite values")


def check_same_kind(a, b, names: str) -> None:
    if is_torch(a) != is_torch(b):
        raise TypeError(f"{names} must both be numpy arrays or both torch tensors, not a mix")


def check_same_shape(a, b, names: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_broadcastable(a, b, names: str) -> tuple[int, ...]:
    """Shapes broadcast, and the last axes (the categories) have the same size."""
    sa, sb = tuple(a.shape), tuple(b.shape)
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"{names} must have at least one axis (the categories), got shapes {sa} and {sb}")
    if sa[-1] != sb[-1]:
        raise ValueError(
            f"{names} must have the same number of categories on the last axis, got shapes {sa} and {sb}"
        )
    try:
        return np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ValueError(f"{names} have shapes {sa} and {sb}, which do not broadcast") from None


def prob_atol(x) -> float:
    """Tolerance on sum(p) = 1: looser for 32-bit and lower precision."""
    itemsize = x.element_size() if is_torch(x) else x.dtype.itemsize
    return 1e-6 if itemsize >= 8 else 1e-4


def check_probs(p, name: str) -> None:
    """``p`` is a categorical distribution on its last axis: no NaN, entries >= 0, rows sum to one."""
    check_no_nan(p, name)
    a = _np(p)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the categories), got a scalar")
    if (a < 0).any():
        raise ValueError(f"{name} has negative entries; probabilities must be >= 0")
    if np.isinf(a).any():
        raise ValueError(f"{name} contains inf; probabilities must be finite")
    total = a.sum(axis=-1, dtype=np.float64)
    atol = prob_atol(p)
    bad = np.abs(total - 1.0) > atol
    if bad.any():
        worst = float(np.asarray(total)[bad].flat[0])
        raise ValueError(
            f"{name} must sum to 1 along the last axis (within {atol:g}); a row sums to {worst:.6g}"
        )


def check_logprobs(logp, name: str, allow_neg_inf: bool = False) -> None:
    """Log-probabilities: no NaN, no +inf, at most 0 (up to rounding), -inf only where allowed."""
    check_no_nan(logp, name)
    a = _np(logp)
    if np.isposinf(a).any():
        raise ValueError(f"{name} contains +inf; log-probabilities are at most 0")
    if not allow_neg_inf and np.isneginf(a).any():
        raise ValueError(f"{name} contains -inf: a sample that has probability zero under its own policy")
    if (a > 1e-6).any():
        raise ValueError(f"{name} has positive entries (max {a.max():.3g}); log-probabilities are at most 0")


def check_positive_scalar(x, name: str) -> float:
    """A finite, strictly positive Python number (e.g. beta)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(x).__name__}")
    v = float(x)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v}")
    return v


def check_count(n, name: str, minimum: int = 1) -> int:
    """A whole number ``>= minimum`` (a Python or numpy integer, not a bool), as an ``int``; else ``ValueError``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)
