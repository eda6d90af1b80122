"""A run's dashboard: one panel per logged metric, one line per run (chapter 7)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .detectors import smooth
from .logs import RunLog


# ==================================================================================================
# the run dashboard


# the metrics of a run's dashboard, in order, with their panel titles
DASHBOARD = (
    ("proxy", "proxy reward (RM score)"), ("gold", "gold reward"), ("kl", "KL to the reference (k1)"),
    ("entropy", "entropy per token"), ("approx_kl", "approx. KL of the update"), ("clipfrac", "clip fraction"),
    ("value_loss", "value loss"), ("explained_variance", "explained variance"), ("errors", "slips per response"),
    ("fluency", "fluency (log p per token)"), ("length", "response length"), ("beta", "beta"),
    ("finished", "share of responses that end"),
    ("kl_k3", "KL to the reference (k3)"),
)
DEFAULT_DASHBOARD = ("proxy", "gold", "kl", "entropy", "approx_kl", "clipfrac", "value_loss", "explained_variance")


def plot_dashboard(runs: dict, keys: Sequence[str] | None = None, smooth_window: int = 1, ncols: int = 4,
                   fig=None, styles: dict | None = None, logy: Sequence[str] = (), hlines: dict | None = None):
    """One panel per metric, one line per run: ``runs`` maps a label to a :class:`RunLog` or a dict of
    columns. ``keys`` picks metrics (default: every dashboard metric some run has). ``styles`` maps a
    label to matplotlib keyword arguments (colour, line style); metrics in ``logy`` get a log scale;
    ``hlines`` maps a metric to a value drawn as a dashed line (a limit, a budget)."""
    import matplotlib.pyplot as plt

    from ..plotting.style import COLORS

    if not runs:
        raise ValueError("runs is empty: give at least one run to plot")
    cols = {lab: (r.columns if isinstance(r, RunLog) else r) for lab, r in runs.items()}
    titles = {k: title for k, title in DASHBOARD}
    if keys is None:
        keys = [k for k in DEFAULT_DASHBOARD if any(k in c for c in cols.values())]
    keys = list(keys)
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = fig or plt.figure(figsize=(2.5 * ncols + 0.5, 2.1 * nrows + (0.5 if len(cols) > 1 else 0.1)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    palette = [COLORS["policy"], COLORS["optimal"], COLORS["reward"], COLORS["proxy"], COLORS["kl"],
               COLORS["reference"]]
    for ax, key in zip(axes, keys):
        for i, (lab, c) in enumerate(cols.items()):
            if key not in c:
                continue
            y = np.asarray(c[key], dtype=float)
            x = np.asarray(c.get("step", np.arange(y.size)))
            style = {"color": palette[i % len(palette)], "lw": 1.2, **((styles or {}).get(lab, {}))}
            ax.plot(x, smooth(y, smooth_window) if smooth_window > 1 else y, label=lab, **style)
        if key in logy:
            ax.set_yscale("log")
        if hlines and key in hlines:
            ax.axhline(hlines[key], color="black", lw=0.8, ls="--")
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.tick_params(which="both", labelsize=7)
        ax.set_xlabel("PPO iteration", fontsize=7)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if len(cols) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(cols), 4), fontsize=8)
    return fig
