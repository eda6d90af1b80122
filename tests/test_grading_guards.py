"""Delegation guards and hidden cases (issue 12), walked over every code question of every exercise.

An answer that reaches the course's own implementation scores 0 with a message naming it; the delegating answers
are built automatically from each question's declared guards (and from its reference). Hidden cases are drawn
from a seeded generator, pass for the solutions, fail for a notebook that hard-codes the public answers, and
never show their inputs or expected values in the feedback.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from rlhf_course import checks, kl
from rlhf_course.checks import case_payload, collect, collect_cases, grade, hidden_cases
from rlhf_course.kl import kl_divergence as renamed_kl  # imported before any check, under another name
from rlhf_course.questions import all_questions, get_question

ROOT = Path(__file__).resolve().parents[1]
CODE_QUESTIONS = [q for q in all_questions() if q.kind == "function"]
IDS = [q.id for q in CODE_QUESTIONS]
MESSAGE = "this answer calls the course's own `{}`; the exercise is to write it"


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _arity(fn, nargs: int) -> int:
    """How many of a case's arguments ``fn`` takes positionally (a guard may take fewer than the question)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return nargs
    return min(nargs, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


def delegating_answers(dotted: str, nargs: int) -> dict:
    """Answers that hand the work to ``dotted``, in every way the issue lists."""
    module, _, attr = dotted.rpartition(".")
    fn = _resolve(dotted)
    k = _arity(fn, nargs)
    ns: dict = {}
    exec(f"from {module} import {attr} as _renamed", ns)  # an import under another name
    renamed = ns["_renamed"]

    def wrapper(*args):
        return fn(*args[:k])

    answers = {
        "wrapper": wrapper,
        "lambda": lambda *args: renamed(*args[:k]),
        "partial": functools.partial(fn) if k == nargs else functools.partial(lambda f, *a: f(*a[:k]), fn),
        "renamed import": renamed if k == nargs else (lambda *args: renamed(*args[:k])),
        "importlib getattr": lambda *args: getattr(importlib.import_module(module), attr)(*args[:k]),
    }
    if k == nargs:
        answers["direct"] = fn
    return answers


def test_every_code_question_declares_guards_and_hidden_cases():
    assert len(CODE_QUESTIONS) >= 20  # every exercise has code questions; none may slip through
    exercises = {q.exercise for q in all_questions()}
    assert exercises == {q.exercise for q in CODE_QUESTIONS}
    for q in CODE_QUESTIONS:
        assert q.guards, f"{q.id} declares no guard"
        assert q.hidden is not None, f"{q.id} has no hidden cases"
        for dotted in q.guards:
            assert callable(_resolve(dotted)), (q.id, dotted)


@pytest.mark.parametrize("qid", IDS)
def test_every_guard_catches_every_delegating_answer(qid):
    q = get_question(qid)
    payload = case_payload(q)
    nargs = len(payload[0]["args"])
    for dotted in q.guards:
        short = dotted.removeprefix("rlhf_course.")
        for how, answer in delegating_answers(dotted, nargs).items():
            record = collect_cases(answer, payload, q.guards)
            reached = short in record.get("delegated", [])
            if not reached:
                # a guard with another signature (objective.implicit_reward for 04.recover_reward) cannot be
                # called with the question's arguments; the reference itself must then reach it
                ref = collect_cases(q.reference, payload, (dotted,))
                assert _arity(_resolve(dotted), nargs) < nargs and short in ref.get("delegated", []), \
                    f"{qid}: guard {dotted} missed the {how} answer"
                continue
            res = grade(q, record)
            assert res.score == 0.0 and res.status == "failed", (qid, how)
            assert MESSAGE.format(short) in res.messages[0], (qid, how, res.messages)


@pytest.mark.parametrize("qid", IDS)
def test_the_reference_itself_is_caught(qid):
    """Whatever the guards, handing the work to the question's own reference scores 0."""
    q = get_question(qid)
    ref = q.reference
    for answer in (ref, lambda *a: ref(*a), functools.partial(ref),
                   lambda *a: getattr(importlib.import_module(ref.__module__), ref.__name__)(*a)):
        res = grade(q, collect(q, answer))
        assert res.score == 0.0 and "calls the course's own" in res.messages[0], qid


def _solution_answers(exercise: str) -> dict:
    """The solution notebook's answer functions, defined in this process."""
    path = next((ROOT / "solutions").glob(f"{exercise}_*.ipynb"))
    ns: dict = {}
    exec("import math\nimport numpy as np", ns)
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("rlhf_course") or {}
        if cell.cell_type == "code" and meta.get("question") and "def " in cell.source:
            exec(cell.source, ns)
    return ns


@pytest.mark.parametrize("qid", IDS)
def test_solutions_pass_public_and_hidden_cases_unflagged(qid):
    q = get_question(qid)
    answer = _solution_answers(q.exercise)[q.name]
    for seed in (0, 1, 2**32 + 5):
        hidden = hidden_cases(q, seed)
        assert hidden, qid
        record = collect(q, answer, hidden)
        assert "delegated" not in record and "guard_off" not in record
        res = grade(q, record, hidden)
        assert res.score == q.points, [(c.name, c.message) for c in res.cases if not c.passed]


@pytest.mark.parametrize("qid", IDS)
def test_hidden_cases_are_seeded(qid):
    q = get_question(qid)
    same = [hidden_cases(q, 11) for _ in range(2)]
    assert same[0] == same[1]
    json.dumps([list(c.args) for c in same[0]])  # plain data, as the grader sends them
    assert any(hidden_cases(q, s) != same[0] for s in (12, 13, 14)), f"{qid}: the seed changes nothing"


def _hard_coded(q):
    """An answer that returns the reference's value on the public cases (looked up by its inputs) and 0 else."""
    def key(args):
        return json.dumps([a.tolist() if isinstance(a, np.ndarray) else a for a in args])

    table = {key(checks.as_args(c.args)): q.reference(*checks.as_args(c.args)) for c in q.cases if not c.raises}

    def answer(*args):
        if key(args) in table:
            return table[key(args)]
        raise ValueError("not one of the public cases")
    return answer


@pytest.mark.parametrize("qid", IDS)
def test_hard_coding_the_public_cases_fails_the_hidden_ones(qid):
    q = get_question(qid)
    answer = _hard_coded(q)
    public = grade(q, collect(q, answer))
    assert all(c.passed for c in public.cases if not q.cases[public.cases.index(c)].raises)
    hidden = hidden_cases(q, 3)
    res = grade(q, collect(q, answer, hidden), hidden)
    failed = [c for c in res.cases[len(q.cases):] if not c.passed]
    value_cases = [c for c in hidden if not c.raises]
    assert len(failed) >= len(value_cases) and res.score < q.points
    for c in failed:  # the property's name and why, never an input or an expected value
        assert c.name.startswith("hidden case ")
        assert c.message.split(" Hint:")[0] in ("raised ValueError.", "the result does not match the reference.",
                                                "the result has the wrong type or shape.")


def test_hidden_feedback_shows_no_values():
    q = get_question("01.kl_divergence")
    hidden = hidden_cases(q, 5)

    def leaky(p, qq):  # a wrong answer whose error and values would show its inputs, if anything did
        if p.ndim > 1:
            raise ValueError(f"cannot do {p.tolist()!r}")
        return p * 0 + 0.123456789

    text = str(grade(q, collect(q, leaky, hidden), hidden))
    hidden_text = text.split("hidden case 1")[1]
    assert "0.123457" not in hidden_text and "cannot do" not in hidden_text
    for c in hidden:
        for arg in c.args:
            for v in np.ravel(arg)[:3]:
                if float(v) != round(float(v)):  # drawn numbers, not the 0s and 1s of the cases' names
                    assert f"{v:.4g}" not in hidden_text


def test_self_check_never_says_correct():
    q = get_question("01.k3")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        checks.check("01.k3", lambda logp, ref_logp: np.expm1(np.asarray(ref_logp) - logp)
                     - (np.asarray(ref_logp) - logp))
    text = out.getvalue()
    assert "public cases passed; the grader also runs hidden cases" in text
    assert "on the public cases" in text and "correct" not in text.lower()
    assert "hidden case " not in text and len(text.splitlines()) == 2 + len(q.cases)  # head, note, public cases


def test_a_delegation_inside_a_thread_is_caught():
    import threading

    q = get_question("01.kl_divergence")

    def threaded(p, qq):
        out = []

        def work():
            try:
                out.append(kl.kl_divergence(p, qq))
            except ValueError as exc:  # handed back to the caller, as a thread pool would
                out.append(exc)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]

    res = grade(q, collect(q, threaded))
    assert res.score == 0.0 and res.messages == [MESSAGE.format("kl.kl_divergence")]


