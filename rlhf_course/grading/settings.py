"""The limits and choices of a grading run (the ``grade`` command's options), shared by every grading module."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """Limits and choices of a grading run (the ``grade`` command's options)."""

    timeout: float = 60.0  # seconds per cell, and per call of an answer on one case
    total_timeout: float = 600.0  # seconds per submission, everything included
    memory_mb: int = 2048  # address space of the worker
    isolation: str = "auto"  # "auto", "namespaces" or "rlimits"
    exercise: str | None = None  # grade every submission as this exercise (else: its metadata)
    max_restarts: int = 8  # fresh workers per submission after a hang or crash
    startup_timeout: float = 60.0  # for a worker to start (no student code runs before it is ready)
    max_file_mb: float = 50.0
    tmp_mb: int = 64  # the worker's private /tmp (namespaces)
    hidden: tuple = ()  # paths the worker must not see: the submissions, the output folder
    scratch: str | None = None  # where the grader keeps its temporary files
    seed: int = 0  # draws the questions' hidden cases (checks.hidden_cases): the same seed, the same cases

