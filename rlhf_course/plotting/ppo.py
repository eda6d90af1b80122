"""Figures of chapter 5, from objective to algorithm: policies on the simplex, PPO's clipped surrogate and the
penalized one, curves along training, the reward-KL frontier, and bars over enumerated responses."""
from __future__ import annotations

from .style import COLORS, new_figure


# --------------------------------------------------------------------------------------------------
# chapter 5: from objective to algorithm


def simplex_xy(p):
    """Barycentric coordinates on the 2-simplex: ``p`` ``(..., 3)`` to points ``(..., 2)`` in the triangle
    with corners ``y0 = (0, 0)``, ``y1 = (1, 0)``, ``y2 = (1/2, sqrt(3)/2)``."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    if p.shape[-1] != 3:
        raise ValueError(f"simplex_xy takes distributions over 3 outputs (last axis 3), got shape {p.shape}")
    return np.stack([p[..., 1] + 0.5 * p[..., 2], (np.sqrt(3) / 2) * p[..., 2]], axis=-1)


PATH_STYLES = {"plain": ("#e08e0b", "s"), "clip": ("#1f5fa8", "o"), "penalty": ("#2a9d57", "^"),
               "reinforce": ("#7f7f7f", "."), "adaptive": ("#7b3fa0", "D")}


def plot_simplex_paths(paths: dict, ref, optimum, optimum_curve, labels, step_kl: dict | None = None,
                       fig=None):
    """Left: policies over three outputs as points of the triangle (a corner = all mass on that output).
    The curve of optima ``pi*_beta`` for ``beta`` from large (at ``pi_ref``) to small (towards the
    best output), ``pi*`` of the run's ``beta`` (star), and each run's path, one marker per iteration.
    Right (with ``step_kl``): ``KL(pi_old || pi_new)`` of every iteration, per run, on a log scale.
    ``paths`` and ``step_kl`` map a name (a key of :data:`PATH_STYLES`, or any label) to arrays."""
    import numpy as np

    fig = new_figure(fig, (9.6, 4.0) if step_kl else (5.2, 4.4))
    if step_kl:
        ax, ax_k = fig.subplots(1, 2, width_ratios=[1.15, 1])
    else:
        ax = fig.subplots()
    corners = simplex_xy(np.eye(3))
    ax.fill(*corners.T, color="#f4f4f4", zorder=0)
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="black", lw=0.8)
    for c, lab, off in zip(corners, labels, [(-0.02, -0.06), (0.02, -0.06), (0.0, 0.03)]):
        ax.text(c[0] + off[0], c[1] + off[1], lab, ha="center", fontsize=9)
    ax.plot(*simplex_xy(optimum_curve).T, color=COLORS["optimal"], lw=1, alpha=0.6,
            label=r"$\pi^*_\beta$ for every $\beta$")
    ax.plot(*simplex_xy(ref), "o", color=COLORS["reference"], ms=8, label=r"$\pi_{\mathrm{ref}}$", zorder=5)
    ax.plot(*simplex_xy(optimum), "*", color=COLORS["optimal"], ms=14, label=r"$\pi^*_\beta$, this $\beta$",
            zorder=6)
    for name, path in paths.items():
        color, marker = PATH_STYLES.get(name, (None, "o"))
        xy = simplex_xy(path)
        ax.plot(*xy.T, marker=marker, ms=4, lw=1.2, color=color, label=name, alpha=0.9)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.legend(loc="upper right", fontsize=7.5, bbox_to_anchor=(1.08, 1.02))
    ax.set_title("the policy's path on the simplex", fontsize=10)
    if step_kl:
        for name, v in step_kl.items():
            color, marker = PATH_STYLES.get(name, (None, "o"))
            v = np.maximum(np.asarray(v), 1e-8)
            ax_k.semilogy(np.arange(1, len(v) + 1), v, marker=marker, ms=4, color=color, label=name)
        ax_k.set(xlabel="iteration", ylabel=r"KL$(\pi_{\mathrm{old}}\,\|\,\pi_{\mathrm{new}})$",
                 title="how far each update moved")
        ax_k.legend(fontsize=8)
    return fig


def _draw_surrogate(ax, state: dict, legend: bool = True) -> None:
    """The per-token objectives of :func:`rlhf_course.widgets.surrogate_state` against the ratio."""
    rho = state["ratio"]
    eps, a, kappa = state["clip_eps"], state["advantage"], state["trust_coef"]
    ax.axvspan(1 - eps, 1 + eps, color=COLORS["policy"], alpha=0.08, lw=0)
    ax.plot(rho, state["plain"], color=COLORS["proxy"], lw=1.2, ls="--", label=r"plain $\rho A$")
    ax.plot(rho, state["clipped"], color=COLORS["policy"], lw=2.2, label=r"clipped (PPO)")
    ax.plot(rho, state["penalty"], color=COLORS["reward"], lw=1.8,
            label=rf"penalty $\rho A - \kappa(\rho - 1 - \log\rho)$")
    if state["penalty_best"] is not None:
        ax.plot([state["penalty_best"]], [state["penalty_best_value"]], "o", color=COLORS["reward"], ms=5)
    ax.axvline(1.0, color="black", lw=0.6)
    lo = min(state["clipped"].min(), state["penalty"].min(), state["plain"].min())
    hi = max(state["clipped"].max(), state["plain"].max())
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax.set(xlabel=r"ratio $\rho = \pi_\theta(y_t\mid s_t)/\pi_{\mathrm{old}}(y_t\mid s_t)$",
           ylabel="per-token objective (maximized)",
           title=rf"$A$ = {a:+.2g}, $\epsilon$ = {eps:.2g}, $\kappa$ = {kappa:.2g}")
    if legend:
        ax.legend(fontsize=7.5, loc="upper left" if a >= 0 else "upper right")


def plot_surrogate(state: dict, fig=None):
    """What :func:`rlhf_course.widgets.surrogate_explorer` shows: for one token with advantage ``A``, the
    plain surrogate ``rho A``, PPO's clipped one and the penalized one, against the ratio ``rho``. The
    shaded band is ``[1 - eps, 1 + eps]``; the dot is the penalized objective's best ratio."""
    fig = new_figure(fig, (6.4, 3.4))
    _draw_surrogate(fig.subplots(), state)
    return fig


