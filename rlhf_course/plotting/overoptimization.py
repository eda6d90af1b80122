"""Figures of PPO runs on the tiny language model (chapter 6) and of reading them (chapter 7): the proxy against
the gold reward, and both against ``d = sqrt(KL)`` (Gao et al. 2022)."""
from __future__ import annotations

from .style import BETA_COLORS, COLORS, new_figure


# --------------------------------------------------------------------------------------------------
# chapter 6: PPO on the tiny language model


def plot_proxy_vs_gold(clouds: dict, fig=None):
    """Proxy (reward-model) score against gold reward, one scatter per set of responses (``clouds`` maps a
    label to ``(proxy, gold)`` arrays), each with its correlation in the legend."""
    import numpy as np

    fig = new_figure(fig, (6.0, 3.8))
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
    fitted ``d (a - b log d)`` of Gao et al. (2022) dashed (``fit`` from :func:`rlhf_course.scaling_laws.gao_rl_fit`);
    right: the proxy reward. A dot marks each run's last iteration."""
    import numpy as np

    fig = new_figure(fig, (10.0, 3.8))
    ax_g, ax_p = fig.subplots(1, 2, sharex=True)
    dmax = 0.0
    for (label, (kl, proxy, gold)), color in zip(runs.items(), BETA_COLORS):
        d = np.sqrt(np.clip(np.asarray(kl, float), 0, None))
        dmax = max(dmax, float(d.max()))
        for ax, y in ((ax_g, gold), (ax_p, proxy)):
            ax.plot(d, y, color=color, lw=1.0, alpha=0.8, label=label)
            ax.plot(d[-1], np.asarray(y)[-1], "o", color=color, ms=5)
    if fit is not None:
        from ..scaling_laws import gao_rl_curve

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

    from ..diagnose import smooth

    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict of label -> run")
    fig = new_figure(fig, (9.0, 3.3))
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
    fig = new_figure(fig, (5.6, 2.4))
    ax = fig.subplots()
    colors = [COLORS["proxy"], COLORS["optimal"], COLORS["reward"], COLORS["policy"]]
    ax.barh(list(agree), [float(v) for v in agree.values()], color=colors[:len(agree)])
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), xlabel="share of pairs of reference responses ordered like the gold reward",
           title="the reward model's agreement with the gold reward")
    return fig
