"""The book's figure style, in one place, so every chapter's figures look alike.

Call :func:`use_style` once at the top of a chapter; :data:`COLORS` names the roles colours play
across the book (the policy is always blue, the reference always grey, and so on).
Chapter-specific plotting functions may be added below the shared part.
"""
from __future__ import annotations

COLORS = {
    "policy": "#1f5fa8",     # pi, the policy being trained
    "reference": "#7f7f7f",  # pi_ref
    "optimal": "#c0392b",    # pi*, the closed-form optimum
    "reward": "#2a9d57",     # rewards, gold reward
    "proxy": "#e08e0b",      # proxy (learned) reward
    "kl": "#7b3fa0",         # KL and penalties
    "k1": "#1f5fa8", "k2": "#e08e0b", "k3": "#2a9d57",
}

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "figure.constrained_layout.use": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "font.size": 10,
}


def use_style() -> None:
    """Apply the book's matplotlib style (also makes figures render inline in a notebook)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)


def glue(name: str, value, display: bool = False):
    """Make ``value`` available to the book's text as ``{glue:}`name```; a no-op outside the book build.

    Numbers in the prose are computed by cells and glued in, never typed. Where myst-nb is not installed
    (Colab) the value is simply returned (and shown when ``display``).

    Numpy (and torch) scalars are glued as Python numbers: their repr under numpy 2, ``np.float64(0.5)``,
    is not a number to ``{glue:text}`name:.3f```, and the build would fail on it.
    """
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            from IPython.display import display as _show

            _show(value)
        return value
    _glue(name, value, display=display)
    return value


# --------------------------------------------------------------------------------------------------
# chapter 1: the penalty and the KL divergence


def _new_figure(fig, figsize):
    """A pyplot figure (shown inline in a notebook) unless one is given (e.g. a bare Figure for a widget)."""
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def plot_penalty_bars(pi, pi_ref, labels, fig=None):
    """Left: ``pi`` and ``pi_ref`` side by side on each outcome. Right: the per-sample penalty
    ``log pi(y) - log pi_ref(y)`` on each outcome (above zero where ``pi`` raised the probability, below
    where it lowered it), with ``KL(pi || pi_ref)``, the penalty's mean under ``pi``, as a line."""
    import numpy as np

    from .kl import kl_divergence, log_ratio

    pi, pi_ref = np.asarray(pi, dtype=float), np.asarray(pi_ref, dtype=float)
    fig = _new_figure(fig, (8.0, 3.0))
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
    fig = _new_figure(fig, (8.0, 3.0))
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

    fig = _new_figure(fig, (8.0, 2.8))
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

    fig = _new_figure(fig, (6.4, 3.4))
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
    fig = _new_figure(fig, (9.6, 3.0))
    _draw_explorer_row(fig.subplots(1, 3), state)
    return fig


def plot_penalty_explorer_grid(states: list, fig=None):
    """The explorer's picture for several settings, one row each: the static stand-in for the widget."""
    fig = _new_figure(fig, (9.6, 2.7 * len(states)))
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
    fig = _new_figure(fig, (9.6, 3.4))
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
    fig = _new_figure(fig, (9.6, 3.4))
    ax_c, ax_t = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    _draw_accumulation(ax_c, ax_t, curves, totals, current)
    return fig


def plot_sequence_estimators(samples: dict, kl: float, fig=None, bins: int = 60):
    """Histograms of two estimates of the sequence KL from single sampled responses: the sequence penalty
    (sum of sampled per-token log-ratios) and the sum of the exact next-token KLs along the response.
    ``samples`` maps a label to one value per response; the dashed line is the exact KL."""
    import numpy as np

    fig = _new_figure(fig, (8.0, 2.8))
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


# --------------------------------------------------------------------------------------------------
# the RLHF objective (book/03_objective): trust regions and runs of the penalized update


