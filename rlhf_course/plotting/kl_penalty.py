"""Figures of the penalty and the KL divergence (chapter 1) and of their sequence form (chapter 2)."""
from __future__ import annotations

from .style import COLORS, new_figure


# --------------------------------------------------------------------------------------------------
# chapter 1: the penalty and the KL divergence


def plot_penalty_bars(pi, pi_ref, labels, fig=None):
    """Left: ``pi`` and ``pi_ref`` side by side on each outcome. Right: the per-sample penalty
    ``log pi(y) - log pi_ref(y)`` on each outcome (above zero where ``pi`` raised the probability, below
    where it lowered it), with ``KL(pi || pi_ref)``, the penalty's mean under ``pi``, as a line."""
    import numpy as np

    from ..kl import kl_divergence, log_ratio

    pi, pi_ref = np.asarray(pi, dtype=float), np.asarray(pi_ref, dtype=float)
    fig = new_figure(fig, (8.0, 3.0))
    ax_p, ax_k = fig.subplots(1, 2)
    x = np.arange(len(pi))
    ax_p.bar(x - 0.2, pi_ref, 0.4, color=COLORS["reference"], label=r"$\pi_{\mathrm{ref}}$")
    ax_p.bar(x + 0.2, pi, 0.4, color=COLORS["policy"], label=r"$\pi$")
    ax_p.set(xticks=x, xticklabels=labels, ylabel="probability", title="the two policies")
    ax_p.legend()
    pen = log_ratio(np.log(pi), np.log(pi_ref))
    ax_k.bar(x, pen, 0.5, color=[COLORS["kl"] if v >= 0 else COLORS["reference"] for v in pen])
    ax_k.axhline(0, color="black", lw=0.8)
    kl = float(kl_divergence(pi, pi_ref))
    ax_k.axhline(kl, color=COLORS["kl"], ls="--", lw=1.2, label=rf"KL$(\pi\,\|\,\pi_{{\mathrm{{ref}}}})$ = {kl:.3f}")
    ax_k.set(xticks=x, xticklabels=labels, ylabel=r"$\log\pi(y) - \log\pi_{\mathrm{ref}}(y)$",
             title="the per-sample penalty")
    ax_k.legend(loc="lower left")
    return fig


def plot_kl_fits(grid, target, fits, fig=None):
    """The two-mode ``target`` and the one-mode discretized Gaussians fitted to it, one panel per fit
    (``fits`` are :class:`rlhf_course.distributions.GaussianFit`)."""
    fig = new_figure(fig, (8.0, 3.0))
    axes = fig.subplots(1, len(fits), sharey=True)
    names = {"forward": (r"forward: min KL(p $\|$ q)", COLORS["proxy"]),
             "reverse": (r"reverse: min KL(q $\|$ p)", COLORS["policy"])}
    for ax, fit in zip(axes, fits):
        title, color = names[fit.direction]
        ax.fill_between(grid, target, color=COLORS["reference"], alpha=0.35, lw=0, label="target p (two modes)")
        ax.plot(grid, fit.probs, color=color, lw=2, label=f"fit q: mean {fit.mean:.2f}, std {fit.std:.2f}")
        ax.set(title=title, xlabel="y")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("probability")
    return fig


def plot_estimator_histograms(samples: dict, kl: float, fig=None, bins: int = 80):
    """Histograms of single-sample values of ``k1``, ``k2``, ``k3`` (``samples`` maps names to arrays),
    with the true KL, which ``k1`` and ``k3`` average to, as a dashed line."""
    import numpy as np

    fig = new_figure(fig, (8.0, 2.8))
    axes = fig.subplots(1, len(samples), sharey=True)
    lo = min(np.quantile(v, 0.001) for v in samples.values())
    hi = max(np.quantile(v, 0.995) for v in samples.values())
    edges = np.linspace(lo, hi, bins + 1)
    for ax, (name, v) in zip(axes, samples.items()):
        ax.hist(v, bins=edges, color=COLORS[name], alpha=0.85, density=True)
        ax.axvline(kl, color=COLORS["kl"], ls="--", lw=1.2, label=f"KL = {kl:.2f}")
        ax.axvline(0, color="black", lw=0.8)
        ax.set(title=f"{name}: mean {v.mean():.3f}, std {v.std():.3f}", xlabel="value on one sample")
        ax.legend(loc="upper right")
    axes[0].set_ylabel("density")
    return fig