def test_an_answer_that_switches_off_the_watch_scores_zero():
    q = get_question("01.kl_divergence")

    def sneaky(p, qq):
        sys.setprofile(None)
        return kl.kl_divergence(p, qq)

    res = grade(q, collect(q, sneaky))
    assert res.score == 0.0 and res.messages == [checks.GUARD_OFF_MESSAGE]
    assert sys.getprofile() is None


def test_own_answer_still_scores_full_marks():
    def own(p, q):  # written independently of the package: sum p log(p/q) over p > 0, last axis
        p, q = np.asarray(p, float), np.asarray(q, float)
        if p.shape != q.shape or (p < 0).any() or (q < 0).any() \
                or not np.allclose(p.sum(-1), 1) or not np.allclose(q.sum(-1), 1):
            raise ValueError("not two distributions of the same shape")
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
        return terms.sum(-1)

    q = get_question("01.kl_divergence")
    record = collect(q, own)
    assert "delegated" not in record
    assert grade(q, record).score == q.points
    # the package's own function stays usable outside the check, and after it
    assert float(renamed_kl([0.5, 0.5], [0.5, 0.5])) == 0.0


# --------------------------------------------------------------------------------------------------
# the notebook: a copy of the exercise with stubs, and one cell that imports the package's functions

DELEGATING = {
    "import": "from rlhf_course.kl import kl_divergence, k3, log_ratio\npenalty = log_ratio",
    "renamed, partial, lambda, wrapper": (
        "import functools\nfrom rlhf_course.kl import kl_divergence as kd, k3 as _k3, log_ratio as lr\n"
        "penalty = lambda a, b: lr(a, b)\nkl_divergence = functools.partial(kd)\n"
        "def k3(a, b):\n    return _k3(a, b)"),
    "importlib getattr": ("import importlib\n_m = importlib.import_module('rlhf_course.kl')\n"
                          "penalty = getattr(_m, 'log_ratio')\nkl_divergence = getattr(_m, 'kl_divergence')\n"
                          "k3 = getattr(_m, 'k3')"),
    "rebinds the module's names first": (
        "import rlhf_course.kl as _m\n_real = (_m.log_ratio, _m.kl_divergence, _m.k3)\n"
        "_m.log_ratio = _m.kl_divergence = _m.k3 = lambda a, b: 0.0\n"
        "penalty, kl_divergence, k3 = (lambda f: lambda a, b: f(a, b))(_real[0]), _real[1], _real[2]"),
}
GUARDED = {"01.penalty": "log_ratio", "01.kl_divergence": "kl_divergence", "01.k3": "k3"}


