"""The instructor's grader against adversarial submissions: one submission per attack, exact scores.

Every submission is built from the real chapter-1 notebooks (solutions/ and the generated exercises/) by
editing question cells. One batch grades them all (module fixture) with short limits; the tests then read
grades.csv, results.json and feedback.md. Points come from the registry: penalty 2, penalty_when_equal 1,
penalty_meaning 1, negative_penalty 1, kl_divergence 3, reverse_kl_fit 1, k3 2, estimators 3, support 1.
"""
from __future__ import annotations

import copy
import csv
import json
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import psutil
import pytest

from rlhf_course.checks import collect, grade, hidden_cases
from rlhf_course.cli import main
from rlhf_course.grading import protocol, report
from rlhf_course.grading.source import parse_notebook, python_source, safe_names, SubmissionError
from rlhf_course.questions import questions_for

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_kl_penalty.ipynb"
EXERCISE = ROOT / "exercises" / "01_kl_penalty.ipynb"
PACKAGE = ROOT / "rlhf_course"
QUESTIONS = questions_for("01")
POINTS = {q.id: q.points for q in QUESTIONS}
FULL = sum(POINTS.values())
TIMEOUT = 3  # seconds per cell in the batch: every attack that hangs costs about this much
BATCH_BOUND = 240  # seconds: the whole adversarial batch must finish within this (on a shared 2-core machine)
SLEEP_MARK = "4321.5"  # a leftover `sleep` started by a submission, looked for after the batch
SEED = 12  # the hidden cases' seed of the batch


# --------------------------------------------------------------------------------------------------
# building submissions from the real notebooks


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _question_index(nb, qid: str) -> int:
    for i, c in enumerate(nb.cells):
        if (c.metadata.get("rlhf_course") or {}).get("question") == qid:
            return i
    raise AssertionError(f"no cell for {qid} in the notebook")


def _set(nb, qid: str, source: str):
    nb.cells[_question_index(nb, qid)].source = source
    return nb


def _append(nb, qid: str, extra: str):
    c = nb.cells[_question_index(nb, qid)]
    c.source = c.source + "\n" + extra
    return nb


def _insert_code(nb, source: str, before_qid: str | None = None):
    """A new code cell (no question metadata) before a question's cell, or after the first code cells."""
    i = _question_index(nb, before_qid) if before_qid else _question_index(nb, QUESTIONS[0].id)
    nb.cells.insert(i, nbformat.v4.new_code_cell(source))
    return nb


def _remove_question(nb, qid: str):
    """Delete a question's cell and its self-check cell."""
    i = _question_index(nb, qid)
    keep = [c for j, c in enumerate(nb.cells)
            if j != i and not (c.cell_type == "code" and f'"{qid}"' in c.source and "check(" in c.source)]
    nb.cells = keep
    return nb


REVERSED_PENALTY = '''import numpy as np

def penalty(logp, ref_logp):
    return np.asarray(ref_logp, dtype=float) - np.asarray(logp, dtype=float)  # the wrong way round
'''


def reversed_penalty_points(seed: int) -> float:
    """What the reversed penalty earns with the hidden cases of ``seed``, graded in this process."""
    ns: dict = {}
    exec(REVERSED_PENALTY, ns)
    q = next(q for q in QUESTIONS if q.id == "01.penalty")
    hidden = hidden_cases(q, seed)
    score = grade(q, collect(q, ns["penalty"], hidden), hidden).score
    assert 0 < score < q.points  # the public case where the two agree, and the shape checks, still pass
    return score

LEAKY = '''
import os, subprocess
_leaks = []
for _p in {read!r}:
    try:
        open(_p).read() if not os.path.isdir(_p) else os.listdir(_p)
        _leaks.append(("read", _p))
    except OSError:
        pass
for _p in {write!r}:
    try:
        open(_p, "a").close()  # creates the file if allowed; appends nothing to an existing one
        _leaks.append(("write", _p))
    except OSError:
        pass
try:
    os.utime({pkg!r} + "/checks.py")  # only its time, should this ever succeed
    _leaks.append(("touch", "checks.py"))
except OSError:
    pass
for _cmd in ("mount -o remount,rw,bind {pkg} && touch {pkg}/_pwned_nested.txt", "umount -l {pkg}"):
    # a nested user namespace gives back capabilities, but not over the grader's mounts
    _r = subprocess.run(["unshare", "-rm", "sh", "-c", _cmd + " && ls {pkg}"], capture_output=True, text=True)
    if _r.returncode == 0 and "checks.py" not in _r.stdout:
        _leaks.append(("mount", _cmd))
_r = subprocess.run(["sh", "-c", "ls {pkg}"], capture_output=True, text=True)
support_answer = "D" if not _leaks and "checks.py" in _r.stdout else repr((_leaks, _r.stdout[:40]))  # wrong
'''