def plot_k3_precision(x, errors: dict, fig=None):
    """Relative error of ``k3(x) = e^x - 1 - x`` against ``x`` on log-log axes; ``errors`` maps labels
    such as ``"naive, float32"`` to arrays of relative errors (from
    :func:`rlhf_course.distributions.k3_relative_error`)."""
    import numpy as np

    fig = new_figure(fig, (6.4, 3.4))
    ax = fig.subplots()
    styles = {"naive": "-", "expm1": "--"}
    colors = {"float32": COLORS["proxy"], "float64": COLORS["policy"]}
    for label, err in errors.items():
        method, dtype = [s.strip() for s in label.split(",")]
        ax.loglog(x, np.maximum(err, 1e-17), styles[method], color=colors[dtype], lw=1.6, label=label)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.text(x[0], 1.4, "100% error", fontsize=8, va="bottom")
    ax.set(xlabel=r"$x = \log r$", ylabel="relative error of $k_3$",
           title=r"$k_3 = e^x - 1 - x$: naive vs expm1")
    ax.legend(ncols=2, loc="upper right")
    return fig


def _draw_explorer_row(axes, state: dict, titles: bool = True) -> None:
    import numpy as np

    ax_p, ax_k, ax_e = axes
    y, pi, ref = state["grid"], state["pi"], state["pi_ref"]
    ax_p.bar(y, ref, 0.8, color=COLORS["reference"], alpha=0.55, label=r"$\pi_{\mathrm{ref}}$")
    ax_p.bar(y, pi, 0.45, color=COLORS["policy"], label=r"$\pi$")
    ax_p.set(ylabel="probability", title=f"shift {state['shift']:g}, width {state['width']:g}")
    ax_p.legend(loc="upper left")

    likely = pi >= 0.005  # outcomes a sample of pi can plausibly hit set the y-range
    vals = np.concatenate([v[likely] for v in state["per_outcome"].values()])
    for name, v in state["per_outcome"].items():
        ax_k.plot(y, v, "o-", ms=3.5, lw=1.2, color=COLORS[name], label=name)
    ax_k.axhline(0, color="black", lw=0.8)
    ax_k.axhline(state["kl"], color=COLORS["kl"], ls="--", lw=1.2, label=f"KL = {state['kl']:.3f}")
    span = max(vals.max() - vals.min(), 0.05)
    ax_k.set_ylim(vals.min() - 0.1 * span, vals.max() + 0.15 * span)
    ax_k.set(xlabel="outcome y", ylabel="value on outcome y")
    ax_k.legend(loc="upper center", ncols=4, fontsize=7, handlelength=1.2, columnspacing=0.8)

    names = list(state["estimates"])
    data = [state["estimates"][k] for k in names]
    box = ax_e.boxplot(data, whis=(5, 95), showfliers=False, patch_artist=True, widths=0.5, showmeans=True,
                       meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                                  "markersize": 5})
    for patch, name in zip(box["boxes"], names):
        patch.set(facecolor=COLORS[name], alpha=0.6)
    for med in box["medians"]:
        med.set(color="black")
    # the exact standard deviation of one estimate (rare, huge values can make the boxes look calmer)
    ax_e.set_xticks(range(1, len(names) + 1), [f"{k}\nsd {state['summary'][k]['exact_std']:.3g}" for k in names])
    ax_e.axhline(state["kl"], color=COLORS["kl"], ls="--", lw=1.2)
    ax_e.set(ylabel=f"estimate from n = {state['n']}")
    ax_p.set_xticks(y[::2])
    ax_k.set_xticks(y[::2])
    if titles:
        ax_k.set_title("the estimators on each outcome")
        ax_e.set_title(f"{state['reps']} estimates (diamond: mean)")


def plot_penalty_explorer(state: dict, fig=None):
    """What :func:`rlhf_course.widgets.penalty_explorer` shows for one setting (a
    :func:`rlhf_course.widgets.penalty_explorer_state`): the two distributions; ``k1`` (the per-sample
    penalty), ``k2`` and ``k3`` on every outcome with the exact KL; and box plots (5-95% whiskers) of
    repeated ``n``-sample estimates of the KL by each estimator."""
    fig = new_figure(fig, (9.6, 3.0))
    _draw_explorer_row(fig.subplots(1, 3), state)
    return fig


def plot_penalty_explorer_grid(states: list, fig=None):
    """The explorer's picture for several settings, one row each: the static stand-in for the widget."""
    fig = new_figure(fig, (9.6, 2.7 * len(states)))
    axes = fig.subplots(len(states), 3, squeeze=False)
    for i, (row, state) in enumerate(zip(axes, states)):
        _draw_explorer_row(row, state, titles=(i == 0))
    return fig


# --------------------------------------------------------------------------------------------------
# chapter 2: from distributions to sequences