def _delegating_notebook(how: str):
    nb = nbformat.read(ROOT / "exercises" / "01_kl_penalty.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(DELEGATING[how]))
    return nb


@pytest.mark.parametrize("how", [h for h in DELEGATING if h != "rebinds the module's names first"])
def test_self_check_of_the_delegating_notebook(how):
    """Run the notebook's cells as a kernel would, then its three checks again: each says the message.

    (A notebook that rebinds the package's names fools its own kernel's self-check, which is not a grade; the
    grader's worker takes the guarded code before any student code runs: the next test.)"""
    from rlhf_course.grading.source import code_cells, parse_notebook, python_source

    import rlhf_course.kl as kl_module

    nb = parse_notebook(nbformat.writes(_delegating_notebook(how)).encode())
    ns: dict = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in code_cells(nb):
            exec(python_source(cell.source), ns)
        out.seek(0)
        out.truncate(0)
        for qid in GUARDED:
            exec(f"check({qid!r}, {get_question(qid).name})", ns)
    assert kl_module.kl_divergence is renamed_kl
    text = out.getvalue()
    for qid, name in GUARDED.items():
        assert MESSAGE.format(f"kl.{name}") in text, (how, text)
        assert f"{qid} (" in text and f"0/{get_question(qid).points:g} points" in text


@pytest.mark.parametrize("how", list(DELEGATING))
def test_grader_scores_delegating_notebook_zero(tmp_path, how):
    from rlhf_course.cli import main

    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(_delegating_notebook(how), subs / "alice.ipynb")
    out = tmp_path / "out"
    assert main(["grade", str(subs), "--out", str(out), "--quiet", "--seed", "1"]) == 0
    results = json.loads((out / "alice" / "results.json").read_text())
    text = json.dumps(results)
    feedback = (out / "alice" / "feedback.md").read_text()
    for name in GUARDED.values():
        msg = MESSAGE.format(f"kl.{name}")
        assert msg in feedback and msg in text
    rows = (out / "grades.csv").read_text().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    for qid in GUARDED:
        assert float(row[header.index(qid)]) == 0.0


def test_the_question_listing_shows_guards_and_hidden_cases(capsys):
    from rlhf_course.cli import main

    assert main(["questions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for q in CODE_QUESTIONS:
        line = lines[next(i for i, ln in enumerate(lines) if ln.strip().startswith(q.id + " ")) + 1]
        assert f"{len(q.cases)} public + {len(hidden_cases(q, 0))} hidden cases" in line, q.id
        assert all(g.removeprefix("rlhf_course.") in line for g in q.guards), q.id
