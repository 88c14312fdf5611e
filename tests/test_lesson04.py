"""Lesson 04's package code: learned fields judged against the true one (regedu.widgets.field_scores,
network_scores, field_comparison and its widget) and the Jacobian colour scale shared by several
panels (regedu.viz.jacobian_map's vmin/vmax, jacobian_range)."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from regedu import metrics, viz, warps, widgets
from regedu.data import random_disp


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def synthetic_pairs(count=2, shape=(24, 28), magnitude=3.0):
    """A batch of pairs with labels and an exact true field: a blob image with two rings of labels,
    moved by a smooth random field (``fixed_labels`` is the moving labels warped by the true field)."""
    grid = warps.identity_grid(shape)
    centre = torch.tensor([(n - 1) / 2 for n in shape]).view(2, 1, 1)
    radius = ((grid - centre) ** 2).sum(0).sqrt()
    image = torch.exp(-(radius / 6) ** 2)[None, None].expand(count, 1, *shape).contiguous()
    labels = ((radius < 9).long() + (radius < 5).long())[None, None].expand(count, 1, *shape).contiguous()
    true = torch.cat([random_disp(shape, magnitude=magnitude, smoothness=8, seed=seed)
                      for seed in range(count)])
    return {"moving": image, "fixed": warps.warp(image, true), "moving_labels": labels,
            "fixed_labels": warps.warp_labels(labels, true), "disp": true}


class FieldNet(torch.nn.Module):
    """A stand-in network that always answers the same field (and has one parameter, for its device)."""

    def __init__(self, field):
        super().__init__()
        self.field = field
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, moving, fixed):
        disp = self.scale * self.field
        return warps.warp(moving, disp), disp


# ---------------------------------------------------------------------------
# field_scores and network_scores
# ---------------------------------------------------------------------------


def test_the_true_field_scores_perfectly_and_the_zero_field_scores_the_size_of_the_motion():
    pairs = synthetic_pairs()
    true = widgets.field_scores(pairs, pairs["disp"], hd95=True)
    assert torch.equal(true["dice"], torch.ones(2)) and torch.equal(true["hd95"], torch.zeros(2))
    assert torch.equal(true["epe"], torch.zeros(2)) and float(true["error"].max()) == 0.0
    assert torch.equal(true["folding_percent"], torch.zeros(2))
    assert true["error"].shape == (2, 1, 24, 28) and true["warped_labels"].shape == (2, 1, 24, 28)

    none = widgets.field_scores(pairs, torch.zeros_like(pairs["disp"]), hd95=True)
    brain = pairs["fixed_labels"] > 0
    length = torch.linalg.vector_norm(pairs["disp"], dim=1, keepdim=True)
    expected = (length * brain).flatten(1).sum(1) / brain.flatten(1).sum(1)  # mean inside the fixed labels
    torch.testing.assert_close(none["epe"], expected)
    torch.testing.assert_close(none["error"], length)
    assert (none["dice"] < 1).all() and (none["hd95"] > 0).all()
    assert torch.equal(none["min_jacobian"], torch.ones(2))


def test_a_folding_field_is_counted_in_percent():
    pairs = synthetic_pairs(count=1)
    disp = torch.zeros_like(pairs["disp"])
    disp[0, 0, 10:14] = torch.tensor([0.0, -3.0, 3.0, 0.0]).view(4, 1)  # neighbours cross: det J < 0
    scores = widgets.field_scores(pairs, disp)
    torch.testing.assert_close(scores["folding_percent"], 100 * metrics.folding_fraction(disp))
    assert float(scores["folding_percent"]) > 0 and float(scores["min_jacobian"]) < 0


def test_network_scores_are_the_scores_of_the_predicted_field_and_keep_the_training_mode():
    pairs = synthetic_pairs()
    network = FieldNet(0.5 * pairs["disp"]).train()
    scores = widgets.network_scores(network, pairs)
    expected = widgets.field_scores(pairs, 0.5 * pairs["disp"])
    for key in ("dice", "epe", "folding_percent", "min_jacobian"):
        torch.testing.assert_close(scores[key], expected[key])
    assert network.training, "the network's mode is restored"
    assert not scores["disp"].requires_grad


def test_bad_inputs_are_refused_with_a_message():
    pairs = synthetic_pairs()
    with pytest.raises(ValueError, match="true field is `disp`"):
        widgets.field_scores({key: pairs[key] for key in ("moving", "fixed")}, pairs["disp"])
    with pytest.raises(ValueError, match="shape"):
        widgets.field_scores(pairs, pairs["disp"][..., :-1])
    with pytest.raises(TypeError, match="pretrained"):
        widgets.network_scores(lambda moving, fixed: None, pairs)


# ---------------------------------------------------------------------------
# one colour scale per column
# ---------------------------------------------------------------------------


def column_images(fig, rows):
    """The image artists of each column: labels/fixed image, difference, error map, Jacobian."""
    panels = [ax for ax in fig.axes if ax.images][: 4 * rows]
    return [[panels[4 * row + col].images[0] for row in range(rows)] for col in range(4)]


def test_field_comparison_puts_every_row_on_one_scale_per_column():
    pairs = synthetic_pairs()
    tiny = 1e-4 * pairs["disp"]  # det J within 1 +- 0.001: must not look deformed
    results = {"true field": widgets.field_scores(pairs, pairs["disp"]),
               "tiny": widgets.field_scores(pairs, tiny),
               "none": widgets.field_scores(pairs, torch.zeros_like(tiny))}
    fig = widgets.field_comparison(pairs, results, index=1, label_names={1: "outer", 2: "inner"})
    assert isinstance(fig, Figure)
    _, _, errors, jacobians = column_images(fig, 3)
    assert len({image.get_clim() for image in errors}) == 1, "one end-point error scale"
    assert errors[0].get_clim() == (0.0, pytest.approx(float(results["none"]["error"][1].max())))
    low, high = viz.jacobian_range([result["disp"][1:2] for result in results.values()])
    for image in jacobians:
        assert (image.norm.vmin, image.norm.vmax) == (pytest.approx(low), pytest.approx(high))
    true_det = warps.jacobian_det(pairs["disp"][1:2])
    assert high == pytest.approx(float(true_det.max())), "the true field sets the scale, not the tiny one"
    assert high - 1 > 100 * float((warps.jacobian_det(tiny[1:2]) - 1).abs().max())
    assert fig.axes[0].get_legend() is not None, "the label contours have a legend"


def test_field_comparison_refuses_a_pair_outside_the_batch():
    pairs = synthetic_pairs()
    results = {"true field": widgets.field_scores(pairs, pairs["disp"])}
    with pytest.raises(ValueError, match="0 .. 1"):
        widgets.field_comparison(pairs, results, index=2)
    with pytest.raises(ValueError, match="field_scores"):
        widgets.field_comparison(pairs, {"raw": pairs["disp"]})


def test_the_widget_keeps_the_scale_of_all_results_when_the_choice_changes():
    pairs = synthetic_pairs()
    results = {"true field": widgets.field_scores(pairs, pairs["disp"]),
               "half": widgets.field_scores(pairs, 0.5 * pairs["disp"]),
               "none": widgets.field_scores(pairs, torch.zeros_like(pairs["disp"]))}
    widget = widgets.field_comparison_widget(pairs, results, label_names={1: "outer", 2: "inner"})
    name, index = widget.children[:2]
    assert list(name.options) == ["half", "none"]
    scales = []
    for choice in ("none", "half"):  # "half" is shown first: choose "none", then back
        widget.result = None
        name.value = choice
        assert isinstance(widget.result, Figure), "the widget's callback failed (see the logged warning)"
        _, _, errors, jacobians = column_images(widget.result, 2)
        scales.append((errors[1].get_clim(), jacobians[1].norm.vmin, jacobians[1].norm.vmax))
    assert scales[0] == scales[1], "switching the network never rescales a panel"
    widget.result = None
    index.value = 1
    assert isinstance(widget.result, Figure)
    with pytest.raises(ValueError, match="reference"):
        widgets.field_comparison_widget(pairs, results, reference="ground truth")


# ---------------------------------------------------------------------------
# viz: a Jacobian colour scale given from outside
# ---------------------------------------------------------------------------


def test_jacobian_map_takes_a_shared_range_and_jacobian_range_spans_the_fields():
    wide = random_disp((20, 20), magnitude=3.0, smoothness=6, seed=1)
    tiny = 1e-4 * wide
    low, high = viz.jacobian_range([wide, tiny])
    det = warps.jacobian_det(wide)
    assert low == pytest.approx(max(float(det.min()), 0.0)) and high == pytest.approx(float(det.max()))
    fig = viz.jacobian_map(tiny, vmin=low, vmax=high)
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (low, high)
    own = viz.jacobian_map(tiny).axes[0].images[0].norm
    assert own.vmax < 1.01, "without a range the panel scales itself (what a shared range avoids)"
    identity = {"none": torch.zeros(1, 2, 5, 5)}
    assert viz.jacobian_range(identity) == (pytest.approx(0.999), pytest.approx(1.001))
    with pytest.raises(ValueError, match="vmin < 1 < vmax"):
        viz.jacobian_map(tiny, vmin=1.2, vmax=2.0)
    with pytest.raises(ValueError, match="at least one"):
        viz.jacobian_range([])


# ---------------------------------------------------------------------------
# the lesson's closing check fails when the lesson fails
# ---------------------------------------------------------------------------


def test_the_closing_check_fails_with_untrained_networks_swapped_in():
    """Run the notebook's last cell on results of untrained networks: it must refuse them."""
    from pathlib import Path

    import nbformat
    from torch.utils.data import default_collate

    from regedu import data, models, train

    path = Path(__file__).resolve().parents[1] / "notebooks" / "04_supervised_vs_unsupervised.ipynb"
    check = nbformat.read(path, as_version=4).cells[-1].source
    assert check.rstrip().endswith('print("all checks passed")')
    pairs = data.BrainSlicePairs(4, seed=7)
    test = default_collate([pairs[i] for i in range(4)])
    results = {"no registration": widgets.field_scores(test, torch.zeros_like(test["disp"])),
               "true field": widgets.field_scores(test, test["disp"])}
    for name in ("supervised", "unsupervised", "label-supervised"):
        torch.manual_seed(0)
        results[name] = widgets.network_scores(models.VoxelMorph(ndim=2), test)
    falling = train.History(step=10, losses=[1.0 - 0.05 * k for k in range(10)])
    namespace = {"torch": torch, "metrics": metrics, "FAST": False, "test": test, "true_disp": test["disp"],
                 "results": results, "histories": dict.fromkeys(("supervised", "unsupervised",
                                                                  "label-supervised"), falling)}
    with pytest.raises(AssertionError, match="improves Dice"):
        exec(check, namespace)
