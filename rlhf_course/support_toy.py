"""Chapter 3's toy problem: a customer-support assistant with three prompts and six responses.

Everything about it is enumerable, so the objective, its optimum and whole training runs are computed exactly.
Used by ``book/03_objective.ipynb`` and ``book/03b_case_studies.ipynb``. Notation of the book (chapter 3):

- prompts ``x`` (``PROMPTS``, equally likely unless weights say otherwise) and responses ``y`` (``RESPONSES``);
- ``REF[x, y] = pi_ref(y | x)``, the reference (SFT) policy;
- ``GOLD[x, y]``, the gold reward: what careful raters would say;
- ``RM_ERROR[x, y]``, the reward model's error: small on ordinary responses, large on the flattery loop;
- ``PROXY = GOLD + RM_ERROR``, the proxy reward ``r(x, y)`` of the reward model, which training optimizes.

A run (``train``) starts at ``pi_0 = pi_ref`` and iterates the penalized update of the chapter,

    pi_{k+1}(y | x) = pi_k(y | x) exp(A_k(x, y) / lambda) / Z_k(x),
    A_k = r_hat_k - beta (log pi_k - log pi_ref),    r_hat_k = r + noise * xi_k,  xi_k ~ N(0, 1) i.i.d.,

which is ``optimal_policy(pi_k, A_k, lambda)`` (the maximizer of ``E_pi[A_k] - lambda KL(pi || pi_k)``; ``lambda`` is
``train``'s ``step_penalty``), computed in log space (``objective.log_optimal_policy``) so that ``log pi_k`` is carried
exactly from one iterate to the next.

The arrays are read-only: copy one (``PROXY.copy()``) to make a variant of the problem.
Importing this module imports numpy only.
"""
from __future__ import annotations

from typing import Callable, Union

import numpy as np

from ._validate import as_float_array, check_finite, check_probs, check_same_shape
from .distributions import inverse_cdf
from .kl import entropy, kl_divergence
from .objective import log_optimal_policy

__all__ = ["PROMPTS", "RESPONSES", "HELPFUL", "FOLLOW_UP", "FLATTERY", "REF", "GOLD", "RM_ERROR", "PROXY",
           "metrics", "sample", "train"]


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


PROMPTS = ("refund request", "password reset", "product question")
RESPONSES = ("curt answer", "helpful answer", "helpful + follow-up", "hedging non-answer", "off-topic",
             "flattery loop")
HELPFUL = RESPONSES.index("helpful answer")
FOLLOW_UP = RESPONSES.index("helpful + follow-up")
FLATTERY = RESPONSES.index("flattery loop")

# pi_ref(y | x), the SFT model: one row per prompt x, one column per response y
REF = _frozen([[0.300, 0.350, 0.120, 0.130, 0.095, 0.005],
               [0.400, 0.300, 0.100, 0.100, 0.098, 0.002],
               [0.250, 0.300, 0.200, 0.120, 0.120, 0.010]])
# the gold reward: what careful raters would say
GOLD = _frozen([[0.3, 1.0, 1.2, -0.2, -1.0, -1.5],
                [0.4, 1.0, 1.1, -0.3, -1.0, -1.5],
                [0.2, 0.9, 1.3, -0.1, -1.0, -1.5]])
# the reward model's error: small on ordinary responses, large on the flattery loop
RM_ERROR = _frozen([[0.05, -0.05, 0.10, 0.10, 0.00, 3.6],
                    [0.00, 0.05, -0.05, 0.15, 0.00, 3.5],
                    [0.10, 0.00, -0.10, 0.05, 0.05, 3.4]])
# the proxy reward r(x, y): what training optimizes
PROXY = _frozen(GOLD + RM_ERROR)


def _prompt_weights(weights, n: int) -> np.ndarray:
    """``w(x)``: uniform ``1 / n`` when ``weights`` is None, else a validated distribution over the ``n`` prompts."""
    if weights is None:
        return np.full(n, 1 / n)
    w = as_float_array(weights, "weights")
    if w.shape != (n,):
        raise ValueError(f"weights must have one entry per prompt, shape ({n},), got {w.shape}")
    check_probs(w, "weights")
    return w


