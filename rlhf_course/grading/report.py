"""What the grader writes: ``grades.csv``, and per submission ``results.json`` (Gradescope's schema) and
``feedback.md`` (the self-check's messages). Every file is written atomically: to a temporary file in the
same folder, then renamed over the old one, so an interrupted run never leaves half a file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from .runner import NOT_GRADED, Graded

CSV_COLUMNS = ("submission", "exercise", "status", "score", "max_score")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _num(x: float | None) -> str:
    if x is None:
        return ""
    x = round(float(x), 4)
    return str(int(x)) if x == int(x) else f"{x:g}"


def question_columns(graded: list[Graded]) -> list[str]:
    """Question ids of every exercise in the batch, in exercise order then notebook order."""
    from ..questions import questions_for

    exercises = sorted({g.exercise for g in graded if g.exercise and g.status not in ("unknown-exercise",)})
    cols = []
    for ex in exercises:
        try:
            cols += [q.id for q in questions_for(ex)]
        except KeyError:
            pass
    return cols


def grades_csv(graded: list[Graded]) -> str:
    """One row per submission, sorted by name: the fixed columns, then one score per question."""
    qcols = question_columns(graded)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(CSV_COLUMNS) + qcols)
    for g in sorted(graded, key=lambda g: g.name):
        scores = {r.id: r.score for r in g.results}
        w.writerow([g.name, g.exercise or "", g.status, _num(g.score), _num(g.max_score)]
                   + [_num(scores[c]) if c in scores else "" for c in qcols])
    return buf.getvalue()


def overview(g: Graded) -> str:
    """The submission-level message: status, what went wrong, the isolation in force."""
    lines = [f"Score: {_num(g.score)} / {_num(g.max_score) or '?'} (status: {g.status})."]
    lines += g.notes
    if g.isolation and g.status not in NOT_GRADED[1:]:
        lines.append(f"{g.isolation}.")
    return "\n".join(lines)


def results_json(g: Graded) -> dict:
    """Gradescope's autograder results: ``score``, ``execution_time``, ``output`` and one test per question."""
    tests = []
    for r in g.results:
        tests.append({
            "name": f"{r.id}: {r.title}",
            "score": round(r.score, 4),
            "max_score": r.max_score,
            "status": "passed" if r.score >= r.max_score else "failed",
            "output": "\n".join(r.lines()),
            "visibility": "visible",
        })
    return {
        "score": round(g.score, 4),
        "execution_time": round(g.seconds, 2),
        "output": overview(g),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"submission": g.name, "exercise": g.exercise, "status": g.status,
                       "max_score": g.max_score, "isolation": g.isolation},
    }


def feedback_md(g: Graded) -> str:
    """Readable feedback: the overview, then each question's self-check message."""
    title = f"# Feedback: {g.name}" + (f" (exercise {g.exercise})" if g.exercise else "")
    parts = [title, ""]
    parts += [f"- {line}" if i else f"**{line}**" for i, line in enumerate(overview(g).splitlines())]
    for r in g.results:
        parts += ["", f"## {r.id}: {_num(r.score)}/{_num(r.max_score)}", "", "```text", *r.lines(), "```"]
    return "\n".join(parts) + "\n"


def write_submission(out: Path, folder: str, g: Graded) -> None:
    d = out / folder
    write_atomic(d / "results.json", json.dumps(results_json(g), indent=2) + "\n")
    write_atomic(d / "feedback.md", feedback_md(g))


def summary(graded: list[Graded], seconds: float, jobs: int, isolation: str) -> str:
    """The end-of-run summary: counts by status and the mean score of every question."""
    from collections import Counter

    n = len(graded)
    counts = Counter(g.status for g in graded)
    failed = sum(c for s, c in counts.items() if s != "ok")
    lines = [f"graded {n} submission{'s' if n != 1 else ''} in {seconds:.1f} s with {jobs} job{'s' if jobs != 1 else ''}"
             + (f" ({seconds / n:.2f} s each)" if n else "") + f"; {n - failed} ok, {failed} not ok",
             "status: " + ", ".join(f"{s} {c}" for s, c in sorted(counts.items(), key=lambda kv: -kv[1])),
             isolation]
    qcols = question_columns(graded)
    if qcols:
        lines.append(f"{'question':<28} {'mean':>7} {'max':>5} {'full marks':>11}")
        points = {}
        for g in graded:
            for r in g.results:
                points.setdefault(r.id, []).append(r)
        for qid in qcols:
            rs = points.get(qid, [])
            if rs:
                mean = sum(r.score for r in rs) / len(rs)
                full = sum(r.score >= r.max_score for r in rs)
                lines.append(f"{qid:<28} {mean:>7.3g} {_num(rs[0].max_score):>5} {full:>6}/{len(rs):<4}")
        scored = [g for g in graded if g.max_score]
        if scored:
            lines.append(f"{'total':<28} {sum(g.score for g in scored) / len(scored):>7.3g}")
    return "\n".join(lines)
