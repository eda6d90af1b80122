"""``rlhf-course questions [NN]``: the graded questions, their kinds and points."""
from __future__ import annotations

from .base import hidden_cases
from . import exercise_ids, questions_for


def add_arguments(parser) -> None:
    parser.add_argument("exercise", nargs="?", help="exercise number, e.g. 01 (default: all)")


def run(args) -> int:
    for ex in [args.exercise] if args.exercise else exercise_ids():
        qs = questions_for(ex)
        print(f"exercise {ex}: {len(qs)} questions, {sum(q.points for q in qs):g} points")
        for q in qs:
            print(f"  {q.id:<32} {q.kind:<9} {q.points:>4g}  {q.title}")
            if q.kind == "function":  # what the instructor should know about its grading (issue 12)
                hidden = len(hidden_cases(q, 0))
                guards = ", ".join(g.removeprefix("rlhf_course.") for g in q.guards) or "none"
                print(f"  {'':<32} {'':<9} {'':>4}  {len(q.cases)} public + {hidden} hidden cases; guards: {guards}")
    return 0
