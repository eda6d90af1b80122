"""Figures of the RLHF objective: trust regions and runs of the penalized update (chapter 3), the optimal
policy ``pi* = pi_ref exp(r / beta) / Z`` and how it moves with ``beta`` (chapter 4)."""
from __future__ import annotations

from .style import COLORS, new_figure


# --------------------------------------------------------------------------------------------------
# the RLHF objective (book/03_objective): trust regions and runs of the penalized update


def plot_step_size(step_penalties, step_kl, step_gain, fig=None):
    """One penalized update from a fixed policy, against its step penalty ``lambda`` (log-log): the step's
    size KL(pi_{k+1} || pi_k) and its gain E_{pi_{k+1}}[A_k] - E_{pi_k}[A_k], both falling as lambda grows."""
    fig = new_figure(fig, (6.4, 3.4))
    ax = fig.subplots()
    ax.loglog(step_penalties, step_kl, color=COLORS["kl"], label=r"step size KL$(\pi_{k+1} \| \pi_k)$")
    ax.loglog(step_penalties, step_gain, color=COLORS["proxy"],
              label=r"gain $\mathbb{E}_{\pi_{k+1}}[A_k] - \mathbb{E}_{\pi_k}[A_k]$")
    ax.set_xlabel(r"penalty weight $\lambda$")
    ax.legend()
    return fig


def plot_step_penalty_runs(runs: dict, best: dict, fig=None):
    """Noisy runs of the penalized update, one per step penalty (``runs`` maps lambda to a run's log):
    proxy reward (left) and KL(pi_k || pi_ref) (right) per iteration, against the exact optimum ``best``."""
    fig = new_figure(fig, (10, 3.4))
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    for (penalty, log), shade in zip(runs.items(), (1.0, 0.6, 0.3)):
        ax1.plot(log["reward"], color=COLORS["policy"], alpha=shade, label=rf"$\lambda$ = {penalty:g}")
        ax2.plot(log["kl"], color=COLORS["kl"], alpha=shade, label=rf"$\lambda$ = {penalty:g}")
    for ax, key in ((ax1, "reward"), (ax2, "kl")):
        ax.axhline(best[key], color=COLORS["optimal"], ls="--", label=r"exact optimum $\pi^*_\beta$")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
    ax1.set_ylabel("proxy reward")
    ax2.set_ylabel(r"KL$(\pi_k \| \pi_{\mathrm{ref}})$")
    return fig


def plot_reference_runs(no_ref: dict, with_ref: dict, beta: float, step_penalty: float, fig=None):
    """The same noisy run without a reference penalty (beta = 0) and with one: KL(pi_k || pi_ref) (left)
    and the gold reward (right) per iteration."""
    fig = new_figure(fig, (10, 3.4))
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    for ax, key, color in ((ax1, "kl", COLORS["kl"]), (ax2, "gold", COLORS["reward"])):
        ax.plot(no_ref[key], color=color, label=r"no reference ($\beta = 0$)")
        ax.plot(with_ref[key], color=color, alpha=0.45, label=rf"reference penalty, $\beta$ = {beta:g}")
        ax.set_xlabel(rf"iteration (step penalty $\lambda$ = {step_penalty:g})")
        ax.legend(fontsize=8)
    ax1.set_ylabel(r"KL$(\pi_k \| \pi_{\mathrm{ref}})$")
    ax2.set_ylabel("gold reward")
    return fig


# --------------------------------------------------------------------------------------------------
# chapter 4: the optimal policy


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
    fig = new_figure(fig, (9.6, 3.4))
    ax_p, ax_c = fig.subplots(1, 2, width_ratios=[1.5, 1])
    _draw_policy_bars(ax_p, state, labels)
    _draw_beta_curves(ax_c, state["sweep"], state["beta"])
    return fig


def plot_optimal_policy_grid(states: list, labels, fig=None, ncols: int = 2):
    """``pi_ref`` and ``pi*`` for several values of ``beta``, one panel each: the static stand-in for the
    optimal-policy explorer."""
    import math

    nrows = math.ceil(len(states) / ncols)
    fig = new_figure(fig, (9.6, 2.9 * nrows))
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
    fig = new_figure(fig, (9.6, 3.6))
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

    fig = new_figure(fig, (6.4, 3.2))
    ax = fig.subplots()
    for label, gaps in histories.items():
        gaps = np.asarray(gaps)
        ax.semilogy(np.arange(1, len(gaps) + 1), np.maximum(gaps, 1e-16), lw=1.5, label=label)
    ax.set(xlabel="gradient step", ylabel=r"$\beta\log Z - J(\pi_t)$",
           title=r"gradient ascent on the logits closes the gap to $\beta \log Z$")
    ax.legend(fontsize=8)
    return fig