TAMPER = '''
import numpy as np
import rlhf_course.checks as _c
import rlhf_course.questions as _q
_full = lambda q, record: _c.Result(q.id, q.title, q.points, q.points, "passed")
_c.grade = _full
_c.check = lambda *a, **k: print("[PASS] all of them")
_c.compare = lambda *a, **k: (True, "")
_c._close = lambda e, g, rtol, atol: np.ones(np.shape(e), dtype=bool)
_q.get_question = lambda qid: None
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.broadcast(a, b).shape, dtype=bool)
np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
import json
json.dumps = lambda *a, **k: '{"status": "ok"}'
'''

ANYTHING = '''
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
    def __float__(self):
        return 0.0

class AnyFloat(float):
    def __eq__(self, other):
        return True
    __hash__ = float.__hash__

class AnyStr(str):
    def __eq__(self, other):
        return True
    __hash__ = str.__hash__
    def strip(self):
        return self
    def upper(self):
        return self
'''

NETWORK = '''
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    penalty_meaning = "A"  # reached the grader's machine: this answer is wrong on purpose
except OSError:
    penalty_meaning = "B"
'''


def build_submissions(folder: Path, out: Path, port: int) -> dict[str, dict]:
    """Write every submission into ``folder``; return name -> {"status": ..., "scores": {qid: points}}."""
    sol = _read(SOLUTION)
    full = dict(POINTS)
    cases: dict[str, tuple] = {}

    def add(name, nb, status, **lost):
        nbformat.write(nb, folder / f"{name}.ipynb")
        scores = dict(full)
        for qid, pts in lost.items():
            scores["01." + qid] = pts
        cases[name] = {"status": status, "scores": scores}

    S = lambda: copy.deepcopy(sol)  # noqa: E731
    add("correct", S(), "ok")
    nb = _set(S(), "01.penalty", REVERSED_PENALTY)
    add("partial", _set(nb, "01.penalty_meaning", 'penalty_meaning = "A"'), "ok",
        penalty=reversed_penalty_points(SEED), penalty_meaning=0)
    ex = _read(EXERCISE)
    nbformat.write(ex, folder / "unmodified.ipynb")
    cases["unmodified"] = {"status": "ok", "scores": {q: 0 for q in POINTS}}
    add("loop_in_cell", _set(S(), "01.penalty_when_equal", "penalty_when_equal = 0.0\nwhile True:\n    pass"),
        "timeout", penalty_when_equal=0)
    add("loop_in_answer", _set(S(), "01.kl_divergence", "def kl_divergence(p, q):\n    while True:\n        pass"),
        "timeout", kl_divergence=0)
    add("exit_in_cell", _set(S(), "01.negative_penalty", "negative_penalty = -0.6931471805599453\n"
                                                         "import os\nos._exit(3)"), "crashed", negative_penalty=0)
    add("segfault_in_cell", _append(S(), "01.k3", "import ctypes\nctypes.string_at(0)"), "crashed", k3=0)
    add("exit_in_answer", _set(S(), "01.penalty", "def penalty(logp, ref_logp):\n    import os\n    os._exit(1)"),
        "crashed", penalty=0)
    add("memory_bomb", _set(S(), "01.penalty_meaning", 'hog = []\nwhile True:\n    hog.append(bytearray(50 * 2**20))\n'
                                                       'penalty_meaning = "B"'), "memory", penalty_meaning=0)
    add("network", _set(S(), "01.penalty_meaning", NETWORK.format(port=port)), "ok")
    other = folder / "correct.ipynb"
    leaky = LEAKY.format(read=[str(other), str(folder), str(out), str(out / "grades.csv"), str(ROOT / "README.md"),
                               str(Path(__file__)), "/etc/shadow"],
                         write=[str(out / "grades.csv"), str(out / "_pwned.txt"), str(PACKAGE / "_pwned.txt"),
                                str(PACKAGE / "checks.py"), str(Path(sys.prefix) / "_pwned.txt"),
                                str(folder / "correct.ipynb"), "/_pwned.txt"],
                         pkg=str(PACKAGE))
    add("snoop", _set(S(), "01.support", leaky), "ok")
    nb = _insert_code(copy.deepcopy(ex), TAMPER)
    nb = _set(nb, "01.penalty_when_equal", "penalty_when_equal = 5.0")
    nb = _set(nb, "01.penalty_meaning", 'penalty_meaning = "A"')
    nbformat.write(nb, folder / "tamper.ipynb")
    cases["tamper"] = {"status": "ok", "scores": {q: 0 for q in POINTS}}
    nb = _insert_code(S(), ANYTHING)
    for qid, src in [("01.penalty", "def penalty(logp, ref_logp):\n    return Anything()"),
                     ("01.penalty_when_equal", "penalty_when_equal = AnyFloat(3.0)"),
                     ("01.penalty_meaning", 'penalty_meaning = AnyStr("A")'),
                     ("01.negative_penalty", "negative_penalty = Anything()"),
                     ("01.kl_divergence", "def kl_divergence(p, q):\n    return Anything()"),
                     ("01.reverse_kl_fit", "reverse_kl_fit = Anything()"),
                     ("01.k3", "def k3(logp, ref_logp):\n    return AnyFloat(0.0)"),
                     ("01.estimators", "estimator_properties = Anything()"),
                     ("01.support", 'support_answer = AnyStr("A")')]:
        nb = _set(nb, qid, src)
    nbformat.write(nb, folder / "always_equal.ipynb")
    cases["always_equal"] = {"status": "ok", "scores": {q: 0 for q in POINTS}}
    add("huge_output", _insert_code(S(), 'import os, sys\nfor _ in range(20):\n    print("x" * 10**6)\n'
                                         'sys.stderr.write("e" * 5 * 10**6)\nos.write(1, b"y" * 10**7)\n'
                                         'os.write(2, b"z" * 10**6)'), "ok")
    add("forged_replies", _insert_code(S(), 'import os\nfor _fd in range(3, 40):\n    try:\n'
                                            '        os.write(_fd, b\'{"id": 1, "ok": true}\\nnot json at all\\n\')\n'
                                            '    except OSError:\n        pass'), "crashed")
    add("orphan_process", _insert_code(S(), f'import subprocess\nsubprocess.Popen(["sleep", "{SLEEP_MARK}"], '
                                            f'start_new_session=True)'), "ok")
    nb = S()
    for _ in range(12):
        nb = _insert_code(nb, "import os\nos._exit(1)")
    nbformat.write(nb, folder / "many_crashes.ipynb")
    cases["many_crashes"] = {"status": "crashed", "scores": {q: 0 for q in POINTS}}
    add("missing_cells", _remove_question(_remove_question(S(), "01.k3"), "01.support"), "missing-cells",
        k3=0, support=0)
    nb = S()
    for c in nb.cells:
        c.metadata.pop("rlhf_course", None)
    nb.metadata["rlhf_course"] = sol.metadata["rlhf_course"]
    add("no_question_metadata", nb, "missing-cells")
    add("renamed", _set(S(), "01.kl_divergence", "def kl_div(p, q):\n    return 0.0"), "ok", kl_divergence=0)
    add("raises_in_cell", _set(S(), "01.negative_penalty", "negative_penalty = 1 / 0"), "ok", negative_penalty=0)
    add("magics", _insert_code(S(), "%matplotlib inline\n!echo hello\nfiles = !ls\n%time x = 1"), "ok")
    (folder / "not_json.ipynb").write_text("this is not a notebook\n")
    cases["not_json"] = {"status": "invalid-notebook", "scores": {}}
    (folder / "not_a_notebook.ipynb").write_text('{"hello": "world"}')
    cases["not_a_notebook"] = {"status": "invalid-notebook", "scores": {}}
    (folder / "binary.ipynb").write_bytes(bytes(range(256)) * 4)
    cases["binary"] = {"status": "invalid-notebook", "scores": {}}
    nb = S()
    nb.metadata["rlhf_course"] = {"exercise": "99"}
    nbformat.write(nb, folder / "unknown_exercise.ipynb")
    cases["unknown_exercise"] = {"status": "unknown-exercise", "scores": {}}
    nb = S()
    nb.metadata.pop("rlhf_course")
    nbformat.write(nb, folder / "no_exercise_metadata.ipynb")
    cases["no_exercise_metadata"] = {"status": "unknown-exercise", "scores": {}}
    return cases


