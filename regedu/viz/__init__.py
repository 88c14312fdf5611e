"""Figures for registration lessons: slices, overlays, grids, fields, Jacobians and loss curves.

Every function draws with matplotlib and **returns the Figure**; none calls ``plt.show()``, and
all work headless (the Agg backend). Functions that draw one panel take ``ax=`` to draw into an
axes you made (they then return ``ax.figure``). Figures made here are detached from pyplot
(``plt.close(fig)`` right after creation), so a notebook shows each one exactly once: when the
cell returns it or calls ``display(fig)``. In a script, save it with ``fig.savefig("name.png")``.

Inputs are tensors (or numpy arrays) on any device and of any dtype:

* images and label maps: ``(B, C, *spatial)`` or just ``(*spatial)``; the first batch item and
  the first channel are shown;
* displacement fields: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)``, in voxels, channel ``k``
  along spatial axis ``k`` (DESIGN.md).

3D inputs show one slice: the slice ``index`` across spatial ``axis`` (default: the middle slice
across the last axis, which for a brain in RAS order ``(x, y, z)`` is the axial slice
``vol[:, :, z]``). A field on a slice shows its two in-plane components; the component across
the slice is not drawn.

How a slice sits on the screen is set by ``orientation``:

* ``False`` (default): as a matrix, like ``plt.imshow(array)``: axis 0 runs down the rows (its
  index grows downwards), axis 1 along the columns (left to right). Channel 0 of a field moves
  along the rows, i.e. along matplotlib's (inverted) y axis. Right for toy images.
* ``True`` or ``"radiological"``: the tensor is a brain in RAS order (``x`` = left -> right,
  ``y`` = posterior -> anterior, ``z`` = inferior -> superior), shown as a radiologist reads
  it: the patient's right on the image's left (axial and coronal), anterior at the top (axial),
  superior at the top (coronal and sagittal), anterior on the left (sagittal). Small letters
  R/L, A/P, S/I mark the sides. A 2D image is taken to be the slice across ``axis`` (default
  the last: an axial slice ``(x, y)``, as :func:`regedu.data.brain_slice` gives).
* ``"neurological"``: the same, but the patient's left on the image's left.

In every layout, the plot's data coordinates are voxel indices of the tensor, so grid lines and
arrows drawn at ``x + disp(x)`` land on the image where the warp samples it.

The figures live in modules by kind: :mod:`~regedu.viz.images` (slices, labels, checkerboards,
differences, three planes), :mod:`~regedu.viz.fields` (grids, direction colours, arrows, Jacobians),
:mod:`~regedu.viz.plots` (loss curves, live or not, Dice per label, landscapes, joint histograms) and
:mod:`~regedu.viz.summaries` (the registration summary). What they share: :mod:`~regedu.viz.layout`
(the radiological layout above) and :mod:`~regedu.viz.common` (inputs and new panels). Import the
figures from here: ``from regedu import viz; viz.show_image(...)``.
"""

# public too, but not in __all__ (as before): PANEL_INCHES, FOLD_COLOUR, GRID_COLOUR, checkerboard_image
from .common import PANEL_INCHES as PANEL_INCHES
from .common import new_figure
from .fields import FOLD_COLOUR as FOLD_COLOUR
from .fields import GRID_COLOUR as GRID_COLOUR
from .fields import deformation_grid, displacement_arrows, displacement_colour, jacobian_map, jacobian_range
from .images import checkerboard, difference, overlay, show_image, show_slices, three_plane
from .images import checkerboard_image as checkerboard_image
from .plots import LiveLossPlot, dice_per_label, joint_histogram, landscape, loss_curve
from .summaries import registration_summary

__all__ = [
    "new_figure",
    "show_image",
    "show_slices",
    "overlay",
    "checkerboard",
    "difference",
    "deformation_grid",
    "displacement_colour",
    "displacement_arrows",
    "jacobian_map",
    "jacobian_range",
    "loss_curve",
    "dice_per_label",
    "landscape",
    "joint_histogram",
    "registration_summary",
    "three_plane",
    "LiveLossPlot",
]
