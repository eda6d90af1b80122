"""Random inputs for the questions' hidden cases (``Question.hidden``).

Every function takes the grading run's generator (``numpy.random.Generator``, seeded per run and question by
:func:`rlhf_course.questions.base.hidden_cases`) and returns numpy arrays; the cases' inputs are turned into plain data
when they are drawn. Sizes are small, so that the hidden cases cost the grader next to nothing.
"""
from __future__ import annotations

import numpy as np


def probs(rng: np.random.Generator, shape, zeros: bool = False) -> np.ndarray:
    """Distributions over the last axis of ``shape`` (Dirichlet(1) rows); with ``zeros``, some entries are 0.

    A row always keeps at least one positive entry.
    """
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) if len(shape) > 1 else rng.dirichlet(np.ones(shape[0]))
    if zeros:
        drop = rng.random(p.shape) < 0.4
        drop[..., 0] = False  # one entry of each row stays positive
        p = np.where(drop, 0.0, p)
        p = p / p.sum(axis=-1, keepdims=True)
    return p


def logps(rng: np.random.Generator, shape) -> np.ndarray:
    """Log-probabilities: negative numbers of order 1."""
    return -rng.exponential(1.5, size=shape)


def prefix_mask(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    """A (batch, time) 0/1 mask: each row a non-empty prefix of ones; the first row is never padded."""
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[0] = time
    rng.shuffle(lengths)
    return (np.arange(time)[None, :] < lengths[:, None]).astype(float)


def reward_inputs(rng: np.random.Generator, full: bool = False) -> tuple:
    """``(score, logp, ref_logp, mask, beta)`` of a random batch of responses, padded unless ``full``."""
    b, t = size(rng, 2, 4), size(rng, 2, 6)
    mask = np.ones((b, t)) if full else prefix_mask(rng, b, t)
    return rng.normal(size=b), logps(rng, (b, t)), logps(rng, (b, t)), mask, positive(rng)


def size(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(rng.integers(low, high + 1))


def positive(rng: np.random.Generator, low: float = 0.05, high: float = 3.0) -> float:
    """A positive number, log-uniform in [low, high] (a beta, a temperature, a KL weight)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))