# --------------------------------------------------------------------------------------------------
# the batch


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    subs, out = base / "submissions", base / "out"
    subs.mkdir()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    expected = build_submissions(subs, out, server.getsockname()[1])
    checks_mtime = (PACKAGE / "checks.py").stat().st_mtime_ns
    t0 = time.monotonic()
    code = main(["grade", str(subs), "--out", str(out), "--timeout", str(TIMEOUT), "--total-timeout", "60",
                 "--memory", "512", "--jobs", "2", "--quiet", "--seed", str(SEED)])
    seconds = time.monotonic() - t0
    try:
        server.accept()
        connected = True
    except BlockingIOError:
        connected = False
    server.close()
    rows = list(csv.DictReader((out / "grades.csv").open()))
    yield {"code": code, "out": out, "subs": subs, "expected": expected, "seconds": seconds,
           "rows": {r["submission"].removesuffix(".ipynb"): r for r in rows}, "connected": connected,
           "checks_mtime": checks_mtime}


def _results(batch, name):
    return json.loads((batch["out"] / name / "results.json").read_text())


def test_batch_is_bounded_and_has_one_row_per_file(batch):
    assert batch["code"] == 0
    assert batch["seconds"] < BATCH_BOUND, f"the batch took {batch['seconds']:.0f} s"
    files = sorted(p.name for p in batch["subs"].glob("*.ipynb"))
    lines = (batch["out"] / "grades.csv").read_text().splitlines()
    assert len(lines) == 1 + len(files)
    assert sorted(r["submission"] for r in csv.DictReader(lines)) == files
    header = lines[0].split(",")
    assert header == ["submission", "exercise", "status", "score", "max_score", "seed"] + [q.id for q in QUESTIONS]


