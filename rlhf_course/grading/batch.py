"""Grading a batch of submission files, shared by ``rlhf-course grade`` (``cli``) and its Gradescope mode
(``gradescope``): the run's settings from the command's options, this process's own protection, and the
submissions graded in parallel, each in its own worker.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ..questions import exercise_ids
from . import report, runner
from .process import describe_isolation, kill_all_workers, probe_isolation
from .settings import Settings
from .source import safe_names


def make_settings(args, hidden: list[Path], scratch: str, seed: int = 0) -> Settings:
    for name in ("timeout", "total_timeout"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"rlhf-course grade: --{name.replace('_', '-')} must be > 0")
    if args.memory < 256:
        raise SystemExit("rlhf-course grade: --memory must be at least 256 (MB)")
    if args.exercise:
        if args.exercise not in exercise_ids():
            raise SystemExit(f"rlhf-course grade: no exercise {args.exercise!r} (known: {', '.join(exercise_ids())})")
    if not 0 <= seed < 2**63:
        raise SystemExit(f"rlhf-course grade: --seed must be an integer in [0, 2**63), got {seed}")
    return Settings(timeout=args.timeout, total_timeout=args.total_timeout, memory_mb=args.memory,
                    isolation=args.isolation, exercise=args.exercise,
                    hidden=tuple(str(p) for p in hidden), scratch=scratch, seed=seed)


def make_non_dumpable() -> None:
    """Keep same-user processes (e.g. a worker without namespaces) from reading or writing this one's memory."""
    if sys.platform.startswith("linux"):
        from .sandbox import PR_SET_DUMPABLE, prctl

        prctl(PR_SET_DUMPABLE, 0)


def grade_files(files: list[tuple[Path, str]], settings: Settings, jobs: int, out: Path | None,
                progress: bool = True, folders: dict[str, str] | None = None) -> tuple[list[runner.Graded], str]:
    """Grade ``(path, name)`` pairs in parallel; write each submission's reports into ``out`` as it finishes.

    ``folders``: name -> report folder, when ``files`` is part of a larger batch (``--only-failed``).
    """
    mode, why = probe_isolation(settings)
    isolation = describe_isolation(mode, why, settings)
    folders = [folders[name] for _, name in files] if folders else safe_names([name for _, name in files])
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
            kill_all_workers()
            raise
        finally:
            if bar is not None:
                bar.close()
    return graded, isolation
