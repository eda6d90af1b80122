"""How fast ``rlhf-course grade`` is: a cohort of solved chapter-1 notebooks, graded with --jobs = cores.

    .venv/bin/python benchmarks/grading.py [--copies 100] [--repeats 3] [--jobs N]

Prints, as medians over the repeats:

* the fixed start-up cost of one ``rlhf-course grade`` run (interpreter, imports, the isolation probe, the
  reports), measured on a batch of one file that needs no worker (a file that is not a notebook);
* the wall time of the whole batch, and seconds per submission amortized over it (batch minus start-up,
  divided by the number of submissions);
* the cost of starting one worker (until it is confined, has imported numpy and the framework, and says
  it is ready) with Linux namespaces and with resource limits only, and one submission graded end to end
  in each mode.

Every submission is graded as ``rlhf-course grade`` grades it: with the delegation guards watching the code
questions' cases and the hidden cases (seed 1) run after the public ones.

Anchors measured on this machine kind (the course's toolchain notes): otter-grader 7.0 took 8-10 s per
submission, nbgrader 0.9 about 1.7 s per submission, serially. Timings vary by about 15% run to run on
these machines, more when other work shares the cores: compare medians.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_kl_penalty.ipynb"
CLI = [sys.executable, "-m", "rlhf_course.cli"]


def run_cli(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(CLI + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def worker_start(isolation: str, settings) -> float:
    from rlhf_course.grading.runner import Worker

    t0 = time.perf_counter()
    w = Worker(isolation, settings)
    dt = time.perf_counter() - t0
    w.kill()
    return dt


def one_submission(isolation: str, settings) -> float:
    from rlhf_course.grading.runner import grade_notebook

    t0 = time.perf_counter()
    g = grade_notebook(SOLUTION, SOLUTION.name, isolation, settings)
    assert g.status == "ok" and g.score == g.max_score, (g.status, g.notes)
    return time.perf_counter() - t0


def main() -> int:
    from rlhf_course.grading.cli import default_jobs
    from rlhf_course.grading.runner import Settings, probe_isolation

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=default_jobs())
    ap.add_argument("--notebook", type=Path, default=SOLUTION, help="the solved notebook to copy")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rlhf-grading-bench-"))
    try:
        subs, bad = tmp / "submissions", tmp / "startup"
        subs.mkdir()
        bad.mkdir()
        for i in range(args.copies):
            shutil.copy(args.notebook, subs / f"student_{i:03d}.ipynb")
        (bad / "not_a_notebook.ipynb").write_text("not a notebook")
        common = ["--quiet", "--jobs", str(args.jobs), "--seed", "1"]  # the same hidden cases in every run

        fixed, batch = [], []
        for r in range(args.repeats):
            fixed.append(run_cli(["grade", str(bad), "--out", str(tmp / f"out_fixed_{r}")] + common))
            batch.append(run_cli(["grade", str(subs), "--out", str(tmp / f"out_{r}")] + common))
        rows = list(csv.DictReader((tmp / "out_0" / "grades.csv").open()))
        full = sum(r["status"] == "ok" and r["score"] == r["max_score"] for r in rows)
        assert len(rows) == args.copies and full == args.copies, f"only {full} of {len(rows)} got full marks"

        settings = Settings(scratch=str(tmp))
        mode, why = probe_isolation(settings)
        starts = {"namespaces": [], "rlimits": []} if mode == "namespaces" else {"rlimits": []}
        ends = {k: [] for k in starts}
        for _ in range(max(5, 3 * args.repeats)):
            for iso in starts:
                starts[iso].append(worker_start(iso, settings))
                ends[iso].append(one_submission(iso, settings))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    t_fixed, t_batch = med(fixed), med(batch)
    per = (t_batch - t_fixed) / args.copies
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end "
          f"(other work may share the cores); isolation: {mode}" + ("" if mode == "namespaces" else f" ({why})"))
    print(f"notebook: {args.notebook.relative_to(ROOT) if args.notebook.is_relative_to(ROOT) else args.notebook}, "
          f"{args.copies} copies, --jobs {args.jobs}, medians of {args.repeats} runs")
    print(f"fixed start-up cost of a run:       {t_fixed:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in fixed)})")
    print(f"whole batch:                        {t_batch:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in batch)})")
    print(f"per submission, amortized:          {per:6.3f} s   ({t_batch / args.copies:.3f} s with start-up included)")
    for iso in starts:
        print(f"worker start, {iso:<10}:           {med(starts[iso]):6.3f} s   "
              f"one submission end to end: {med(ends[iso]):.3f} s")
    if "namespaces" in starts:
        print(f"cost of the namespaces per worker:  {med(starts['namespaces']) - med(starts['rlimits']):+6.3f} s")
    print("anchors (toolchain notes): otter-grader 8-10 s per submission, nbgrader about 1.7 s, serially")
    return 0


if __name__ == "__main__":
    sys.exit(main())
