"""The messages between the trusted grader and its worker: one JSON object per line, nothing else.

Requests (grader -> worker), after a first ``config`` message:

* ``{"op": "exec", "cell": i, "source": "..."}`` -> ``{"ok": true}`` or ``{"ok": false, "error": "..."}``
* ``{"op": "collect", "name": n, "kind": "function", "args": [...]}`` -> the record of
  :func:`rlhf_course.checks.collect_cases` for that one case (or ``{"status": "not-defined"}``)
* ``{"op": "collect", "name": n, "kind": "value"}`` -> ``{"status": "ok", "value": to_plain(answer)}``

Every reply carries the request's ``id``. The grader reads at most :data:`MAX_MESSAGE` bytes per reply
and only ever ``json.loads`` it; :func:`sanitize_record` then reduces a ``collect`` reply to plain data of
the expected shape, and nothing else.
"""
from __future__ import annotations

import json
import math

from ..plain import MAX_STR

MAX_MESSAGE = 16 * 2**20  # bytes in one reply; more is the worker misbehaving


class ProtocolError(Exception):
    """The worker sent something that is not one reply of the protocol."""


def encode(obj: dict) -> bytes:
    """One message: compact JSON on one line (JSON escapes every newline inside strings)."""
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict:
    """Parse one reply; anything but a JSON object is a :class:`ProtocolError`."""
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"reply of {len(line)} bytes is larger than {MAX_MESSAGE}")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"reply is not JSON: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"reply is a JSON {type(obj).__name__}, not an object")
    return obj


def valid_plain(p, depth: int = 0) -> bool:
    """Is ``p`` plain data as :func:`rlhf_course.checks.to_plain` makes it (and nothing else)?"""
    if depth > 25 or not isinstance(p, dict):
        return False
    t, v = p.get("t"), p.get("v")
    if t in ("none", "ellipsis"):
        return True
    if t == "bool":
        return isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "str":
        return isinstance(v, str) and len(v) <= MAX_STR
    if t == "object":
        return isinstance(p.get("type"), str)
    if t == "array":
        shape = p.get("shape")
        if not (isinstance(shape, list) and len(shape) <= 32 and isinstance(v, list) and len(v) <= 100_000
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape)):
            return False
        return math.prod(shape) == len(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    if t == "list":
        return isinstance(v, list) and len(v) <= 100_000 and all(valid_plain(x, depth + 1) for x in v)
    if t == "dict":
        return (isinstance(v, dict) and len(v) <= 1000
                and all(isinstance(k, str) and valid_plain(x, depth + 1) for k, x in v.items()))
    return False


def _case_result(r) -> dict:
    if isinstance(r, dict) and "error" in r:
        types = r.get("error_types")
        types = [t[:100] for t in types if isinstance(t, str)][:50] if isinstance(types, list) else []
        return {"error": str(r["error"])[:MAX_STR], "error_types": types}
    if isinstance(r, dict) and valid_plain(r.get("value")):
        return {"value": r["value"]}
    return {"error": "the answer's value could not be read", "error_types": []}


def sanitize_record(kind: str, rec: dict) -> dict:
    """A worker's reply to ``collect``, reduced to exactly what :func:`rlhf_course.checks.grade` reads."""
    status = rec.get("status")
    if status in ("missing", "not-callable", "not-defined"):
        return {"status": status, "type": str(rec.get("type", "?"))[:200]}
    if status == "error":
        return {"status": "error", "message": str(rec.get("message", "the answer could not be checked"))[:MAX_STR]}
    if status == "ok" and kind == "function":
        results = rec.get("results")
        if isinstance(results, list) and len(results) == 1:
            out = {"status": "ok", "results": [_case_result(results[0])]}
            hit = rec.get("delegated")
            if isinstance(hit, list) and hit and all(isinstance(h, str) for h in hit):
                out["delegated"] = [h[:200] for h in hit[:8]]
            if rec.get("guard_off") is True:
                out["guard_off"] = True
            return out
    elif status == "ok" and valid_plain(rec.get("value")):
        return {"status": "ok", "value": rec["value"]}
    return {"status": "error", "message": "the grader could not read the answer's value"}
