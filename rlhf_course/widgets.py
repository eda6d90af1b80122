"""Interactive explorers for live readers of the book, and the plain functions behind them.

Each explorer is two layers: a plain function that computes everything the explorer shows (also used by
the static figure that follows every explorer in the book, so both show the same thing), and a function
that builds the ipywidgets around it. ipywidgets and matplotlib are imported only when a widget is built.

The explorers draw into an ``ipywidgets.Image`` (a PNG redrawn on every change) rather than an
``Output`` widget: the picture is part of the widget's state, so the executed notebook and the built
page show it, and executing the notebook under nbclient does not wait on an ``Output`` widget.
"""
from __future__ import annotations

import numpy as np

from . import kl as _kl
from .distributions import _count, _scalar, discretized_gaussian
from .plotting import (figure_png, plot_dpo_landscape, plot_optimal_policy_explorer, plot_penalty_explorer,
                       plot_surrogate)

__all__ = ["penalty_explorer_state", "penalty_explorer", "EXPLORER_SAMPLE_SIZES",
           "optimal_policy_state", "optimal_policy_explorer", "surrogate_state", "surrogate_explorer",
           "dpo_landscape_state", "dpo_landscape_explorer"]

EXPLORER_SAMPLE_SIZES = tuple(2**j for j in range(11))  # 1, 2, 4, ..., 1024


def penalty_explorer_state(shift: float, width: float, n: int, reps: int = 2000, seed: int = 0,
                           size: int = 12) -> dict:
    """Everything the penalty explorer shows, for one setting of its sliders.

    On the outcomes ``y = 0, ..., size - 1`` the reference is a discretized Gaussian
    ``pi_ref = N(c, s^2)`` with ``c = (size - 1) / 2`` and ``s = size / 6``; the policy is the reference
    shifted by ``shift`` and widened by the factor ``width``: ``pi = N(c + shift, (width s)^2)``
    (``width < 1`` sharpens it). Returned, as a dict:

    * ``grid``, ``pi``, ``pi_ref``: the outcomes and both distributions;
    * ``per_outcome``: ``{"k1", "k2", "k3"}``, each estimator's value on every outcome (``k1`` is the
      per-sample penalty ``log pi(y) - log pi_ref(y)``);
    * ``kl``: the exact ``KL(pi || pi_ref)``;
    * ``estimates``: for each estimator, ``reps`` independent estimates, each the mean of the estimator
      over ``n`` samples ``y ~ pi`` (drawn as multinomial counts, which is the same in distribution);
    * ``summary``: for each estimator, the mean and standard deviation of those estimates (``mean``,
      ``std``), and their exact values by enumeration (``exact_mean = sum_y pi(y) k(y)``,
      ``exact_std = sqrt(Var_pi(k) / n)``), which the ``reps`` repetitions can miss when ``k`` has rare,
      huge values;
    * the settings ``shift``, ``width``, ``n``, ``reps``.
    """
    shift = _scalar(shift, "shift")
    width = _scalar(width, "width", positive=True)
    n = _count(n, "n")
    reps = _count(reps, "reps", minimum=2)
    size = _count(size, "size", minimum=2)
    grid = np.arange(size, dtype=np.float64)
    centre, s = (size - 1) / 2, size / 6
    pi_ref = discretized_gaussian(grid, centre, s)
    pi = discretized_gaussian(grid, centre + shift, width * s)
    logp, ref_logp = np.log(pi), np.log(pi_ref)
    per_outcome = {"k1": _kl.k1(logp, ref_logp), "k2": _kl.k2(logp, ref_logp), "k3": _kl.k3(logp, ref_logp)}
    counts = np.random.default_rng(seed).multinomial(n, pi, size=reps)  # (reps, size)
    estimates = {k: counts @ v / n for k, v in per_outcome.items()}
    summary = {}
    for k, e in estimates.items():
        v = per_outcome[k]
        exact_mean = float(pi @ v)
        summary[k] = {"mean": float(e.mean()), "std": float(e.std(ddof=1)), "exact_mean": exact_mean,
                      "exact_std": float(np.sqrt(pi @ (v - exact_mean) ** 2 / n))}
    return {
        "grid": grid, "pi": pi, "pi_ref": pi_ref, "per_outcome": per_outcome,
        "kl": float(_kl.kl_divergence(pi, pi_ref)), "estimates": estimates, "summary": summary,
        "shift": shift, "width": width, "n": n, "reps": reps,
    }


