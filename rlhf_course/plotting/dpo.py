"""Figures of direct preference optimization (chapter 8): the loss over the simplex, convergence in the data,
the implicit reward, and DPO against PPO on the language model."""
from __future__ import annotations

from .ppo import simplex_xy
from .style import COLORS, new_figure


# --------------------------------------------------------------------------------------------------
# chapter 8: direct preference optimization


def _draw_simplex_field(ax, state: dict, values, labels, title: str, levels, legend: bool = True):
    """``log10`` of a non-negative field over the simplex's grid, with ``pi_ref`` and ``pi*_beta`` marked."""
    import numpy as np
    from matplotlib.tri import Triangulation

    xy = simplex_xy(state["grid"])
    z = np.clip(np.log10(np.maximum(np.asarray(values, dtype=float), 1e-12)), levels[0], levels[-1])
    cs = ax.tricontourf(Triangulation(xy[:, 0], xy[:, 1]), z, levels=levels, cmap="viridis_r")
    corners = simplex_xy(np.eye(3))
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="black", lw=0.8)
    for c, lab, off, ha in zip(corners, labels, [(-0.03, -0.08), (0.03, -0.08), (0.05, -0.02)],
                               ["center", "center", "left"]):
        ax.text(c[0] + off[0], c[1] + off[1], lab, ha=ha, fontsize=9)
    ax.plot(*simplex_xy(state["pi_ref"]), "o", color="white", mec="black", ms=8, label=r"$\pi_{\mathrm{ref}}$")
    ax.plot(*simplex_xy(state["pi_star"]), "*", color=COLORS["optimal"], mec="white", ms=15,
            label=r"$\pi^*_\beta$ (closed form)")
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(-0.05, 1.0))
    return cs


def plot_dpo_landscape(state: dict, labels, fig=None, titles: bool = True):
    """What :func:`rlhf_course.widgets.dpo_landscape_explorer` shows for one ``beta`` (a
    :func:`rlhf_course.widgets.dpo_landscape_state`): over every policy on three outputs, the population DPO
    loss above its minimum (left) and the RLHF objective below its maximum (right), both on a log scale.
    Both vanish at ``pi*_beta`` and nowhere else."""
    import numpy as np

    fig = new_figure(fig, (9.6, 3.9))
    ax_d, ax_j = fig.subplots(1, 2)
    b = state["beta"]
    top = np.log10(max(float(np.max(state["dpo_excess"])), float(np.max(state["objective_gap"])), 1e-3))
    levels = np.arange(-4.0, np.ceil(top * 4) / 4 + 0.25, 0.25)
    cs = _draw_simplex_field(ax_d, state, state["dpo_excess"], labels,
                             rf"DPO loss: $L(\pi) - L(\pi^*_\beta)$, $\beta$ = {b:.3g}" if titles else "", levels)
    _draw_simplex_field(ax_j, state, state["objective_gap"], labels,
                        rf"RLHF objective: $\beta \log Z - J(\pi)$, $\beta$ = {b:.3g}" if titles else "", levels,
                        legend=False)
    cb = fig.colorbar(cs, ax=[ax_d, ax_j], shrink=0.8, pad=0.02, ticks=np.arange(-4, levels[-1] + 0.01, 1.0))
    cb.set_label(r"$\log_{10}$ of the gap")
    return fig


def plot_dpo_landscape_grid(states: list, labels, fig=None):
    """The DPO-landscape picture for several ``beta``, one row each: the static stand-in for the explorer."""
    fig = new_figure(fig, (9.6, 3.4 * len(states)))
    rows = fig.subfigures(len(states), 1)
    for row, state in zip(rows if len(states) > 1 else [rows], states):
        plot_dpo_landscape(state, labels, fig=row)
    return fig


def plot_data_convergence(ns, curves: dict, fig=None, guide: bool = True):
    """Total-variation distance to ``pi*_beta`` of DPO trained on ``n`` comparisons per prompt, on log-log
    axes, one line per setting (``curves`` maps a label to an array over ``ns``), with a ``1/sqrt(n)`` guide."""
    import numpy as np

    fig = new_figure(fig, (6.4, 3.6))
    ax = fig.subplots()
    ns = np.asarray(ns, dtype=float)
    styles = ["o-", "s--", "^-", "D--", "v-"]
    for (label, tv), st in zip(curves.items(), styles):
        ax.loglog(ns, tv, st, ms=5, lw=1.5, label=label)
    if guide:
        first = np.asarray(list(curves.values())[0], dtype=float)
        c = first[-1] * np.sqrt(ns[-1])
        ax.loglog(ns, c / np.sqrt(ns), ":", color="black", lw=1, label=r"$\propto 1/\sqrt{n}$")
    ax.set(xlabel="comparisons per prompt n", ylabel=r"max over prompts of TV$(\pi, \pi^*_\beta)$",
           title=r"DPO on finite data approaches $\pi^*_\beta$")
    ax.legend(fontsize=8)
    return fig


