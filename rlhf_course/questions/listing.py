"""``rlhf-course questions [NN]``: the graded questions, their kinds and points."""
from __future__ import annotations

from . import exercise_ids, questions_for


def add_arguments(parser) -> None:
    parser.add_argument("exercise", nargs="?", help="exercise number, e.g. 01 (default: all)")


def run(args) -> int:
    for ex in [args.exercise] if args.exercise else exercise_ids():
        qs = questions_for(ex)
        print(f"exercise {ex}: {len(qs)} questions, {sum(q.points for q in qs):g} points")
        for q in qs:
            print(f"  {q.id:<32} {q.kind:<9} {q.points:>4g}  {q.title}")
    return 0
