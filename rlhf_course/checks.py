"""Questions, their checks, and the notebook self-check.

A question is answered by a name in the student's notebook: a function (``kind="function"``) or a value
(``"value"``, ``"choice"``, ``"ordering"``, ``"matching"``). Checking it has two halves, kept apart so that
the same checks drive both the self-check and the instructor's grader:

1. :func:`collect` runs *where the answer lives* (the notebook's kernel, or the grader's sandboxed worker).
   It calls the answer on each case's inputs and turns whatever comes back into plain data: JSON-able
   dicts, lists, strings and floats, never an object of the student's. Nothing here decides a grade.
2. :func:`grade` runs in a trusted process. It computes the expected values with the reference
   implementation, compares them with the collected plain data by type and content, with explicit
   tolerances, and writes the feedback.

:func:`check` does both in one process, for the student's own feedback while working.
"""
from __future__ import annotations

import math
import sys
import threading
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

KINDS = ("function", "value", "choice", "ordering", "matching")
MAX_STR = 2000  # longest string kept from a student's answer or error message


@dataclass(frozen=True)
class Case:
    """One input on which a function answer is called and compared with the reference.

    ``args`` are plain data; lists of numbers reach the student's function as float64 numpy arrays.
    With ``raises`` set (an exception class name, e.g. ``"ValueError"``), the case passes when the answer
    raises that exception or a subclass of it.
    """

    name: str
    args: tuple = ()
    raises: str | None = None
    rtol: float | None = None
    atol: float | None = None
    hint: str = ""


@dataclass(frozen=True)
class Question:
    """A graded question. ``id`` is ``"NN.name"`` with ``NN`` the exercise (chapter) number."""

    id: str
    kind: str
    points: float
    title: str
    name: str  # the notebook variable that holds the answer
    cases: tuple[Case, ...] = ()
    reference: Callable | None = None  # function questions: the trusted implementation
    answer: Any = None  # value, choice, ordering and matching questions: the expected answer
    choices: tuple[str, ...] = ()  # choice: the labels offered; ordering/matching: the items
    rtol: float = 1e-6
    atol: float = 1e-9
    feedback: dict = field(default_factory=dict)  # choice: label -> why that option is wrong
    hint: str = ""
    # function questions: dotted names of the package functions the question asks the student to write
    # (e.g. ``("rlhf_course.kl.kl_divergence",)``); an answer that reaches one of them scores 0
    guards: tuple[str, ...] = ()
    # function questions: cases the self-check never shows, drawn at grading time from a seeded generator
    hidden: Callable[[np.random.Generator], tuple[Case, ...]] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"question {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.id, str) and len(self.id.split(".")) == 2 and self.id[:2].isdigit()):
            raise ValueError(f"question id must look like 'NN.name', got {self.id!r}")
        if self.points <= 0:
            raise ValueError(f"question {self.id}: points must be > 0")
        if self.kind == "function" and (self.reference is None or not self.cases):
            raise ValueError(f"question {self.id}: a function question needs a reference and cases")
        if self.kind != "function" and self.answer is None:
            raise ValueError(f"question {self.id}: a {self.kind} question needs an answer")
        if self.kind == "choice" and self.answer not in self.choices:
            raise ValueError(f"question {self.id}: answer {self.answer!r} is not among choices {self.choices}")

    @property
    def exercise(self) -> str:
        return self.id.split(".")[0]


# --------------------------------------------------------------------------------------------------
# plain data: what may cross from the student's process to the grader's


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


def _as_args(args: tuple) -> tuple:
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


def _error(exc: BaseException) -> dict:
    names = [c.__name__ for c in type(exc).__mro__]
    return {"error": f"{type(exc).__name__}: {exc}"[:MAX_STR], "error_types": names}


def _short(dotted: str) -> str:
    return dotted.removeprefix("rlhf_course.")