@pytest.mark.parametrize("name", [
    "correct", "partial", "unmodified", "loop_in_cell", "loop_in_answer", "exit_in_cell", "segfault_in_cell",
    "exit_in_answer", "memory_bomb", "network", "snoop", "tamper", "always_equal", "huge_output", "forged_replies",
    "orphan_process", "many_crashes", "missing_cells", "no_question_metadata", "renamed", "raises_in_cell", "magics", "not_json",
    "not_a_notebook", "binary", "unknown_exercise", "no_exercise_metadata"])
def test_exact_status_and_scores(batch, name):
    want = batch["expected"][name]
    row = batch["rows"][name]
    assert row["status"] == want["status"], _results(batch, name)["output"]
    for qid in POINTS:
        got = row[qid]
        if want["scores"]:
            assert float(got) == pytest.approx(want["scores"][qid], abs=1e-9), (qid, _results(batch, name)["output"])
        else:
            assert got == ""
    total = sum(want["scores"].values())
    assert float(row["score"]) == pytest.approx(total, abs=1e-9)
    if want["scores"]:
        assert row["exercise"] == "01" and float(row["max_score"]) == FULL
    res = _results(batch, name)
    assert res["score"] == pytest.approx(total, abs=1e-9)
    assert (batch["out"] / name / "feedback.md").is_file()


