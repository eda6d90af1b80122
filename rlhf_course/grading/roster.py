"""``--roster roster.csv``: who submitted which file.

The roster is a CSV with the columns ``student_id`` and ``file``. ``file`` is a submission's name as the
grader reports it (its path relative to the folder given, e.g. ``alice.ipynb`` or ``week1/alice.ipynb``), its
file name alone, or a glob pattern (``alice_*.ipynb``). Nothing is dropped silently: a file that no student
claims keeps an empty id and is listed, a student with no file gets a row of status ``no-submission``, and a
file that two students claim keeps an empty id and is listed as ambiguous.
"""
from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass
class RosterMatch:
    ids: dict[str, str] = field(default_factory=dict)  # submission name -> student id
    unclaimed: list[str] = field(default_factory=list)  # files no student claims
    absent: list[str] = field(default_factory=list)  # students with no file
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # file -> the students that claim it

    def lines(self) -> list[str]:
        """What the instructor should look at, one line per kind of problem (none when all matched)."""
        out = []
        if self.unclaimed:
            out.append(f"roster: {len(self.unclaimed)} file(s) match no student (student_id left empty): "
                       + ", ".join(self.unclaimed))
        if self.absent:
            out.append(f"roster: {len(self.absent)} student(s) with no file (rows with status no-submission): "
                       + ", ".join(self.absent))
        for name, who in self.ambiguous.items():
            out.append(f"roster: {name} matches several students ({', '.join(who)}); student_id left empty")
        return out


def read_roster(path) -> list[tuple[str, str]]:
    """``(student_id, file)`` pairs from a roster CSV; ``ValueError`` saying what is wrong with it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
            if "student_id" not in fields or "file" not in fields:
                raise ValueError(f"the roster {path} needs the columns student_id and file, "
                                 f"found {reader.fieldnames}")
            pairs = [((r[fields["student_id"]] or "").strip(), (r[fields["file"]] or "").strip()) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"the roster {path} could not be read: {exc}") from None
    bad = [i + 2 for i, (sid, pattern) in enumerate(pairs) if not sid or not pattern]
    if bad:
        raise ValueError(f"the roster {path} has an empty student_id or file on line(s) {bad}")
    ids = [sid for sid, _ in pairs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the roster {path} lists a student_id twice: "
                         f"{sorted({s for s in ids if ids.count(s) > 1})}")
    return pairs


def _claims(pattern: str, name: str) -> bool:
    base = PurePosixPath(name).name
    return pattern in (name, base) or fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base, pattern)


def match_roster(pairs: list[tuple[str, str]], names: list[str]) -> RosterMatch:
    """Give each submission name the one student whose ``file`` names or matches it."""
    m = RosterMatch()
    claimed_by_someone = set()
    for name in sorted(names):
        who = [sid for sid, pattern in pairs if _claims(pattern, name)]
        if len(who) == 1:
            m.ids[name] = who[0]
            claimed_by_someone.add(who[0])
        elif not who:
            m.unclaimed.append(name)
        else:
            m.ambiguous[name] = who
            claimed_by_someone.update(who)
    m.absent = [sid for sid, _ in pairs if sid not in claimed_by_someone]
    return m