def guard_codes(guards: tuple[str, ...] | list[str]) -> dict:
    """Map each guarded package function's dotted name to its code object.

    A function wrapped by a decorator that keeps ``__wrapped__`` is watched through the function inside.
    The worker calls this before any student code runs, so that a notebook that later rebinds
    ``rlhf_course.kl.kl_divergence`` cannot make the watch look at the wrong code.
    """
    import importlib

    table = {}
    for dotted in guards:
        module, _, attr = dotted.rpartition(".")
        fn = getattr(importlib.import_module(module), attr)
        fn = getattr(fn, "__wrapped__", fn)
        table[dotted] = fn.__code__
    return table


def delegation_message(names: list[str]) -> str:
    """The feedback for an answer that reached a guarded package function."""
    return "; ".join(f"this answer calls the course's own `{n}`; the exercise is to write it" for n in names)


GUARD_OFF_MESSAGE = ("this answer changed the interpreter's profile hook while it ran, which the check for calls "
                     "into the course's own functions needs; it cannot be scored")


def _run_cases(answer: Any, cases: list[dict]) -> list[dict]:
    results = []
    for case in cases:
        try:
            value = answer(*_as_args(tuple(case["args"])))
            results.append({"value": to_plain(value)})
        except Exception as exc:  # the student's exception is data, not our failure
            results.append(_error(exc))
    return results


def collect_cases(answer: Any, cases: list[dict], guards: tuple[str, ...] | list[str] = (),
                  codes: dict | None = None, *, _run=_run_cases, _setprofile=sys.setprofile,
                  _getprofile=sys.getprofile, _thread_setprofile=threading.setprofile,
                  _thread_getprofile=getattr(threading, "getprofile", lambda: None)) -> dict:
    """Call a function answer on each case's ``args`` (plain data); return the results as plain data.

    ``cases`` are ``{"args": [...]}`` dicts, as the grader sends them. Each result is
    ``{"value": to_plain(result)}`` or ``{"error": ..., "error_types": [...]}``.

    ``guards`` name the package functions the question asks the student to write (``codes``: their code
    objects, from :func:`guard_codes`, resolved earlier). While the cases run, a profile hook records every
    call into those *code objects*. Watching the code rather than replacing the function catches every
    route to it: a direct call, a wrapper, a lambda, ``functools.partial``, an import under another name
    made before the check, ``getattr(importlib.import_module(...), ...)``, since all of them end up
    executing the same code. The functions still compute as usual, so package helpers built on them stay
    usable elsewhere; the record lands in ``"delegated"``. An answer that replaces the hook while it runs
    is recorded as ``"guard_off"``. The keyword-only defaults are bound when this module is imported, so
    that a notebook that rebinds ``sys.setprofile`` or this module's helpers changes nothing here.
    """
    if answer is Ellipsis or answer is None:
        return {"status": "missing"}
    if not callable(answer):
        return {"status": "not-callable", "type": type(answer).__qualname__[:200]}
    if not guards:
        return {"status": "ok", "results": _run(answer, cases)}
    table = dict(codes or {})
    missing = [g for g in guards if g not in table]
    if missing:
        table.update(guard_codes(missing))
    watched = {id(table[g]): _short(g) for g in guards}
    keep = [table[g] for g in guards]  # the code objects stay alive while their ids are watched
    hit: list[str] = []

    def watch(frame, event, arg):
        if event == "call":
            name = watched.get(id(frame.f_code))
            if name is not None and name not in hit:
                hit.append(name)

    previous, previous_thread = _getprofile(), _thread_getprofile()
    _thread_setprofile(watch)  # threads the answer starts are watched too
    _setprofile(watch)
    try:
        results = _run(answer, cases)
        replaced = _getprofile() is not watch
    finally:
        _setprofile(previous)
        _thread_setprofile(previous_thread)
    del keep
    return function_record(results, hit, replaced)


def function_record(results: list[dict], delegated=(), guard_off: bool = False) -> dict:
    """The record of a function answer: its case results, and what the guards saw while they ran."""
    record = {"status": "ok", "results": results}
    if delegated:
        record["delegated"] = sorted(delegated)
    if guard_off:
        record["guard_off"] = True
    return record


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