def penalty_explorer(shift: float = 1.0, width: float = 1.0, n: int = 16, reps: int = 2000, seed: int = 0):
    """Sliders for the policy's shift and width and the sample size ``n``, above the picture of
    :func:`penalty_explorer_state`: both distributions, the estimators on every outcome, and the spread
    of ``reps`` estimates of the KL from ``n`` samples each. Returns the widget (display it)."""
    import ipywidgets as w

    if n not in EXPLORER_SAMPLE_SIZES:
        raise ValueError(f"n must be one of {EXPLORER_SAMPLE_SIZES}, got {n!r}")
    style = {"description_width": "initial"}
    shift_s = w.FloatSlider(value=shift, min=-4.0, max=4.0, step=0.25, description="shift of pi",
                            continuous_update=False, style=style)
    width_s = w.FloatLogSlider(value=width, base=2, min=-2, max=1, step=0.25, description="width of pi",
                               continuous_update=False, style=style)
    n_s = w.SelectionSlider(options=list(EXPLORER_SAMPLE_SIZES), value=n, description="samples n",
                            continuous_update=False, style=style)
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="960px"))

    def redraw(_=None):
        state = penalty_explorer_state(shift_s.value, width_s.value, n_s.value, reps, seed)
        image.value = figure_png(plot_penalty_explorer, state, figsize=(9.6, 3.0))

    for s in (shift_s, width_s, n_s):
        s.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([shift_s, width_s, n_s]), image])


# --------------------------------------------------------------------------------------------------
# chapter 4: the optimal policy


def optimal_policy_state(ref_probs, rewards, beta: float, rating=None, betas=None) -> dict:
    """Everything the optimal-policy explorer shows, for one ``beta``.

    ``pi* = pi_ref exp(r / beta) / Z`` (:func:`rlhf_course.objective.optimal_policy`) with, as a dict:
    ``beta``, ``pi_ref``, ``pi``, ``rewards``, ``expected_reward`` (``E_pi*[r]``), ``kl``
    (``KL(pi* || pi_ref)``), ``value`` (``beta log Z``), ``entropy``; with a second score ``rating`` on the
    outputs (e.g. a careful reader's, which the reward only approximates) also ``expected_rating``; and
    ``sweep``: the same numbers along ``betas`` (default: 200 values from 0.05 to 20, log-spaced).
    """
    from .objective import optimal_policy, optimal_value

    ref = np.asarray(ref_probs, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    g = None if rating is None else np.asarray(rating, dtype=np.float64)
    betas = np.geomspace(0.05, 20, 200) if betas is None else np.asarray(betas, dtype=np.float64)
    pi = optimal_policy(ref, r, beta)
    pis = np.stack([optimal_policy(ref, r, float(b)) for b in betas])
    return {
        "beta": float(beta), "pi_ref": ref, "pi": pi, "rewards": r, "rating": g,
        "expected_reward": float(pi @ r), "expected_rating": None if g is None else float(pi @ g),
        "kl": float(_kl.kl_divergence(pi, ref)), "value": float(optimal_value(ref, r, beta)),
        "entropy": float(_kl.entropy(pi)),
        "sweep": {"betas": betas, "policies": pis, "expected_reward": pis @ r,
                  "expected_rating": None if g is None else pis @ g,
                  "kl": _kl.kl_divergence(pis, ref)},
    }


def optimal_policy_explorer(ref_probs, rewards, labels, beta: float = 1.0, rating=None,
                            beta_min: float = 0.05, beta_max: float = 20.0):
    """A slider for ``beta`` (log scale) above the picture of :func:`optimal_policy_state`: ``pi_ref`` and
    ``pi*`` on every output, and ``E_pi*[r]``, ``E_pi*[rating]`` and ``KL(pi* || pi_ref)`` along the whole
    range of ``beta`` with the current value marked. Returns the widget (display it)."""
    import ipywidgets as w

    if not (0 < beta_min < beta_max):
        raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min} and {beta_max}")
    if not (beta_min <= beta <= beta_max):
        raise ValueError(f"beta must lie in [{beta_min}, {beta_max}], got {beta}")
    if len(labels) != len(ref_probs):
        raise ValueError(f"one label per output: got {len(labels)} labels for {len(ref_probs)} outputs")
    betas = np.geomspace(beta_min, beta_max, 200)
    lo, hi = np.log10(beta_min), np.log10(beta_max)
    slider = w.FloatLogSlider(value=beta, base=10, min=lo, max=hi, step=(hi - lo) / 100, description="beta",
                              readout_format=".3g", continuous_update=False,
                              layout=w.Layout(width="min(100%, 600px)"))
    stats = w.HTML()
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="960px"))

    def redraw(_=None):
        s = optimal_policy_state(ref_probs, rewards, slider.value, rating=rating, betas=betas)
        image.value = figure_png(plot_optimal_policy_explorer, s, labels, figsize=(9.6, 3.4))
        extra = "" if s["expected_rating"] is None else f", E[rating] = {s['expected_rating']:.3f}"
        stats.value = (f"E[r] = {s['expected_reward']:.3f}{extra}, KL(pi* || pi_ref) = {s['kl']:.3f}, "
                       f"beta log Z = {s['value']:.3f}")

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, stats, image])