def plot_step_size(lams, step_kl, step_gain, fig=None):
    """One penalized update from a fixed policy, against its step penalty ``lambda`` (log-log): the step's
    size KL(pi_{k+1} || pi_k) and its gain E_{pi_{k+1}}[A_k] - E_{pi_k}[A_k], both falling as lambda grows."""
    fig = _new_figure(fig, (6.4, 3.4))
    ax = fig.subplots()
    ax.loglog(lams, step_kl, color=COLORS["kl"], label=r"step size KL$(\pi_{k+1} \| \pi_k)$")
    ax.loglog(lams, step_gain, color=COLORS["proxy"],
              label=r"gain $\mathbb{E}_{\pi_{k+1}}[A_k] - \mathbb{E}_{\pi_k}[A_k]$")
    ax.set_xlabel(r"penalty weight $\lambda$")
    ax.legend()
    return fig


def plot_step_penalty_runs(runs: dict, best: dict, fig=None):
    """Noisy runs of the penalized update, one per step penalty (``runs`` maps lambda to a run's log):
    proxy reward (left) and KL(pi_k || pi_ref) (right) per iteration, against the exact optimum ``best``."""
    fig = _new_figure(fig, (10, 3.4))
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    for (lam, log), shade in zip(runs.items(), (1.0, 0.6, 0.3)):
        ax1.plot(log["reward"], color=COLORS["policy"], alpha=shade, label=rf"$\lambda$ = {lam:g}")
        ax2.plot(log["kl"], color=COLORS["kl"], alpha=shade, label=rf"$\lambda$ = {lam:g}")
    for ax, key in ((ax1, "reward"), (ax2, "kl")):
        ax.axhline(best[key], color=COLORS["optimal"], ls="--", label=r"exact optimum $\pi^*_\beta$")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
    ax1.set_ylabel("proxy reward")
    ax2.set_ylabel(r"KL$(\pi_k \| \pi_{\mathrm{ref}})$")
    return fig


def plot_reference_runs(no_ref: dict, with_ref: dict, beta: float, lam: float, fig=None):
    """The same noisy run without a reference penalty (beta = 0) and with one: KL(pi_k || pi_ref) (left)
    and the gold reward (right) per iteration."""
    fig = _new_figure(fig, (10, 3.4))
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    for ax, key, color in ((ax1, "kl", COLORS["kl"]), (ax2, "gold", COLORS["reward"])):
        ax.plot(no_ref[key], color=color, label=r"no reference ($\beta = 0$)")
        ax.plot(with_ref[key], color=color, alpha=0.45, label=rf"reference penalty, $\beta$ = {beta:g}")
        ax.set_xlabel(rf"iteration (step penalty $\lambda$ = {lam:g})")
        ax.legend(fontsize=8)
    ax1.set_ylabel(r"KL$(\pi_k \| \pi_{\mathrm{ref}})$")
    ax2.set_ylabel("gold reward")
    return fig


# --------------------------------------------------------------------------------------------------
# chapter 4: the optimal policy