def hidden_cases(q: Question, seed: int) -> tuple[Case, ...]:
    """The hidden cases of ``q`` in a grading run with ``seed``: the same seed and question, the same cases.

    Each question draws from its own stream, ``default_rng([seed, crc32(id)])``, so adding a question to an
    exercise changes no other question's cases.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if q.kind != "function" or q.hidden is None:
        return ()
    rng = np.random.default_rng([int(seed), zlib.crc32(q.id.encode())])
    return tuple(Case(c.name, plain_args(tuple(c.args)), c.raises, c.rtol, c.atol, c.hint) for c in q.hidden(rng))


def case_payload(q: Question) -> list[dict]:
    """The inputs of a function question's cases, as plain data to send to where the answer lives."""
    return [{"name": c.name, "args": list(c.args)} for c in q.cases]


def collect(q: Question, answer: Any, hidden: tuple[Case, ...] = ()) -> dict:
    """Plain-data record of ``answer`` for question ``q`` (runs where the answer lives).

    ``hidden``: extra cases (from :func:`hidden_cases`) run after the public ones, as the grader does.
    """
    if q.kind == "function":
        payload = case_payload(q) + [{"name": c.name, "args": list(c.args)} for c in hidden]
        return collect_cases(answer, payload, q.guards)
    return {"status": "ok", "value": to_plain(answer)}


# --------------------------------------------------------------------------------------------------
# grading: trusted side


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str


@dataclass
class Result:
    """The outcome of grading one question."""

    id: str
    title: str
    score: float
    max_score: float
    status: str  # "passed", "partial", "failed", "not-answered", "error"
    messages: list[str] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    public_only: bool = False  # the self-check of a function question: the grader runs hidden cases too

    def lines(self) -> list[str]:
        mark = {"passed": "PASS", "partial": "PARTIAL", "failed": "FAIL"}.get(self.status, self.status.upper())
        scope = " on the public cases" if self.public_only else ""
        head = f"[{mark}] {self.id} ({self.title}): {self.score:g}/{self.max_score:g} points{scope}"
        out = [head]
        out += [f"    {m}" for m in self.messages]
        for c in self.cases:
            out.append(f"    {'ok  ' if c.passed else 'FAIL'} {c.name}" + ("" if c.passed else f": {c.message}"))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


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


def _numeric(p: dict):
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
            return np.asarray(_unplain(p), dtype=np.float64)
        except (TypeError, ValueError):
            return None
    return None


def _unplain(p: dict):
    t = p.get("t")
    if t == "list":
        return [_unplain(v) for v in p["v"]]
    if t == "dict":
        return {k: _unplain(v) for k, v in p["v"].items()}
    if t == "array":
        return np.asarray(p["v"]).reshape(p["shape"]).tolist()
    return p.get("v")


def compare(expected: dict, got: dict, rtol: float, atol: float) -> tuple[bool, str]:
    """Compare two plain values by type and content; numbers within ``|got - exp| <= atol + rtol |exp|``."""
    e = _numeric(expected)
    if e is not None:
        g = _numeric(got)
        if g is None:
            return False, f"expected a number or array like {describe(expected)}, got {describe(got)}"
        if e.shape != g.shape and not (e.size == 1 and g.size == 1):
            return False, f"expected shape {e.shape}, got shape {g.shape}"
        e, g = e.reshape(-1), g.reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            ok = _close(e, g, rtol, atol)
        if bool(ok.all()):
            return True, ""
        return False, f"expected {describe(expected)}, got {describe(got)}"
    if expected.get("t") == got.get("t") and _unplain(expected) == _unplain(got):
        return True, ""
    return False, f"expected {describe(expected)}, got {describe(got)}"


