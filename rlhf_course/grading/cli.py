"""``rlhf-course grade``: grade a cohort's exercise notebooks, each in its own confined worker.

    rlhf-course grade SUBMISSION_OR_FOLDER... --out DIR [--jobs N] [--timeout S] [--total-timeout S]
                      [--memory MB] [--exercise NN] [--isolation auto|namespaces|rlimits]
                      [--seed N] [--roster roster.csv] [--compare OLD_grades.csv]
    rlhf-course grade SUBMISSION_OR_FOLDER... --only-failed DIR   # regrade the grader-error rows of DIR
    rlhf-course grade --gradescope [--exercise NN]      # inside Gradescope's /autograder layout

Writes ``DIR/grades.csv`` (one row per submitted file) and, per submission, ``DIR/<name>/results.json`` and
``DIR/<name>/feedback.md``. A submission the grader itself failed on (``grader-error``) has an empty score,
and the command exits with 1. See the book's appendix "For instructors".
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .batch import grade_files, make_non_dumpable, make_settings
from .gradescope import run_gradescope
from .source import find_submissions, safe_names


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="SUBMISSION_OR_FOLDER",
                        help="notebook files, or folders searched for *.ipynb files")
    parser.add_argument("--out", type=Path, help="output folder: grades.csv and one folder per submission")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="submissions graded at once (default: CPU cores)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a cell, or an answer called on one case, may run (default: 60)")
    parser.add_argument("--total-timeout", type=float, default=600.0,
                        help="seconds per submission, everything included (default: 600)")
    parser.add_argument("--memory", type=int, default=2048, help="memory per submission, in MB (default: 2048)")
    parser.add_argument("--exercise", help="grade every submission as exercise NN (a notebook that says it is "
                                           "another exercise gets the status wrong-exercise)")
    parser.add_argument("--isolation", choices=("auto", "namespaces", "rlimits"), default="auto",
                        help="namespaces: require Linux namespaces; rlimits: resource limits only; auto (default): "
                             "namespaces where they work, else rlimits, and say so")
    parser.add_argument("--gradescope", action="store_true",
                        help="run inside Gradescope's autograder: grade /autograder/submission, write "
                             "/autograder/results/results.json")
    parser.add_argument("--gradescope-root", type=Path, default=Path("/autograder"),
                        help="with --gradescope: the autograder's root folder (default: /autograder)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the hidden cases (default: the one recorded in DIR/grades.csv, else in the "
                             "--compare file, else a new random one); it is recorded in grades.csv")
    parser.add_argument("--only-failed", type=Path, metavar="DIR",
                        help="regrade only the rows of DIR/grades.csv with status grader-error, with that file's "
                             "seed, and complete DIR/grades.csv (give the same submissions as before)")
    parser.add_argument("--compare", type=Path, metavar="OLD_GRADES_CSV",
                        help="after grading, print per student which questions changed since this grades.csv "
                             "and by how much")
    parser.add_argument("--roster", type=Path, metavar="ROSTER_CSV",
                        help="CSV with the columns student_id and file (a file name or a glob pattern): adds a "
                             "student_id column; files no student claims and students with no file are listed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def protected_paths() -> list[Path]:
    """What the output folder must not be inside: the course package and the Python installation."""
    import rlhf_course

    return [Path(rlhf_course.__file__).resolve().parent, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]


def pick_seed(args, previous: Path) -> tuple[int, str]:
    """The hidden cases' seed and where it came from: ``--seed``, the output folder's ``grades.csv`` (a
    regrade draws the same cases), the ``--compare`` file, or a new random one."""
    if args.seed is not None:
        return args.seed, "given with --seed"
    for path in (previous, args.compare):
        seed = report.read_seed(path)
        if seed is not None:
            return seed, f"the one recorded in {path}"
    return secrets.randbelow(2**32), "drawn at random for this run"


def _only_failed(out: Path, files: list[tuple[Path, str]]) -> tuple[list[dict], list[tuple[Path, str]], list[str]]:
    """For ``--only-failed``: the old rows, the submissions to regrade, and failed rows with no file now."""
    old = report.read_csv(out / "grades.csv")
    failed = {r["submission"] for r in old if r.get("status") == "grader-error"}
    todo = [(p, n) for p, n in files if n in failed]
    return old, todo, sorted(failed - {n for _, n in todo})


def _error(msg: str) -> int:
    print(f"rlhf-course grade: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    if os.name != "posix":
        print("rlhf-course grade: grading runs on Linux (with the most isolation) or macOS", file=sys.stderr)
        return 2
    if args.gradescope:
        return run_gradescope(args)
    if args.only_failed is not None:
        if args.out is not None and args.out.resolve() != args.only_failed.resolve():
            return _error("--only-failed DIR writes into DIR: give no other --out")
        args.out = args.only_failed
        if not (args.out / "grades.csv").is_file():
            return _error(f"--only-failed: no grades.csv in {args.out}")
    if not args.paths or args.out is None:
        return _error("give submissions (files or folders) and --out DIR")
    out = args.out.resolve()
    for p in protected_paths():
        if _inside(out, p) or _inside(p, out):
            return _error(f"--out {args.out} must not hold or be inside {p}")
    try:
        files, skipped = find_submissions(args.paths, exclude=[out])
    except FileNotFoundError as exc:
        return _error(str(exc))
    if not files:
        return _error("no submissions found (folders are searched for *.ipynb)")
    for path, _ in files:
        for p in protected_paths():
            if _inside(path.resolve(), p):
                return _error(f"{path} is inside {p}; put submissions elsewhere")
    roster = None
    if args.roster is not None:
        from .roster import match_roster, read_roster

        try:
            roster = match_roster(read_roster(args.roster), [name for _, name in files])
        except ValueError as exc:
            return _error(str(exc))
    if args.compare is not None and not args.compare.is_file():
        return _error(f"--compare: no file {args.compare}")
    seed, seed_from = pick_seed(args, out / "grades.csv")
    old_rows: list[dict] = []
    folders = dict(zip([n for _, n in files], safe_names([n for _, n in files])))
    todo = files
    if args.only_failed is not None:
        old_rows, todo, gone = _only_failed(out, files)
        if gone:
            print(f"--only-failed: not found among the submissions given, left as grader-error: {', '.join(gone)}")
        if not todo:
            print(f"nothing to regrade: no row of {out / 'grades.csv'} with status grader-error has its file here")
            return 1 if gone else 0
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="rlhf-grade-")
    hidden = [out, Path(scratch), Path.home()] + [p.resolve() for p in args.paths]  # folders cover their files
    hidden = [h for h in hidden if not any(_inside(q, h) for q in protected_paths())]
    settings = make_settings(args, hidden, scratch, seed)
    jobs = args.jobs or default_jobs()
    make_non_dumpable()
    t0 = time.monotonic()
    try:
        graded, isolation = grade_files(todo, settings, jobs, out, progress=not args.quiet, folders=folders)
    except KeyboardInterrupt:
        print("\ninterrupted: grades.csv was not changed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        return _error(str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ids = roster.ids if roster else None
    if ids is None and any(report.ID_COLUMN in r for r in old_rows):  # --only-failed keeps the ids it had
        ids = {r["submission"]: r.get(report.ID_COLUMN, "") for r in old_rows}
    rows = report.grade_rows(graded, seed, ids)
    if roster is not None and not old_rows:  # --only-failed: the rows of absent students are there already
        rows += [{"submission": "", report.ID_COLUMN: sid, "exercise": "", "status": "no-submission", "score": "",
                  "max_score": "", "seed": str(seed)} for sid in roster.absent]
    if old_rows:  # --only-failed: the other rows stay exactly as they were
        regraded = {g.name for g in graded}
        rows = [r for r in old_rows if r["submission"] not in regraded] + rows
    report.write_atomic(out / "grades.csv", report.render_csv(rows))
    print(report.summary(graded, time.monotonic() - t0, jobs, isolation))
    print(f"hidden cases: seed {seed} ({seed_from}); recorded in grades.csv, so a regrade into {args.out} draws "
          f"the same cases")
    if skipped:
        print(f"not graded ({len(skipped)} file{'s' if len(skipped) != 1 else ''} without .ipynb in the folders): "
              + ", ".join(str(s) for s in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    if roster is not None:
        for line in roster.lines():
            print(line)
    print(f"wrote {out / 'grades.csv'} and, per submission, results.json and feedback.md in {out}")
    if args.compare is not None:
        print(f"changes since {args.compare}:")
        for line in report.compare_grades(report.read_csv(args.compare), report.read_csv(out / "grades.csv")):
            print(f"  {line}")
    failed = sorted(r["submission"] for r in rows if r.get("status") == "grader-error")
    if failed:
        print(f"the grader failed on {len(failed)} submission{'s' if len(failed) != 1 else ''} (status grader-error, "
              f"no score): {', '.join(failed)}\nrerun only those with: rlhf-course grade "
              f"{' '.join(str(p) for p in args.paths)} --only-failed {args.out}", file=sys.stderr)
        return 1
    return 0
