"""Notebook hygiene, the table of contents, and how exercises are generated from solutions.

Everything that writes works on copies under ``tmp_path``; the repository's notebooks are only read.
"""
from __future__ import annotations

import contextlib
import copy
import io
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings, strategies as st
from sphinx_external_toc.parsing import parse_toc_yaml

from rlhf_course import notebooks
from rlhf_course.notebooks import colab_cell_source, is_colab_cell, make_exercise, repository_url, sync

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("book", "solutions", "exercises")
PAGE_SUFFIXES = (".ipynb", ".md")


def _hidden(path: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(ROOT).parts)


def repo_notebooks(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.ipynb") if not _hidden(p))


def toc_docnames() -> list[str]:
    return list(parse_toc_yaml(ROOT / "_toc.yml"))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# --- the repository's notebooks -----------------------------------------------------------------------

def test_there_are_chapter_notebooks():
    assert repo_notebooks("book"), "book/ has no chapter notebook"


def test_notebooks_store_no_outputs():
    dirty = {str(p.relative_to(ROOT)): notebooks.has_outputs(read(p)) for p in repo_notebooks(*NOTEBOOK_DIRS)}
    dirty = {k: v for k, v in dirty.items() if v}
    assert not dirty, ("notebooks with stored outputs or execution counts (cell indices); "
                       f"run `rlhf-course build-exercises` to strip them: {dirty}")


def test_notebooks_are_in_sync():
    """Colab cells current, outputs stripped, exercises generated from solutions, question metadata valid."""
    problems = sync(ROOT, check=True)
    assert not problems, "run `rlhf-course build-exercises`:\n" + "\n".join(problems)


def test_first_cell_is_the_colab_cell():
    want = colab_cell_source(repository_url(ROOT))
    wrong, shown = [], []
    for path in repo_notebooks(*NOTEBOOK_DIRS):
        cells = read(path).cells
        if not cells or not is_colab_cell(cells[0]) or cells[0].source != want:
            wrong.append(str(path.relative_to(ROOT)))
        elif "remove-cell" not in cells[0].metadata.get("tags", []):
            shown.append(str(path.relative_to(ROOT)))
    assert not wrong, f"notebooks whose first cell is not the current Colab set-up cell: {wrong}"
    # It runs first on Colab, but on the site it is plumbing above the title: myst-nb removes a remove-cell.
    assert not shown, f"notebooks whose Colab cell is not tagged remove-cell (shown on the site): {shown}"


# --- what a reader sees: no typed chapter numbers, code that fits the page ------------------------------

# A chapter number typed in prose goes stale when chapters move (the sidebar numbers come from _toc.yml);
# references are MyST roles ({doc}`04_optimal_policy`), whose link and number come from the build.
TYPED_CHAPTER = re.compile(r"\b(?:chapters?|ch\.)[\s\-\u00a0]*\d+[a-z]?\b", re.IGNORECASE)
MAX_CODE_LINE = 88  # what the site's code cells show at 1280 px without a scroll bar, and black's default


@pytest.mark.parametrize("text, typed", [
    ("as chapter 5 showed", True), ("Chapter 4 derives", True), ("chapters 4 and 5", True),
    ("see ch. 3", True), ("the solved chapter-1 notebook", True), ("Chapter 3b", True),
    ("as {doc}`04_optimal_policy` showed", False), ("this chapter's 3 runs", False),
    ("{ref}`sec-chapter-intro`", False), ("two chapters, 3 figures", False),
])
def test_typed_chapter_pattern(text, typed):
    assert bool(TYPED_CHAPTER.search(text)) is typed


def _reader_texts() -> list[tuple[str, str]]:
    """(where, text) for every cell of book/ and solutions/ notebooks, every .md page of book/, README.md."""
    out = []
    for path in repo_notebooks("book", "solutions"):
        for i, cell in enumerate(read(path).cells):
            out.append((f"{path.relative_to(ROOT)} cell {i}", cell.source))
    for path in sorted((ROOT / "book").rglob("*.md")):
        if not _hidden(path):
            out.append((str(path.relative_to(ROOT)), path.read_text()))
    out.append(("README.md", (ROOT / "README.md").read_text()))
    return out


def test_no_typed_chapter_numbers():
    """exercises/ are generated from solutions/, so checking solutions/ covers them."""
    found = [f"{where}: {m.group(0)!r}" for where, text in _reader_texts()
             for m in TYPED_CHAPTER.finditer(text)]
    assert not found, ("typed chapter numbers (use {doc}`NN_name` or {ref}; in README.md a link to the "
                       "file):\n" + "\n".join(found))


def test_code_lines_fit_the_page():
    long = []
    for path in repo_notebooks("book", "solutions"):
        for i, cell in enumerate(read(path).cells):
            if cell.cell_type != "code":
                continue
            for n, line in enumerate(cell.source.split("\n"), 1):
                if len(line) > MAX_CODE_LINE:
                    long.append(f"{path.relative_to(ROOT)} cell {i} line {n}: {len(line)} characters")
    assert not long, f"code lines over {MAX_CODE_LINE} characters:\n" + "\n".join(long)


def test_every_toc_entry_has_one_source():
    problems = []
    for doc in toc_docnames():
        found = [s for s in PAGE_SUFFIXES if (ROOT / f"{doc}{s}").is_file()]
        if len(found) != 1:
            problems.append(f"{doc}: {'no source file' if not found else 'several sources: ' + ', '.join(found)}")
    assert not problems, f"_toc.yml entries: {problems}"


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(toc_docnames())
    missing = [str(p.relative_to(ROOT)) for p in repo_notebooks("book")
               if p.relative_to(ROOT).with_suffix("").as_posix() not in listed]
    assert not missing, f"notebooks in book/ that _toc.yml does not list (the site would leave them out): {missing}"


def test_generated_exercises_compile():
    """Every code cell of every generated exercise is valid Python (IPython magics and shell lines aside)."""
    bad = []
    for path in repo_notebooks("solutions"):
        for i, cell in enumerate(make_exercise(read(path)).cells):
            if cell.cell_type != "code":
                continue
            src = "\n".join(line for line in cell.source.split("\n") if not line.lstrip().startswith(("%", "!")))
            try:
                compile(src, f"{path.name}[{i}]", "exec")
            except SyntaxError as exc:
                bad.append(f"{path.name} cell {i}: {exc}")
    assert not bad, f"exercise stubs that are not valid Python: {bad}"


# --- generating an exercise from a small synthetic solution ---------------------------------------------

FUNCTION_CELL = '''\
import numpy as np


def penalty(logp, ref_logp):
    """log pi(y) - log pi_ref(y), elementwise."""
    # BEGIN SOLUTION
    logp = np.asarray(logp, dtype=float)
    return logp - np.asarray(ref_logp, dtype=float)
    # END SOLUTION'''

FUNCTION_STUB = '''\
import numpy as np


def penalty(logp, ref_logp):
    """log pi(y) - log pi_ref(y), elementwise."""
    # YOUR CODE HERE
    ...'''

VALUE_CELL = "penalty_when_equal = 0.0  # SOLUTION\nprint('kept')\nprint(penalty_when_equal)  # SOLUTION"
VALUE_STUB = "penalty_when_equal = ...\nprint('kept')\n..."

MARKDOWN = ("Which is it?\n\n<!-- BEGIN SOLUTION -->\nThe answer is zero, because log a - log a = 0.\n"
            "<!-- END SOLUTION -->\nThe end.")


def synthetic_solution() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["rlhf_course"] = {"exercise": "01"}
    fn = nbformat.v4.new_code_cell(FUNCTION_CELL)
    fn.metadata["rlhf_course"] = {"question": "01.penalty", "points": 2}
    fn.outputs = [nbformat.v4.new_output("stream", text="stale\n")]
    fn.execution_count = 3
    value = nbformat.v4.new_code_cell(VALUE_CELL)
    hidden = nbformat.v4.new_code_cell("secret = 42")
    hidden.metadata["tags"] = ["solution"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A synthetic exercise"),
        fn,
        nbformat.v4.new_code_cell('check("01.penalty", penalty)'),
        nbformat.v4.new_markdown_cell(MARKDOWN),
        value,
        hidden,
        nbformat.v4.new_code_cell('check("01.penalty_when_equal", penalty_when_equal)'),
    ]
    return nb


def test_make_exercise_replaces_solutions():
    solution = synthetic_solution()
    before = copy.deepcopy(solution)
    exercise = make_exercise(solution)
    assert solution == before, "make_exercise changed the solution notebook it was given"
    sources = [c.source for c in exercise.cells]
    assert FUNCTION_STUB in sources
    assert VALUE_STUB in sources
    assert "Which is it?\n\nThe end." in sources, "the markdown solution was not removed"
    assert "secret = 42" not in sources, "a cell tagged `solution` was kept"
    assert len(exercise.cells) == len(solution.cells) - 1
    assert not notebooks.has_outputs(exercise)
    assert exercise.metadata["rlhf_course"] == {"exercise": "01", "kind": "exercise"}
    assert exercise.cells[1].metadata["rlhf_course"] == {"question": "01.penalty", "points": 2}
    text = nbformat.writes(exercise)
    for secret in ("END SOLUTION", "BEGIN SOLUTION", "np.asarray(ref_logp", "0.0  #", "log a - log a"):
        assert secret not in text


@pytest.mark.parametrize("source, message", [
    ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "without a matching"),
    ("def f():\n    return 1\n    # END SOLUTION\n", "without a '# BEGIN SOLUTION'"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n# END SOLUTION\n", "without a '# BEGIN SOLUTION'"),
])
def test_unbalanced_markers_raise(source, message):
    nb = synthetic_solution()
    nb.cells[1].source = source
    with pytest.raises(ValueError, match=message):
        make_exercise(nb)


def test_generated_stubs_run_and_self_check_says_not_implemented():
    """A student who runs the exercise untouched gets feedback from every check, never an exception."""
    namespace: dict = {}
    exec("from rlhf_course.checks import check", namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in make_exercise(synthetic_solution()).cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, "<exercise cell>", "exec"), namespace)
    assert namespace["penalty"](0.0, 0.0) is None
    assert namespace["penalty_when_equal"] is Ellipsis
    printed = out.getvalue()
    assert "kept" in printed
    assert "`penalty` is not implemented" in printed, printed
    assert "`penalty_when_equal` is not answered" in printed, printed