def test_failures_are_explained(batch):
    out = {n: _results(batch, n)["output"] for n in batch["expected"]}
    assert "did not finish within 3 s" in out["loop_in_cell"]
    assert "Segmentation fault" in out["segfault_in_cell"]
    assert "crashed the Python process" in out["exit_in_cell"] and "code 3" in out["exit_in_cell"]
    assert "ran out of memory" in out["memory_bomb"]
    assert "not JSON" in out["not_json"] and "not a notebook" in out["not_a_notebook"]
    assert "99" in out["unknown_exercise"] and "--exercise" in out["no_exercise_metadata"]
    assert "printed 2" in out["huge_output"] and "ignores printed output" in out["huge_output"]
    assert "01.k3" in out["missing_cells"] and "01.support" in out["missing_cells"]
    tests = {t["name"].split(":")[0]: t for t in _results(batch, "renamed")["tests"]}
    assert "renamed?" in tests["01.kl_divergence"]["output"]
    tests = {t["name"].split(":")[0]: t for t in _results(batch, "loop_in_answer")["tests"]}
    assert "did not return within 3 s" in tests["01.kl_divergence"]["output"]
    tests = {t["name"].split(":")[0]: t for t in _results(batch, "loop_in_cell")["tests"]}
    assert "timed out" in tests["01.penalty_when_equal"]["output"] or "did not finish" in \
        tests["01.penalty_when_equal"]["output"]


def test_isolation_held(batch):
    """Namespaces are available on the project's machines: the report says so, and the attacks failed."""
    res = _results(batch, "correct")
    assert res["extra_data"]["isolation"].startswith("Isolation: Linux namespaces")
    assert not batch["connected"], "a submission reached a socket of the grader's machine"
    assert not (PACKAGE / "_pwned.txt").exists() and not (PACKAGE / "_pwned_nested.txt").exists()
    assert not (batch["out"] / "_pwned.txt").exists() and not Path("/_pwned.txt").exists()
    assert not (Path(sys.prefix) / "_pwned.txt").exists()
    assert (PACKAGE / "checks.py").stat().st_mtime_ns == batch["checks_mtime"]


