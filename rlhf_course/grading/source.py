"""Reading submissions (trusted side): finding the files, parsing notebooks leniently, preparing cell sources.

Nothing here runs student code. A notebook is parsed as JSON with size and shape checks of our own
(no schema validation, which is slow and rejects notebooks Jupyter itself opens).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# The tag of the Colab set-up cell (rlhf_course.notebooks.COLAB_TAG; not imported from there, since that
# module imports nbformat, which would add a fifth of a second to every grading run).
COLAB_TAG = "colab-setup"
MAX_FILE_MB = 50


class SubmissionError(Exception):
    """A submission that cannot be graded; ``status`` says why (``invalid-notebook``, ``unknown-exercise``...)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Cell:
    index: int  # position in the notebook, counting markdown cells, from 0
    cell_type: str
    source: str
    metadata: dict
    tags: list = field(default_factory=list)

    @property
    def question(self) -> str | None:
        meta = self.metadata.get("rlhf_course")
        q = meta.get("question") if isinstance(meta, dict) else None
        return q if isinstance(q, str) else None

    def label(self) -> str:
        """``cell 7 (`first line`)``: how feedback names a cell (numbered from 1, as a reader counts)."""
        first = next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")
        first = first if len(first) <= 40 else first[:37] + "..."
        return f"cell {self.index + 1} (`{first}`)" if first else f"cell {self.index + 1}"


@dataclass
class Notebook:
    exercise: str | None
    cells: list[Cell]


def find_submissions(paths: list[Path], exclude: list[Path] = ()) -> tuple[list[tuple[Path, str]], list[Path]]:
    """``(file, name)`` for every submission under ``paths``, and the files skipped in folders.

    A file named on the command line is always a submission. In a folder, every ``*.ipynb`` below it is,
    except in hidden folders and ``.ipynb_checkpoints``. The name is the file's path relative to the folder
    (or its file name, when named on the command line); when two share a name, both get the path given.
    """
    found: list[tuple[Path, str, str]] = []  # (file, short name, name with the argument's path)
    skipped: list[Path] = []
    excluded = [e.resolve() for e in exclude]
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts) or not f.is_file():
                    continue
                if any(f.resolve() == e or e in f.resolve().parents for e in excluded):
                    continue
                if f.suffix == ".ipynb":
                    found.append((f, rel.as_posix(), (p / rel).as_posix()))
                else:
                    skipped.append(f)
        elif p.exists():
            found.append((p, p.name, p.as_posix()))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    counts: dict[str, int] = {}
    for _, short, _ in found:
        counts[short] = counts.get(short, 0) + 1
    # The short name, unless two submissions share it: then the path as given on the command line.
    return [(f, short if counts[short] == 1 else full) for f, short, full in found], skipped


def safe_names(names: list[str]) -> list[str]:
    """Folder names for the per-submission reports: path separators become ``__``, ``.ipynb`` is dropped,
    anything but letters, digits, ``._-`` becomes ``_``; duplicates get ``-2``, ``-3``..."""
    out, seen = [], set()
    for n in names:
        base = re.sub(r"\.ipynb$", "", n).strip("/").replace("/", "__")
        base = re.sub(r"[^A-Za-z0-9._-]", "_", base).strip(".") or "submission"
        cand, k = base, 2
        while cand.lower() in seen:
            cand, k = f"{base}-{k}", k + 1
        seen.add(cand.lower())
        out.append(cand)
    return out


def _text(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    raise SubmissionError("invalid-notebook", "a cell's source is neither a string nor a list of strings")


def parse_notebook(data: bytes, max_mb: float = MAX_FILE_MB) -> Notebook:
    """The cells and exercise of a notebook file's bytes; :class:`SubmissionError` if it is not one."""
    if len(data) > max_mb * 2**20:
        raise SubmissionError("invalid-notebook", f"the file is {len(data) / 2**20:.0f} MB, more than the "
                                                  f"{max_mb:g} MB a notebook may have")
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SubmissionError("invalid-notebook", "the file is not text (UTF-8): it is not a notebook") from None
    except (ValueError, RecursionError) as exc:
        raise SubmissionError("invalid-notebook", f"the file is not JSON, so not a notebook ({exc})"[:300]) from None
    if not isinstance(nb, dict):
        raise SubmissionError("invalid-notebook", f"the file is JSON but not a notebook (a {type(nb).__name__})")
    if "cells" not in nb and "worksheets" in nb:  # nbformat 3
        try:
            import nbformat

            nb = json.loads(nbformat.writes(nbformat.convert(nbformat.from_dict(nb), 4)))
        except Exception as exc:
            raise SubmissionError("invalid-notebook", f"an old (v3) notebook that could not be converted: {exc}"[:300])
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError("invalid-notebook", "the file is JSON but not a notebook: it has no list of cells")
    meta = nb.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    out = []
    for i, c in enumerate(cells):
        if not isinstance(c, dict) or not isinstance(c.get("cell_type"), str):
            raise SubmissionError("invalid-notebook", f"cell {i + 1} is not a notebook cell")
        cmeta = c.get("metadata") if isinstance(c.get("metadata"), dict) else {}
        tags = cmeta.get("tags") if isinstance(cmeta.get("tags"), list) else []
        out.append(Cell(i, c["cell_type"], _text(c.get("source", "")), cmeta, tags))
    ex = meta.get("rlhf_course", {}).get("exercise") if isinstance(meta.get("rlhf_course"), dict) else None
    return Notebook(str(ex) if isinstance(ex, (str, int)) and not isinstance(ex, bool) else None, out)


def code_cells(nb: Notebook) -> list[Cell]:
    """The cells the grader runs: code cells, without the Colab set-up cell."""
    return [c for c in nb.cells if c.cell_type == "code" and COLAB_TAG not in c.tags]


_CELL_MAGIC_BODY_RUNS = {"time", "timeit", "capture", "prun", "debug"}
_ASSIGN_SHELL = re.compile(r"^([A-Za-z_][\w\.]*(\s*,\s*[A-Za-z_][\w\.]*)*)\s*=\s*[%!]")


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython magics and shell lines removed.

    The worker runs this only when the cell as written does not compile (magics never do).

    ``%%time``-like cell magics keep their body; other cell magics (``%%bash``, ``%%writefile``...) are not
    Python and the cell becomes empty. ``%line`` magics and ``!shell`` lines become ``pass``; ``x = !ls`` and
    ``x = %who`` become ``x = None``. Indentation is kept, so blocks stay valid.
    """
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in _CELL_MAGIC_BODY_RUNS:
            return ""
        lines = lines[1:]
    out = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(("%", "!")) and not stripped.startswith("!="):
            out.append(indent + "pass")
            continue
        m = _ASSIGN_SHELL.match(stripped)
        if m:
            out.append(f"{indent}{m.group(1)} = None")
            continue
        out.append(line)
    return "\n".join(out)
