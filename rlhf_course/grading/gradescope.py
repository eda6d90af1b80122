"""Gradescope: ``rlhf-course grade --gradescope`` inside its autograder, and the zip an instructor uploads.

Gradescope unpacks the uploaded zip into ``/autograder/source``, runs ``setup.sh`` once to build the image,
then for every submission copies the student's files into ``/autograder/submission``, runs
``run_autograder``, and reads ``/autograder/results/results.json``. ``rlhf-course gradescope-bundle``
writes such a zip: the two scripts, this package's source (so Gradescope grades with exactly the
instructor's version of the questions) and the package's run-time requirements.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

from . import report
from .batch import grade_files, make_non_dumpable, make_settings
from .source import find_submissions


def _pick_notebook(folder: Path, exercise: str | None) -> tuple[Path | None, str]:
    """The submitted notebook: the only ``.ipynb``, else the one named for the exercise; and a note."""
    found = [p for p, _ in find_submissions([folder])[0]] if folder.is_dir() else []
    if not found:
        return None, "No notebook (.ipynb file) was found in the submission: upload your exercise notebook."
    if len(found) == 1:
        return found[0], ""
    named = [p for p in found if exercise and p.name.startswith(f"{exercise}_")]
    pick = (named or found)[0]
    return pick, (f"The submission has {len(found)} notebooks; graded {pick.name}. Submit only the exercise "
                  f"notebook to be sure which one is graded.")


def run_gradescope(args) -> int:
    """Grade ``ROOT/submission`` into ``ROOT/results/results.json`` (``ROOT`` is ``/autograder``)."""
    root = args.gradescope_root
    results = root / "results" / "results.json"
    nb, note = _pick_notebook(root / "submission", args.exercise)
    if nb is None:
        report.write_atomic(results, json.dumps({"score": 0.0, "output": note, "tests": [],
                                                 "visibility": "visible"}, indent=2) + "\n")
        print(note)
        return 0
    scratch = tempfile.mkdtemp(prefix="rlhf-grade-")
    hidden = [root / "submission", root / "results", Path(scratch)]
    settings = make_settings(args, [h.resolve() for h in hidden], scratch, seed=args.seed or 0)
    make_non_dumpable()
    try:
        (g,), isolation = grade_files([(nb, nb.name)], settings, jobs=1, out=None, progress=False)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    if note:
        g.notes.insert(0, note)
    report.write_atomic(results, json.dumps(report.results_json(g), indent=2) + "\n")
    report.write_atomic(results.parent / "feedback.md", report.feedback_md(g))
    print(report.overview(g))
    return 1 if g.status == "grader-error" else 0


# --------------------------------------------------------------------------------------------------
# the bundle

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder (choose an Ubuntu base image).
# It installs Python if needed, then the course package bundled next to this file, in /autograder/venv.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
fi
# unshare (util-linux) lets the grader confine each submission where the platform allows it.
command -v unshare >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux || true
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
/autograder/venv/bin/python -m pip install --quiet -r requirements.txt
/autograder/venv/bin/python -m pip install --quiet --no-deps ./rlhf-course
/autograder/venv/bin/rlhf-course questions {exercise}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: it grades the notebook in /autograder/submission and
# writes /autograder/results/results.json (with feedback.md beside it).
# --seed: the hidden cases' seed, drawn when the bundle was written (students never see this file).
exec /autograder/venv/bin/rlhf-course grade --gradescope --exercise {exercise} \\
  --timeout {timeout:g} --total-timeout {total_timeout:g} --memory {memory} --seed {seed}
"""


def _dependencies(pyproject: Path) -> list[str]:
    text = pyproject.read_text()
    try:
        import tomllib

        return list(tomllib.loads(text)["project"]["dependencies"])
    except ImportError:  # Python 3.10: the list is simple enough to read directly
        block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def _needs_torch(root: Path, exercise: str) -> bool:
    """Does the exercise's solution notebook, or a module its questions use, import torch?"""
    texts = [p.read_text() for p in (root / "solutions").glob(f"{exercise}_*.ipynb")]
    return any(re.search(r"\b(import torch|from torch)\b", t) for t in texts)


def write_bundle(out: Path, exercise: str, timeout: float, total_timeout: float, memory: int,
                 torch: bool | None = None, seed: int | None = None) -> list[str]:
    """Write the autograder zip; returns the names it holds. ``seed``: the hidden cases' (default: random)."""
    import secrets

    import rlhf_course

    from ..questions import exercise_ids

    if exercise not in exercise_ids():
        raise ValueError(f"no exercise {exercise!r} (known: {', '.join(exercise_ids())})")
    pkg = Path(rlhf_course.__file__).resolve().parent
    root = pkg.parent
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(f"no pyproject.toml beside {pkg}: run this from the course repository")
    deps = _dependencies(root / "pyproject.toml")
    if torch is None:
        torch = _needs_torch(root, exercise)
    if not torch:
        deps = [d for d in deps if not re.match(r"torch\b", d)]
    files = {
        "setup.sh": SETUP_SH.format(exercise=exercise),
        "run_autograder": RUN_AUTOGRADER.format(exercise=exercise, timeout=timeout, total_timeout=total_timeout,
                                                memory=memory,
                                                seed=secrets.randbelow(2**32) if seed is None else seed),
        "requirements.txt": "# the course package's run-time requirements (rlhf-course gradescope-bundle)\n"
                            + "\n".join(deps) + "\n",
        "rlhf-course/pyproject.toml": (root / "pyproject.toml").read_text(),
    }
    if (root / "README.md").is_file():
        files["rlhf-course/README.md"] = (root / "README.md").read_text()
    for f in sorted(pkg.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo"):
            files[f"rlhf-course/rlhf_course/{f.relative_to(pkg).as_posix()}"] = f.read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    tmp.replace(out)
    return list(files)


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the zip to write, e.g. autograder-01.zip")
    parser.add_argument("--exercise", required=True, help="the exercise this Gradescope assignment is, e.g. 01")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per cell and per answer (default: 60)")
    parser.add_argument("--total-timeout", type=float, default=600.0, help="seconds per submission (default: 600)")
    parser.add_argument("--memory", type=int, default=2048, help="MB per submission (default: 2048)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the hidden cases, written into run_autograder (default: drawn at random)")
    parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                        help="--torch / --no-torch: install torch on Gradescope (default: if the exercise's "
                             "solution notebook imports it)")


def run(args) -> int:
    try:
        names = write_bundle(args.out, args.exercise, args.timeout, args.total_timeout, args.memory, args.torch,
                             args.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rlhf-course gradescope-bundle: {exc}", file=sys.stderr)
        return 2
    n_pkg = sum(n.startswith("rlhf-course/") for n in names)
    print(f"wrote {args.out}: setup.sh, run_autograder, requirements.txt and the package ({n_pkg} files), "
          f"for exercise {args.exercise}. Upload it as the assignment's autograder (Ubuntu base image).")
    return 0
