"""Where the course's files are: the repository root, and the folder where a chapter caches its runs.

Imports nothing heavy: the exercise generator and the grader use it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["repo_root", "runs_folder"]


def repo_root(start: Path | None = None) -> Path:
    """The book root: the nearest folder upwards holding ``_config.yml``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_config.yml").is_file():
            return d
    raise FileNotFoundError(f"no _config.yml in {here} or above: run this from the course repository")


def runs_folder(name: str = "ch07") -> Path:
    """Where a chapter caches its runs: ``book/runs/NAME`` in the course repository (found from the working
    folder, else from this package's location), or ``runs/NAME`` in the working folder outside it (Colab).
    The folder gets a ``.gitignore`` of ``*`` when it is created, so runs never end up in git."""
    try:
        return repo_root() / "book" / "runs" / name
    except FileNotFoundError:
        pass
    here = Path(__file__).resolve().parents[1]  # rlhf_course/ -> the repository
    if (here / "_config.yml").is_file():
        return here / "book" / "runs" / name
    return Path("runs") / name
