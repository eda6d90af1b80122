"""Best-of-n from a fixed pool of samples: exact expectations by order statistics, and Gao et al.'s fit.

Draw ``N`` responses per prompt from the reference once, score each with the proxy (reward model) and the
gold reward. Best-of-n with ``n <= N`` keeps the response of highest proxy score among ``n`` drawn without
replacement from the pool. Sorting the pool by proxy score ascending, ``s_(1) <= ... <= s_(N)``, the
``i``-th is the best of a random ``n``-subset with probability ``C(i - 1, n - 1) / C(N, n)``, so

    E[gold of best of n] = sum_i C(i - 1, n - 1) / C(N, n) * gold_(i)

(the same for the proxy): the average over all ``C(N, n)`` subsets, unbiased for best-of-n from the
reference, with every ``n`` computed from the same samples. Proxy ties are ordered arbitrarily (stable
sort); they happen whenever the reference writes the same response twice, and then best-of-n's KL is
below ``log n - (n - 1)/n``, which is only an upper bound.

Gao et al. (2022) fit best-of-n's gold gain as ``R(d) = d (a - b d)`` with ``d = sqrt(KL)``, and use the
analytic ``KL = log n - (n - 1)/n`` (``objective.best_of_n_kl_bound``).
"""
from __future__ import annotations

import math

import numpy as np

from .objective import best_of_n_kl_bound
from .scaling_laws import gao_bon_curve, gao_bon_fit  # noqa: F401 (re-exported beside the data they fit)

__all__ = ["order_statistic_weights", "expected_best_of_n", "gao_bon_fit", "gao_bon_curve", "lm_best_of_n"]


def order_statistic_weights(N: int, n: int) -> np.ndarray:
    """``w_i = C(i - 1, n - 1) / C(N, n)`` for ``i = 1..N``: P(the i-th smallest is the max of an n-subset)."""
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= N:
        raise ValueError(f"n must be an integer in 1..{N}, got {n!r}")
    total = math.comb(N, n)
    return np.array([math.comb(i - 1, n - 1) / total for i in range(1, N + 1)], dtype=np.float64)


def expected_best_of_n(proxy, gold, ns=None) -> dict:
    """Expected proxy and gold reward of best-of-n (selected by proxy) for each ``n`` in ``ns``.

    ``proxy`` and ``gold`` are ``(prompts, N)`` (or ``(N,)``) scores of the same samples. Returns numpy
    arrays ``n``, ``kl`` (the analytic bound, which best-of-n attains for continuous scores), ``sqrt_kl``,
    ``proxy`` and ``gold`` (each averaged over prompts), and ``gold_per_prompt`` ``(prompts, len(ns))``.
    """
    proxy = np.atleast_2d(np.asarray(proxy, dtype=np.float64))
    gold = np.atleast_2d(np.asarray(gold, dtype=np.float64))
    if proxy.shape != gold.shape or proxy.ndim != 2:
        raise ValueError(f"proxy {proxy.shape} and gold {gold.shape} must both be (prompts, N)")
    if not (np.isfinite(proxy).all() and np.isfinite(gold).all()):
        raise ValueError("proxy and gold must be finite")
    N = proxy.shape[1]
    ns = np.arange(1, N + 1) if ns is None else np.asarray(ns)
    order = np.argsort(proxy, axis=1, kind="stable")
    ps = np.take_along_axis(proxy, order, 1)
    gs = np.take_along_axis(gold, order, 1)
    W = np.stack([order_statistic_weights(N, int(n)) for n in ns])  # (len(ns), N)
    kl = np.array([best_of_n_kl_bound(int(n)) for n in ns])
    gold_pp = gs @ W.T  # (prompts, len(ns))
    return {"n": ns, "kl": kl, "sqrt_kl": np.sqrt(kl),
            "proxy": (ps @ W.T).mean(0), "gold": gold_pp.mean(0), "gold_per_prompt": gold_pp}


def lm_best_of_n(model, reward_model, world, n_prompts: int = 32, N: int = 64, seed: int = 0,
                 max_new_tokens: int = 16, ns=None) -> dict:
    """Best-of-n on the tiny LM: ``N`` samples per prompt from ``model`` (the reference/SFT policy), judged
    once through the course's one evaluation path (``ppo.evaluate``: proxy, gold), then every ``n <= N``
    from those samples with ``expected_best_of_n``. Prompts are the world's first ``n_prompts`` (cycled).
    Returns ``expected_best_of_n``'s arrays plus ``gold_gain`` / ``proxy_gain`` (minus the n=1 value) and
    ``gold_gain_se``, the standard error of the gold gain over prompts (``None`` each when ``ns`` does not
    start at 1).
    """
    from .ppo import evaluate  # trainer layer; imported here so the math above stays import-light

    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 1:
        raise ValueError(f"n_prompts must be a positive integer, got {n_prompts!r}")
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"N must be a positive integer, got {N!r}")
    n_world = world.prompts().shape[0]
    idx = np.repeat(np.arange(n_prompts) % n_world, N)
    ev = evaluate(model, reward_model, world, seed=seed, max_new_tokens=max_new_tokens, prompt_idx=idx)
    out = expected_best_of_n(ev["proxy"].reshape(n_prompts, N), ev["gold"].reshape(n_prompts, N), ns)
    if out["n"][0] == 1:
        out["gold_gain"] = out["gold"] - out["gold"][0]
        out["proxy_gain"] = out["proxy"] - out["proxy"][0]
        # the spread of the gain over prompts: its standard error (NaN with a single prompt)
        gains = out["gold_per_prompt"] - out["gold_per_prompt"][:, :1]
        out["gold_gain_se"] = (gains.std(0, ddof=1) / np.sqrt(n_prompts) if n_prompts > 1
                               else np.full(gains.shape[1], np.nan))
    else:
        out["gold_gain"] = out["proxy_gain"] = out["gold_gain_se"] = None
    return out
