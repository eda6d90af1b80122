"""What a graded question is: :class:`Question`, its :class:`Case` inputs, and the hidden cases drawn for a
grading run. The exercises' modules (``exNN.py``) build their ``QUESTIONS`` from these; checking an answer
against a question is :mod:`rlhf_course.checks`, which sits above this package.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..plain import plain_args

KINDS = ("function", "value", "choice", "ordering", "matching")


@dataclass(frozen=True)
class Case:
    """One input on which a function answer is called and compared with the reference.

    ``args`` are plain data; lists of numbers reach the student's function as float64 numpy arrays.
    With ``raises`` set (an exception class name, e.g. ``"ValueError"``), the case passes when the answer
    raises that exception or a subclass of it.
    """

    name: str
    args: tuple = ()
    raises: str | None = None
    rtol: float | None = None
    atol: float | None = None
    hint: str = ""


@dataclass(frozen=True)
class Question:
    """A graded question. ``id`` is ``"NN.name"`` with ``NN`` the exercise (chapter) number."""

    id: str
    kind: str
    points: float
    title: str
    name: str = ""  # the notebook variable that holds the answer; "" (the default): the id's part after the dot
    cases: tuple[Case, ...] = ()
    reference: Callable | None = None  # function questions: the trusted implementation
    answer: Any = None  # value, choice, ordering and matching questions: the expected answer
    choices: tuple[str, ...] = ()  # choice: the labels offered; ordering/matching: the items
    rtol: float = 1e-6
    atol: float = 1e-9
    feedback: dict = field(default_factory=dict)  # choice: label -> why that option is wrong
    hint: str = ""
    # function questions: dotted names of the package functions the question asks the student to write
    # (e.g. ``("rlhf_course.kl.kl_divergence",)``); an answer that reaches one of them scores 0
    guards: tuple[str, ...] = ()
    # function questions: cases the self-check never shows, drawn at grading time from a seeded generator
    hidden: Callable[[np.random.Generator], tuple[Case, ...]] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"question {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.id, str) and len(self.id.split(".")) == 2 and self.id[:2].isdigit()):
            raise ValueError(f"question id must look like 'NN.name', got {self.id!r}")
        if not self.name:
            object.__setattr__(self, "name", self.id.split(".")[1])
        if self.points <= 0:
            raise ValueError(f"question {self.id}: points must be > 0")
        if self.kind == "function" and (self.reference is None or not self.cases):
            raise ValueError(f"question {self.id}: a function question needs a reference and cases")
        if self.kind != "function" and self.answer is None:
            raise ValueError(f"question {self.id}: a {self.kind} question needs an answer")
        if self.kind == "choice" and self.answer not in self.choices:
            raise ValueError(f"question {self.id}: answer {self.answer!r} is not among choices {self.choices}")

    @property
    def exercise(self) -> str:
        return self.id.split(".")[0]


ABCD = ("A", "B", "C", "D")


def choice(id: str, title: str, name: str = "", answer: str = "", feedback: dict | None = None, *,
           points: float = 1, hint: str = "", choices: tuple[str, ...] = ABCD) -> Question:
    """A multiple-choice question on the options A to D (the markdown cell before it labels them), ``points``
    1; ``feedback`` says, per wrong label, why that option is wrong. ``name`` defaults to the id's part after
    the dot."""
    return Question(id=id, kind="choice", points=points, title=title, name=name, answer=answer, choices=choices,
                    feedback=feedback or {}, hint=hint)


def hidden_cases(q: Question, seed: int) -> tuple[Case, ...]:
    """The hidden cases of ``q`` in a grading run with ``seed``: the same seed and question, the same cases.

    Each question draws from its own stream, ``default_rng([seed, crc32(id)])``, so adding a question to an
    exercise changes no other question's cases.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if q.kind != "function" or q.hidden is None:
        return ()
    rng = np.random.default_rng([int(seed), zlib.crc32(q.id.encode())])
    return tuple(Case(c.name, plain_args(tuple(c.args)), c.raises, c.rtol, c.atol, c.hint) for c in q.hidden(rng))


def case_payload(q: Question) -> list[dict]:
    """The inputs of a function question's cases, as plain data to send to where the answer lives."""
    return [{"name": c.name, "args": list(c.args)} for c in q.cases]
