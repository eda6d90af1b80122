"""Figures of the critic-free chapter (RLOO, GRPO, best-of-n; chapter 9)."""
from __future__ import annotations

from .style import BETA_COLORS, COLORS, new_figure

__all__ = ["plot_fixed_points", "plot_best_of_n_toy", "plot_gold_vs_sqrt_kl", "plot_points", "plot_lm_paths"]


def plot_fixed_points(dists: dict, labels, prompts, fig=None):
    """One panel per prompt: grouped bars of several policies over the outputs. ``dists`` maps a name to a
    ``(P, K)`` array; the first is drawn grey (the reference), the second red (the optimum)."""
    import numpy as np

    P = len(prompts)
    fig = new_figure(fig, (3.4 * P, 3.2))
    axes = fig.subplots(1, P, sharey=True, squeeze=False)[0]
    names = list(dists)
    width = 0.8 / len(names)
    colors = [COLORS["reference"], COLORS["optimal"]] + [f"C{i}" for i in range(len(names))]
    for x, ax in enumerate(axes):
        pos = np.arange(len(labels[x]))
        for i, name in enumerate(names):
            ax.bar(pos - 0.4 + width * (i + 0.5), np.asarray(dists[name])[x], width, label=name, color=colors[i])
        ax.set_xticks(pos, labels[x], fontsize=8)
        ax.set_title(prompts[x], fontsize=9)
    axes[0].set_ylabel("probability")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_best_of_n_toy(table: dict, front: dict, fig=None):
    """Left: expected reward against KL for best-of-n (dots, ``table`` from
    :func:`rlhf_course.critic_free_toy.best_of_n_table`) on the frontier of ``pi*_beta`` (``front`` from
    :func:`rlhf_course.toy.frontier`). Right: best-of-n's KL against ``n`` beside the bound
    ``log n - (n - 1)/n``."""
    import numpy as np

    fig = new_figure(fig, (10.0, 3.6))
    ax, ax_b = fig.subplots(1, 2)
    ax.plot(front["kl"], front["reward"], color=COLORS["optimal"], lw=2, label=r"$\pi^*_\beta$ (the frontier)")
    ax.plot(table["kl"], table["reward"], "o", color=COLORS["policy"], ms=5, label="best-of-n, n = 1, 2, ...")
    for n, k, r in zip(table["n"], table["kl"], table["reward"]):
        if n in (1, 2, 4, 8):
            ax.annotate(f"n={n}", (k, r), textcoords="offset points", xytext=(5, -11), fontsize=8)
    ax.set(xlabel=r"KL$(\pi\,\|\,\pi_{\mathrm{ref}})$", ylabel=r"E$_\pi[r]$", title="reward at a given KL")
    ax.legend(fontsize=8, loc="lower right")
    n = np.asarray(table["n"])
    ax_b.plot(n, table["bound"], "k--", lw=1.2, label=r"bound $\log n - (n-1)/n$")
    ax_b.plot(n, table["kl"], "o-", color=COLORS["policy"], ms=4, label="best-of-n, exact")
    ax_b.set_xscale("log", base=2)
    ax_b.set(xlabel="n", ylabel="KL (nats)", title="the KL of best-of-n")
    ax_b.legend(fontsize=8)
    return fig