def _ch4_figure(fig, figsize):
    """A pyplot figure (inline in a notebook) unless a bare ``Figure`` is given (as the widgets do)."""
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _draw_policy_bars(ax, state: dict, labels, title: str | None = None, legend: bool = True) -> None:
    """``pi_ref`` (grey, wide) behind ``pi*`` (red, narrow) on each output; rewards under the labels."""
    import numpy as np

    x = np.arange(len(state["pi"]))
    ax.bar(x, state["pi_ref"], 0.8, color=COLORS["reference"], alpha=0.5, label=r"$\pi_{\mathrm{ref}}$")
    ax.bar(x, state["pi"], 0.42, color=COLORS["optimal"], label=r"$\pi^*$")
    ticks = [f"{lab} (r={r:g})" for lab, r in zip(labels, state["rewards"])]
    ax.set_xticks(x, ticks, fontsize=7, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("probability")
    if title is None:
        title = (rf"$\beta$ = {state['beta']:.3g}: E[r] = {state['expected_reward']:.2f}, "
                 f"KL = {state['kl']:.2f}")
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(loc="upper left")


def _draw_beta_curves(ax, sweep: dict, beta: float | None = None) -> None:
    """``E_pi*[r]``, ``E_pi*[rating]`` (when there is one) and ``KL(pi* || pi_ref)`` against ``beta``."""
    ax.semilogx(sweep["betas"], sweep["expected_reward"], color=COLORS["proxy"], lw=2,
                label=r"reward $\mathrm{E}_{\pi^*}[r]$")
    if sweep.get("expected_rating") is not None:
        ax.semilogx(sweep["betas"], sweep["expected_rating"], color=COLORS["reward"], lw=2,
                    label=r"rating $\mathrm{E}_{\pi^*}[g]$")
    ax.semilogx(sweep["betas"], sweep["kl"], color=COLORS["kl"], lw=2, ls="--",
                label=r"KL$(\pi^*\,\|\,\pi_{\mathrm{ref}})$")
    if beta is not None:
        ax.axvline(beta, color="black", lw=0.8)
    ax.set(xlabel=r"$\beta$ (log scale)", title=r"as $\beta$ varies")
    ax.legend(loc="upper right", fontsize=8)


def plot_optimal_policy_explorer(state: dict, labels, fig=None):
    """What :func:`rlhf_course.widgets.optimal_policy_explorer` shows for one ``beta`` (a
    :func:`rlhf_course.widgets.optimal_policy_state`): ``pi_ref`` and ``pi*`` on every output, and the
    expected reward, expected rating and KL of ``pi*`` along the whole range of ``beta``, this one marked."""
    fig = _ch4_figure(fig, (9.6, 3.4))
    ax_p, ax_c = fig.subplots(1, 2, width_ratios=[1.5, 1])
    _draw_policy_bars(ax_p, state, labels)
    _draw_beta_curves(ax_c, state["sweep"], state["beta"])
    return fig


def plot_optimal_policy_grid(states: list, labels, fig=None, ncols: int = 2):
    """``pi_ref`` and ``pi*`` for several values of ``beta``, one panel each: the static stand-in for the
    optimal-policy explorer."""
    import math

    nrows = math.ceil(len(states) / ncols)
    fig = _ch4_figure(fig, (9.6, 2.9 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for i, (ax, state) in enumerate(zip(axes, states)):
        _draw_policy_bars(ax, state, labels, legend=(i == 0))
    for ax in axes[len(states):]:
        ax.set_visible(False)
    return fig


def plot_beta_sweep(betas, policies, labels, degenerate, rewards, rating, kl, fig=None):
    """Left: where ``pi*`` puts its mass as ``beta`` falls (stacked, degenerate outputs in warm colours,
    hatched). Right: the expected proxy reward and rating of ``pi*``, its KL, and its mass on degenerate
    outputs, against ``beta``. ``policies`` is ``(len(betas), K)``; ``degenerate`` a boolean mask over outputs."""
    import matplotlib as mpl
    import numpy as np

    policies, degenerate = np.asarray(policies), np.asarray(degenerate, dtype=bool)
    fig = _ch4_figure(fig, (9.6, 3.6))
    ax_s, ax_c = fig.subplots(1, 2)
    blues = mpl.colormaps["Blues"](np.linspace(0.35, 0.9, int((~degenerate).sum())))
    oranges = mpl.colormaps["Oranges"](np.linspace(0.45, 0.9, int(degenerate.sum())))
    colors, ib, io = [], 0, 0
    for d in degenerate:
        colors.append(oranges[io] if d else blues[ib])
        io, ib = (io + 1, ib) if d else (io, ib + 1)
    layers = ax_s.stackplot(betas, policies.T, colors=colors, labels=labels, lw=0.3, edgecolor="white")
    for layer, d in zip(layers, degenerate):
        if d:
            layer.set_hatch("///")
    ax_s.set_xscale("log")
    ax_s.set(xlim=(min(betas), max(betas)), ylim=(0, 1), xlabel=r"$\beta$ (log scale)",
             ylabel=r"$\pi^*(y)$, stacked", title=r"where $\pi^*$ puts its mass")
    ax_s.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, handlelength=1.2, reverse=True)
    sweep = {"betas": betas, "expected_reward": policies @ np.asarray(rewards),
             "expected_rating": policies @ np.asarray(rating), "kl": np.asarray(kl)}
    _draw_beta_curves(ax_c, sweep)
    ax_c.semilogx(betas, policies[:, degenerate].sum(1) * 5, color=COLORS["optimal"], lw=1.2, ls=":",
                  label="5 x mass on degenerate outputs")
    ax_c.legend(loc="upper right", fontsize=7)
    ax_c.set_title("reward, rating, KL")
    return fig


def plot_ascent_convergence(histories: dict, fig=None):
    """The gap ``beta log Z - J(pi_t)`` along gradient ascent on the logits, one line per problem
    (``histories`` maps a label to the array of gaps), on a log scale: it falls towards zero, never below."""
    import numpy as np

    fig = _ch4_figure(fig, (6.4, 3.2))
    ax = fig.subplots()
    for label, gaps in histories.items():
        gaps = np.asarray(gaps)
        ax.semilogy(np.arange(1, len(gaps) + 1), np.maximum(gaps, 1e-16), lw=1.5, label=label)
    ax.set(xlabel="gradient step", ylabel=r"$\beta\log Z - J(\pi_t)$",
           title=r"gradient ascent on the logits closes the gap to $\beta \log Z$")
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------------
# chapter 5: from objective to algorithm


def _ch5_figure(fig, figsize):
    """A pyplot figure (inline in a notebook) unless a bare ``Figure`` is given (as the widgets do)."""
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


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

    fig = _ch5_figure(fig, (9.6, 4.0) if step_kl else (5.2, 4.4))
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
    fig = _ch5_figure(fig, (6.4, 3.4))
    _draw_surrogate(fig.subplots(), state)
    return fig


def plot_surrogate_grid(states: list, fig=None):
    """Several settings of the surrogate explorer side by side (the static stand-in for it)."""
    fig = _ch5_figure(fig, (4.8 * len(states), 3.4))
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

    fig = _ch5_figure(fig, (width * len(panels), height))
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

    fig = _ch5_figure(fig, (10.0, 4.0) if gaps else (7.2, 4.2))
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

    fig = _ch5_figure(fig, (9.6, 3.0))
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

    fig = _ch5_figure(fig, (9.6, 3.4))
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


# --------------------------------------------------------------------------------------------------
# chapter 8: direct preference optimization


def _ch8_figure(fig, figsize):
    """A pyplot figure (inline in a notebook) unless a bare ``Figure`` is given (as the widgets do)."""
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


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

    fig = _ch8_figure(fig, (9.6, 3.9))
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
    fig = _ch8_figure(fig, (9.6, 3.4 * len(states)))
    rows = fig.subfigures(len(states), 1)
    for row, state in zip(rows if len(states) > 1 else [rows], states):
        plot_dpo_landscape(state, labels, fig=row)
    return fig


def plot_data_convergence(ns, curves: dict, fig=None, guide: bool = True):
    """Total-variation distance to ``pi*_beta`` of DPO trained on ``n`` comparisons per prompt, on log-log
    axes, one line per setting (``curves`` maps a label to an array over ``ns``), with a ``1/sqrt(n)`` guide."""
    import numpy as np

    fig = _ch8_figure(fig, (6.4, 3.6))
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
    fig = _ch8_figure(fig, (5.2, 4.0))
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

    fig = _ch8_figure(fig, (9.6, 3.9))
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

    fig = _ch8_figure(fig, (9.6, 3.3))
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


# --------------------------------------------------------------------------------------------------
# chapter 6: PPO on the tiny language model

BETA_COLORS = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac", "#053061"]  # small beta warm, large beta cool


def _ch6_figure(fig, figsize):
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def plot_proxy_vs_gold(clouds: dict, fig=None):
    """Proxy (reward-model) score against gold reward, one scatter per set of responses (``clouds`` maps a
    label to ``(proxy, gold)`` arrays), each with its correlation in the legend."""
    import numpy as np

    fig = _ch6_figure(fig, (6.0, 3.8))
    ax = fig.subplots()
    colors = [COLORS["reference"], COLORS["optimal"], COLORS["policy"], COLORS["proxy"]]
    for (label, (proxy, gold)), color in zip(clouds.items(), colors):
        proxy, gold = np.asarray(proxy, float), np.asarray(gold, float)
        r = np.corrcoef(proxy, gold)[0, 1] if proxy.std() > 0 and gold.std() > 0 else float("nan")
        ax.scatter(gold, proxy, s=9, alpha=0.45, color=color, label=f"{label} (correlation {r:.2f})", lw=0)
    ax.set(xlabel="gold reward (the world)", ylabel="proxy reward (the reward model)")
    ax.legend(fontsize=8, markerscale=2)
    return fig


def plot_overoptimization(runs: dict, fit: dict | None = None, fig=None):
    """Reward against ``d = sqrt(KL)`` along training, one colour per run (``runs`` maps a label to ``(kl,
    proxy_gain, gold_gain)`` arrays, rewards measured from the reference's). Left: the gold reward, with the
    fitted ``d (a - b log d)`` of Gao et al. (2022) dashed (``fit`` from :func:`rlhf_course.ppo.gao_rl_fit`);
    right: the proxy reward. A dot marks each run's last iteration."""
    import numpy as np

    fig = _ch6_figure(fig, (10.0, 3.8))
    ax_g, ax_p = fig.subplots(1, 2, sharex=True)
    dmax = 0.0
    for (label, (kl, proxy, gold)), color in zip(runs.items(), BETA_COLORS):
        d = np.sqrt(np.clip(np.asarray(kl, float), 0, None))
        dmax = max(dmax, float(d.max()))
        for ax, y in ((ax_g, gold), (ax_p, proxy)):
            ax.plot(d, y, color=color, lw=1.0, alpha=0.8, label=label)
            ax.plot(d[-1], np.asarray(y)[-1], "o", color=color, ms=5)
    if fit is not None:
        from .ppo import gao_rl_curve

        dd = np.linspace(0, dmax, 200)
        ax_g.plot(dd, gao_rl_curve(dd, fit["a"], fit["b"]), "k--", lw=1.3,
                  label=rf"fit $d\,({fit['a']:.2f} - {fit['b']:.2f} \log d)$")
    for ax, what in ((ax_g, "gold"), (ax_p, "proxy")):
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xlabel=r"$d = \sqrt{\mathrm{KL}(\pi \,\|\, \pi_{\mathrm{ref}})}$",
               ylabel=f"{what} reward minus the reference's")
        ax.legend(fontsize=7.5)
    ax_g.set_title("gold reward: rises, then falls")
    ax_p.set_title("proxy reward: keeps rising")
    return fig


# --------------------------------------------------------------------------------------------------
# chapter 7: reading a run


def plot_rewards_vs_sqrt_kl(runs: dict, window: int = 5, fig=None):
    """Proxy and gold reward against ``sqrt(KL)`` to the reference, one line per run (Gao et al. 2022).

    ``runs`` maps a label to a run with ``"kl"``, ``"proxy"`` and ``"gold"`` series (a
    :class:`rlhf_course.diagnose.RunLog` or a dict of arrays); each series is smoothed by a running mean
    over ``window`` iterations first, and a negative smoothed KL (a k1 estimate can be) is drawn at 0.
    """
    import numpy as np

    from .diagnose import smooth

    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict of label -> run")
    fig = _ch6_figure(fig, (9.0, 3.3))
    axes = fig.subplots(1, 2, sharex=True)
    colors = [COLORS["optimal"], COLORS["proxy"], COLORS["kl"], COLORS["policy"], COLORS["reference"]]
    for (name, r), color in zip(runs.items(), colors * (len(runs) // len(colors) + 1)):
        x = np.sqrt(np.maximum(smooth(r["kl"], window), 0))
        axes[0].plot(x, smooth(r["proxy"], window), color=color, lw=1.2, label=name)
        axes[1].plot(x, smooth(r["gold"], window), color=color, lw=1.2, label=name)
    xlabel = r"$\sqrt{\mathrm{KL}}$ (nats$^{1/2}$)"
    axes[0].set(xlabel=xlabel, ylabel="proxy reward", title="what the policy is trained on")
    axes[1].set(xlabel=xlabel, ylabel="gold reward", title="what was wanted")
    axes[1].legend(fontsize=7)
    return fig


def plot_agreement_bars(agree: dict, fig=None):
    """Horizontal bars: for each label, the share of pairs a reward model orders like the gold reward,
    with chance (0.5) dashed."""
    if not isinstance(agree, dict) or not agree:
        raise ValueError("agree must be a non-empty dict of label -> share in [0, 1]")
    fig = _ch6_figure(fig, (5.6, 2.4))
    ax = fig.subplots()
    colors = [COLORS["proxy"], COLORS["optimal"], COLORS["reward"], COLORS["policy"]]
    ax.barh(list(agree), [float(v) for v in agree.values()], color=colors[:len(agree)])
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), xlabel="share of pairs of reference responses ordered like the gold reward",
           title="the reward model's agreement with the gold reward")
    return fig
