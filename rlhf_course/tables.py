"""Presentation helpers for the book: glue many values in one call, tables from rows.

Chapters compute their numbers in visible cells; the plumbing that hands them to the prose
(myst-nb ``glue``) and lays them out as tables lives here, so a cell shows what the reader learns
from and not twenty lines of ``glue(...)``.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from .plotting import glue


def glue_all(values: Mapping[str, object], prefix: str = "") -> dict:
    """Glue every ``name: value`` of ``values`` (as ``{glue:}`prefix+name```); returns them as a dict.

    Equivalent to ``glue(prefix + name, value)`` for each item, in order; numpy/torch scalars are glued
    as Python numbers (see :func:`rlhf_course.plotting.glue`). A no-op outside the book build.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a mapping of names to values, got {type(values).__name__}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    out = {}
    for name, value in values.items():
        if not isinstance(name, str) or not (prefix + name):
            raise ValueError(f"glue names must be non-empty strings, got {name!r}")
        out[prefix + name] = glue(prefix + name, value)
    return out


def _fmt(value, fmt: str | None) -> str:
    if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    if fmt is not None and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return format(value.item(), fmt)
    return str(value)


def _check_rows(header: Sequence[str], rows: Sequence[Sequence], formats) -> list:
    if isinstance(header, str) or not isinstance(header, Sequence) or not header:
        raise TypeError("header must be a non-empty sequence of column names")
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(f"row {i} has {len(r)} cells, the header {len(header)}")
    if formats is None:
        formats = [None] * len(header)
    elif isinstance(formats, str):
        formats = [formats] * len(header)
    else:
        formats = list(formats)
    if len(formats) != len(header):
        raise ValueError(f"{len(formats)} formats for {len(header)} columns")
    return [[_fmt(v, f) for v, f in zip(r, formats)] for r in rows], formats


def markdown_table(header: Sequence[str], rows: Sequence[Sequence],
                   formats: str | Sequence[str | None] | None = None) -> str:
    """A GitHub/MyST markdown table; ``formats`` is one format spec (e.g. ``".3f"``) or one per column
    (``None`` leaves a cell as ``str(value)``). Pipes in cells are escaped."""
    cells, _ = _check_rows(header, rows, formats)
    esc = lambda s: str(s).replace("|", r"\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in cells]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence],
               formats: str | Sequence[str | None] | None = None, caption: str | None = None) -> str:
    """An HTML table (cells escaped; numbers right-aligned), for ``IPython.display.HTML``."""
    cells, _ = _check_rows(header, rows, formats)
    raw = [list(r) for r in rows]
    out = ['<table class="rlhf-table">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
               + "</tr></thead><tbody>")
    for r, rr in zip(cells, raw):
        tds = []
        for c, v in zip(r, rr):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            style = ' style="text-align:right"' if num else ""
            tds.append(f"<td{style}>{html.escape(c)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def show_table(header: Sequence[str], rows: Sequence[Sequence],
               formats: str | Sequence[str | None] | None = None, name: str | None = None,
               caption: str | None = None):
    """Display a table as a notebook output (markdown), and glue it as ``name`` when given
    (so the prose can place it with ``{glue:}`name```); returns the IPython ``Markdown`` object."""
    from IPython.display import Markdown, display

    md = Markdown(markdown_table(header, rows, formats))
    if name is not None:
        glue(name, md, display=False)
    else:
        display(md)
    return md


def token_penalty_tables(responses: Sequence[Mapping]) -> str:
    """Side-by-side HTML tables, one per response, of its tokens' log-probabilities and penalties.

    Each response is a mapping with ``name``, ``tokens`` (n strings), ``logp`` and ``ref_logp`` (n numbers:
    log pi(y_t | y_<t) and log pi_ref(y_t | y_<t)); a row shows t, the token, both log-probabilities, the
    per-token penalty ``logp - ref_logp`` and its running sum, whose last value is the sequence penalty.
    """
    import numpy as np

    head = "".join(f"<th>{h}</th>" for h in ("t", "token", "log &pi;", "log &pi;<sub>ref</sub>",
                                              "per-token penalty", "running sum"))
    tables = []
    for r in responses:
        logp, ref = np.asarray(r["logp"], float), np.asarray(r["ref_logp"], float)
        if not (len(r["tokens"]) == len(logp) == len(ref)):
            raise ValueError(f"{r['name']}: tokens, logp and ref_logp must have the same length")
        pen = logp - ref
        run = np.cumsum(pen)
        rows = "".join(
            f"<tr><td>{t + 1}</td><td><code>{html.escape(str(w))}</code></td><td>{logp[t]:.3f}</td>"
            f"<td>{ref[t]:.3f}</td><td>{pen[t]:.3f}</td><td>{run[t]:.3f}</td></tr>"
            for t, w in enumerate(r["tokens"]))
        tables.append(f"<div><b>{html.escape(str(r['name']))}</b><table class='pen-table'>"
                      f"<tr>{head}</tr>{rows}</table></div>")
    style = ("<style>.pen-table td, .pen-table th {padding: 0.1em 0.8em; text-align: right; "
             "font-size: 0.9em} .pen-table tr:nth-child(even) {background: rgba(127, 127, 127, 0.08)}"
             "</style>")
    return (style + "<div style='display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start'>"
            + "".join(tables) + "</div>")


def wrapped(label: str, items, width: int = 88) -> str:
    """``label`` followed by ``items`` (a string, or a sequence shown as its ``repr``), wrapped at ``width``
    characters with continuation lines indented by four spaces, so that a printed sample fits the page.
    Words are never broken; a word longer than a line is put on a line of its own."""
    import textwrap

    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 20:
        raise ValueError(f"width must be an integer >= 20, got {width!r}")
    body = items if isinstance(items, str) else repr(list(items))
    return textwrap.fill(f"{label} {body}" if label else body, width=width, subsequent_indent="    ",
                         break_long_words=False, break_on_hyphens=False)


def print_wrapped(label: str, items, width: int = 88) -> None:
    """Print :func:`wrapped` ``(label, items, width)``."""
    print(wrapped(label, items, width))


def show_html_table(header: Sequence[str], rows: Sequence[Sequence],
                    formats: str | Sequence[str | None] | None = None,
                    caption: str | None = None) -> None:
    """Display :func:`html_table` as a notebook output. Unlike a markdown table, texts are escaped, so a
    token such as ``<eos>`` in a sampled response stays visible. Returns nothing (a returned object on a
    cell's last line would be shown a second time)."""
    from IPython.display import HTML, display

    display(HTML(html_table(header, rows, formats, caption)))