_CODE_LINE = st.text(alphabet=st.characters(codec="ascii", exclude_characters="#\n"), max_size=30)


@settings(max_examples=60, deadline=None)
@given(before=st.lists(_CODE_LINE, max_size=4), body=st.lists(_CODE_LINE, min_size=1, max_size=4),
       after=st.lists(_CODE_LINE, max_size=4), indent=st.sampled_from(["", "    ", "        "]))
def test_strip_solution_replaces_exactly_the_block(before, body, after, indent):
    """Lines outside the markers are kept verbatim; the block becomes one stub at the markers' indentation."""
    source = "\n".join(before + [f"{indent}# BEGIN SOLUTION"] + body + [f"{indent}# END SOLUTION"] + after)
    assert notebooks.strip_solution_source(source) == "\n".join(
        before + [f"{indent}# YOUR CODE HERE", f"{indent}..."] + after)
    plain = "\n".join(before + body + after)
    assert notebooks.strip_solution_source(plain) == plain


# --- sync, on a copy -----------------------------------------------------------------------------------

def test_sync_repairs_a_copy(tmp_path):
    """On a copy of the repository's notebooks: a stale exercise, a chapter with outputs and without its Colab
    cell, and an orphan exercise are all reported by check mode and repaired by a real sync."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    for d in NOTEBOOK_DIRS:
        if (ROOT / d).is_dir():
            shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns(".*", "_*"))
        (tmp_path / d).mkdir(exist_ok=True)
    chapter = tmp_path / "book" / "99_scratch.ipynb"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# Scratch"), cell]
    nbformat.write(nb, chapter)
    orphan = tmp_path / "exercises" / "98_orphan.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), orphan)
    stale = sorted((tmp_path / "exercises").glob("[0-9]*.ipynb"))
    stale = [p for p in stale if p != orphan]
    for p in stale:
        p.write_text(p.read_text().replace("YOUR CODE HERE", "YOUR CODE GOES HERE"))

    files = {p: p.read_bytes() for p in tmp_path.rglob("*.ipynb")}
    problems = sync(tmp_path, check=True)
    assert any("99_scratch.ipynb" in p for p in problems)
    assert any("98_orphan.ipynb" in p for p in problems)
    assert all(any(f"exercises/{p.name} is out of sync" in q for q in problems) for p in stale)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.ipynb")} == files, "check mode changed a file"

    sync(tmp_path)
    assert sync(tmp_path, check=True) == []
    repaired = read(chapter)
    assert is_colab_cell(repaired.cells[0]) and not notebooks.has_outputs(repaired)
    assert [c.source for c in repaired.cells[1:]] == ["# Scratch", "1 + 1"]
    assert not orphan.exists()
    for p in stale:
        assert "YOUR CODE GOES HERE" not in p.read_text()


@pytest.mark.parametrize("block, stub", [
    # an answer too long for one `# SOLUTION` line keeps its name, so the check cell can read it
    ("answer = {'a': 1,\n          'b': 2}", "answer = ..."),
    ("    p = (1\n         + 2)", "    p = ..."),
    # anything else is code to write
    ("x = 1\ny = 2", "# YOUR CODE HERE\n..."),
    ("x, y = 1, 2", "# YOUR CODE HERE\n..."),
    ("return 3", "# YOUR CODE HERE\n..."),
])
def test_solution_block_stub(block, stub):
    indent = block[: len(block) - len(block.lstrip())]
    src = f"{indent}# BEGIN SOLUTION\n{block}\n{indent}# END SOLUTION\nprint('kept')"
    want = "\n".join(indent + line if not line.startswith(indent) else line for line in stub.split("\n"))
    assert notebooks.strip_solution_source(src) == want + "\nprint('kept')"