# --------------------------------------------------------------------------------------------------
# chapter 5: the clipped surrogate and the penalty, for one token


def surrogate_state(advantage: float, clip_eps: float = 0.2, trust_coef: float = 2.0, ratios=None) -> dict:
    """Everything the surrogate explorer shows: for one token with advantage ``A``, as functions of the
    ratio ``rho = pi_theta / pi_old`` (default grid 0.3 to 2.2):

    * ``plain``: ``rho A``, the surrogate whose gradient at ``rho = 1`` is the policy gradient;
    * ``clipped``: ``min(rho A, clip(rho, 1 - eps, 1 + eps) A)``, minus :func:`rlhf_course.rl.clipped_policy_loss`
      evaluated at each ratio (the same function the trainers use);
    * ``penalty``: ``rho A - kappa (rho - 1 - log rho)``, the trust-region objective with ``D`` the k3 term of
      ``KL(pi_old || pi_theta)`` for this token; its maximum is at ``penalty_best = kappa / (kappa - A)``
      when ``A < kappa`` (``None`` otherwise: the penalty cannot hold it).
    """
    import torch

    from .rl import clipped_policy_loss

    for name, v in (("advantage", advantage), ("clip_eps", clip_eps), ("trust_coef", trust_coef)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if not 0 < clip_eps < 1:
        raise ValueError(f"clip_eps must lie in (0, 1), got {clip_eps}")
    if trust_coef <= 0:
        raise ValueError(f"trust_coef must be > 0, got {trust_coef}")
    rho = np.linspace(0.3, 2.2, 381) if ratios is None else np.asarray(ratios, dtype=np.float64)
    if rho.ndim != 1 or (rho <= 0).any():
        raise ValueError("ratios must be a 1-d array of positive numbers")
    a = float(advantage)
    one = torch.ones(1, 1, dtype=torch.float64)
    clipped = np.array([-float(clipped_policy_loss(torch.full((1, 1), float(np.log(r)), dtype=torch.float64),
                                                   torch.zeros(1, 1, dtype=torch.float64), a * one, one,
                                                   clip_eps)[0]) for r in rho])
    penalty = rho * a - trust_coef * (rho - 1 - np.log(rho))
    best = trust_coef / (trust_coef - a) if a < trust_coef else None
    return {
        "ratio": rho, "advantage": a, "clip_eps": float(clip_eps), "trust_coef": float(trust_coef),
        "plain": rho * a, "clipped": clipped, "penalty": penalty, "penalty_best": best,
        "penalty_best_value": None if best is None else best * a - trust_coef * (best - 1 - np.log(best)),
    }


def surrogate_explorer(advantage: float = 1.0, clip_eps: float = 0.2, trust_coef: float = 2.0):
    """Sliders for the advantage ``A``, the clip range ``eps`` and the penalty coefficient ``kappa`` above the
    picture of :func:`surrogate_state`. Returns the widget (display it)."""
    import ipywidgets as w

    style = {"description_width": "initial"}
    a_s = w.FloatSlider(value=advantage, min=-2.0, max=2.0, step=0.1, description="advantage A",
                        continuous_update=False, style=style)
    e_s = w.FloatSlider(value=clip_eps, min=0.05, max=0.5, step=0.05, description="clip eps",
                        continuous_update=False, style=style)
    k_s = w.FloatLogSlider(value=trust_coef, base=10, min=-0.5, max=1.3, step=0.05, description="penalty kappa",
                           continuous_update=False, style=style)
    stats = w.HTML()
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="720px"))

    def redraw(_=None):
        s = surrogate_state(a_s.value, e_s.value, k_s.value)
        image.value = figure_png(plot_surrogate, s, figsize=(6.4, 3.4))
        best = "none: A >= kappa" if s["penalty_best"] is None else f"{s['penalty_best']:.3f}"
        if s["advantage"] > 0:
            flat = f"flat for ratio > {1 + s['clip_eps']:.2f}"
        elif s["advantage"] < 0:
            flat = f"flat for ratio < {1 - s['clip_eps']:.2f}"
        else:
            flat = "zero everywhere (A = 0)"
        stats.value = f"clipped objective: {flat}; penalized objective: best ratio {best}"

    for s in (a_s, e_s, k_s):
        s.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([a_s, e_s, k_s]), stats, image])


