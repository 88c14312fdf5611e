"""What every ``regedu`` subcommand shares: its errors, option types, devices, output paths, printing.

A mistake the user can fix raises :class:`CommandError` (or one of :data:`USER_ERRORS`, which the
package raises for bad input); :func:`regedu.cli.main` prints it as one line. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["PROG", "CommandError", "USER_ERRORS", "Parser", "positive_int", "number", "minutes", "key_value",
           "device_from", "check_output", "claim", "one_line", "warn", "note", "format_value", "table",
           "add_common", "NIFTI_SUFFIXES", "FIGURE_SUFFIXES"]

PROG = "regedu"
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


class CommandError(Exception):
    """A mistake the user can fix: printed as ``regedu: error: <message>``, exit status 2."""


# What the package raises for input a user can fix, printed as one line like a CommandError:
# ValueError (bad content: the kit's checks, unreadable files, DegenerateAffineError), OSError (a file
# that is missing, unreadable or unwritable; regedu.outputs.OutputError), FloatingPointError (training
# diverged: lower the learning rate), MemoryError (does not fit: crop or downsample). TypeError and
# RuntimeError are not here: the command gives the package values of the right type, so one of them
# is a bug in regedu, and its traceback is what a bug report needs.
USER_ERRORS = (ValueError, OSError, FloatingPointError, MemoryError)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``regedu: error: ...``), not a usage block."""

    def error(self, message):
        raise CommandError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------
# option types
# ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An option that must be a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def number(text: str, minimum: float, strict: bool, hint: str = "") -> float:
    """An option that must be a finite number ``>= minimum`` (``> minimum`` with ``strict``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise argparse.ArgumentTypeError(f"must be a number {relation} {minimum:g}, got {text!r}{hint}")
    return value


def minutes(text: str) -> float:
    """``--minutes``: a positive time budget."""
    return number(text, 0.0, True, ": give a positive time budget, or leave --minutes out to stop by "
                                   "--steps alone")


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value), the value read as a Python literal when it is one."""
    key, equals, raw = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"must look like KEY=VALUE (e.g. iterations=100), got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


# ---------------------------------------------------------------------------
# devices and output paths
# ---------------------------------------------------------------------------


def device_from(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU) or a torch device name that works here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto).")
    return device


def check_output(path, option: str, overwrite: bool, suffixes: Sequence[str] = NIFTI_SUFFIXES) -> Path:
    """Check an output path before any work is done: suffix, existing folder, no silent overwrite."""
    path = Path(path).expanduser()
    if suffixes and not path.name.lower().endswith(tuple(suffixes)):
        raise CommandError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder; give a file name.")
    if not path.parent.is_dir():
        raise CommandError(f"{option} {path}: the folder {path.parent} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise CommandError(f"{option} {path} exists already; pass --overwrite to replace it.")
    return path


def claim(paths: dict[str, Path], overwrite: bool):
    """Claim checked output paths before any work (:class:`regedu.outputs.OutputSet`): a lock beside
    each (atomic, so two runs cannot both write it; creating it proves the folder is writable) and
    stale temporaries of killed runs removed. ``outputs[option]`` is where to write; ``commit()``
    renames all at once; :func:`regedu.cli.main` releases what a failed run leaves."""
    from ..outputs import OutputSet

    return OutputSet(paths, overwrite).claim()


# ---------------------------------------------------------------------------
# printing: results to stdout, warnings and notes to stderr
# ---------------------------------------------------------------------------


def one_line(message) -> str:
    return " ".join(str(message).split())


def warn(message: str) -> None:
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def note(message: str) -> None:
    print(f"{PROG}: {one_line(message)}", file=sys.stderr)


def format_value(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``-`` for a missing one (``None`` or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table, left-aligned first columns, right-aligned numbers."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if not _numeric(c) else str(c).rjust(w)
                         for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _numeric(cell) -> bool:
    try:
        float(cell)
        return True
    except (TypeError, ValueError):
        return cell in ("-", "inf")


# ---------------------------------------------------------------------------
# options every command that registers takes
# ---------------------------------------------------------------------------

OPTION_HELP = (
    "an option of the method (for default and the other affine+... methods: of the deformable stage, "
    "e.g. register_bspline's), repeatable: --option iterations=100 --option control_spacing=4; values "
    "are Python literals, e.g. iterations=(50,50,20). The options are the keyword arguments of the "
    "method's function "
    "(regedu.classical.register_bspline, register_dense, demons, register_affine; "
    "regedu.api.register_learned_io), listed by an error if a key is unknown. Every option is checked "
    "before any file is read. A classical method gets the fixed image's voxel size from its NIfTI header "
    "as voxel_size (mm per axis: it shapes the pyramid and the B-spline's 16 mm control spacing); "
    "--option voxel_size=(1,1,3) overrides it"
)
AFFINE_OPTION_HELP = (
    "an option of the affine stage of default and the other affine+... methods "
    "(regedu.classical.register_affine: transform, similarity, levels, iterations, lr, window, bins, init, "
    "tolerance), repeatable: --affine-option levels=2 --affine-option iterations=(100,50) --affine-option "
    "transform=rigid. By default it chooses its levels from the image and skips the finest; e.g. "
    "iterations=(100,50,25) (a 2 mm brain's 3 levels) also refines the affine at full resolution"
)


def add_common(parser, method: bool = True) -> None:
    """``--device`` and ``--overwrite``; with ``method``, also the options that choose and tune it."""
    if method:
        parser.add_argument("--method", default="default", metavar="NAME",
                            help="any name in regedu.api.METHODS: classical (default = affine+bspline+dense, "
                                 "affine, dense, svf, bspline, demons, affine+demons, ...) or learned "
                                 "(voxelmorph, voxelmorph+io)")
        parser.add_argument("--model", metavar="MODEL.pt", default=None,
                            help="checkpoint for a learned method (from `regedu train`); default the "
                                 "shipped 2D brain model (pyramid2d_brain, a multiscale VoxelMorph)")
        parser.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                            help=OPTION_HELP)
        parser.add_argument("--affine-option", type=key_value, action="append", default=[],
                            metavar="KEY=VALUE", help=AFFINE_OPTION_HELP)
        parser.add_argument("--no-normalize", action="store_true",
                            help="register the intensities as they are (default: clip at the 1st and 99th "
                                 "percentile and rescale to [0, 1], as the networks were trained)")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist")
