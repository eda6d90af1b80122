"""rlhf_course.tables: glue many values at once, tables from rows."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rlhf_course import tables


def test_glue_all_returns_python_numbers_in_order():
    out = tables.glue_all({"a": np.float64(0.5), "b": 3, "c": "x"}, prefix="t_")
    assert list(out) == ["t_a", "t_b", "t_c"]
    assert type(out["t_a"]) is float and out["t_a"] == 0.5 and out["t_b"] == 3 and out["t_c"] == "x"


@pytest.mark.parametrize("bad, exc", [([("a", 1)], TypeError), ({1: 2}, ValueError), ({"": 2}, ValueError)])
def test_glue_all_rejects_bad_input(bad, exc):
    with pytest.raises(exc):
        tables.glue_all(bad)


def test_markdown_table_formats_and_escapes():
    md = tables.markdown_table(["name", "value"], [["a|b", 1.23456], ["c", np.float32(2.0)]], [None, ".2f"])
    assert md.split("\n") == ["| name | value |", "|---|---|", r"| a\|b | 1.23 |", "| c | 2.00 |"]


@pytest.mark.parametrize("header, rows, formats", [
    (["a", "b"], [[1]], None), (["a"], [[1]], [".1f", ".2f"]), ("ab", [["x", "y"]], None), ([], [], None)])
def test_tables_reject_mismatched_shapes(header, rows, formats):
    with pytest.raises((ValueError, TypeError)):
        tables.markdown_table(header, rows, formats)


@given(st.lists(st.lists(st.integers(-10**6, 10**6), min_size=3, max_size=3), max_size=8))
def test_markdown_table_has_one_line_per_row_and_keeps_every_value(rows):
    lines = tables.markdown_table(["x", "y", "z"], rows).split("\n")
    assert len(lines) == 2 + len(rows)
    for line, row in zip(lines[2:], rows):
        assert [int(c) for c in line.strip("| ").split(" | ")] == row


def test_html_table_escapes_and_aligns_numbers():
    h = tables.html_table(["<b>", "n"], [["<i>", 2.5]], [None, ".1f"], caption="c&d")
    assert "&lt;b&gt;" in h and "&lt;i&gt;" in h and "<caption>c&amp;d</caption>" in h
    assert '<td style="text-align:right">2.5</td>' in h


def test_token_penalty_tables_running_sum_is_the_sequence_penalty():
    logp, ref = [-0.5, -1.0, -0.2], [-1.5, -0.5, -0.3]
    h = tables.token_penalty_tables([{"name": "R", "tokens": ["a", "<b>", "c"], "logp": logp, "ref_logp": ref}])
    penalty = sum(p - q for p, q in zip(logp, ref))           # the sum over tokens, by hand
    last_row = h.split("<tr>")[-1]
    assert f"<td>{penalty:.3f}</td></tr>" in last_row and "&lt;b&gt;" in h
    with pytest.raises(ValueError):
        tables.token_penalty_tables([{"name": "R", "tokens": ["a"], "logp": logp, "ref_logp": ref}])
