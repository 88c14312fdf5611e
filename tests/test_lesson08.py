"""Lesson 08's package code: the T2-like contrast made from tissue labels, and the joint histogram figure.

The contrast must be what the lesson says it is: made from the labels (not a remap of T1 grey levels),
with a tissue T1 cannot separate, partial volume at boundaries and its own noise, so that the joint
histogram of T1 and T2-like intensities is not a function of T1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regedu import data, viz


@pytest.fixture(scope="module")
def brain():
    return data.brain_slice()


def _correlation_ratio(t1: torch.Tensor, other: torch.Tensor, inside: torch.Tensor, bins: int = 32) -> float:
    """Share of ``other``'s variance (inside the mask) that T1's grey level explains: 1 when ``other``
    is a function of T1 (up to the bin width), lower when one T1 grey level goes with several values."""
    t1, other = t1[inside].double(), other[inside].double()
    which = (t1.clamp(0, 1) * (bins - 1)).round().long()
    within = sum(((other[which == b] - other[which == b].mean()) ** 2).sum() for b in which.unique())
    return float(1 - within / ((other - other.mean()) ** 2).sum())


def _clean(labels, **options):
    """The T2-like image without scanner effects or blur: each voxel exactly its tissue's grey level."""
    return data.t2_like(labels, partial_volume=0.0, gamma=0.0, bias=0.0, noise=0.0, **options)


def test_t2_like_shape_range_dtype_and_device(brain):
    image = data.t2_like(brain.labels, seed=0)
    assert image.shape == brain.labels.shape and image.dtype == torch.float32
    assert image.device == brain.labels.device
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert data.t2_like(brain.labels, seed=0, dtype=torch.float64).dtype == torch.float64


def test_t2_like_is_seeded(brain):
    first, again = data.t2_like(brain.labels, seed=3), data.t2_like(brain.labels, seed=3)
    assert torch.equal(first, again)
    assert not torch.equal(first, data.t2_like(brain.labels, seed=4))


def test_t2_like_reverses_the_tissue_order_of_t1(brain):
    t2 = data.t2_like(brain.labels, seed=0)
    means = {name: [float(image[brain.labels == value].mean()) for value in (1, 2, 3)]
             for name, image in (("t1", brain.image), ("t2", t2))}
    assert means["t1"][0] < means["t1"][1] < means["t1"][2]  # T1: CSF < grey < white matter
    assert means["t2"][0] > means["t2"][1] > means["t2"][2]  # T2-like: the reverse


def test_two_tissues_equal_in_t1_differ_in_t2(brain):
    t2 = _clean(brain.labels, lesions=0.12, lesion_intensity=0.75, seed=0)
    white = brain.labels == 3
    patches = white & (t2 == 0.75)
    rest = white & (t2 == data.T2_INTENSITIES[3])
    assert torch.equal(patches | rest, white)
    assert abs(patches.sum() / white.sum() - 0.12) < 0.01  # the share asked for
    t1_gap = abs(float(brain.image[patches].mean() - brain.image[rest].mean()))
    t2_gap = abs(float(t2[patches].mean() - t2[rest].mean()))
    assert t1_gap < 0.03 < 0.4 < t2_gap


def test_no_lesions_gives_the_tissue_intensities_exactly(brain):
    t2 = _clean(brain.labels, lesions=0.0, seed=0)
    expected = torch.tensor(data.T2_INTENSITIES)[brain.labels]
    assert torch.equal(t2, expected)


def test_partial_volume_mixes_intensities_at_boundaries_only(brain):
    hard = _clean(brain.labels, lesions=0.0, seed=0)
    soft = data.t2_like(brain.labels, lesions=0.0, partial_volume=1.0, gamma=0.0, bias=0.0, noise=0.0, seed=0)
    levels = torch.tensor(data.T2_INTENSITIES)
    off_level = (soft[..., None] - levels).abs().amin(dim=-1) > 0.05
    pool = torch.nn.functional.max_pool2d
    interior = pool(hard, 9, 1, 4) == -pool(-hard, 9, 1, 4)  # one grey level within 4 voxels
    assert off_level.float().mean() > 0.05  # boundary voxels show mixtures, not one tissue's level
    assert not (off_level & interior).any()  # far from any boundary a voxel keeps its tissue's level


def test_joint_histogram_with_t1_is_not_a_function_of_t1(brain):
    inside = brain.labels > 0
    t2 = data.t2_like(brain.labels, seed=0)
    # the lesson's former contrast, a remap of T1 grey levels, is a function of T1: ratio close to 1
    remapped = torch.from_numpy(np.interp(brain.image.numpy(), [0.0, 0.1, 0.38, 0.69, 0.88, 1.0],
                                          [0.0, 0.05, 1.0, 0.5, 0.25, 0.2])).float()
    assert _correlation_ratio(brain.image, remapped, inside) > 0.95
    assert _correlation_ratio(brain.image, t2, inside) < 0.7


def test_t2_like_in_3d_and_on_a_batch():
    labels = data.synth_labels((24, 28, 20), num_labels=4, batch=2, seed=0)
    image = data.t2_like(labels, seed=0)
    assert image.shape == (2, 1, 24, 28, 20)
    assert not torch.equal(image[0], image[1])


@pytest.mark.parametrize("options, match", [
    ({"labels": torch.zeros(1, 1, 8, 8)}, "integer label map"),
    ({"labels": torch.full((1, 1, 8, 8), 4)}, "must lie in 0 .. 3"),
    ({"intensities": "bright"}, "sequence of at least 2"),
    ({"intensities": (0.0, 1.5)}, "intensities"),
    ({"lesions": 1.5}, "lesions"),
    ({"partial_volume": -1.0}, "partial_volume"),
])
def test_t2_like_refuses_bad_input(options, match):
    arguments = {"labels": torch.ones(1, 1, 8, 8, dtype=torch.int64), **options}
    with pytest.raises(ValueError, match=match):
        data.t2_like(**arguments)


def test_viz_joint_histogram_counts_the_voxels_it_shows(brain):
    fig = viz.joint_histogram(brain.image, brain.image, bins=16, names=("T1", "T1"))
    counts = np.expm1(fig.axes[0].images[0].get_array().data.T)
    shown = int((brain.image >= 0.05).sum())  # the empty background is left out
    assert round(counts.sum()) == shown
    assert np.allclose(counts, np.diag(np.diag(counts)))  # an image against itself: the diagonal only
    assert fig.axes[0].get_xlabel() == "T1 intensity"


def test_viz_joint_histogram_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one spatial shape"):
        viz.joint_histogram(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_the_patches_do_not_depend_on_the_scanner_effects(brain):
    """As the docstring promises (the lesson finds the patches this way)."""
    with_effects = data.t2_like(brain.labels, seed=5, noise=0.0, bias=0.3, gamma=0.3, partial_volume=0.0)
    clean = _clean(brain.labels, seed=5)
    patches = (brain.labels == 3) & (clean == 0.75)
    others = (brain.labels == 3) & ~patches
    assert patches.any() and float(with_effects[patches].min()) > float(with_effects[others].max())
