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
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            from IPython.display import display as _show

            _show(value)
        return value
    _glue(name, value, display=display)
    return value