def _close(e: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise: infinities must match exactly, NaN never matches, finite values within tolerance."""
    same_inf = np.isinf(e) & (e == g)
    scale = np.abs(np.where(np.isinf(e), 0.0, e))
    within = np.isfinite(g) & np.isfinite(e) & (np.abs(g - e) <= atol + rtol * scale)
    return same_inf | within


def _missing(q: Question) -> Result:
    return Result(q.id, q.title, 0.0, q.points, "not-answered",
                  [f"`{q.name}` is not answered yet: replace the `...` with your answer."])


HIDDEN_NOTE = "the grader also runs hidden cases"
PUBLIC_PASSED = f"public cases passed; {HIDDEN_NOTE}"


def grade(q: Question, record: dict, hidden: tuple[Case, ...] | None = None) -> Result:
    """Score a collected plain-data ``record`` for ``q`` (runs in the trusted process).

    ``hidden``: the hidden cases the record's results include after the public ones (the grader). ``None``
    (the self-check): public cases only, and the result says that the grader runs hidden cases too.
    """
    res = _grade(q, record, () if hidden is None else tuple(hidden))
    if hidden is None and q.kind == "function":
        res.public_only = True
        if res.status in ("passed", "partial", "failed") and not record.get("delegated") \
                and not record.get("guard_off"):
            res.messages.append(PUBLIC_PASSED if res.status == "passed" else f"Note: {HIDDEN_NOTE}.")
    return res


def _grade(q: Question, record: dict, hidden: tuple[Case, ...]) -> Result:
    status = record.get("status")
    if status == "missing" or (status == "ok" and record.get("value", {}).get("t") in ("ellipsis", "none")
                               and q.kind != "function"):
        return _missing(q)
    if status == "not-defined":
        return Result(q.id, q.title, 0.0, q.points, "not-answered",
                      [f"`{q.name}` is not defined{': ' + record['reason'] if record.get('reason') else ''}."])
    if status == "not-callable":
        return Result(q.id, q.title, 0.0, q.points, "failed",
                      [f"`{q.name}` should be a function, but it is {record.get('type', '?')}."])
    if status != "ok":
        return Result(q.id, q.title, 0.0, q.points, "error", [record.get("message", f"could not be checked ({status})")])
    if q.kind == "function" and record.get("delegated"):
        return Result(q.id, q.title, 0.0, q.points, "failed", [delegation_message(record["delegated"])])
    if q.kind == "function" and record.get("guard_off"):
        return Result(q.id, q.title, 0.0, q.points, "failed", [GUARD_OFF_MESSAGE])
    if q.kind == "function":
        return _grade_function(q, record, hidden)
    return _grade_value(q, record["value"])


def _hidden_failure(got: dict, raises: str | None, ok_value: bool) -> str:
    """Why a hidden case failed, without its inputs, its expected value, or the answer's value."""
    if raises:
        if "error" in got:
            return f"expected {raises}, but it raised {got['error'].split(':')[0][:80]}"
        return f"expected {raises}, but it returned a value"
    if "error" in got:
        return f"raised {got['error'].split(':')[0][:80]}"
    return "the result does not match the reference" if ok_value else "the result has the wrong type or shape"


def _grade_function(q: Question, record: dict, hidden: tuple[Case, ...] = ()) -> Result:
    results = record.get("results", [])
    cases = []
    not_impl = 0
    all_cases = tuple(q.cases) + tuple(hidden)
    for i, c in enumerate(all_cases):
        secret = i >= len(q.cases)  # a hidden case: its feedback names the property, never the values
        label = f"hidden case {i - len(q.cases) + 1}: {c.name}" if secret else c.name
        got = results[i] if i < len(results) and isinstance(results[i], dict) else {"error": "no result"}
        rtol = q.rtol if c.rtol is None else c.rtol
        atol = q.atol if c.atol is None else c.atol
        hint = f" Hint: {c.hint}" if c.hint else ""
        if c.raises:
            if got.get("value", {}).get("t") == "none" or got.get("error", "").startswith("NotImplementedError"):
                not_impl += 1
            if c.raises in got.get("error_types", []):
                cases.append(CaseResult(label, True, ""))
            elif secret:
                cases.append(CaseResult(label, False, _hidden_failure(got, c.raises, True) + "." + hint))
            elif "error" in got:
                cases.append(CaseResult(label, False, f"expected {c.raises}, but it raised {got['error']}.{hint}"))
            else:
                cases.append(CaseResult(label, False, f"expected {c.raises}, but it returned "
                                                      f"{describe(got.get('value', {}))}.{hint}"))
            continue
        if "error" in got:
            if got["error"].startswith("NotImplementedError"):
                not_impl += 1
            msg = _hidden_failure(got, None, True) + "." if secret else f"raised {got['error']}."
            cases.append(CaseResult(label, False, msg + hint))
            continue
        value = got.get("value", {"t": "none"})
        if value.get("t") == "none":
            not_impl += 1
        try:
            expected = to_plain(q.reference(*_as_args(c.args)))
        except Exception:  # a broken reference is the course's bug: say so loudly
            raise RuntimeError(f"reference for {q.id} failed on case {label!r}:\n{traceback.format_exc()}")
        ok, msg = compare(expected, value, rtol, atol)
        if secret and not ok:
            msg = _hidden_failure(got, None, _numeric(value) is not None and (
                _numeric(expected) is None or _numeric(value).size == _numeric(expected).size)) + "."
        cases.append(CaseResult(label, ok, msg + (hint if not ok else "")))
    passed = sum(c.passed for c in cases)
    if not_impl == len(all_cases):
        res = _missing(q)
        res.messages = [f"`{q.name}` is not implemented yet (it returns None or raises NotImplementedError)."]
        return res
    score = round(q.points * passed / len(all_cases), 4)
    status = "passed" if passed == len(all_cases) else ("partial" if passed else "failed")
    msgs = [] if status == "passed" or not q.hint else [f"Hint: {q.hint}"]
    return Result(q.id, q.title, score, q.points, status, msgs, cases)


def _grade_value(q: Question, got: dict) -> Result:
    expected = to_plain(q.answer)
    if q.kind == "value":
        ok, msg = compare(expected, got, q.rtol, q.atol)
        msgs = [] if ok else [msg.replace(f"expected {describe(expected)}, got", "got")
                              + (f". Hint: {q.hint}" if q.hint else "")]
    elif q.kind == "choice":
        label = got.get("v").strip().upper() if got.get("t") == "str" else None
        if label not in q.choices:
            ok, msgs = False, [f"answer with one of {', '.join(map(repr, q.choices))} (a string), got {describe(got)}."]
        else:
            ok = label == q.answer
            msgs = [] if ok else [q.feedback.get(label, "Not this one.") + (f" Hint: {q.hint}" if q.hint else "")]
    elif q.kind == "ordering":
        items = _unplain(got) if got.get("t") == "list" else None
        if not (isinstance(items, list) and all(isinstance(i, str) for i in items)):
            ok, msgs = False, [f"answer with a list of the labels {list(q.choices)} in order, got {describe(got)}."]
        elif sorted(i.strip().upper() for i in items) != sorted(q.choices):
            ok, msgs = False, [f"use each of the labels {list(q.choices)} exactly once, got {items}."]
        else:
            ok = [i.strip().upper() for i in items] == list(q.answer)
            msgs = [] if ok else ["The order is not right yet." + (f" Hint: {q.hint}" if q.hint else "")]
    else:  # matching: partial credit per item
        pairs = _unplain(got) if got.get("t") == "dict" else None
        if not isinstance(pairs, dict):
            return Result(q.id, q.title, 0.0, q.points, "failed",
                          [f"answer with a dict mapping each of {list(q.answer)} to a label, got {describe(got)}."])
        right = sum(isinstance(pairs.get(k), str) and pairs[k].strip().upper() == v for k, v in q.answer.items())
        score = round(q.points * right / len(q.answer), 4)
        status = "passed" if right == len(q.answer) else ("partial" if right else "failed")
        msgs = [] if status == "passed" else [f"{right} of {len(q.answer)} matched correctly."
                                              + (f" Hint: {q.hint}" if q.hint else "")]
        return Result(q.id, q.title, score, q.points, status, msgs)
    return Result(q.id, q.title, q.points if ok else 0.0, q.points, "passed" if ok else "failed", msgs)


# --------------------------------------------------------------------------------------------------
# the notebook self-check


def check(question_id: str, answer: Any = Ellipsis) -> None:
    """Check ``answer`` against question ``question_id`` and print specific feedback.

    Never raises on a student's mistake: a stub, a wrong type, or an exception inside the answer all
    become feedback. Prints and returns nothing, so a check at the end of a cell shows no echo;
    :func:`grade` gives the :class:`Result` itself.
    """
    from .questions import get_question

    try:
        q = get_question(question_id)
    except KeyError as exc:
        print(exc.args[0])
        return
    print(grade(q, collect(q, answer)))
