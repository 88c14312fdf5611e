"""Sliders for the lessons: thin ipywidgets wrappers over plain functions.

For every widget factory ``X_widget(...)`` there is a plain function that computes what the
widget shows (tested directly, usable without a notebook), and :mod:`regedu.viz` draws it:

* :func:`transform_explorer` / :func:`transform_explorer_widget`: translation, rotation,
  scale and a smooth random deformation, built from :mod:`regedu.warps`;
* :func:`similarity_landscape` / :func:`similarity_landscape_widget`: a similarity loss at
  every integer shift of the moving image (:mod:`regedu.losses`);
* :func:`regularisation_result` / :func:`regularisation_widget`: precomputed results over a
  range of regulariser weights, with their field statistics (:mod:`regedu.metrics`);
* :func:`integration_steps` / :func:`integration_steps_widget`: scaling and squaring with
  more or fewer steps, and how much the field folds;
* :func:`slice_viewer` / :func:`slice_viewer_widget`: a three-plane viewer of a 3D volume;
* :func:`multiscale_result` / :func:`multiscale_widget`: a disk pushed further and further,
  registered with 1 to 4 pyramid levels (and by networks): where single scale breaks.
* :func:`field_scores` / :func:`network_scores`, :func:`field_comparison` /
  :func:`field_comparison_widget`: learned (or any) fields on synthetic pairs with a known true
  field, their Dice, end-point error and folding, side by side on one colour scale per column.

A factory returns the widget without displaying it: make it the last line of a cell (or call
``display(widget)``). Sliders update when released, not while dragged. ``ipywidgets`` is imported
only when a widget is built; without it, building one raises an ``ImportError`` that says how to
install it, and the plain functions still work.

The widgets live in modules: :mod:`~regedu.widgets.explorers` (transform, similarity landscape,
regularisation, scaling and squaring, slice viewer), :mod:`~regedu.widgets.multiscale` and
:mod:`~regedu.widgets.comparison`; :mod:`~regedu.widgets.controls` is the ipywidgets boundary.
"""

from .comparison import field_comparison, field_comparison_widget, field_scores, network_scores
from .explorers import (
    SIMILARITIES,
    integration_steps,
    integration_steps_widget,
    regularisation_result,
    regularisation_widget,
    similarity_landscape,
    similarity_landscape_widget,
    slice_viewer,
    slice_viewer_widget,
    transform_explorer,
    transform_explorer_widget,
)
from .multiscale import multiscale_result, multiscale_widget

__all__ = [
    "SIMILARITIES",
    "transform_explorer",
    "transform_explorer_widget",
    "similarity_landscape",
    "similarity_landscape_widget",
    "regularisation_result",
    "regularisation_widget",
    "integration_steps",
    "integration_steps_widget",
    "slice_viewer",
    "slice_viewer_widget",
    "multiscale_result",
    "multiscale_widget",
    "field_scores",
    "network_scores",
    "field_comparison",
    "field_comparison_widget",
]
