"""Delegation guards (issue 12): an answer that reaches the course's own implementation scores 0."""
import functools
import importlib

import pytest

from rlhf_course import kl
from rlhf_course.checks import collect, grade
from rlhf_course.questions import get_question
from rlhf_course.kl import kl_divergence as renamed_kl  # imported before any check, under another name


def _variants():
    def wrapper(p, q):
        return kl.kl_divergence(p, q)

    return {
        "direct": kl.kl_divergence,
        "wrapper": wrapper,
        "lambda": lambda p, q: renamed_kl(p, q),
        "partial": functools.partial(kl.kl_divergence),
        "renamed import": renamed_kl,
        "importlib getattr": lambda p, q: getattr(importlib.import_module("rlhf_course.kl"),
                                                  "kl_divergence")(p, q),
    }


@pytest.mark.parametrize("how", list(_variants()))
def test_delegating_answer_scores_zero_with_message(how):
    q = get_question("01.kl_divergence")
    res = grade(q, collect(q, _variants()[how]))
    assert res.score == 0.0 and res.status == "failed"
    assert res.messages == ["this answer calls the course's own `kl.kl_divergence`; the exercise is to write it"]


def test_own_answer_still_scores_full_marks():
    import numpy as np

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


@pytest.mark.parametrize("qid,attr", [("01.penalty", "log_ratio"), ("01.k3", "k3")])
def test_other_ex01_guards(qid, attr):
    q = get_question(qid)
    res = grade(q, collect(q, getattr(kl, attr)))
    assert res.score == 0.0
    assert f"`kl.{attr}`" in res.messages[0]


def test_every_guard_catches_a_delegating_answer():
    """Walk every code question of every exercise (whatever exercises exist): each declared guard,
    reached through ``functools.partial`` of ``getattr(import_module(...))``, scores 0 with the message."""
    from rlhf_course.checks import case_payload, collect_cases
    from rlhf_course.questions import all_questions

    guarded = [q for q in all_questions() if q.kind == "function" and q.guards]
    assert guarded
    for q in guarded:
        for dotted in q.guards:
            module, _, attr = dotted.rpartition(".")
            delegate = functools.partial(getattr(importlib.import_module(module), attr))
            record = collect_cases(delegate, case_payload(q), q.guards)
            res = grade(q, record)
            short = dotted.removeprefix("rlhf_course.")
            assert res.score == 0.0, f"{q.id}: guard {dotted} missed the delegating answer"
            assert f"calls the course's own `{short}`" in res.messages[0], q.id


_DELEGATING = {
    "import": "from rlhf_course.kl import kl_divergence, k3, log_ratio\npenalty = log_ratio",
    "renamed and partial": ("import functools\nfrom rlhf_course.kl import kl_divergence as kd, k3 as _k3, "
                            "log_ratio as lr\npenalty = lambda a, b: lr(a, b)\n"
                            "kl_divergence = functools.partial(kd)\ndef k3(a, b):\n    return _k3(a, b)"),
    "importlib getattr": ("import importlib\n_m = importlib.import_module('rlhf_course.kl')\n"
                          "penalty = getattr(_m, 'log_ratio')\nkl_divergence = getattr(_m, 'kl_divergence')\n"
                          "k3 = getattr(_m, 'k3')"),
}


@pytest.mark.parametrize("how", list(_DELEGATING))
def test_grader_scores_delegating_notebook_zero(tmp_path, how):
    """The issue's notebook: stubs left, one cell importing the package's own functions."""
    import json
    from pathlib import Path

    import nbformat

    from rlhf_course.cli import main

    root = Path(__file__).resolve().parents[1]
    nb = nbformat.read(root / "exercises" / "01_kl_penalty.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_DELEGATING[how]))
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(nb, subs / "alice.ipynb")
    out = tmp_path / "out"
    main(["grade", str(subs), "--out", str(out), "--quiet"])
    results = json.loads((out / "alice" / "results.json").read_text())
    text = json.dumps(results)
    feedback = (out / "alice" / "feedback.md").read_text()
    for name in ("log_ratio", "kl_divergence", "k3"):
        msg = f"this answer calls the course's own `kl.{name}`; the exercise is to write it"
        assert msg in feedback and msg in text
    rows = (out / "grades.csv").read_text().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    for qid in ("01.penalty", "01.kl_divergence", "01.k3"):
        assert float(row[header.index(qid)]) == 0.0
