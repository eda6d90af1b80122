"""The messages between the trusted grader and its worker: one JSON object per line, nothing else.

Requests (grader -> worker), after a first ``config`` message:

* ``{"op": "exec", "cell": i, "source": "..."}`` -> ``{"ok": true}`` or ``{"ok": false, "error": "..."}``
* ``{"op": "collect", "name": n, "kind": "function", "args": [...]}`` -> the record of
  :func:`rlhf_course.checks.collect_cases` for that one case (or ``{"status": "not-defined"}``)
* ``{"op": "collect", "name": n, "kind": "value"}`` -> ``{"status": "ok", "value": to_plain(answer)}``

Every reply carries the request's ``id``. The grader reads at most :data:`MAX_MESSAGE` bytes per reply
and only ever ``json.loads`` it.
"""
from __future__ import annotations

import json

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
