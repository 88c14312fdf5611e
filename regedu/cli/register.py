"""``regedu register``: register two NIfTI images and write the warped image, field and labels.

The pair is loaded by :func:`regedu.data.load_pair` (through the headers, checked with
:func:`regedu.data.check_pair`), registered by :func:`regedu.register`, and the outputs are made
from the original moving file by one interpolation (:func:`regedu.data.warp_moving`).
"""

from __future__ import annotations

import sys

import torch

from .common import CommandError, add_common, check_output, claim, device_from
from .methods import (
    check_method,
    folding_percent,
    load_network,
    load_pair,
    mean_dice,
    method_options,
    run_method,
)

__all__ = ["DISP_HELP", "add_parser", "run"]

DISP_HELP = (
    "write the displacement field here (.nii or .nii.gz), on the fixed grid with its affine. Pull "
    "convention: warped(x) = moving(x + disp(x)). Layout with --disp-format voxels (default): a 4D "
    "array (X, Y, Z, ndim), Z = 1 for 2D, of displacements in voxels along the axes of the fixed "
    "grid in RAS order, intent name 'regedu-voxels' (VoxelMorph's layout; read it back with "
    "regedu.data.load_disp); itk: 5D (X, Y, Z, 1, 3) vectors in LPS mm, intent 'vector', what "
    "antsApplyTransforms -t reads (2D: (X, Y, 1, 1, 2), read as a 2D transform by ITK, for slices in "
    "the world x-y plane); mm: 5D (X, Y, Z, 1, 3) vectors in RAS mm, intent 'displacement vector' (3D "
    "only). The field moves fixed voxel x to the world point of x + disp(x), where the moving image is "
    "read through its own header, as ITK does: antsApplyTransforms -i MOVING -r FIXED -t DISP (itk) "
    "reproduces -o even when the two headers differ"
)


def _register_outputs(args):
    """-o, --disp and --labels-out checked and claimed (:func:`regedu.cli.common.claim`) before any work."""
    if (args.labels is None) != (args.labels_out is None):
        raise CommandError("--labels (the moving image's label map) and --labels-out (where its warped copy "
                           "goes) come together; give both or neither.")
    outputs = {"-o": args.out, "--disp": args.disp, "--labels-out": args.labels_out}
    checked = {option: check_output(path, option, args.overwrite) for option, path in outputs.items() if path}
    paths = [path.resolve() for path in checked.values()]
    if len(set(paths)) != len(paths):
        raise CommandError("two outputs name the same file: give -o, --disp and --labels-out other names.")
    return claim(checked, args.overwrite)


def _check_disp_format(pair, disp_format: str) -> None:
    """Refuse, before the registration, a --disp-format that cannot hold this pair's field."""
    from ..data.io import check_itk_plane

    if pair.fixed.dim() == 4 and disp_format == "mm":
        raise CommandError("--disp-format mm writes 3-component vectors of 3D volumes; this pair is 2D: use "
                           "--disp-format voxels or itk.")
    if pair.fixed.dim() == 4 and disp_format == "itk":
        try:
            check_itk_plane(pair.affine, "--disp-format itk")
        except ValueError as error:
            raise CommandError(str(error).replace("field='voxels'", "--disp-format voxels")) from None


def run(args) -> int:
    """Run ``regedu register`` with the parsed ``args``; return the exit status."""
    from ..data import save_nifti
    from ..data.pairs import warp_moving

    learned = check_method(args.method, args.model)
    options = method_options(args)
    outputs = _register_outputs(args)
    device = device_from(args.device)
    network = load_network(args.model, device) if learned else None
    pair = load_pair(args.moving, args.fixed, args.labels, args.fixed_labels, normalize=not args.no_normalize,
                     method=args.method)
    if "--disp" in outputs:
        _check_disp_format(pair, args.disp_format)
    # a progress bar for runs over 2 s on a terminal; none into a file or a pipe (logs, notebooks)
    progress = None if sys.stderr.isatty() else False
    result = run_method(pair, args.method, learned, network, device, options, progress=progress)
    save_nifti(warp_moving(pair, result.disp), outputs["-o"], pair.affine, overwrite=True)
    if "--disp" in outputs:
        save_nifti(result.disp, outputs["--disp"], pair.affine, overwrite=True, field=args.disp_format)
    if "--labels-out" in outputs:
        save_nifti(result.warped_labels.to(torch.int32), outputs["--labels-out"], pair.affine, overwrite=True)
    outputs.commit()  # all outputs appear together, or (on an error above) none
    _report_registration(args, pair, result, outputs)
    return 0


def _report_registration(args, pair, result, outputs) -> None:
    print(f"registered {args.moving} onto {args.fixed} with {args.method} in {result.seconds:.2f} s; "
          f"folding {folding_percent(result.disp):.3f} % of voxels")
    before = mean_dice(pair.moving_labels, pair.fixed_labels)
    if before is not None:
        after = mean_dice(result.warped_labels, pair.fixed_labels)
        print(f"mean Dice of the label maps: {before:.3f} before, {after:.3f} after")
    for option, path in outputs.items():
        what = {"-o": "warped image", "--disp": f"displacement ({args.disp_format})",
                "--labels-out": "warped labels"}[option]
        print(f"wrote {path} ({what})")


def add_parser(commands) -> None:
    """Add ``register`` to the subcommands."""
    parser = commands.add_parser(
        "register", help="register two NIfTI images", description=(
            "Register MOVING onto FIXED (NIfTI, 2D or 3D) with any method and write the warped image, "
            "and optionally the displacement and the warped labels, on the fixed grid with the fixed "
            "image's affine. The images are loaded in RAS order (regedu.data.load_nifti). Whenever their "
            "headers put voxel x in different places (shape, voxel size, origin, rotation or flip), a "
            "warning says so and the moving image is registered as its header places it in the world, "
            "like ITK and ANTs do; the outputs read the original moving image once, through the field "
            "and the headers together (one interpolation). The pair is checked with "
            "regedu.data.check_pair first, whose warnings are printed. Every --option and "
            "--affine-option is checked before any file is read. Outputs lie on the fixed grid in RAS "
            "voxel order (the fixed file's own order when it is RAS already, as most are)."))
    parser.add_argument("moving", help="moving image (.nii or .nii.gz)")
    parser.add_argument("fixed", help="fixed image (.nii or .nii.gz)")
    parser.add_argument("-o", "--out", required=True, metavar="WARPED.nii.gz",
                        help="the moving image, with its own intensities, warped onto the fixed grid")
    parser.add_argument("--disp", metavar="DISP.nii.gz", help=DISP_HELP)
    parser.add_argument("--disp-format", choices=("voxels", "itk", "mm"), default="voxels",
                        help="layout of --disp (default voxels)")
    parser.add_argument("--labels", metavar="MOVING_LABELS.nii.gz", help="label map of the moving image")
    parser.add_argument("--labels-out", metavar="WARPED_LABELS.nii.gz",
                        help="where the warped --labels go (nearest neighbour, int32)")
    parser.add_argument("--fixed-labels", metavar="FIXED_LABELS.nii.gz",
                        help="label map of the fixed image: prints the mean Dice before and after")
    add_common(parser)
    parser.set_defaults(run=run)
