"""Issue 15, item 4: one registry of losses, and instance optimisation as register_dense.

* regedu.losses.SIMILARITIES / REGULARISERS are the only lists of names: classical methods,
  TrainConfig / compute_loss, voxelmorph+io, the widgets and the command line all accept every name
  (and a name added to the registry reaches all of them);
* losses.similarity / losses.regulariser: lookups with a clear error listing the choices;
* instance_optimize is register_dense started from the network's field (initial_disp): history,
  callback, checks, divergence detection; it follows the images' dtype (float64 included);
* compute_loss keeps float64 and computes half-precision outputs in float32.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import regedu
from regedu import losses, train, warps, widgets
from regedu.classical import common, register_dense
from regedu.cli import train as cli_train
from regedu.models import VoxelMorph
from regedu.result import RegistrationResult

SHAPE = (24, 24)
SIMILARITY_NAMES = list(losses.SIMILARITIES)
REGULARISER_NAMES = list(losses.REGULARISERS)


def blob(shift=0.0, dtype=torch.float32):
    """A Gaussian blob ``(1, 1, *SHAPE)`` with its centre moved by ``shift`` voxels along axis 0."""
    grid = warps.identity_grid(SHAPE, dtype=dtype)
    centre = torch.tensor([11.5 + shift, 11.5], dtype=dtype).view(2, 1, 1)
    return torch.exp(-((grid - centre) ** 2).sum(0) / (2 * 4.0**2))[None, None]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4, 4))


class ConstantField(nn.Module):
    """A "network" whose field is ``value`` voxels along axis 0 everywhere, in its parameter's dtype."""

    def __init__(self, value: float, dtype=torch.float32, output_dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=dtype))
        self.value = value
        self.output_dtype = output_dtype

    def forward(self, moving, fixed):
        disp = torch.zeros(moving.shape[0], 2, *moving.shape[2:], dtype=moving.dtype)
        disp[:, 0] = self.value
        disp = disp * self.scale
        warped = warps.warp(moving, disp)
        if self.output_dtype is not None:  # what a network under mixed precision returns
            return warped.to(self.output_dtype), disp.to(self.output_dtype)
        return warped, disp


@pytest.fixture(scope="module")
def pair():
    return {"moving": blob(0.0), "fixed": blob(2.0)}


# ---------------------------------------------------------------------------
# one registry, and its lookups
# ---------------------------------------------------------------------------


def test_every_old_registry_is_the_one_registry():
    assert train.SIMILARITIES is losses.SIMILARITIES and train.REGULARISERS is losses.REGULARISERS
    assert widgets.SIMILARITIES is losses.SIMILARITIES
    assert common.SIMILARITIES is losses.SIMILARITIES and common.REGULARISERS is losses.REGULARISERS
    assert SIMILARITY_NAMES == ["mse", "ncc", "global_ncc", "mi", "ngf"]  # the widgets' and notebooks' order
    for name in SIMILARITY_NAMES:
        assert cli_train.LOSSES[name] == ("unsupervised", name)


def test_lookups_return_the_terms_with_their_options():
    image, other = blob(0.0), blob(1.5)
    assert losses.similarity("mse") is losses.mse
    assert losses.regulariser("bending") is losses.bending
    torch.testing.assert_close(losses.similarity("ncc", window=5)(image, other),
                               losses.ncc(image, other, window=5))
    torch.testing.assert_close(losses.similarity("mi", bins=8)(image, other), losses.mi(image, other, bins=8))
    assert losses.similarity("mse", window=5, bins=8) is losses.mse  # options of other terms are left out

    def mine(fixed, warped):
        return (fixed - warped).abs().mean()

    assert losses.similarity(mine, window=5) is mine and losses.regulariser(mine) is mine


@pytest.mark.parametrize("lookup, name, listed", [
    (losses.similarity, "lncc", "['mse', 'ncc', 'global_ncc', 'mi', 'ngf']"),
    (losses.similarity, 3, "regedu.losses.SIMILARITIES"),
    (losses.regulariser, "tv", "['diffusion', 'bending']"),
])
def test_an_unknown_name_lists_the_choices(lookup, name, listed):
    with pytest.raises(ValueError, match="must be one of") as error:
        lookup(name)
    assert listed in str(error.value)


def test_an_option_no_term_takes_is_refused_with_each_terms_options():
    with pytest.raises(TypeError, match=r"\['windw'\].*ncc: window, eps.*mi: bins"):
        losses.similarity("ncc", windw=5)


def test_a_name_added_to_the_registry_reaches_every_user(monkeypatch, pair):
    def l1(fixed, warped):
        return (fixed - warped).abs().mean()

    monkeypatch.setitem(losses.SIMILARITIES, "l1", l1)
    assert train.TrainConfig(similarity="l1").similarity == "l1"
    result = register_dense(pair["moving"], pair["fixed"], similarity="l1", levels=1, iterations=3,
                            progress=False)
    assert len(result.history[0]) == 3
    values = widgets.similarity_landscape(pair["fixed"], pair["moving"], shifts=1, similarity="l1")
    assert values.shape == (3, 3)