def metrics(p, proxy=PROXY, gold=GOLD, ref=REF, weights=None) -> dict[str, float]:
    """What a run logs about a policy ``p`` (rows: prompts), averaged over prompts with weights ``w(x)``:

    - ``"reward"``:   sum_x w(x) E_{y ~ p(.|x)}[r(x, y)]         (the proxy reward, ``proxy``)
    - ``"gold"``:     sum_x w(x) E_{y ~ p(.|x)}[r_gold(x, y)]    (``gold``)
    - ``"kl"``:       sum_x w(x) KL(p(.|x) || pi_ref(.|x))       (``ref``)
    - ``"entropy"``:  sum_x w(x) H(p(.|x))
    - ``"flattery"``: sum_x w(x) p(flattery loop | x)

    ``weights`` is the prompt distribution ``w`` (uniform when None). ``proxy``, ``gold`` and ``ref`` default to
    the toy's arrays; pass others (same shape as ``p``) for a variant of the problem.
    """
    p = as_float_array(p, "p")
    check_probs(p, "p")
    if p.ndim != 2 or p.shape[-1] != len(RESPONSES):
        raise ValueError(f"p must be a policy of shape (prompts, {len(RESPONSES)}), got {p.shape}")
    proxy, gold, ref = (as_float_array(a, n) for a, n in ((proxy, "proxy"), (gold, "gold"), (ref, "ref")))
    for a, name in ((proxy, "proxy"), (gold, "gold"), (ref, "ref")):
        check_same_shape(p, a, f"p and {name}")
    check_finite(proxy, "proxy")
    check_finite(gold, "gold")
    w = _prompt_weights(weights, len(p))
    return {"reward": float(w @ (p * proxy).sum(-1)), "gold": float(w @ (p * gold).sum(-1)),
            "kl": float(w @ kl_divergence(p, ref)), "entropy": float(w @ entropy(p)),
            "flattery": float(w @ p[:, FLATTERY])}


def sample(p, rng: np.random.Generator) -> np.ndarray:
    """One response index per row of ``p``, by inverse-CDF sampling: ``y = min{j : sum_{i <= j} p_i > u}``,
    ``u ~ U[0, 1)``.

    ``p`` has shape ``(n, K)``, one distribution per row (``pi[x]`` for a batch of prompts ``x``); the result has
    shape ``(n,)``. One uniform number is drawn per row from ``rng``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    p = as_float_array(p, "p")
    if p.ndim != 2:
        raise ValueError(f"p must have shape (n, K), one distribution per row, got {p.shape}")
    check_probs(p, "p")
    return inverse_cdf(p, rng.random(p.shape[0]))


def _number(x, name: str, *, low: float = 0.0, strict: bool) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    v = float(x)
    if not np.isfinite(v) or (v <= low if strict else v < low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {v}")
    return v


Beta = Union[float, Callable[[int], float]]


def train(beta: Beta, step_penalty: float, iterations: int, noise: float = 0.0, seed: int = 0, *,
          reward_sign: float = 1.0) -> dict[str, np.ndarray]:
    """A run of ``iterations`` penalized updates from ``pi_0 = pi_ref``, logging every iterate ``pi_0 .. pi_K``
    (``K = iterations``):

        pi_{k+1} = pi_k exp(A_k / lambda) / Z_k,    A_k = s r_hat_k - beta_k (log pi_k - log pi_ref),

    with ``lambda = step_penalty``, ``r_hat_k = PROXY + noise * xi_k`` (``xi_k`` standard normal, drawn from
    ``default_rng(seed)``; the same seed gives the same noise whatever ``beta`` and ``step_penalty``) and
    ``s = reward_sign``.

    - ``beta >= 0`` weights the KL penalty to the reference; ``beta = 0`` omits the reference (the objective is
      the reward alone). It may be a schedule: a function of the iteration ``k`` returning ``beta_k``.
    - ``step_penalty > 0`` (the chapter's ``lambda``) weights the step penalty ``KL(pi || pi_k)``: a smaller
      ``step_penalty`` is a larger step.
    - ``reward_sign = -1`` reproduces a sign error in the loss (``+r`` where ``-r`` belongs).

    Returns arrays indexed by the iteration ``k = 0 .. iterations``: the ``metrics`` of ``pi_k`` (``"reward"``,
    ``"gold"``, ``"kl"``, ``"entropy"``, ``"flattery"``), ``"beta"`` (``beta_k``) and ``"step_kl"``
    (``KL(pi_k || pi_{k-1})`` averaged over prompts, the size of the update that made ``pi_k``; NaN at ``k = 0``);
    and ``"policy"``, the last iterate ``pi_K``.
    """
    if not callable(beta):
        _number(beta, "beta", strict=False)
    step_penalty = _number(step_penalty, "step_penalty", strict=True)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations must be an integer, got {type(iterations).__name__}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    noise = _number(noise, "noise", strict=False)
    if reward_sign not in (1, -1):
        raise ValueError(f"reward_sign must be 1 or -1, got {reward_sign!r}")
    rng = np.random.default_rng(seed)
    w = _prompt_weights(None, len(PROMPTS))
    log_ref = np.log(REF)
    logp = log_ref.copy()
    log: dict[str, list] = {"beta": [], "step_kl": [np.nan]}
    for k in range(iterations + 1):
        p = np.exp(logp)
        for key, v in metrics(p).items():
            log.setdefault(key, []).append(v)
        b = _number(beta(k), f"beta({k})", strict=False) if callable(beta) else beta
        log["beta"].append(b)
        if k == iterations:
            break
        r_hat = PROXY + noise * rng.standard_normal(PROXY.shape)
        new = log_optimal_policy(logp, reward_sign * r_hat - b * (logp - log_ref), step_penalty)
        log["step_kl"].append(float(w @ kl_divergence(np.exp(new), p)))
        logp = new
    log["policy"] = np.exp(logp)
    return {k: np.asarray(v) for k, v in log.items()}