def test_no_process_outlives_its_submission(batch):
    left = [p for p in psutil.process_iter(["cmdline"]) if SLEEP_MARK in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_feedback_is_the_self_check(batch):
    """feedback.md carries exactly the check's lines for the same answers (with the batch's hidden cases), and
    every public case's line of the notebook's self-check."""
    ns: dict = {}
    exec(REVERSED_PENALTY, ns)
    text = (batch["out"] / "partial" / "feedback.md").read_text()
    q = next(q for q in QUESTIONS if q.id == "01.penalty")
    hidden = hidden_cases(q, SEED)
    for line in grade(q, collect(q, ns["penalty"], hidden), hidden).lines():
        assert line in text
    for line in grade(q, collect(q, ns["penalty"])).lines()[1:]:
        assert line in text or "hidden cases" in line
    q = next(q for q in QUESTIONS if q.id == "01.penalty_meaning")
    for line in grade(q, collect(q, "A")).lines():
        assert line in text


def test_results_json_follows_gradescope(batch):
    res = _results(batch, "partial")
    assert set(res) >= {"score", "execution_time", "output", "tests"}
    assert isinstance(res["execution_time"], (int, float)) and res["execution_time"] >= 0
    assert [t["name"].split(":")[0] for t in res["tests"]] == [q.id for q in QUESTIONS]
    for t in res["tests"]:
        assert set(t) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed") and t["visibility"] == "visible"
        assert t["max_score"] == POINTS[t["name"].split(":")[0]]
    assert sum(t["score"] for t in res["tests"]) == pytest.approx(res["score"])


# --------------------------------------------------------------------------------------------------
# without namespaces, on the CLI, and in Gradescope's layout


def test_rlimits_only_still_contains_hangs_crashes_and_memory(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    sol = _read(SOLUTION)
    nbformat.write(sol, subs / "correct.ipynb")
    nbformat.write(_set(copy.deepcopy(sol), "01.penalty_when_equal", "while True:\n    pass"), subs / "loop.ipynb")
    nbformat.write(_append(copy.deepcopy(sol), "01.k3", "import ctypes\nctypes.string_at(0)"), subs / "segv.ipynb")
    nbformat.write(_set(copy.deepcopy(sol), "01.estimators", "x = bytearray(8 * 2**30)"), subs / "memory.ipynb")
    code = main(["grade", str(subs), "--out", str(out), "--timeout", str(TIMEOUT), "--memory", "1024",
                 "--isolation", "rlimits", "--jobs", "2", "--quiet"])
    assert code == 0
    rows = {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert (rows["correct.ipynb"]["status"], float(rows["correct.ipynb"]["score"])) == ("ok", FULL)
    assert (rows["loop.ipynb"]["status"], float(rows["loop.ipynb"]["score"])) == ("timeout", FULL - 1)
    assert (rows["segv.ipynb"]["status"], float(rows["segv.ipynb"]["score"])) == ("crashed", FULL - 2)
    assert (rows["memory.ipynb"]["status"], float(rows["memory.ipynb"]["score"])) == ("memory", FULL - 3)
    assert "resource limits only" in _results({"out": out}, "correct")["output"]


def test_total_timeout_bounds_a_slow_submission(tmp_path):
    nb = _read(SOLUTION)
    for _ in range(3):
        nb = _insert_code(nb, "import time\ntime.sleep(2.5)")
    nbformat.write(nb, tmp_path / "slow.ipynb")
    t0 = time.monotonic()
    assert main(["grade", str(tmp_path / "slow.ipynb"), "--out", str(tmp_path / "out"), "--timeout", "3",
                 "--total-timeout", "4", "--quiet"]) == 0
    assert time.monotonic() - t0 < 30
    res = _results({"out": tmp_path / "out"}, "slow")
    assert res["extra_data"]["status"] == "total-timeout" and res["score"] == 0
    assert "within 4 s in total" in res["output"]


def test_rerun_is_idempotent_and_writes_atomically(tmp_path, monkeypatch):
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    nbformat.write(_read(SOLUTION), subs / "a.ipynb")
    (subs / "b.ipynb").write_text("{")
    args = ["grade", str(subs), "--out", str(out), "--timeout", "20", "--quiet"]
    assert main(args) == 0
    first = (out / "grades.csv").read_bytes()
    assert main(args) == 0
    assert (out / "grades.csv").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "grades.csv"]  # no temporary files left

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_atomic(out / "grades.csv", "half a file")
    assert (out / "grades.csv").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "grades.csv"]


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert main(["grade", str(tmp_path)]) == 2
    (tmp_path / "x.ipynb").write_text("{}")
    assert main(["grade", str(tmp_path / "x.ipynb"), "--out", str(PACKAGE / "grading-out")]) == 2
    assert not (PACKAGE / "grading-out").exists()


def test_exercise_option_and_wrong_exercise(tmp_path):
    sol = _read(SOLUTION)
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    nb = copy.deepcopy(sol)
    nb.metadata.pop("rlhf_course")
    nbformat.write(nb, subs / "no_metadata.ipynb")
    nb = copy.deepcopy(sol)
    nb.metadata["rlhf_course"] = {"exercise": "02"}
    nbformat.write(nb, subs / "other.ipynb")
    assert main(["grade", str(subs), "--out", str(out), "--exercise", "01", "--timeout", "20", "--quiet"]) == 0
    rows = {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert rows["no_metadata.ipynb"]["status"] == "ok" and float(rows["no_metadata.ipynb"]["score"]) == FULL
    assert rows["other.ipynb"]["status"] == "wrong-exercise" and float(rows["other.ipynb"]["score"]) == 0


def test_gradescope_layout(tmp_path):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    nb = _set(_read(SOLUTION), "01.penalty", REVERSED_PENALTY)
    nbformat.write(nb, root / "submission" / "01_kl_penalty.ipynb")
    (root / "submission" / "notes.txt").write_text("not graded")
    assert main(["grade", "--gradescope", "--gradescope-root", str(root), "--exercise", "01", "--timeout", "20"]) == 0
    res = json.loads((root / "results" / "results.json").read_text())
    assert res["score"] == pytest.approx(FULL - 2 + reversed_penalty_points(0))  # no --seed given: seed 0
    assert len(res["tests"]) == len(QUESTIONS) and (root / "results" / "feedback.md").is_file()

    empty = tmp_path / "empty"
    (empty / "submission").mkdir(parents=True)
    assert main(["grade", "--gradescope", "--gradescope-root", str(empty), "--exercise", "01"]) == 0
    res = json.loads((empty / "results" / "results.json").read_text())
    assert res["score"] == 0 and "No notebook" in res["output"]


def test_gradescope_bundle(tmp_path):
    zpath = tmp_path / "autograder.zip"
    assert main(["gradescope-bundle", "--out", str(zpath), "--exercise", "01", "--timeout", "30"]) == 0
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "requirements.txt", "rlhf-course/pyproject.toml",
                "rlhf-course/rlhf_course/grading/worker.py", "rlhf-course/rlhf_course/questions/ex01.py"} <= names
        assert not any("__pycache__" in n for n in names)
        for script in ("setup.sh", "run_autograder"):
            assert (z.getinfo(script).external_attr >> 16) & 0o111
            (tmp_path / script).write_bytes(z.read(script))
            subprocess.run(["bash", "-n", str(tmp_path / script)], check=True)
        run = z.read("run_autograder").decode()
        assert "--gradescope --exercise 01" in run and "--timeout 30" in run and "--seed " in run
        assert "pip install" in z.read("setup.sh").decode()


# --------------------------------------------------------------------------------------------------
# pieces


def test_notebook_parsing_rejects_what_is_not_a_notebook():
    for data, words in [(b"", "not JSON"), (b"[1, 2]", "a list"), (b'{"cells": 3}', "no list of cells"),
                        (b'{"cells": [{"source": "x"}]}', "not a notebook cell"), (b"\xff\xfe\x00", "not text"),
                        (b"[" * 100_000, "not JSON")]:
        with pytest.raises(SubmissionError) as err:
            parse_notebook(data)
        assert err.value.status == "invalid-notebook" and words in err.value.message
    with pytest.raises(SubmissionError, match="more than"):
        parse_notebook(b" " * (2 * 2**20), max_mb=1)
    nb = parse_notebook(json.dumps({"cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"],
                                               "metadata": {"rlhf_course": {"question": "01.x"}}}],
                                    "metadata": {"rlhf_course": {"exercise": "01"}}}).encode())
    assert nb.exercise == "01" and nb.cells[0].source == "a = 1\nb = 2" and nb.cells[0].question == "01.x"