def plot_token_penalties(responses: list, fig=None):
    """Token by token, the per-token penalty ``log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)`` of each
    response (bars: purple where the policy made the token more likely, grey where less) and its running
    sum (line), which ends at the sequence penalty. One panel per response, as wide as it is long.

    ``responses``: dicts with ``name``, ``tokens`` (the token strings) and ``penalties`` (one per token).
    """
    import numpy as np

    lengths = [len(r["tokens"]) for r in responses]
    fig = new_figure(fig, (9.6, 3.4))
    axes = fig.subplots(1, len(responses), sharey=True, gridspec_kw={"width_ratios": [n + 2 for n in lengths]})
    axes = np.atleast_1d(axes)
    for ax, r in zip(axes, responses):
        pen = np.asarray(r["penalties"], dtype=float)
        x = np.arange(len(pen))
        ax.bar(x, pen, 0.7, color=[COLORS["kl"] if v >= 0 else COLORS["reference"] for v in pen])
        cum = np.cumsum(pen)
        ax.plot(x, cum, "o-", color="black", ms=3, lw=1.3)
        ax.annotate(f"{cum[-1]:.2f}", (x[-1], cum[-1]), textcoords="offset points", xytext=(4, 4), fontsize=9)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, r["tokens"], rotation=70, fontsize=8)
        ax.set_xlim(-0.8, len(pen) - 0.2 + 1.2)
        ax.set_title(r["name"])
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    axes[0].set_ylabel("penalty (nats)")
    axes[-1].legend(handles=[Patch(color=COLORS["kl"], label="token made more likely by the policy"),
                             Patch(color=COLORS["reference"], label="token made less likely"),
                             Line2D([], [], color="black", marker="o", ms=3, label="running sum")],
                    loc="upper left")
    return fig


def _draw_accumulation(ax_c, ax_t, curves: dict, totals: dict, current=None) -> None:
    """Left: running sum of the per-token penalty along each response, one line per detail setting.
    Right: the sequence penalty of each response against the detail setting."""
    import numpy as np

    styles = {"A": ("--", COLORS["reference"]), "B": ("-", COLORS["kl"])}
    details = sorted(curves)
    for i, d in enumerate(details):
        alpha = 0.35 + 0.65 * (i + 1) / len(details)
        for name, cum in curves[d].items():
            ls, color = styles.get(name, ("-", COLORS["policy"]))
            x = np.arange(1, len(cum) + 1)
            ax_c.plot(x, cum, ls, color=color, alpha=alpha, lw=1.5,
                      label=f"{name}, detail {d:g}" if len(details) <= 4 or i in (0, len(details) - 1) else None)
    ax_c.axhline(0, color="black", lw=0.8)
    ax_c.set(xlabel="token position t", ylabel="running sum of the penalty (nats)",
             title="the penalty accumulates token by token")
    ax_c.legend(fontsize=7, ncols=2, loc="upper left")
    grid = np.asarray(totals["detail"], dtype=float)
    for name in ("A", "B"):
        ls, color = styles[name]
        ax_t.plot(grid, totals[name], ls, color=color, lw=1.8, label=f"Response {name}")
    if current is not None:
        for name in ("A", "B"):
            ax_t.plot([current], [np.interp(current, grid, totals[name])], "o", color=styles[name][1])
        ax_t.axvline(current, color="black", lw=0.6, ls=":")
    ax_t.axhline(0, color="black", lw=0.8)
    ax_t.set(xlabel="detail reward of the policy", ylabel="sequence penalty (nats)",
             title="the whole response's penalty")
    ax_t.legend(loc="center right")


def plot_penalty_accumulation(curves: dict, totals: dict, current=None, fig=None):
    """How the sequence penalties of card 000's two responses build up.

    ``curves`` maps a detail setting to ``{"A": running sum, "B": running sum}`` (per-token penalties
    summed up to each position); ``totals`` holds ``detail`` (a grid of settings) and the sequence
    penalties ``A`` and ``B`` on it; ``current`` marks one setting on the right panel.
    """
    fig = new_figure(fig, (9.6, 3.4))
    ax_c, ax_t = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    _draw_accumulation(ax_c, ax_t, curves, totals, current)
    return fig


def plot_sequence_estimators(samples: dict, kl: float, fig=None, bins: int = 60):
    """Histograms of two estimates of the sequence KL from single sampled responses: the sequence penalty
    (sum of sampled per-token log-ratios) and the sum of the exact next-token KLs along the response.
    ``samples`` maps a label to one value per response; the dashed line is the exact KL."""
    import numpy as np

    fig = new_figure(fig, (8.0, 2.8))
    axes = fig.subplots(1, len(samples), sharey=True, sharex=True)
    vals = np.concatenate(list(samples.values()))
    edges = np.linspace(np.quantile(vals, 0.002), np.quantile(vals, 0.998), bins + 1)
    for ax, (name, v), color in zip(axes, samples.items(), (COLORS["kl"], COLORS["policy"])):
        ax.hist(v, bins=edges, color=color, alpha=0.85, density=True)
        ax.axvline(kl, color="black", ls="--", lw=1.2, label=f"KL = {kl:.3f}")
        ax.axvline(0, color="black", lw=0.6)
        ax.set(title=f"{name}\nmean {v.mean():.3f}, std {v.std():.3f}", xlabel="value on one response")
        ax.legend(loc="upper right")
    axes[0].set_ylabel("density")
    return fig
