"""Matplotlib figures without pyplot, displayed inline by Jupyter.

Figures are built on :class:`matplotlib.figure.Figure` directly so that no global pyplot state accumulates across
a notebook (no leaked figures, no double display when a cell ends with ``fig``). Jupyter only knows how to show
such a figure once a PNG formatter is registered for it, which the inline backend does only after pyplot is
imported; :func:`new_figure` registers it on first use when an IPython shell is running.
"""

from __future__ import annotations

from matplotlib.figure import Figure

_FORMATTER_READY = False


def _register_ipython_formatter() -> None:
    global _FORMATTER_READY
    if _FORMATTER_READY:
        return
    _FORMATTER_READY = True
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        select_figure_formats(shell, {"png"}, bbox_inches="tight")


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A pyplot-free figure of ``width`` x ``height`` inches that renders inline in Jupyter."""
    _register_ipython_formatter()
    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")
