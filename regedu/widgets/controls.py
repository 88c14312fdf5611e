"""The ipywidgets boundary of :mod:`regedu.widgets`: the one place that imports ipywidgets.

Every widget factory builds its sliders with :func:`make_slider` and wraps its drawing function with
:func:`interactive_figure`; :func:`require_ipywidgets` says how to install ipywidgets when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable

from ..checks import check_image, check_tensor

__all__ = ["require_ipywidgets", "interactive_figure", "make_slider", "check_2d"]


def require_ipywidgets():
    """The ipywidgets module, or an ImportError that says how to get it."""
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "regedu's interactive widgets need ipywidgets, which is not installed: "
            "pip install ipywidgets (then restart the kernel). The plain functions of "
            "regedu.widgets (e.g. transform_explorer) work without it."
        ) from error
    return ipywidgets


def _display(fig) -> None:
    from IPython.display import display

    display(fig)


def interactive_figure(show: Callable, **controls):
    """An ``ipywidgets.interactive`` that draws ``show(**values)`` and displays the figure.

    The widget's ``.result`` is the last figure drawn.
    """
    widgets = require_ipywidgets()

    def update(**values):
        fig = show(**values)
        _display(fig)
        return fig

    return widgets.interactive(update, **controls)


def make_slider(kind: str, description: str, low, high, step, value):
    """A slider of ``ipywidgets.<kind>`` that updates on release, with a readable description."""
    widgets = require_ipywidgets()
    return getattr(widgets, kind)(min=low, max=high, step=step, value=value, description=description,
                                  continuous_update=False, style={"description_width": "initial"},
                                  layout=widgets.Layout(width="420px"))


def check_2d(image, name: str, what: str) -> None:
    """Raise unless ``image`` is a 2D batch ``(B, C, H, W)``, saying how to get a slice from a volume."""
    check_tensor(image, name)
    if image.dim() == 5:
        raise ValueError(
            f"{what} works on 2D images (B, C, H, W), but `{name}` is a 3D volume of shape "
            f"{tuple(image.shape)}. Pass a slice: `{name}[..., z]`, or regedu.data.brain_slice().image."
        )
    check_image(image, name, ndim=2)
