"""The book's figure style and the glue every figure module shares.

Call :func:`use_style` once at the top of a chapter; :data:`COLORS` names the roles colours play
across the book (the policy is always blue, the reference always grey, and so on). :func:`new_figure`
is how every plotting function gets its figure, and :func:`figure_png` the one way a figure becomes the
PNG an explorer widget shows.
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

BETA_COLORS = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac", "#053061"]  # small beta warm, large beta cool

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


def new_figure(fig, figsize):
    """A pyplot figure (shown inline in a notebook) unless one is given (e.g. a bare Figure for a widget)."""
    if fig is not None:
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def figure_png(plot, *args, figsize, **kwargs) -> bytes:
    """``plot(*args, fig=Figure(figsize), **kwargs)`` rendered to PNG bytes, in the book's :data:`STYLE`.

    The explorers show their picture as an ``ipywidgets.Image``, redrawn on every slider change. A bare
    ``Figure`` (not pyplot's) so that nothing is also shown inline or kept open; the style is applied here
    so a widget looks like the static figure after it whether or not :func:`use_style` was called.
    """
    import io

    import matplotlib as mpl
    from matplotlib.figure import Figure

    with mpl.rc_context(STYLE):
        fig = Figure(figsize=figsize)
        plot(*args, fig=fig, **kwargs)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
