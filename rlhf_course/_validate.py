"""Input validation shared by the package's public functions.

Every public function accepts numpy arrays (or anything ``np.asarray`` takes) and torch tensors, and
returns the same kind it was given. Torch is never imported here: a tensor is recognised by its type's
module, so importing the package stays cheap where torch is not needed (the grader's workers, the
first chapters).
"""
from __future__ import annotations

import math
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


# token ids, masks and logits of batches of sequences (``(batch, time)`` arrays)


def as_tokens(tokens: Any, name: str = "tokens"):
    """Token ids as an int64 numpy array or a long tensor; whole-valued floats are accepted."""
    if is_torch(tokens):
        if tokens.is_floating_point():
            check_no_nan(tokens, name)
            if not bool((tokens == tokens.round()).all()):
                raise ValueError(f"{name} must be integer token ids, got non-integer values")
        elif tokens.dtype.is_complex or str(tokens.dtype) == "torch.bool":
            raise TypeError(f"{name} must be integer token ids, got dtype {tokens.dtype}")
        return tokens.long()
    if isinstance(tokens, (str, bytes, dict)) or tokens is None:
        raise TypeError(f"{name} must be an array of integer token ids, got {type(tokens).__name__}")
    try:
        arr = np.asarray(tokens)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of integer token ids: {exc}") from None
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be an array of integer token ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integer token ids, got non-integer values")
    return arr.astype(np.int64)


def check_token_range(tokens, vocab_size: int, name: str = "tokens") -> None:
    """Token ids in ``[0, vocab_size)``."""
    t = _np(tokens)
    if t.size and (t.min() < 0 or t.max() >= vocab_size):
        raise ValueError(f"{name} must be ids in [0, {vocab_size}) (the vocabulary of the logits), "
                         f"got values from {t.min()} to {t.max()}")


def as_mask(mask: Any, like, name: str = "mask"):
    """A 0/1 mask of the same shape and kind as ``like``, as booleans (numpy) or a bool tensor (torch)."""
    if mask is None:
        if is_torch(like):
            import torch

            return torch.ones(like.shape, dtype=torch.bool, device=like.device)
        return np.ones(like.shape, dtype=bool)
    if is_torch(mask) != is_torch(like):
        raise TypeError(f"{name} must be of the same kind as the log-probabilities "
                        "(both numpy arrays or both torch tensors), not a mix")
    if not is_torch(mask):
        if isinstance(mask, (str, bytes, dict)):
            raise TypeError(f"{name} must be an array of 0s and 1s, got {type(mask).__name__}")
        try:
            mask = np.asarray(mask)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of 0s and 1s: {exc}") from None
        if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
            raise TypeError(f"{name} must be an array of 0s and 1s, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"{name} must have the shape of the log-probabilities (batch x time), "
                         f"got {tuple(mask.shape)} and {tuple(like.shape)}")
    m = _np(mask)
    if m.dtype != bool:
        with np.errstate(invalid="ignore"):
            if np.isnan(m).any() or not np.isin(m, (0, 1)).all():
                raise ValueError(f"{name} must hold only 0 and 1 (1 = a real token, 0 = padding)")
    if is_torch(mask):
        return mask.to(device=like.device) != 0
    return m != 0


def check_time_axis(x, name: str) -> None:
    """At least one axis, the last one being time."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have a time axis (shape (..., T)), got a scalar")


def as_logits(logits, name: str):
    """Logits ``(..., V)``, vocabulary last: no NaN, no ``+inf``, and at least one token possible per row."""
    logits = as_float_array(logits, name)
    if logits.ndim < 1:
        raise ValueError(f"{name} must have a vocabulary axis last (shape (..., T, V)), got a scalar")
    if logits.shape[-1] == 0:
        raise ValueError(f"{name} has an empty vocabulary axis")
    check_no_nan(logits, name)
    a = _np(logits)
    if np.isposinf(a).any():
        raise ValueError(f"{name} contains +inf; logits must be finite or -inf (a token ruled out)")
    if np.isneginf(a).all(axis=-1).any():
        raise ValueError(f"{name} has a row that is -inf everywhere: no token is possible there")
    return logits


# --- configuration dataclasses: a bad field raises ValueError naming ``Config.field`` and what it must be

def check_config_ints(cfg, *names: str) -> None:
    """Each field in ``names`` of the dataclass ``cfg`` is a positive integer (``bool`` is not)."""
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive integer, got {v!r}")


def check_config_number(cfg, name: str, lo: float | None = None, hi: float | None = None,
                        lo_open: bool = False, hi_open: bool = False) -> None:
    """The field ``name`` of ``cfg`` is a finite number in the interval from ``lo`` to ``hi`` (open ends where
    ``lo_open``/``hi_open``; ``None`` for no bound)."""
    v, where = getattr(cfg, name), f"{type(cfg).__name__}.{name}"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where} must be a finite number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{where} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{where} must be {'<' if hi_open else '<='} {hi}, got {v!r}")
