"""The grader's integrity (issue 12): hidden cases against hard-coding, grader faults that are not zeros,
``--only-failed``, byte-identical regrades, ``--compare``, ``--roster``, and every chapter's solutions at full
marks with guards and hidden cases on.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest

from rlhf_course import checks
from rlhf_course.cli import main
from rlhf_course.grading import runner
from rlhf_course.questions import questions_for

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_kl_penalty.ipynb"
EXERCISE = ROOT / "exercises" / "01_kl_penalty.ipynb"
QUESTIONS = {q.id: q for q in questions_for("01")}
FULL = sum(q.points for q in QUESTIONS.values())
CODE = [q for q in QUESTIONS.values() if q.kind == "function"]
SEED = "20261207"


def _rows(path: Path) -> dict[str, dict]:
    return {r["submission"] or r["student_id"]: r for r in csv.DictReader(path.open())}


def _set(nb, qid: str, source: str):
    for c in nb.cells:
        if (c.metadata.get("rlhf_course") or {}).get("question") == qid:
            c.source = source
            return nb
    raise AssertionError(qid)


def hard_coded_source(q) -> str:
    """An answer that looks its inputs up among the public cases and returns the reference's value there."""
    def key(args):
        return json.dumps([a.tolist() if isinstance(a, np.ndarray) else a for a in args])

    table = {}
    for c in q.cases:
        if not c.raises:
            value = q.reference(*checks.as_args(c.args))
            table[key(checks.as_args(c.args))] = np.asarray(value).tolist()
    return (f"import json\nimport numpy as np\n_TABLE_{q.name} = json.loads({json.dumps(table)!r})\n\n"
            f"def {q.name}(*args):\n"
            f"    key = json.dumps([a.tolist() if isinstance(a, np.ndarray) else a for a in args])\n"
            f"    if key in _TABLE_{q.name}:\n        return np.asarray(_TABLE_{q.name}[key])\n"
            f"    raise ValueError('invalid input')\n")


def hard_coded_notebook():
    nb = nbformat.read(SOLUTION, as_version=4)
    for q in CODE:
        nb = _set(nb, q.id, hard_coded_source(q))
    return nb


def test_hard_coded_answers_pass_the_self_check_and_fail_the_hidden_cases(tmp_path):
    for q in CODE:  # the self-check, in this process: all public cases pass, and it says so without "correct"
        ns: dict = {}
        exec(hard_coded_source(q), ns)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            checks.check(q.id, ns[q.name])
        assert "public cases passed; the grader also runs hidden cases" in out.getvalue()
        assert "correct" not in out.getvalue().lower()
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(hard_coded_notebook(), subs / "hardcoded.ipynb")
    assert main(["grade", str(subs), "--out", str(tmp_path / "out"), "--quiet", "--seed", SEED]) == 0
    row = _rows(tmp_path / "out" / "grades.csv")["hardcoded.ipynb"]
    feedback = (tmp_path / "out" / "hardcoded" / "feedback.md").read_text()
    for q in CODE:
        n_hidden = len(checks.hidden_cases(q, int(SEED)))
        n_raise = sum(bool(c.raises) for c in checks.hidden_cases(q, int(SEED)))
        # the hidden cases that expect a value fail; those that expect a ValueError pass by accident
        want = q.points * (len(q.cases) + n_raise) / (len(q.cases) + n_hidden)
        assert float(row[q.id]) == pytest.approx(want, abs=1e-4), q.id
    failing = [ln for ln in feedback.splitlines() if ln.strip().startswith("FAIL hidden case")]
    assert failing and all(": raised ValueError." in ln for ln in failing)  # why, never the values
    assert row["seed"] == SEED and float(row["score"]) < FULL


@pytest.fixture()
def cohort(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    sol = nbformat.read(SOLUTION, as_version=4)
    nbformat.write(sol, subs / "alice.ipynb")
    nbformat.write(sol, subs / "bob.ipynb")
    wrong = _set(copy.deepcopy(sol), "01.penalty_meaning", 'penalty_meaning = "A"')
    nbformat.write(wrong, subs / "carol.ipynb")
    return subs


def _fault_on(name: str):
    """``runner._grade_notebook`` with an internal exception forced on one submission."""
    real = runner._grade_notebook

    def faulty(path, sub, isolation, settings):
        if sub == name:
            raise RuntimeError("forced fault in the grader")
        return real(path, sub, isolation, settings)

    return faulty


def _grade(subs, out, *extra) -> int:
    return main(["grade", str(subs), "--out", str(out), "--quiet", "--jobs", "2", *extra])


def test_a_grader_fault_is_not_a_zero_and_only_failed_completes_the_csv(cohort, tmp_path, monkeypatch, capsys):
    real = runner._grade_notebook
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_grade_notebook", _fault_on("bob.ipynb"))
    assert _grade(cohort, out, "--seed", SEED) == 1
    err = capsys.readouterr().err
    assert "the grader failed on 1 submission" in err and "bob.ipynb" in err and "--only-failed" in err
    rows = _rows(out / "grades.csv")
    bob = rows["bob.ipynb"]
    assert bob["status"] == "grader-error" and bob["score"] == "" and all(bob[q] == "" for q in QUESTIONS)
    assert (rows["alice.ipynb"]["status"], float(rows["alice.ipynb"]["score"])) == ("ok", FULL)
    assert "forced fault" in (out / "bob" / "results.json").read_text()
    before = {n: r for n, r in rows.items() if n != "bob.ipynb"}

    monkeypatch.setattr(runner, "_grade_notebook", real)
    assert main(["grade", str(cohort), "--only-failed", str(out), "--quiet"]) == 0
    rows = _rows(out / "grades.csv")
    assert (rows["bob.ipynb"]["status"], float(rows["bob.ipynb"]["score"])) == ("ok", FULL)
    assert {n: r for n, r in rows.items() if n != "bob.ipynb"} == before
    assert "graded 1 submission" in capsys.readouterr().out

    # the completed file is the file a clean grading with the same seed writes, byte for byte
    clean = tmp_path / "clean"
    assert _grade(cohort, clean, "--seed", SEED) == 0
    assert (clean / "grades.csv").read_bytes() == (out / "grades.csv").read_bytes()


def test_a_sandbox_that_cannot_start_gives_grader_errors(cohort, tmp_path, monkeypatch, capsys):
    def no_start(self, *args, **kwargs):
        raise runner.WorkerFailure("startup", "forced: the sandbox could not start")

    out = tmp_path / "out"
    monkeypatch.setattr(runner.Worker, "__init__", no_start)
    assert _grade(cohort, out, "--seed", SEED) == 1
    rows = _rows(out / "grades.csv")
    assert {r["status"] for r in rows.values()} == {"grader-error"} and {r["score"] for r in rows.values()} == {""}
    assert "alice.ipynb, bob.ipynb, carol.ipynb" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["grade", str(cohort), "--only-failed", str(out), "--quiet"]) == 0
    assert {r["status"] for r in _rows(out / "grades.csv").values()} == {"ok"}