# ---------------------------------------------------------------------------
# every name works everywhere
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("regulariser", REGULARISER_NAMES)
@pytest.mark.parametrize("similarity", SIMILARITY_NAMES)
def test_every_name_works_in_register_dense(pair, similarity, regulariser):
    result = register_dense(pair["moving"], pair["fixed"], similarity=similarity, regulariser=regulariser,
                            levels=1, iterations=3, progress=False)
    assert len(result.history) == 1 and len(result.history[0]) == 3
    assert all(torch.isfinite(torch.tensor(result.history[0])))


@pytest.mark.parametrize("regulariser", REGULARISER_NAMES)
@pytest.mark.parametrize("similarity", SIMILARITY_NAMES)
def test_every_name_works_in_training(pair, similarity, regulariser):
    config = train.TrainConfig(similarity=similarity, regulariser=regulariser)
    model = tiny_model()
    loss = train.compute_loss(model, pair, config)
    loss.backward()
    assert loss.dim() == 0 and bool(torch.isfinite(loss))
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize("similarity", SIMILARITY_NAMES)
def test_every_similarity_works_in_voxelmorph_io(pair, similarity):
    result = regedu.register(pair["moving"], pair["fixed"], method="voxelmorph+io", similarity=similarity,
                             model=tiny_model(), steps=2)
    assert result.method == "voxelmorph+io" and [len(level) for level in result.history] == [2]
    torch.testing.assert_close(result.warped, warps.warp(pair["moving"], result.disp))


@pytest.mark.parametrize("regulariser", REGULARISER_NAMES)
def test_every_regulariser_works_in_voxelmorph_io(pair, regulariser):
    result = regedu.register(pair["moving"], pair["fixed"], method="voxelmorph+io", regulariser=regulariser,
                             model=tiny_model(), steps=2)
    assert [len(level) for level in result.history] == [2]


def test_bad_names_are_refused_before_any_work(pair):
    with pytest.raises(ValueError, match="voxelmorph\\+io.*`similarity` must be one of"):
        regedu.register(pair["moving"], pair["fixed"], method="voxelmorph+io", similarity="lncc",
                        model=tiny_model())
    with pytest.raises(ValueError, match="`regulariser` must be one of"):
        train.TrainConfig(regulariser="tv")
    with pytest.raises(ValueError, match="`similarity` must be one of"):
        train.TrainConfig(similarity=losses.mse)  # a TrainConfig is saved as JSON: names only
    with pytest.raises(ValueError, match="`similarity` must be one of"):
        register_dense(pair["moving"], pair["fixed"], similarity="lncc")


# ---------------------------------------------------------------------------
# instance optimisation is register_dense started from the network's field
# ---------------------------------------------------------------------------


def test_instance_optimisation_starts_from_the_networks_field(pair):
    model = ConstantField(1.5)
    result = train.instance_optimize(model, pair["moving"], pair["fixed"], steps=1, lr=1e-6)
    expected = torch.zeros(1, 2, *SHAPE)
    expected[:, 0] = 1.5
    torch.testing.assert_close(result.disp, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.warped, warps.warp(pair["moving"], result.disp))


def test_instance_optimisation_calls_back_and_records_history(pair):
    calls = []

    def callback(level, iteration, loss):
        calls.append((level, iteration, loss))

    result = train.instance_optimize(tiny_model(), pair["moving"], pair["fixed"], steps=5, similarity="ngf",
                                     callback=callback)
    assert isinstance(result, RegistrationResult) and result.method == "instance_optimize"
    assert [(level, iteration) for level, iteration, _ in calls] == [(0, i) for i in range(5)]
    assert result.history == [[loss for _, _, loss in calls]]
    assert result.final_loss == calls[-1][2] and result.seconds > 0
    warped, disp = result
    assert disp.shape == (1, 2, *SHAPE) and warped.shape == (1, 1, *SHAPE)


def test_instance_optimisation_has_the_classical_checks(pair):
    model = tiny_model()
    with pytest.raises(ValueError, match="`lr`"):
        train.instance_optimize(model, pair["moving"], pair["fixed"], steps=2, lr=0.0)
    with pytest.raises(FloatingPointError, match="learning rate"):  # divergence detection
        train.instance_optimize(model, pair["moving"], pair["fixed"], steps=2,
                                similarity=lambda fixed, warped: warped.mean() * float("nan"))
    zero = train.instance_optimize(model, pair["moving"], pair["fixed"], steps=0)
    assert zero.history == [[]]
    with torch.no_grad():
        torch.testing.assert_close(zero.disp, model(pair["moving"], pair["fixed"])[1])