def test_colab_cell_is_recognized_without_nbformat():
    from rlhf_course.grading import source
    from rlhf_course.notebooks import COLAB_TAG

    assert source.COLAB_TAG == COLAB_TAG
    nb = parse_notebook(SOLUTION.read_bytes())
    assert COLAB_TAG in nb.cells[0].tags and nb.cells[0] not in source.code_cells(nb)


def test_magics_become_python():
    src = "%matplotlib inline\nx = 1\n!pip install foo\nfiles = !ls\nif x:\n    %time y = 2\n"
    out = python_source(src)
    compile(out, "<cell>", "exec")
    assert "x = 1" in out and "files = None" in out and "pip" not in out
    assert python_source("%%bash\necho hi") == ""
    assert python_source("%%time\nz = 3") == "z = 3"


def test_report_names_are_unique_and_safe():
    assert safe_names(["a.ipynb", "b/a.ipynb", "A.ipynb", "we ird/../x.ipynb"]) == \
        ["a", "b__a", "A-2", "we_ird__..__x"]


def test_malformed_worker_replies_are_rejected():
    assert protocol.sanitize_record("value", {"status": "ok", "value": {"t": "array", "shape": [10**9], "v": [1]}}) \
        == {"status": "error", "message": "the grader could not read the answer's value"}
    assert protocol.sanitize_record("value", {"status": "ok", "value": {"t": "float", "v": "1"}})["status"] == "error"
    assert protocol.sanitize_record("function", {"status": "ok", "results": [{"value": {"t": "float", "v": True}}]}) \
        == {"status": "ok", "results": [{"error": "the answer's value could not be read", "error_types": []}]}
    deep = {"t": "list", "v": []}
    for _ in range(40):
        deep = {"t": "list", "v": [deep]}
    assert not protocol.valid_plain(deep)
    assert protocol.valid_plain({"t": "array", "shape": [2, 1], "v": [1.0, float("inf")]})
    good = protocol.sanitize_record("function", {"status": "ok", "results": [{"error": "ValueError: x",
                                                                            "error_types": ["ValueError", 3]}]})
    assert good == {"status": "ok", "results": [{"error": "ValueError: x", "error_types": ["ValueError"]}]}