def plot_gold_vs_sqrt_kl(bon: dict, bon_fit: dict | None, runs: dict, rl_fit: dict | None, fig=None,
                        styles: dict | None = None, xmax: float | None = None):
    """Gold (left) and proxy (right) reward gains against ``d = sqrt(KL)``: best-of-n as dots
    (``bon = {"kl", "gold", "proxy"}`` arrays, one per ``n``) with Gao et al.'s ``d (a - b d)`` fitted
    (``bon_fit = {"a", "b"}``), and RL runs as lines (``runs`` maps a label to ``(kl, gold, proxy)`` arrays)
    with ``d (a - b log d)`` (``rl_fit``). Rewards are measured from the reference's. ``styles`` maps a run's
    label to line options; ``xmax`` cuts the ``d`` axis (the fits are drawn up to it)."""
    import numpy as np

    fig = new_figure(fig, (10.0, 3.8))
    ax_g, ax_p = fig.subplots(1, 2, sharex=True)
    dmax = float(np.sqrt(np.max(bon["kl"])))
    colors = BETA_COLORS + [f"C{i}" for i in range(9)]
    for (label, (kl, gold, proxy)), color in zip(runs.items(), colors):
        d = np.sqrt(np.clip(np.asarray(kl, float), 0, None))
        keep = np.cumprod(d <= (xmax if xmax is not None else np.inf)).astype(bool)
        dmax = max(dmax, float(d.max()))
        st = {"lw": 1.0, "color": color, "alpha": 0.8, **(styles or {}).get(label, {})}
        ax_g.plot(d[keep], np.asarray(gold)[keep], label=label, **st)
        ax_p.plot(d[keep], np.asarray(proxy)[keep], label=label, **st)
    if xmax is not None:
        dmax = xmax
        ax_g.set_xlim(0, xmax)
    d_bon = np.sqrt(np.asarray(bon["kl"], float))
    ax_g.plot(d_bon, bon["gold"], "o", color="black", ms=4, label="best-of-n")
    ax_p.plot(d_bon, bon["proxy"], "o", color="black", ms=4, label="best-of-n")
    dd = np.linspace(0, dmax, 200)
    if bon_fit is not None:
        ax_g.plot(dd, dd * (bon_fit["a"] - bon_fit["b"] * dd), "k--", lw=1.2,
                  label=rf"best-of-n fit $d\,({bon_fit['a']:.2f} - {bon_fit['b']:.2f}\,d)$")
    if rl_fit is not None:
        from ..scaling_laws import gao_rl_curve

        ax_g.plot(dd, gao_rl_curve(dd, rl_fit["a"], rl_fit["b"]), ":", color=COLORS["optimal"], lw=1.6,
                  label=rf"RL fit $d\,({rl_fit['a']:.2f} - {rl_fit['b']:.2f} \log d)$")
    for ax, what in ((ax_g, "gold"), (ax_p, "proxy")):
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xlabel=r"$d = \sqrt{\mathrm{KL}(\pi \,\|\, \pi_{\mathrm{ref}})}$",
               ylabel=f"{what} reward minus the reference's", title=f"{what} reward")
        ax.legend(fontsize=7)
    return fig


def plot_points(panels: list, fig=None, width: float = 4.6, height: float = 3.3):
    """Side-by-side panels of marked lines against a common x (``panels`` as
    :func:`rlhf_course.plotting.plot_curves`'s, every curve a ``(x, y)`` pair; optional ``logx`` and
    ``xticks``)."""
    import numpy as np

    fig = new_figure(fig, (width * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        styles = panel.get("styles", {})
        for label, (x, y) in panel["curves"].items():
            ax.plot(x, np.asarray(y, float), marker="o", ms=4, lw=1.3, label=label, **styles.get(label, {}))
        for label, v in panel.get("hlines", {}).items():
            ax.axhline(v, color="black", ls="--", lw=0.9, label=label)
        if panel.get("logy"):
            ax.set_yscale("log")
        if panel.get("logx"):
            ax.set_xscale("log", base=2)
        if "xticks" in panel:
            ax.set_xticks(panel["xticks"], [str(t) for t in panel["xticks"]])
        ax.set(xlabel=panel.get("xlabel", ""), ylabel=panel.get("ylabel", ""), title=panel.get("title", ""))
        ax.legend(fontsize=7.5)
    return fig


def plot_lm_paths(runs: dict, styles: dict | None = None, window: int = 10, fig=None,
                  xmax: float | None = None):
    """Three panels for language-model runs (label -> a RunLog or dict of ``kl``, ``gold``, ``proxy``
    series, smoothed over ``window`` iterations): gold and proxy reward against ``sqrt(KL)`` (up to
    ``xmax``), and the KL over iterations. ``styles`` maps a label to matplotlib line options."""
    import numpy as np

    from ..diagnose import smooth

    fig = new_figure(fig, (12.0, 3.6))
    ax_g, ax_p, ax_k = fig.subplots(1, 3)
    styles = styles or {}
    for label, r in runs.items():
        kl = smooth(r["kl"], window)
        d = np.sqrt(np.clip(kl, 0, None))
        keep = d <= (xmax if xmax is not None else np.inf)  # a path is drawn until it first leaves
        keep = np.cumprod(keep).astype(bool)
        st = {"lw": 1.3, **styles.get(label, {})}
        ax_g.plot(d[keep], smooth(r["gold"], window)[keep], label=label, **st)
        ax_p.plot(d[keep], smooth(r["proxy"], window)[keep], label=label, **st)
        ax_k.plot(kl, label=label, **st)
    xlabel = r"$\sqrt{\mathrm{KL}(\pi \,\|\, \pi_{\mathrm{ref}})}$"
    ax_g.set(xlabel=xlabel, ylabel="gold reward", title="what was wanted")
    ax_p.set(xlabel=xlabel, ylabel="proxy reward", title="what the policy is trained on")
    ax_k.set(xlabel="iteration", ylabel="nats (k1)", title="KL per response", yscale="symlog")
    if xmax is not None:
        for ax in (ax_g, ax_p):
            ax.set_xlim(0, xmax)
    ax_k.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
