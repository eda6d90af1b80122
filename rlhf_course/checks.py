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
import traceback
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


def _guarded_codes(guards: tuple[str, ...] | list[str]) -> dict:
    """Map the code object of each guarded package function to its short name (``"kl.kl_divergence"``)."""
    import importlib

    codes = {}
    for dotted in guards:
        module, _, attr = dotted.rpartition(".")
        fn = getattr(importlib.import_module(module), attr)
        fn = getattr(fn, "__wrapped__", fn)
        codes[fn.__code__] = dotted.removeprefix("rlhf_course.")
    return codes


def delegation_message(names: list[str]) -> str:
    """The feedback for an answer that reached a guarded package function."""
    return "; ".join(f"this answer calls the course's own `{n}`; the exercise is to write it" for n in names)


def collect_cases(answer: Any, cases: list[dict], guards: tuple[str, ...] | list[str] = ()) -> dict:
    """Call a function answer on each case's ``args`` (plain data); return the results as plain data.

    ``cases`` are ``{"args": [...]}`` dicts, as the grader sends them. Each result is
    ``{"value": to_plain(result)}`` or ``{"error": ..., "error_types": [...]}``.

    ``guards`` name the package functions the question asks the student to write. While the cases run,
    a profile hook records every call into their *code objects*. Watching the code rather than replacing
    the function catches every route to it: a direct call, a wrapper, a lambda, ``functools.partial``, an
    import under another name made before the check, ``getattr(importlib.import_module(...), ...)``, since
    all of them end up executing the same code. The functions still compute as usual, so package helpers
    built on them stay usable elsewhere; the record lands in ``"delegated"``.
    """
    if answer is Ellipsis or answer is None:
        return {"status": "missing"}
    if not callable(answer):
        return {"status": "not-callable", "type": type(answer).__qualname__[:200]}
    if guards:
        import sys

        codes = _guarded_codes(guards)
        hit: list[str] = []

        def watch(frame, event, arg):
            if event == "call" and frame.f_code in codes and codes[frame.f_code] not in hit:
                hit.append(codes[frame.f_code])

        previous = sys.getprofile()
        sys.setprofile(watch)
        try:
            record = collect_cases(answer, cases)
        finally:
            sys.setprofile(previous)
        if hit:
            record["delegated"] = sorted(hit)
        return record
    results = []
    for case in cases:
        try:
            value = answer(*_as_args(tuple(case["args"])))
            results.append({"value": to_plain(value)})
        except Exception as exc:  # the student's exception is data, not our failure
            results.append(_error(exc))
    return {"status": "ok", "results": results}


def case_payload(q: Question) -> list[dict]:
    """The inputs of a function question's cases, as plain data to send to where the answer lives."""
    return [{"name": c.name, "args": list(c.args)} for c in q.cases]


def collect(q: Question, answer: Any) -> dict:
    """Plain-data record of ``answer`` for question ``q`` (runs where the answer lives)."""
    if q.kind == "function":
        return collect_cases(answer, case_payload(q), q.guards)
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

    def lines(self) -> list[str]:
        mark = {"passed": "PASS", "partial": "PARTIAL", "failed": "FAIL"}.get(self.status, self.status.upper())
        head = f"[{mark}] {self.id} ({self.title}): {self.score:g}/{self.max_score:g} points"
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


def grade(q: Question, record: dict) -> Result:
    """Score a collected plain-data ``record`` for ``q`` (runs in the trusted process)."""
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
    if q.kind == "function":
        return _grade_function(q, record)
    return _grade_value(q, record["value"])


def _grade_function(q: Question, record: dict) -> Result:
    results = record.get("results", [])
    cases = []
    not_impl = 0
    for i, c in enumerate(q.cases):
        got = results[i] if i < len(results) and isinstance(results[i], dict) else {"error": "no result"}
        rtol = q.rtol if c.rtol is None else c.rtol
        atol = q.atol if c.atol is None else c.atol
        hint = f" Hint: {c.hint}" if c.hint else ""
        if c.raises:
            if got.get("value", {}).get("t") == "none" or got.get("error", "").startswith("NotImplementedError"):
                not_impl += 1
            if c.raises in got.get("error_types", []):
                cases.append(CaseResult(c.name, True, ""))
            elif "error" in got:
                cases.append(CaseResult(c.name, False, f"expected {c.raises}, but it raised {got['error']}.{hint}"))
            else:
                cases.append(CaseResult(c.name, False, f"expected {c.raises}, but it returned "
                                                       f"{describe(got.get('value', {}))}.{hint}"))
            continue
        if "error" in got:
            if got["error"].startswith("NotImplementedError"):
                not_impl += 1
            cases.append(CaseResult(c.name, False, f"raised {got['error']}.{hint}"))
            continue
        value = got.get("value", {"t": "none"})
        if value.get("t") == "none":
            not_impl += 1
        try:
            expected = to_plain(q.reference(*_as_args(c.args)))
        except Exception:  # a broken reference is the course's bug: say so loudly
            raise RuntimeError(f"reference for {q.id} failed on case {c.name!r}:\n{traceback.format_exc()}")
        ok, msg = compare(expected, value, rtol, atol)
        cases.append(CaseResult(c.name, ok, msg + (hint if not ok else "")))
    passed = sum(c.passed for c in cases)
    if not_impl == len(q.cases):
        res = _missing(q)
        res.messages = [f"`{q.name}` is not implemented yet (it returns None or raises NotImplementedError)."]
        return res
    score = round(q.points * passed / len(q.cases), 4)
    status = "passed" if passed == len(q.cases) else ("partial" if passed else "failed")
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