def test_a_float64_model_refines_in_float64(pair):
    moving, fixed = pair["moving"].double(), pair["fixed"].double()
    model = tiny_model().double()
    result = regedu.register(moving, fixed, method="voxelmorph+io", similarity="ncc", model=model, steps=3)
    assert result.disp.dtype == torch.float64 and result.warped.dtype == torch.float64
    assert all(torch.isfinite(torch.tensor(result.history[0])))
    torch.testing.assert_close(result.warped, warps.warp(moving, result.disp))
    direct = train.instance_optimize(model, moving, fixed, steps=2)
    assert direct.disp.dtype == torch.float64


# ---------------------------------------------------------------------------
# register_dense's initial_disp
# ---------------------------------------------------------------------------


def test_register_dense_starts_from_initial_disp_without_changing_it(pair):
    start = torch.zeros(1, 2, *SHAPE)
    start[:, 0] = 2.0
    before = start.clone()
    result = register_dense(pair["moving"], pair["fixed"], levels=1, iterations=1, lr=1e-6, weight=0.0,
                            initial_disp=start, progress=False)
    torch.testing.assert_close(result.disp, start, atol=1e-4, rtol=0)
    assert torch.equal(start, before)  # the caller's field is read, never optimised in place
    coarse = register_dense(pair["moving"], pair["fixed"], levels=2, iterations=(1, 1), lr=1e-6, weight=0.0,
                            initial_disp=start, progress=False)
    torch.testing.assert_close(coarse.disp, start, atol=1e-3, rtol=0)  # a constant field survives resizing


def test_register_dense_checks_initial_disp(pair):
    moving, fixed = pair["moving"], pair["fixed"]

    def dense(initial_disp, moving=moving, diffeomorphic=False):
        return register_dense(moving, fixed, levels=1, iterations=1, diffeomorphic=diffeomorphic,
                              initial_disp=initial_disp, progress=False)

    with pytest.raises(ValueError, match="spatial shape"):
        dense(torch.zeros(1, 2, 20, 24))
    with pytest.raises(ValueError, match="one channel per spatial axis"):
        dense(torch.zeros(1, 3, *SHAPE))
    with pytest.raises(ValueError, match="batch size 3 but the pair has 2"):
        dense(torch.zeros(3, 2, *SHAPE), moving=moving.expand(2, 1, *SHAPE))
    with pytest.raises(ValueError, match="velocity"):
        dense(torch.zeros(1, 2, *SHAPE), diffeomorphic=True)
    with pytest.raises(ValueError, match="NaN"):
        dense(torch.full((1, 2, *SHAPE), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        dense([[0.0]])
    one_for_all = dense(torch.zeros(1, 2, *SHAPE), moving=moving.expand(2, 1, *SHAPE))
    assert one_for_all.disp.shape == (2, 2, *SHAPE)


def test_register_dense_lr_schedule(pair):
    def run(**options):
        return register_dense(pair["moving"], pair["fixed"], levels=1, iterations=10, lr=0.5, progress=False,
                              **options)

    cosine, constant = run(), run(lr_schedule="constant")
    assert cosine.history[0][:2] == constant.history[0][:2]  # the same first steps (a cosine starts at lr)
    assert not torch.equal(cosine.disp, constant.disp)  # then a decaying step size moves less
    with pytest.raises(ValueError, match="`lr_schedule` must be one of"):
        run(lr_schedule="linear")
    with pytest.raises(ValueError, match="method 'dense'.*`lr_schedule`"):
        regedu.register(pair["moving"], pair["fixed"], method="dense", lr_schedule="linear")


# ---------------------------------------------------------------------------
# compute_loss follows the dtype
# ---------------------------------------------------------------------------


def labelled(dtype):
    moving, fixed = blob(0.0, dtype), blob(2.0, dtype)
    true_disp = torch.zeros(1, 2, *SHAPE, dtype=dtype)
    true_disp[:, 0] = -2.0
    return {"moving": moving, "fixed": fixed, "disp": true_disp,
            "moving_labels": (moving > 0.5).long(), "fixed_labels": (fixed > 0.5).long()}


@pytest.mark.parametrize("supervision", train.SUPERVISIONS)
def test_compute_loss_keeps_float64(supervision):
    model = ConstantField(1.0, dtype=torch.float64)
    loss = train.compute_loss(model, labelled(torch.float64), train.TrainConfig(supervision=supervision))
    assert loss.dtype == torch.float64
    if supervision == "supervised":  # end-point error of a 1-voxel field against a -2-voxel one: 3, exactly
        assert float(loss.detach()) == 3.0


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("supervision", train.SUPERVISIONS)
def test_compute_loss_of_half_precision_outputs_is_float32(supervision, half):
    model = ConstantField(1.0, output_dtype=half)
    loss = train.compute_loss(model, labelled(torch.float32), train.TrainConfig(supervision=supervision))
    assert loss.dtype == torch.float32
