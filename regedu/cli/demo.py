"""``regedu demo``: the shipped MNI slice onto a synthetic subject, classical vs learned, offline.

Registers the pair with a classical method and with the shipped pre-trained VoxelMorph, prints Dice
before and after, folding and seconds for both, and writes a figure (:mod:`regedu.viz`).
"""

from __future__ import annotations

import torch

from .common import (
    FIGURE_SUFFIXES,
    CommandError,
    add_common,
    check_output,
    claim,
    device_from,
    format_value,
    table,
)
from .methods import check_method, folding_percent, mean_dice

__all__ = ["DEMO_SEED", "add_parser", "run"]

DEMO_SEED = 7  # the synthetic subject of `regedu demo`


def _demo_pair() -> dict[str, torch.Tensor]:
    """The MNI axial slice (moving) and a synthetic subject made from it (fixed), with labels."""
    from ..data import brain_slice, synth_subject

    brain = brain_slice()
    subject = synth_subject(brain.image, brain.labels, seed=DEMO_SEED)
    return {"moving": brain.image, "fixed": subject.image, "moving_labels": brain.labels,
            "fixed_labels": subject.labels}


def _demo_figure(pair: dict, results: dict, before: float):
    """One row per method: warped image, warped labels on the fixed image, grid, Jacobian."""
    from .. import viz

    fig, axes = viz.new_figure(len(results), 5)
    view = {"orientation": True}
    firsts = [("moving: MNI slice", pair["moving"]), ("fixed: synthetic subject", pair["fixed"])]
    for row, (name, result) in enumerate(results.items()):
        title, image = firsts[row % 2]
        viz.show_image(image, ax=axes[row, 0], title=title, **view)
        viz.show_image(result.warped, ax=axes[row, 1], title=f"warped: {name}", **view)
        dice = mean_dice(result.warped_labels, pair["fixed_labels"])
        viz.overlay(pair["fixed"], result.warped_labels, style="contour", ax=axes[row, 2], **view,
                    title=f"{name}: labels on fixed\nDice {dice:.3f}")
        viz.deformation_grid(result.disp, 4, ax=axes[row, 3], image=pair["moving"], **view,
                             title=f"{name}: grid on moving")
        viz.jacobian_map(result.disp, ax=axes[row, 4], **view)
    fig.suptitle(f"regedu demo: MNI slice onto a synthetic subject (mean Dice before {before:.3f})")
    return fig


def run(args) -> int:
    """Run ``regedu demo`` with the parsed ``args``; return the exit status."""
    from ..api import register
    from ..models import pretrained

    out = check_output(args.out, "--out", args.overwrite, suffixes=FIGURE_SUFFIXES)
    outputs = claim({"--out": out}, args.overwrite)
    if check_method(args.method, None):
        raise CommandError(f"--method chooses the classical method the demo compares with VoxelMorph; "
                           f"{args.method} is learned.")
    device = device_from(args.device)
    network = pretrained("voxelmorph2d_brain", device=device)  # fails at once if the weights are missing
    pair = _demo_pair()
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    results = {}
    for name, options in ((args.method, {"progress": None}), ("voxelmorph", {"model": network})):
        result = register(pair["moving"], pair["fixed"], method=name, moving_labels=pair["moving_labels"],
                          device=device, **options)
        results[name] = result
        result.disp, result.warped = result.disp.cpu(), result.warped.cpu()
        result.warped_labels = result.warped_labels.cpu()
    rows = [[name, format_value(before), format_value(mean_dice(r.warped_labels, pair["fixed_labels"])),
             format_value(folding_percent(r.disp)), f"{r.seconds:.3f}"] for name, r in results.items()]
    print("MNI axial slice (96 x 112, 2 mm) onto a synthetic subject, tissue labels:")
    print(table(["method", "Dice before", "Dice after", "folding %", "seconds"], rows))
    figure = _demo_figure(pair, results, before)
    outputs.write("--out", lambda temporary: figure.savefig(temporary, dpi=100))
    outputs.commit()
    print(f"wrote {out}")
    return 0


def add_parser(commands) -> None:
    """Add ``demo`` to the subcommands."""
    parser = commands.add_parser(
        "demo", help="register a built-in brain pair, classical vs learned", description=(
            "Register the MNI axial slice that ships with regedu onto a synthetic subject made from it, "
            "with a classical method and with the shipped pre-trained VoxelMorph; print Dice before "
            "and after and seconds for both, and write a figure. Works offline."))
    parser.add_argument("--out", "-o", default="regedu_demo.png", metavar="FIGURE.png",
                        help="figure to write (default regedu_demo.png; .png, .pdf, .svg or .jpg)")
    parser.add_argument("--method", default="default", metavar="NAME",
                        help="the classical method to compare (default: default = affine+bspline+dense)")
    add_common(parser, method=False)
    parser.set_defaults(run=run)