def plot_surrogate_grid(states: list, fig=None):
    """Several settings of the surrogate explorer side by side (the static stand-in for it)."""
    fig = new_figure(fig, (4.8 * len(states), 3.4))
    axes = fig.subplots(1, len(states), squeeze=False)[0]
    for i, (ax, s) in enumerate(zip(axes, states)):
        _draw_surrogate(ax, s, legend=True)
        if i:
            ax.set_ylabel("")
    return fig


def plot_curves(panels: list, fig=None, width: float = 4.8, height: float = 3.3):
    """Side-by-side panels of curves against the iteration. Each panel is a dict: ``title``, ``ylabel``,
    ``curves`` (label -> array, or label -> (x, y)), optional ``logy``, ``hlines`` (label -> value, drawn
    dashed), ``styles`` (label -> dict of matplotlib keywords) and ``xlabel``."""
    import numpy as np

    fig = new_figure(fig, (width * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        styles = panel.get("styles", {})
        for label, c in panel["curves"].items():
            x, y = c if isinstance(c, tuple) else (np.arange(len(c)), c)
            y = np.asarray(y, dtype=float)
            if panel.get("logy"):
                y = np.maximum(y, panel.get("floor", 1e-6))
            ax.plot(x, y, label=label, lw=1.5, **styles.get(label, {}))
        for label, v in panel.get("hlines", {}).items():
            ax.axhline(v, color="black", ls="--", lw=0.9, label=label)
        if panel.get("logy"):
            ax.set_yscale("log")
        ax.set(xlabel=panel.get("xlabel", "iteration"), ylabel=panel.get("ylabel", ""), title=panel.get("title", ""))
        ax.legend(fontsize=7.5)
    return fig


def plot_frontier(front: dict, runs: dict, gaps: dict | None = None, xmax: float | None = None, fig=None):
    """Left: the exact reward-KL frontier (``front`` from :func:`rlhf_course.toy.frontier`: the KL and reward
    of ``pi*_beta`` along ``beta``) and trained runs' paths in the same plane (``runs`` maps ``"method @beta"``
    to ``(kl, reward)`` arrays along training; one colour per method), each ending in a dot; the optima of
    the runs' ``beta`` are stars (``front["marks"]``: ``beta -> (kl, reward)``, optional). Right (with
    ``gaps``, label -> array): how far below the frontier each run is, iteration by iteration, log scale."""
    import numpy as np

    fig = new_figure(fig, (10.0, 4.0) if gaps else (7.2, 4.2))
    if gaps:
        ax, ax_g = fig.subplots(1, 2, width_ratios=[1.2, 1])
    else:
        ax = fig.subplots()
    kl_f, r_f = np.asarray(front["kl"]), np.asarray(front["reward"])
    xmax = float(np.max(kl_f)) if xmax is None else float(xmax)
    keep = kl_f <= xmax * 1.05
    ax.plot(kl_f[keep], r_f[keep], color=COLORS["optimal"], lw=2.2, label=r"frontier: $\pi^*_\beta$ for every $\beta$",
            zorder=3)
    ax.fill_between(kl_f[keep], r_f[keep], np.min(r_f) - 1, color=COLORS["optimal"], alpha=0.05, lw=0)
    for beta, (k, r) in front.get("marks", {}).items():
        ax.plot([k], [r], "*", color=COLORS["optimal"], ms=12, zorder=4)
        ax.annotate(rf"$\beta$={beta:g}", (k, r), textcoords="offset points", xytext=(6, -12), fontsize=8)
    colors: dict = {}
    for label, (kl, reward) in runs.items():
        group = label.split(" @")[0]
        new = group not in colors
        color = colors.setdefault(group, f"C{len(colors)}")
        ax.plot(kl, reward, lw=1, color=color, alpha=0.8, label=group if new else None)
        ax.plot([kl[-1]], [reward[-1]], "o", ms=3.5, color=color)
    lo = min(float(np.min(r)) for _, r in runs.values()) if runs else float(np.min(r_f))
    ax.set(xlabel=r"KL$(\pi\,\|\,\pi_{\mathrm{ref}})$ (mean over prompts)", ylabel=r"$\mathrm{E}_\pi[r]$",
           title="every policy lies on or below the frontier", xlim=(0, xmax),
           ylim=(lo - 0.02, float(np.max(r_f[keep])) + 0.02))
    ax.legend(fontsize=7, loc="lower right")
    if gaps:
        for i, (label, g) in enumerate(gaps.items()):
            g = np.asarray(g, dtype=float)
            ax_g.semilogy(np.arange(len(g)), np.maximum(g, 1e-12), lw=1.2, color=colors.get(label, f"C{i}"),
                          label=label)
        ax_g.set(xlabel="iteration", ylabel=r"$F(\mathrm{KL}_t) - \mathrm{E}_{\pi_t}[r]$",
                 title="distance below the frontier")
        ax_g.legend(fontsize=6.5)
    return fig


def plot_response_bars(labels, dists: dict, title: str = "", fig=None):
    """Distributions over enumerated responses as grouped bars (``dists`` maps a label to an array), the
    reference grey, the optimum red, anything else in the policy's blue."""
    import numpy as np

    fig = new_figure(fig, (9.6, 3.0))
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.8 / len(dists)
    roles = {0: COLORS["reference"], 1: COLORS["optimal"], 2: COLORS["policy"]}
    for i, (name, p) in enumerate(dists.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), p, width, label=name, color=roles.get(i))
    ax.set_xticks(x, labels, fontsize=8, rotation=90, family="monospace")
    ax.set(ylabel="probability", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_grouped_bars(groups: dict, ylabel: str = "", title: str = "", logy: bool = False, fig=None):
    """Bars for several named values in each of several groups: ``groups`` maps a group label (one cluster
    of bars, e.g. a policy) to a dict ``{bar label: value}``; every group has the same bar labels."""
    import numpy as np

    fig = new_figure(fig, (9.6, 3.4))
    ax = fig.subplots()
    names = list(next(iter(groups.values())))
    x = np.arange(len(groups))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [max(float(g[name]), 1e-17) if logy else float(g[name]) for g in groups.values()]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=name, color=f"C{i}")
    ax.set_xticks(x, list(groups))
    if logy:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
