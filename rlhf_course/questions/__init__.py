"""The registry of graded questions: one module ``exNN.py`` per exercise notebook, each with ``QUESTIONS``.

The registry is the trusted source of a question's points, checks and reference answers. The notebooks
in ``solutions/`` carry each question's id (and points, kept in sync by ``rlhf-course build-exercises``)
in the metadata of the cell that answers it.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from .base import Question


def exercise_ids() -> list[str]:
    """The exercise numbers that have questions, e.g. ``["01", "02"]``."""
    return sorted(m.name[2:] for m in pkgutil.iter_modules(__path__) if m.name.startswith("ex"))


@lru_cache(maxsize=None)
def questions_for(exercise: str) -> tuple[Question, ...]:
    """The questions of exercise ``NN``, in notebook order."""
    if exercise not in exercise_ids():
        raise KeyError(f"no exercise {exercise!r}; known exercises: {', '.join(exercise_ids())}")
    qs = tuple(importlib.import_module(f"{__name__}.ex{exercise}").QUESTIONS)
    ids = [q.id for q in qs]
    if len(set(ids)) != len(ids) or any(q.exercise != exercise for q in qs):
        raise RuntimeError(f"exercise {exercise}: question ids must be unique and start with {exercise}.")
    return qs


def get_question(question_id: str) -> Question:
    """The question with id ``NN.name``; ``KeyError`` with the known ids when there is none."""
    exercise = str(question_id).split(".")[0]
    try:
        qs = questions_for(exercise)
    except KeyError:
        raise KeyError(f"unknown question {question_id!r}: no exercise {exercise!r} "
                       f"(known: {', '.join(exercise_ids())})") from None
    for q in qs:
        if q.id == question_id:
            return q
    raise KeyError(f"unknown question {question_id!r}; exercise {exercise} has: {', '.join(q.id for q in qs)}")


def all_questions() -> list[Question]:
    return [q for ex in exercise_ids() for q in questions_for(ex)]
