"""Checking an answer against a question, and the notebook self-check.

A question (:class:`Question`, defined with its cases in :mod:`rlhf_course.questions.base`) is answered by a
name in the student's notebook: a function (``kind="function"``) or a value (``"value"``, ``"choice"``,
``"ordering"``, ``"matching"``). Checking it has two halves, kept apart so that
the same checks drive both the self-check and the instructor's grader:

1. :func:`collect` runs *where the answer lives* (the notebook's kernel, or the grader's sandboxed worker).
   It calls the answer on each case's inputs and turns whatever comes back into plain data: JSON-able
   dicts, lists, strings and floats, never an object of the student's. Nothing here decides a grade.
2. :func:`grade` runs in a trusted process. It computes the expected values with the reference
   implementation, compares them with the collected plain data by type and content, with explicit
   tolerances, and writes the feedback.

:func:`check` does both in one process, for the student's own feedback while working.

The plain data both halves exchange, and how two values compare, is :mod:`rlhf_course.plain`. Imports run
one way: ``plain`` <- ``questions.base`` <- ``questions`` (the registry) <- ``checks``. The names notebooks
import from here (``check``, ``Case``, ``Question``, ``to_plain``, ``compare``, ...) stay importable from here.
"""
from __future__ import annotations

import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

# re-exported: notebooks, tests and the grader's worker import these from here
from .plain import MAX_STR, as_args, compare, describe, numeric, plain_args, to_plain, unplain  # noqa: F401
from .questions import get_question
from .questions.base import KINDS, Case, Question, case_payload, hidden_cases  # noqa: F401  (re-exported)


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
            value = answer(*as_args(tuple(case["args"])))
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
            expected = to_plain(q.reference(*as_args(c.args)))
        except Exception:  # a broken reference is the course's bug: say so loudly
            raise RuntimeError(f"reference for {q.id} failed on case {label!r}:\n{traceback.format_exc()}")
        ok, msg = compare(expected, value, rtol, atol)
        if secret and not ok:
            msg = _hidden_failure(got, None, numeric(value) is not None and (
                numeric(expected) is None or numeric(value).size == numeric(expected).size)) + "."
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
        items = unplain(got) if got.get("t") == "list" else None
        if not (isinstance(items, list) and all(isinstance(i, str) for i in items)):
            ok, msgs = False, [f"answer with a list of the labels {list(q.choices)} in order, got {describe(got)}."]
        elif sorted(i.strip().upper() for i in items) != sorted(q.choices):
            ok, msgs = False, [f"use each of the labels {list(q.choices)} exactly once, got {items}."]
        else:
            ok = [i.strip().upper() for i in items] == list(q.answer)
            msgs = [] if ok else ["The order is not right yet." + (f" Hint: {q.hint}" if q.hint else "")]
    else:  # matching: partial credit per item
        pairs = unplain(got) if got.get("t") == "dict" else None
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
    try:
        q = get_question(question_id)
    except KeyError as exc:
        print(exc.args[0])
        return
    print(grade(q, collect(q, answer)))