def test_regrades_are_byte_identical_and_compare_says_what_changed(cohort, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert _grade(cohort, first) == 0
    seed = _rows(first / "grades.csv")["alice.ipynb"]["seed"]
    assert seed.isdigit()
    text = (first / "grades.csv").read_bytes()
    assert _grade(cohort, first) == 0  # the same folder again: the recorded seed is reused
    assert "the one recorded in" in capsys.readouterr().out
    assert (first / "grades.csv").read_bytes() == text
    assert _grade(cohort, second, "--seed", seed) == 0
    assert (second / "grades.csv").read_bytes() == text

    sol = nbformat.read(SOLUTION, as_version=4)
    nbformat.write(sol, cohort / "carol.ipynb")  # carol fixes her answer
    shutil.copy(cohort / "bob.ipynb", cohort / "dave.ipynb")
    capsys.readouterr()
    assert _grade(cohort, tmp_path / "third", "--compare", str(first / "grades.csv")) == 0
    out = capsys.readouterr().out
    changes = out.split("changes since")[1].splitlines()[1:]
    assert any(line.strip() == "carol.ipynb: score 14 -> 15 (+1); 01.penalty_meaning 0 -> 1 (+1)" for line in changes), out
    assert any(line.strip().startswith("dave.ipynb: in the new grades only") for line in changes)
    assert not any("alice" in line or "bob" in line for line in changes)
    assert _rows(tmp_path / "third" / "grades.csv")["alice.ipynb"]["seed"] == seed  # taken from --compare


def test_roster_adds_ids_and_lists_what_does_not_match(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("alice_final.ipynb", "bob.ipynb", "stray.ipynb"):
        (subs / name).write_text("not a notebook")  # graded without a worker: fast
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,file\ns001,alice_*.ipynb\ns002,bob.ipynb\ns003,carol.ipynb\n")
    out = tmp_path / "out"
    assert main(["grade", str(subs), "--out", str(out), "--quiet", "--roster", str(roster), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["submission", "student_id"]
    rows = _rows(out / "grades.csv")
    assert rows["alice_final.ipynb"]["student_id"] == "s001" and rows["bob.ipynb"]["student_id"] == "s002"
    assert rows["stray.ipynb"]["student_id"] == ""
    assert rows["s003"]["status"] == "no-submission" and rows["s003"]["submission"] == ""
    assert lines[-1].startswith(",s003,")  # students with no file come last
    assert "match no student" in printed and "stray.ipynb" in printed
    assert "with no file" in printed and "s003" in printed

    bad = tmp_path / "bad.csv"
    bad.write_text("name,file\nx,y\n")
    assert main(["grade", str(subs), "--out", str(out), "--quiet", "--roster", str(bad)]) == 2
    assert "student_id and file" in capsys.readouterr().err


def test_every_chapters_solutions_get_full_marks_through_the_grader(tmp_path):
    """Guards and hidden cases on, in the confined worker: the solutions lose nothing."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for nb in sorted((ROOT / "solutions").glob("*.ipynb")):
        shutil.copy(nb, subs / nb.name)
    assert _grade(subs, tmp_path / "out", "--seed", SEED) == 0
    rows = _rows(tmp_path / "out" / "grades.csv")
    assert len(rows) == len(list(subs.glob("*.ipynb")))
    for name, row in rows.items():
        assert row["status"] == "ok" and row["score"] == row["max_score"], (name, row)


def test_only_failed_keeps_the_roster_columns_and_rows(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("alice.ipynb", "bob.ipynb"):
        (subs / name).write_text("not a notebook")
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,file\ns1,alice.ipynb\ns2,bob.ipynb\ns3,carol.ipynb\n")
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_grade_notebook", _fault_on("bob.ipynb"))
    assert main(["grade", str(subs), "--out", str(out), "--quiet", "--roster", str(roster)]) == 1
    monkeypatch.undo()
    assert main(["grade", str(subs), "--only-failed", str(out), "--quiet"]) == 0
    lines = (out / "grades.csv").read_text().splitlines()
    assert len(lines) == 4 and sum(",s3," in ln for ln in lines) == 1
    rows = _rows(out / "grades.csv")
    assert rows["bob.ipynb"]["student_id"] == "s2" and rows["bob.ipynb"]["status"] == "invalid-notebook"
    assert rows["s3"]["status"] == "no-submission"
