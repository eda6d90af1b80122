"""Notebook sources: the Colab set-up cell, clean (output-free) notebooks, and exercises made from solutions.

``solutions/NN_name.ipynb`` is the single source of exercise ``NN``. Its question cells carry
``metadata.rlhf_course = {"question": "NN.name", "points": P}``; solution code is marked the way otter-grader
and nbgrader users know:

* a block between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes ``# YOUR CODE HERE`` and ``...``
  (so a function returns None until written, and the self-check says "not implemented yet"); a block that
  is one assignment to a name (an answer too long for one line) becomes ``name = ...``;
* a line ending in ``# SOLUTION`` becomes ``name = ...`` (for an assignment) or ``...``;
* in markdown, text between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` is removed;
* a cell tagged ``solution`` is removed whole.

``rlhf-course build-exercises`` writes ``exercises/`` from ``solutions/``; with ``--check`` it writes
nothing and fails when anything is out of sync (the test suite runs that).
"""
from __future__ import annotations

import ast
import copy
import re
import textwrap
from pathlib import Path

import nbformat

from .paths import repo_root

NB_VERSION = 4
COLAB_TAG = "colab-setup"
# The Colab cell runs first on Colab but is plumbing to a reader of the site: myst-nb leaves a cell tagged
# remove-cell out of the page (it still executes), so each page opens with its title.
COLAB_TAGS = (COLAB_TAG, "remove-cell")
PACKAGE = "rlhf-course"
NOTEBOOK_DIRS = ("book", "solutions")  # hand-written notebooks; exercises/ is generated

_BEGIN = re.compile(r"^(\s*)#\s*BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*#\s*END SOLUTION\s*$")
_LINE = re.compile(r"^(\s*)(.*?)\s*#\s*SOLUTION\s*$")
_ASSIGN = re.compile(r"^([A-Za-z_][\w\.\[\]'\", ]*?\s*=)(?!=)")
_MD_SOLUTION = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->\s*", re.S)


