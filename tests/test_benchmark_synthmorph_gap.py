"""benchmarks/synthmorph_gap.py: the affine fit, the gain and the oracle that removes an affine error
do what their docstrings say on fields whose answer is known."""

import sys

import pytest
import torch
from script_loading import ROOT, load_script


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports benchmarks/synthmorph.py
    return load_script("benchmarks/synthmorph_gap.py", "benchmark_synthmorph_gap")


def _affine_field(shape, matrix, shift) -> torch.Tensor:
    """``(2, *shape)`` displacement ``(matrix - I) x + shift`` about the image centre, in voxels."""
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in shape], indexing="ij")
    points = torch.stack(axes)
    linear = torch.einsum("ij,j...->i...", torch.tensor(matrix) - torch.eye(2), points)
    return linear + torch.tensor(shift).view(2, 1, 1)


def test_an_affine_field_is_fitted_exactly_inside_the_mask(script):
    field = _affine_field((12, 14), [[1.05, 0.1], [-0.08, 0.97]], [1.5, -2.0])
    inside = torch.zeros(12, 14, dtype=torch.bool)
    inside[3:9, 2:10] = True
    noisy = field.clone()
    noisy[:, ~inside] += 5.0  # what lies outside the mask must not matter
    torch.testing.assert_close(script.fitted_affine(noisy, inside), field, atol=1e-4, rtol=0)


def test_the_gain_is_the_share_of_the_true_linear_motion(script):
    true = _affine_field((16, 16), [[1.1, 0.05], [-0.05, 0.95]], [0.0, 0.0])[None]
    inside = torch.ones(1, 16, 16, dtype=torch.bool)
    assert script.affine_gain(true, true, inside) == pytest.approx(1.0)
    assert script.affine_gain(0.5 * true, true, inside) == pytest.approx(0.5)
    shifted = true + torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)  # a translation is not linear motion
    assert script.affine_gain(shifted, true, inside) == pytest.approx(1.0)
    assert script.affine_gain(torch.zeros_like(true), true, inside) == pytest.approx(0.0)


def test_the_oracle_removes_an_affine_error_and_keeps_a_local_one(script):
    torch.manual_seed(0)
    true = torch.randn(2, 2, 16, 16)
    inside = torch.ones(2, 16, 16, dtype=torch.bool)
    affine_error = _affine_field((16, 16), [[0.9, 0.1], [0.0, 1.1]], [2.0, 1.0])
    torch.testing.assert_close(script.without_affine_error(true + affine_error, true, inside), true,
                               atol=1e-4, rtol=0)
    bump = torch.zeros(2, 2, 16, 16)
    bump[:, :, 6:9, 6:9] = 1.0  # a local error: the oracle leaves most of it
    remaining = script.without_affine_error(true + bump, true, inside) - true
    assert float(remaining.abs().amax()) > 0.8


def test_it_prints_a_row_per_network_and_contrast(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["synthmorph_gap.py", "--pairs", "2"])
    torch.set_num_threads(1)
    script.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pyramid2d_brain")
            or line.startswith("| synthmorph_pyramid2d_wide_t1")]
    assert len(rows) == 4
