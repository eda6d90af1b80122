"""The seed map: every item of every seed card has an entry saying where it is taught and graded.

The cards are ``tests/seeds/*.txt`` (copies of the project's ``shared/seeds``, compared with it when that folder
sits beside the repository). Each card is parsed, and its item-bearing text must be rebuilt exactly from the
entries of :mod:`rlhf_course.seeds`; so a card item without an entry, or an entry that is not in its card, fails.
"""
from pathlib import Path

import pytest
import yaml

from rlhf_course.questions import get_question
from rlhf_course.seeds import CARDS, HEADERS, ITEMS, KINDS, card_items, card_sections, parse_card, table_rows

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "seeds"
SHARED = ROOT.parent / "shared" / "seeds"
CARD_FILES = sorted(p.name for p in SEEDS.glob("*.txt"))


def _toc_pages() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = {toc["root"]}

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.add(str(node["file"]).removesuffix(".ipynb").removesuffix(".md"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return pages


def test_the_cards_are_the_course_cards():
    assert CARD_FILES, f"no seed cards in {SEEDS}"
    assert set(CARD_FILES) == set(CARDS), "rlhf_course.seeds.CARDS must have exactly the cards in tests/seeds"
    if SHARED.is_dir():  # the project's copy beside the repository: the copies must be identical
        assert sorted(p.name for p in SHARED.glob("*.txt")) == CARD_FILES
        for name in CARD_FILES:
            assert (SEEDS / name).read_bytes() == (SHARED / name).read_bytes(), f"tests/seeds/{name} differs"


@pytest.mark.parametrize("card", CARD_FILES)
def test_every_item_of_the_card_has_an_entry(card):
    parsed = parse_card((SEEDS / card).read_text(encoding="utf-8"))
    rebuilt = card_sections(card)
    assert set(parsed) == set(rebuilt), f"{card}: sections {sorted(parsed)} in the card, {sorted(rebuilt)} mapped"
    for section, text in parsed.items():
        if text != rebuilt[section]:
            card_lines, map_lines = text.split("\n"), rebuilt[section].split("\n")
            i = next((i for i, (a, b) in enumerate(zip(card_lines, map_lines)) if a != b),
                     min(len(card_lines), len(map_lines)))
            pytest.fail(f"{card}, section {section!r}, line {i + 1}: the card has "
                        f"{card_lines[i] if i < len(card_lines) else '(nothing)'!r}, the seed map has "
                        f"{map_lines[i] if i < len(map_lines) else '(nothing)'!r}")


@pytest.mark.parametrize("card", CARD_FILES)
def test_every_line_of_the_card_is_in_the_map(card):
    """The same claim checked without parse_card: every line outside the tags is a line of the mapped text."""
    mapped = set("\n".join(card_sections(card).values()).split("\n"))
    lines = [line.strip() for line in (SEEDS / card).read_text(encoding="utf-8").splitlines()]
    in_tags = False
    for i, line in enumerate(lines):
        if line in HEADERS:
            in_tags = line == "Tags"
            continue
        counter = line in ("0", "1") and "Tags" in lines[i + 1:i + 3]
        if line and not in_tags and not counter:
            assert line in mapped, f"{card}: the line {line!r} has no entry in the seed map"


def test_every_entry_belongs_to_a_card():
    used = {key.lstrip("+") for sections in CARDS.values() for keys in sections.values() for key in keys}
    assert set(ITEMS) == used, f"entries not in any card: {sorted(set(ITEMS) - used)}"
    assert all(item.kind in KINDS for item in ITEMS.values())


def test_questions_and_scenarios_are_graded():
    missing = [f"{item.kind} {item.key!r}: {item.label[:70]}" for item in ITEMS.values()
               if item.kind in ("question", "scenario") and not item.graded]
    assert not missing, "questions and scenarios without a graded question id:\n" + "\n".join(missing)


def test_graded_ids_are_in_the_registry():
    unknown = []
    for item in ITEMS.values():
        for qid in item.graded:
            try:
                get_question(qid)
            except KeyError as exc:
                unknown.append(f"{item.key}: {exc.args[0]}")
    assert not unknown, "graded ids that are not in the registry:\n" + "\n".join(unknown)


def test_taught_pages_are_in_the_toc():
    pages = _toc_pages()
    missing: dict[str, list[str]] = {}
    for item in ITEMS.values():
        if item.taught not in pages:
            missing.setdefault(item.taught, []).append(item.key)
    assert not missing, "pages named in the seed map but not in _toc.yml:\n" + "\n".join(
        f"{page} ({len(keys)} items: {', '.join(keys)})" for page, keys in sorted(missing.items()))


def test_the_appendix_table_lists_every_item_of_every_card():
    rows = table_rows()
    for card in CARD_FILES:
        keys = {item.key for _, item in card_items(card)}
        assert sorted(r["key"] for r in rows if r["card"] == card) == sorted(keys)
    assert all(r["taught"] and r["text"] for r in rows)