def plot_implicit_reward_recovery(rewards, implicit, ref_probs, labels=None, fig=None, title: str = ""):
    """The implicit reward ``beta log(pi/pi_ref)`` of a trained policy against the true reward, one point per
    output, its area proportional to ``pi_ref`` (how often the data saw it), with the line of slope one
    through the ``pi_ref``-weighted means (a reward recovered up to a constant lies on it)."""
    import numpy as np

    r, h, w = (np.asarray(a, dtype=float).ravel() for a in (rewards, implicit, ref_probs))
    fig = new_figure(fig, (5.2, 4.0))
    ax = fig.subplots()
    c = np.sum(w * (h - r)) / np.sum(w)
    lo, hi = min(r.min(), (h - c).min()), max(r.max(), (h - c).max())
    ax.plot([lo, hi], [lo + c, hi + c], color="black", lw=1, ls="--", label="r + constant")
    ax.scatter(r, h, s=20 + 600 * w / w.max(), color=COLORS["policy"], alpha=0.6, edgecolor="white",
               label=r"outputs (area $\propto \pi_{\mathrm{ref}}$)")
    if labels is not None:
        for x, y, lab, wi in zip(r, h, labels, w):
            if wi >= np.sort(w)[-min(3, len(w))]:
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.set(xlabel="true reward r(x, y)", ylabel=r"implicit reward $\beta \log(\pi/\pi_{\mathrm{ref}})$",
           title=title or "the implicit reward recovers r up to a constant")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _running_mean(v, window: int):
    """Mean of the last ``window`` values at each point (fewer at the start): no lag at the first point."""
    import numpy as np

    v = np.asarray(v, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


_DPO_BLUES = ["#6baed6", "#2171b5", "#08306b", "#9ecae1"]


def plot_dpo_vs_ppo(ppo_path: dict, dpo_paths: dict, finals: dict, reference: dict | None = None, fig=None,
                    window: int = 5):
    """Left: gold reward against KL to the reference; the final policies with one standard error, the DPO runs'
    evaluations along training (small markers), PPO's per-iteration batch estimates as a running mean over
    ``window`` iterations. Right: the KL along training, against the fraction of training done.

    ``ppo_path``: ``{"kl", "gold"}`` per PPO iteration; ``dpo_paths``: label -> ``{"kl", "gold", "progress"}``
    (``progress`` in [0, 1]); ``finals``: label -> ``{"kl", "gold", "kl_se", "gold_se"}``, the PPO one first,
    then the DPO ones in the order of ``dpo_paths``; ``reference``: the reference model's evaluation."""
    import numpy as np

    fig = new_figure(fig, (9.6, 3.9))
    ax, ax_k = fig.subplots(1, 2, width_ratios=[1.25, 1])
    kl_s, gold_s = _running_mean(ppo_path["kl"], window), _running_mean(ppo_path["gold"], window)
    ax.plot(kl_s, gold_s, "-", color=COLORS["proxy"], lw=1.2, alpha=0.6)
    progress = np.linspace(0, 1, len(kl_s) + 1)[1:]
    ax_k.plot(progress, kl_s, "-", color=COLORS["proxy"], lw=1.6, label=f"PPO (running mean of {window})")
    colors = dict(zip(dpo_paths, _DPO_BLUES))
    for label, path in dpo_paths.items():
        ax.plot(path["kl"], path["gold"], "o-", ms=3, lw=0.8, alpha=0.6, color=colors[label])
        ax_k.plot(path["progress"], path["kl"], "o-", ms=3.5, lw=1.4, color=colors[label], label=label)
    for label, e in finals.items():
        is_ppo = label.lower().startswith("ppo")
        color = COLORS["proxy"] if is_ppo else next((c for k, c in colors.items() if label.startswith(k)),
                                                    COLORS["policy"])
        ax.errorbar(e["kl"], e["gold"], xerr=e.get("kl_se"), yerr=e.get("gold_se"), fmt="*" if is_ppo else "D",
                    ms=14 if is_ppo else 8, mec="black", color=color, ecolor="black", capsize=2, label=label,
                    zorder=5)
    if reference is not None:
        ax.axhline(reference["gold"], color=COLORS["reference"], ls=":", lw=1.2, label="reference model")
    ax.set(xlabel=r"KL$(\pi\,\|\,\pi_{\mathrm{ref}})$ (nats per response)", ylabel="gold reward",
           title="gold reward against KL")
    ax.legend(fontsize=7.5, loc="best")
    ax_k.set(xlabel="fraction of training done", ylabel="KL (nats per response)", title="the KL along training")
    ax_k.legend(fontsize=7.5)
    return fig


def plot_dpo_training(logs: dict, fig=None, window: int = 10):
    """Along DPO training on the language model, one line per run (``logs`` maps a label to the run's per-step
    log): the loss (from ``log 2``), and the mean sequence log-ratios ``log pi/pi_ref`` of the batch's chosen
    (solid) and rejected (dashed) responses, each a running mean over the last ``window`` steps."""
    import numpy as np

    fig = new_figure(fig, (9.6, 3.3))
    ax_l, ax_r = fig.subplots(1, 2)

    for (label, log), color in zip(logs.items(), _DPO_BLUES):
        s = np.asarray([r["step"] for r in log])
        ax_l.plot(s, _running_mean([r["loss"] for r in log], window), color=color, label=label)
        ax_r.plot(s, _running_mean([r["chosen_logratio"] for r in log], window), color=color,
                  label=f"{label}: chosen")
        ax_r.plot(s, _running_mean([r["rejected_logratio"] for r in log], window), "--", color=color,
                  label=f"{label}: rejected")
    ax_l.axhline(np.log(2), color="black", lw=0.8, ls=":", label="log 2")
    ax_l.set(xlabel="step", ylabel=f"DPO loss (batch, mean of the last {window})", title="the loss starts at log 2")
    ax_l.legend(fontsize=7.5)
    ax_r.axhline(0, color="black", lw=0.8)
    ax_r.set(xlabel="step", ylabel=r"$\log \pi(y|x) - \log \pi_{\mathrm{ref}}(y|x)$",
             title="chosen and rejected responses' log-ratios")
    ax_r.legend(fontsize=6.5, ncols=2)
    return fig
