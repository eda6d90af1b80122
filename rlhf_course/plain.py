"""Plain data: what may cross from the student's process to the grader's, and how two such values compare.

:func:`to_plain` encodes any value as tagged JSON data (``{"t": type, "v": value}``), keeping nothing of the
student's objects; :func:`compare` compares two encoded values by type and content with explicit tolerances,
and :func:`describe` writes one for feedback. Used by both halves of checking (:mod:`rlhf_course.checks`),
by the questions' hidden cases and by the grader's reply check.
"""
from __future__ import annotations

from typing import Any

import numpy as np

MAX_STR = 2000  # longest string kept from a student's answer or error message


def to_plain(x: Any, depth: int = 0) -> dict:
    """Encode ``x`` as tagged plain data: ``{"t": type, "v": value}``, built only of JSON types.

    Objects of other types are described (``{"t": "object", "type": name}``), never kept: an object
    whose ``__eq__`` claims equality with everything arrives as a description and compares equal to nothing.
    """
    if depth > 20:
        return {"t": "object", "type": "too deeply nested"}
    if x is None:
        return {"t": "none"}
    if x is Ellipsis:
        return {"t": "ellipsis"}
    if type(x) is bool or type(x) is np.bool_:
        return {"t": "bool", "v": bool(x)}
    if type(x) in (int, float) or isinstance(x, (np.integer, np.floating)):
        return {"t": "float", "v": float(x)}
    if type(x) is str:
        return {"t": "str", "v": x[:MAX_STR]}
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if type(x) is np.ndarray:
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            return {"t": "object", "type": f"ndarray of {x.dtype}"}
        if x.size > 100_000:
            return {"t": "object", "type": f"ndarray with {x.size} elements (too large)"}
        if np.iscomplexobj(x):
            return {"t": "object", "type": "complex ndarray"}
        return {"t": "array", "shape": list(x.shape), "v": x.astype(np.float64).ravel().tolist()}
    if type(x) in (list, tuple):
        if len(x) > 100_000:
            return {"t": "object", "type": f"{type(x).__name__} of {len(x)} items (too long)"}
        return {"t": "list", "v": [to_plain(v, depth + 1) for v in x]}
    if type(x) is dict:
        if len(x) > 1000 or not all(type(k) is str for k in x):
            return {"t": "object", "type": "dict (keys must be strings, at most 1000)"}
        return {"t": "dict", "v": {k[:MAX_STR]: to_plain(v, depth + 1) for k, v in x.items()}}
    return {"t": "object", "type": type(x).__qualname__[:200]}


def as_args(args: tuple) -> tuple:
    """Case inputs as the student's function receives them: numeric lists become float64 arrays."""
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            try:
                arr = np.asarray(a, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            out.append(arr if arr is not None else a)
        else:
            out.append(a)
    return tuple(out)


def plain_args(args: tuple) -> tuple:
    """Case inputs as JSON data: numpy arrays and scalars become lists and Python numbers."""
    def conv(x):
        if isinstance(x, np.ndarray):
            return conv(x.tolist())
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            return float(x)
        return x

    return tuple(conv(a) for a in args)


def describe(p: dict) -> str:
    """A short human description of a plain-data value, for feedback."""
    t = p.get("t")
    if t == "float":
        return f"{p['v']:.6g}"
    if t == "array":
        v = np.asarray(p["v"]).reshape(p["shape"])
        return f"array{tuple(p['shape'])} " + np.array2string(v, precision=6, threshold=12)
    if t == "str":
        return repr(p["v"][:80])
    if t == "bool":
        return repr(p["v"])
    if t == "list":
        return "[" + ", ".join(describe(v) for v in p["v"][:8]) + (", ..." if len(p["v"]) > 8 else "") + "]"
    if t == "dict":
        items = list(p["v"].items())[:8]
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in items) + "}"
    if t == "none":
        return "None"
    if t == "ellipsis":
        return "... (not answered)"
    return f"an object of type {p.get('type', '?')}"


def numeric(p: dict):
    """A float64 array from a plain float, array, or list of floats; None if ``p`` is not numeric."""
    t = p.get("t")
    if t == "float":
        return np.asarray(p["v"], dtype=np.float64)
    if t == "bool":
        return None
    if t == "array":
        return np.asarray(p["v"], dtype=np.float64).reshape(p["shape"])
    if t == "list" and all(v.get("t") in ("float", "list") for v in p["v"]):
        try:
            return np.asarray(unplain(p), dtype=np.float64)
        except (TypeError, ValueError):
            return None
    return None


def unplain(p: dict):
    t = p.get("t")
    if t == "list":
        return [unplain(v) for v in p["v"]]
    if t == "dict":
        return {k: unplain(v) for k, v in p["v"].items()}
    if t == "array":
        return np.asarray(p["v"]).reshape(p["shape"]).tolist()
    return p.get("v")


def compare(expected: dict, got: dict, rtol: float, atol: float) -> tuple[bool, str]:
    """Compare two plain values by type and content; numbers within ``|got - exp| <= atol + rtol |exp|``."""
    e = numeric(expected)
    if e is not None:
        g = numeric(got)
        if g is None:
            return False, f"expected a number or array like {describe(expected)}, got {describe(got)}"
        if e.shape != g.shape and not (e.size == 1 and g.size == 1):
            return False, f"expected shape {e.shape}, got shape {g.shape}"
        e, g = e.reshape(-1), g.reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            ok = within_tolerance(e, g, rtol, atol)
        if bool(ok.all()):
            return True, ""
        return False, f"expected {describe(expected)}, got {describe(got)}"
    if expected.get("t") == got.get("t") and unplain(expected) == unplain(got):
        return True, ""
    return False, f"expected {describe(expected)}, got {describe(got)}"


def within_tolerance(e: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise: infinities must match exactly, NaN never matches, finite values within tolerance."""
    same_inf = np.isinf(e) & (e == g)
    scale = np.abs(np.where(np.isinf(e), 0.0, e))
    within = np.isfinite(g) & np.isfinite(e) & (np.abs(g - e) <= atol + rtol * scale)
    return same_inf | within