def repository_url(root: Path) -> str:
    """``repository.url`` from ``_config.yml``: the one place the repository URL is set."""
    import yaml

    cfg = yaml.safe_load((root / "_config.yml").read_text())
    url = (cfg.get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{root / '_config.yml'} sets no repository.url")
    return url.rstrip("/")


def colab_cell_source(url: str) -> str:
    """The first cell of every notebook: installs the package where it is not importable (Colab)."""
    return (
        "# Set-up for Colab or any fresh kernel: install the course package if it is missing.\n"
        "# Where rlhf_course is installed (a local clone, the course's venv) this does nothing.\n"
        "import importlib.util, subprocess, sys\n"
        'if importlib.util.find_spec("rlhf_course") is None:\n'
        f'    package = "{PACKAGE} @ git+{url}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)'
    )


def colab_cell(url: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(colab_cell_source(url))
    cell.metadata["tags"] = list(COLAB_TAGS)
    cell.id = "colab-setup"
    return cell


def is_colab_cell(cell) -> bool:
    return cell.cell_type == "code" and COLAB_TAG in cell.metadata.get("tags", [])


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and per-run metadata, in place; returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    return nb


def has_outputs(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of code cells with stored outputs or execution counts."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def _block_stub(indent: str, block: list[str]) -> list[str]:
    """The stub for a solution block: ``name = ...`` when the block is one assignment to a name (an answer
    too long for one ``# SOLUTION`` line), otherwise ``# YOUR CODE HERE`` and ``...``."""
    try:
        tree = ast.parse(textwrap.dedent("\n".join(block)))
    except SyntaxError:
        tree = None
    if tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign):
        targets = tree.body[0].targets
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return [f"{indent}{targets[0].id} = ..."]
    return [f"{indent}# YOUR CODE HERE", f"{indent}..."]


def strip_solution_source(source: str) -> str:
    """Replace the solution parts of a code cell's source with stubs (see the module docstring)."""
    out, in_block, block, indent = [], False, [], ""
    for line in source.split("\n"):
        if in_block:
            if _END.match(line):
                in_block = False
                out += _block_stub(indent, block)
            else:
                block.append(line)
            continue
        m = _BEGIN.match(line)
        if m:
            in_block, block, indent = True, [], m.group(1)
            continue
        if _END.match(line):
            raise ValueError("'# END SOLUTION' without a '# BEGIN SOLUTION' before it")
        m = _LINE.match(line)
        if m:
            indent, code = m.groups()
            a = _ASSIGN.match(code)
            out.append(f"{indent}{a.group(1).rstrip()} ..." if a else f"{indent}...")
            continue
        out.append(line)
    if in_block:
        raise ValueError("'# BEGIN SOLUTION' without a matching '# END SOLUTION'")
    return "\n".join(out)


def exercise_of(nb: nbformat.NotebookNode) -> str | None:
    return (nb.metadata.get("rlhf_course") or {}).get("exercise")


def question_cells(nb: nbformat.NotebookNode) -> dict[str, int]:
    """Question id -> index of the cell that answers it."""
    found: dict[str, int] = {}
    for i, c in enumerate(nb.cells):
        qid = (c.metadata.get("rlhf_course") or {}).get("question")
        if qid:
            if qid in found:
                raise ValueError(f"question {qid} is answered in two cells ({found[qid]} and {i})")
            found[qid] = i
    return found


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student notebook for a solution notebook: solutions replaced by stubs, outputs removed."""
    nb = clean(copy.deepcopy(solution))
    cells = []
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = strip_solution_source(cell.source)
        elif cell.cell_type == "markdown":
            cell.source = _MD_SOLUTION.sub("", cell.source)
        cells.append(cell)
    nb.cells = cells
    nb.metadata["rlhf_course"] = {**nb.metadata.get("rlhf_course", {}), "kind": "exercise"}
    return nb


def validate_solution(path: Path, nb: nbformat.NotebookNode) -> list[str]:
    """Problems with a solution notebook's question metadata, checked against the trusted registry."""
    from .questions import exercise_ids, questions_for

    ex = exercise_of(nb)
    if not ex:
        return [f"{path}: notebook metadata has no rlhf_course.exercise"]
    if not path.name.startswith(ex + "_"):
        return [f"{path}: exercise {ex} must live in a file named {ex}_*.ipynb"]
    if ex not in exercise_ids():
        return [f"{path}: exercise {ex} has no question module rlhf_course/questions/ex{ex}.py"]
    problems = []
    cells = question_cells(nb)
    registry = {q.id: q for q in questions_for(ex)}
    for qid in registry.keys() - cells.keys():
        problems.append(f"{path}: question {qid} is in the registry but no cell answers it")
    for qid, i in cells.items():
        if qid not in registry:
            problems.append(f"{path}: cell {i} answers {qid}, which is not in the registry")
            continue
        meta = nb.cells[i].metadata["rlhf_course"]
        if float(meta.get("points", -1)) != registry[qid].points:
            problems.append(f"{path}: cell {i} gives {qid} {meta.get('points')} points; the registry says "
                            f"{registry[qid].points:g}")
        if registry[qid].name not in nb.cells[i].source:
            problems.append(f"{path}: cell {i} does not mention `{registry[qid].name}`, the name {qid} is read from")
    order = [qid for qid in sorted(cells, key=cells.get) if qid in registry]
    if order != [q.id for q in questions_for(ex) if q.id in cells]:
        problems.append(f"{path}: questions appear in another order than in the registry")
    return problems


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=NB_VERSION)


def _dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def sync(root: Path, check: bool = False) -> list[str]:
    """Bring notebooks in line with their sources; with ``check``, only report what is out of line.

    1. every notebook in book/ and solutions/ starts with the Colab cell for ``_config.yml``'s URL,
       tagged ``remove-cell`` (hidden on the site);
    2. no notebook stores outputs or execution counts;
    3. exercises/NN_*.ipynb is exactly ``make_exercise(solutions/NN_*.ipynb)``, with no other files there.
    """
    url = repository_url(root)
    problems: list[str] = []
    for d in NOTEBOOK_DIRS:
        for path in sorted((root / d).rglob("*.ipynb")):
            if any(part.startswith((".", "_")) for part in path.relative_to(root).parts):
                continue
            nb = _read(path)
            want = copy.deepcopy(nb)
            if not want.cells or not is_colab_cell(want.cells[0]):
                want.cells.insert(0, colab_cell(url))
            else:
                want.cells[0].source = colab_cell_source(url)
                tags = list(want.cells[0].metadata.get("tags", []))
                want.cells[0].metadata["tags"] = tags + [t for t in COLAB_TAGS if t not in tags]
            clean(want)
            if d == "solutions":
                problems += validate_solution(path.relative_to(root), want)
            if _dumps(want) != _dumps(nb):
                problems.append(f"{path.relative_to(root)}: Colab cell or stored outputs out of date")
                if not check:
                    path.write_text(_dumps(want))
    out_dir = root / "exercises"
    expected = {}
    for sol in sorted((root / "solutions").glob("*.ipynb")):
        expected[sol.name] = _dumps(make_exercise(_read(sol)))
    for path in sorted(out_dir.glob("*.ipynb")):
        if path.name not in expected:
            problems.append(f"exercises/{path.name} has no source in solutions/")
            if not check:
                path.unlink()
    for name, text in expected.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            problems.append(f"exercises/{name} is out of sync with solutions/{name}")
            if not check:
                out_dir.mkdir(exist_ok=True)
                path.write_text(text)
    return problems


def add_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any notebook is out of sync (used by the tests)")
    parser.add_argument("--root", type=Path, default=None, help="the course repository (default: found upwards)")


def run(args) -> int:
    root = repo_root(args.root)
    problems = sync(root, check=args.check)
    metadata_problems = [p for p in problems if "out of date" not in p and "out of sync" not in p
                         and "no source" not in p]
    for p in problems:
        print(p)
    if args.check:
        return 1 if problems else 0
    if metadata_problems:
        return 1
    print(f"notebooks in sync ({len(list((root / 'exercises').glob('*.ipynb')))} exercises)")
    return 0