# --------------------------------------------------------------------------------------------------
# chapter 8: direct preference optimization


def _simplex_grid(resolution: int) -> np.ndarray:
    """Interior points of the 2-simplex on a triangular lattice: ``(G, 3)``, every entry at least
    ``1 / (3 resolution)``."""
    pts = [(i, j, resolution - i - j) for i in range(resolution + 1) for j in range(resolution + 1 - i)]
    p = (np.asarray(pts, dtype=np.float64) + 1.0 / 3.0) / (resolution + 1.0)
    return p


def dpo_landscape_state(ref_probs, rewards, beta: float, resolution: int = 40) -> dict:
    """Everything the DPO-landscape explorer shows, for one ``beta``, on a problem with three outputs.

    On a triangular grid of policies ``pi`` over the three outputs: the population DPO loss
    (:func:`rlhf_course.dpo.exact_dpo_loss`: pairs from ``pi_ref x pi_ref``, labelled by Bradley-Terry on
    ``rewards``) in excess of its minimum, ``dpo_excess = L(pi) - L(pi*_beta)``, and the RLHF objective's gap
    ``objective_gap = beta log Z - J(pi)`` (:mod:`rlhf_course.objective`). Both are >= 0 and vanish at
    ``pi*_beta`` only. Also ``pi_ref``, ``pi_star``, ``grid`` ``(G, 3)``, ``grid_best`` (the grid's
    lowest-loss policy), and ``implicit``: ``beta log(pi*/pi_ref)``, which is ``rewards - beta log Z``.
    """
    import torch

    from .dpo import exact_dpo_loss
    from .objective import implicit_reward, log_partition, optimal_policy, optimal_value, rlhf_objective

    ref = np.asarray(ref_probs, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if ref.shape != (3,) or r.shape != (3,):
        raise ValueError(f"the landscape is drawn for three outputs: ref_probs and rewards of shape (3,), got "
                         f"{ref.shape} and {r.shape}")
    if not (isinstance(resolution, int) and 4 <= resolution <= 200):
        raise ValueError(f"resolution must be an integer in [4, 200], got {resolution!r}")
    pi_star = optimal_policy(ref, r, beta)
    grid = _simplex_grid(resolution)
    ref_t, r_t = torch.as_tensor(ref), torch.as_tensor(r)

    def loss(p):  # one policy per row: the population loss of each, in one batched call
        return exact_dpo_loss(torch.log(torch.as_tensor(p)), ref_t, r_t, beta).numpy()

    best = float(loss(pi_star))
    dpo = loss(grid) - best
    gap = float(optimal_value(ref, r, beta)) - rlhf_objective(grid, ref, r, beta)
    return {"beta": float(beta), "pi_ref": ref, "rewards": r, "pi_star": pi_star, "grid": grid,
            "dpo_excess": dpo, "objective_gap": np.asarray(gap), "grid_best": grid[int(np.argmin(dpo))],
            "loss_at_ref": float(loss(ref)), "loss_at_star": best,
            "implicit": implicit_reward(pi_star, ref, beta), "beta_log_z": float(beta * log_partition(ref, r, beta))}


def dpo_landscape_explorer(ref_probs, rewards, labels, beta: float = 1.0, beta_min: float = 0.1,
                           beta_max: float = 10.0, resolution: int = 40):
    """A slider for ``beta`` (log scale) above the picture of :func:`dpo_landscape_state`: the DPO loss and
    the RLHF objective over every policy on three outputs, and where each is optimal. Returns the widget."""
    import ipywidgets as w

    if not (0 < beta_min <= beta <= beta_max):
        raise ValueError(f"need 0 < beta_min <= beta <= beta_max, got {beta_min}, {beta}, {beta_max}")
    if len(labels) != 3:
        raise ValueError(f"three labels, one per output, got {len(labels)}")
    lo, hi = np.log10(beta_min), np.log10(beta_max)
    slider = w.FloatLogSlider(value=beta, base=10, min=lo, max=hi, step=(hi - lo) / 40, description="beta",
                              readout_format=".3g", continuous_update=False,
                              layout=w.Layout(width="min(100%, 600px)"))
    stats = w.HTML()
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="960px"))

    def redraw(_=None):
        s = dpo_landscape_state(ref_probs, rewards, slider.value, resolution)
        image.value = figure_png(plot_dpo_landscape, s, labels, figsize=(9.6, 3.9))
        stats.value = (f"pi*_beta = [{', '.join(f'{v:.3f}' for v in s['pi_star'])}]; population DPO loss at "
                       f"pi_ref {s['loss_at_ref']:.4f} (log 2, whatever the labels), at pi*_beta "
                       f"{s['loss_at_star']:.4f}")

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, stats, image])
