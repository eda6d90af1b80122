"""``rlhf-course grade``: grade a cohort's exercise notebooks, each in its own confined worker.

    rlhf-course grade SUBMISSION_OR_FOLDER... --out DIR [--jobs N] [--timeout S] [--total-timeout S]
                      [--memory MB] [--exercise NN] [--isolation auto|namespaces|rlimits]
    rlhf-course grade --gradescope [--exercise NN]      # inside Gradescope's /autograder layout

Writes ``DIR/grades.csv`` (one row per submitted file) and, per submission, ``DIR/<name>/results.json`` and
``DIR/<name>/feedback.md``. See the book's appendix "For instructors".
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import report, runner
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def protected_paths() -> list[Path]:
    """What the output folder must not be inside: the course package and the Python installation."""
    import rlhf_course

    return [Path(rlhf_course.__file__).resolve().parent, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]


def make_settings(args, hidden: list[Path], scratch: str) -> runner.Settings:
    for name in ("timeout", "total_timeout"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"rlhf-course grade: --{name.replace('_', '-')} must be > 0")
    if args.memory < 256:
        raise SystemExit("rlhf-course grade: --memory must be at least 256 (MB)")
    if args.exercise:
        from ..questions import exercise_ids

        if args.exercise not in exercise_ids():
            raise SystemExit(f"rlhf-course grade: no exercise {args.exercise!r} (known: {', '.join(exercise_ids())})")
    return runner.Settings(timeout=args.timeout, total_timeout=args.total_timeout, memory_mb=args.memory,
                           isolation=args.isolation, exercise=args.exercise,
                           hidden=tuple(str(p) for p in hidden), scratch=scratch)


def make_non_dumpable() -> None:
    """Keep same-user processes (e.g. a worker without namespaces) from reading or writing this one's memory."""
    if sys.platform.startswith("linux"):
        from .sandbox import PR_SET_DUMPABLE, prctl

        prctl(PR_SET_DUMPABLE, 0)


def grade_files(files: list[tuple[Path, str]], settings: runner.Settings, jobs: int, out: Path | None,
                progress: bool = True) -> tuple[list[runner.Graded], str]:
    """Grade ``(path, name)`` pairs in parallel; write each submission's reports into ``out`` as it finishes."""
    mode, why = runner.probe_isolation(settings)
    isolation = runner.describe_isolation(mode, why, settings)
    folders = safe_names([name for _, name in files])
    graded: list[runner.Graded] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="submission", file=sys.stderr, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(runner.grade_notebook, path, name, mode, settings): folder
                   for (path, name), folder in zip(files, folders)}
        try:
            for fut in as_completed(futures):
                g = fut.result()
                g.isolation = isolation if g.isolation else ""
                if out is not None:
                    report.write_submission(out, futures[fut], g)
                graded.append(g)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{g.name}: {g.status}", refresh=False)
        except BaseException:
            for f in futures:
                f.cancel()
            runner.kill_all_workers()
            raise
        finally:
            if bar is not None:
                bar.close()
    return graded, isolation


def run(args) -> int:
    if os.name != "posix":
        print("rlhf-course grade: grading runs on Linux (with the most isolation) or macOS", file=sys.stderr)
        return 2
    if args.gradescope:
        from .gradescope import run_gradescope

        return run_gradescope(args)
    if not args.paths or args.out is None:
        print("rlhf-course grade: give submissions (files or folders) and --out DIR", file=sys.stderr)
        return 2
    out = args.out.resolve()
    for p in protected_paths():
        if _inside(out, p) or _inside(p, out):
            print(f"rlhf-course grade: --out {args.out} must not hold or be inside {p}", file=sys.stderr)
            return 2
    try:
        files, skipped = find_submissions(args.paths, exclude=[out])
    except FileNotFoundError as exc:
        print(f"rlhf-course grade: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("rlhf-course grade: no submissions found (folders are searched for *.ipynb)", file=sys.stderr)
        return 2
    for path, _ in files:
        for p in protected_paths():
            if _inside(path.resolve(), p):
                print(f"rlhf-course grade: {path} is inside {p}; put submissions elsewhere", file=sys.stderr)
                return 2
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="rlhf-grade-")
    hidden = [out, Path(scratch), Path.home()] + [p.resolve() for p in args.paths]  # folders cover their files
    hidden = [h for h in hidden if not any(_inside(q, h) for q in protected_paths())]
    settings = make_settings(args, hidden, scratch)
    jobs = args.jobs or default_jobs()
    make_non_dumpable()
    t0 = time.monotonic()
    try:
        graded, isolation = grade_files(files, settings, jobs, out, progress=not args.quiet)
    except KeyboardInterrupt:
        print("\ninterrupted: grades.csv was not changed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"rlhf-course grade: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.write_atomic(out / "grades.csv", report.grades_csv(graded))
    print(report.summary(graded, time.monotonic() - t0, jobs, isolation))
    if skipped:
        print(f"not graded ({len(skipped)} file{'s' if len(skipped) != 1 else ''} without .ipynb in the folders): "
              + ", ".join(str(s) for s in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    print(f"wrote {out / 'grades.csv'} and, per submission, results.json and feedback.md in {out}")
    return 1 if any(g.status == "grader-error" for g in graded) else 0

