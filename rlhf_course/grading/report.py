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

CSV_COLUMNS = ("submission", "exercise", "status", "score", "max_score", "seed")
ID_COLUMN = "student_id"  # with --roster: second column


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


def _exercise_columns(exercises) -> list[str]:
    from ..questions import exercise_ids, questions_for

    cols = []
    for ex in sorted(set(exercises) & set(exercise_ids())):
        cols += [q.id for q in questions_for(ex)]
    return cols


def question_columns(graded: list[Graded]) -> list[str]:
    """Question ids of every exercise in the batch, in exercise order then notebook order."""
    return _exercise_columns(g.exercise for g in graded if g.exercise and g.status != "unknown-exercise")


def grade_rows(graded: list[Graded], seed: int, ids: dict[str, str] | None = None) -> list[dict]:
    """One plain row (column -> text) per submission, as ``grades.csv`` holds it.

    A row whose grading failed (``grader-error``) has an empty score and empty question cells: it is not a
    zero. ``ids`` (from ``--roster``) maps a submission's name to its student id.
    """
    rows = []
    for g in graded:
        failed = g.status == "grader-error"
        row = {"submission": g.name, "exercise": g.exercise or "", "status": g.status,
               "score": "" if failed else _num(g.score), "max_score": _num(g.max_score), "seed": str(seed)}
        if ids is not None:
            row[ID_COLUMN] = ids.get(g.name, "")
        if not failed:
            row.update({r.id: _num(r.score) for r in g.results})
        rows.append(row)
    return rows


def render_csv(rows: list[dict]) -> str:
    """``grades.csv`` from rows: a deterministic text for the same rows (sorted by submission, then id).

    The question columns are those of every exercise in the rows; the student id column is there when any
    row has one (``--roster``); rows without a file (a roster's student who submitted nothing) come last.
    """
    with_ids = any(ID_COLUMN in r for r in rows)
    head = list(CSV_COLUMNS[:1]) + ([ID_COLUMN] if with_ids else []) + list(CSV_COLUMNS[1:])
    qcols = _exercise_columns(r["exercise"] for r in rows if r.get("exercise"))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head + qcols)
    for r in sorted(rows, key=lambda r: (r["submission"] == "", r["submission"], r.get(ID_COLUMN, ""))):
        w.writerow([r.get(c, "") for c in head + qcols])
    return buf.getvalue()


def grades_csv(graded: list[Graded], seed: int = 0, ids: dict[str, str] | None = None) -> str:
    """One row per submission, sorted by name: the fixed columns, then one score per question."""
    return render_csv(grade_rows(graded, seed, ids))


def read_csv(path: Path) -> list[dict]:
    """The rows of a ``grades.csv`` (column -> text)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_seed(path: Path | None) -> int | None:
    """The hidden cases' seed recorded in a ``grades.csv`` (its first row that has one); None if none."""
    if path is None or not Path(path).is_file():
        return None
    try:
        rows = read_csv(path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    for r in rows:
        if (r.get("seed") or "").isdigit():
            return int(r["seed"])
    return None


def compare_grades(old: list[dict], new: list[dict]) -> list[str]:
    """Per student, what changed from ``old`` to ``new`` rows: status, score and every question's points.

    Students are matched by ``student_id`` where both have one, else by submission name.
    """
    def key(r):
        return r.get(ID_COLUMN) or r["submission"]

    def num(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    old_by, new_by = {key(r): r for r in old}, {key(r): r for r in new}
    cols = [c for c in new[0] if c not in CSV_COLUMNS and c != ID_COLUMN] if new else []
    lines = []
    for k in sorted(set(old_by) | set(new_by)):
        if k not in new_by:
            lines.append(f"{k}: in the old grades only")
            continue
        if k not in old_by:
            lines.append(f"{k}: in the new grades only (score {new_by[k].get('score') or 'none'})")
            continue
        o, n = old_by[k], new_by[k]
        changes = []
        if o.get("status") != n.get("status"):
            changes.append(f"status {o.get('status')} -> {n.get('status')}")
        for c in ["score"] + cols:
            a, b = o.get(c, ""), n.get(c, "")
            if a == b:
                continue
            x, y = num(a), num(b)
            delta = f" ({y - x:+g})" if x is not None and y is not None else ""
            changes.append(f"{c} {a or 'none'} -> {b or 'none'}{delta}")
        if changes:
            lines.append(f"{k}: " + "; ".join(changes))
    return lines or ["no changes"]


def overview(g: Graded) -> str:
    """The submission-level message: status, what went wrong, the isolation in force."""
    score = "none (the grader failed: this is not a zero)" if g.score is None else _num(g.score)
    lines = [f"Score: {score} / {_num(g.max_score) or '?'} (status: {g.status})."]
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
    out = {
        "score": None if g.score is None else round(g.score, 4),
        "execution_time": round(g.seconds, 2),
        "output": overview(g),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"submission": g.name, "exercise": g.exercise, "status": g.status,
                       "max_score": g.max_score, "isolation": g.isolation},
    }
    if g.score is None:  # the grader failed: no score at all (Gradescope then shows the output), never a 0
        del out["score"]
    return out


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
            for r in g.results if g.score is not None else ():
                points.setdefault(r.id, []).append(r)
        for qid in qcols:
            rs = points.get(qid, [])
            if rs:
                mean = sum(r.score for r in rs) / len(rs)
                full = sum(r.score >= r.max_score for r in rs)
                lines.append(f"{qid:<28} {mean:>7.3g} {_num(rs[0].max_score):>5} {full:>6}/{len(rs):<4}")
        scored = [g for g in graded if g.max_score and g.score is not None]
        if scored:
            lines.append(f"{'total':<28} {sum(g.score for g in scored) / len(scored):>7.3g}")
    return "\n".join(lines)
