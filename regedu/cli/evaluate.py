"""``regedu evaluate``: register every pair of a CSV list and print (and write) a table of scores.

The list is read by :func:`regedu.data.read_pair_list`; every file is checked from its header
before the first pair is registered; a failing pair stops the run after the rows done so far are
written to ``--csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .common import (
    USER_ERRORS,
    CommandError,
    add_common,
    check_output,
    claim,
    device_from,
    format_value,
    note,
    one_line,
    table,
    warn,
)
from .methods import (
    check_method,
    folding_percent,
    load_network,
    load_pair,
    mean_dice,
    mean_hd95,
    method_options,
    run_method,
)

__all__ = ["EVALUATION_COLUMNS", "add_parser", "run"]

EVALUATION_COLUMNS = ("pair", "moving", "fixed", "dice_before", "dice_after", "hd95_mm", "folding_percent",
                      "seconds")


def _evaluate_pair(number: int, row: dict, args, learned: bool, network, device) -> dict:
    def warn_for_pair(message):
        warn(f"pair {number}: {message}")

    pair = load_pair(row["moving"], row["fixed"], row["moving_labels"], row["fixed_labels"],
                     normalize=not args.no_normalize, warn=warn_for_pair, method=args.method)
    result = run_method(pair, args.method, learned, network, device, method_options(args), progress=False)
    return {
        "pair": number, "moving": row["moving"].name, "fixed": row["fixed"].name,
        "dice_before": mean_dice(pair.moving_labels, pair.fixed_labels),
        "dice_after": mean_dice(result.warped_labels, pair.fixed_labels),
        "hd95_mm": mean_hd95(result.warped_labels, pair.fixed_labels, pair.voxel_size),
        "folding_percent": folding_percent(result.disp), "seconds": result.seconds,
    }


def _mean_row(rows: list[dict]) -> dict:
    mean = {"pair": "mean", "moving": "", "fixed": ""}
    for key in EVALUATION_COLUMNS[3:]:
        values = [row[key] for row in rows if row[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def _evaluation_table(rows: list[dict]) -> str:
    header = ["pair", "moving", "fixed", "Dice before", "Dice after", "HD95 mm", "folding %", "seconds"]
    digits = {"dice_before": 3, "dice_after": 3, "hd95_mm": 2, "folding_percent": 3, "seconds": 2}
    cells = [[str(row["pair"]), row["moving"], row["fixed"],
              *(format_value(row[key], places) for key, places in digits.items())] for row in rows]
    return table(header, cells)


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVALUATION_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row[key] is None else row[key] for key in EVALUATION_COLUMNS})


def run(args) -> int:
    """Run ``regedu evaluate`` with the parsed ``args``; return the exit status."""
    from ..data.pairs import read_pair_list

    learned = check_method(args.method, args.model)
    method_options(args)  # every option checked before any file is read
    out = check_output(args.csv, "--csv", args.overwrite, suffixes=(".csv",)) if args.csv else None
    outputs = claim({"--csv": out}, args.overwrite) if out is not None else None
    pairs = read_pair_list(args.pairs)
    device = device_from(args.device)
    _check_pair_files(pairs, args.pairs, device, learned)
    network = load_network(args.model, device) if learned else None
    rows = _evaluate_pairs(pairs, args, learned, network, device, outputs)
    rows.append(_mean_row(rows))
    print(f"{args.method} on {len(pairs)} pair(s) from {args.pairs}:")
    print(_evaluation_table(rows))
    if outputs is not None:
        _save_rows(rows, outputs)
        print(f"wrote {out}")
    return 0


def _evaluate_pairs(pairs: list[dict], args, learned: bool, network, device, outputs) -> list[dict]:
    """One row per pair. When a pair fails, the rows done so far go to ``--csv`` before the error."""
    rows: list[dict] = []
    for number, row in enumerate(pairs, start=1):
        try:
            rows.append(_evaluate_pair(number, row, args, learned, network, device))
        except (CommandError, *USER_ERRORS) as error:
            if outputs is not None and rows:
                _save_rows(rows, outputs)
                note(f"wrote the {len(rows)} pair(s) done before pair {number} failed to "
                     f"{outputs.paths['--csv']}.")
            raise CommandError(f"pair {number} ({row['moving'].name}, {row['fixed'].name}): "
                               f"{one_line(error)}") from error
        note(f"pair {number}/{len(pairs)} done ({rows[-1]['seconds']:.2f} s)")
    return rows


def _save_rows(rows: list[dict], outputs) -> None:
    """Write ``rows`` to the claimed ``--csv`` (a temporary file, renamed into place when complete)."""
    outputs.write("--csv", lambda temporary: _write_csv(rows, temporary))
    outputs.commit()


def _check_pair_files(pairs: list[dict], pair_list, device: torch.device, learned: bool) -> None:
    """Check every file of the list from its header before any pair is registered: readable NIfTI,
    one 2D or 3D image, moving and fixed of one dimensionality, labels on their image's grid
    (:func:`regedu.data.pairs.check_pair_shapes`), and a registration that fits in memory."""
    from ..data.pairs import check_pair_shapes
    from ..memory import NotEnoughMemory, check_fits

    for number, row in enumerate(pairs, start=1):
        shapes = {key: _header_shape(file, number, key, pair_list) for key, file in row.items() if file}
        try:
            check_pair_shapes(row, shapes)
            check_fits(shapes["fixed"], f"pair {number} ({row['moving']} onto {row['fixed']})", device,
                       learned=learned)
        except ValueError as error:
            raise CommandError(f"pair {number} of {pair_list}: {one_line(error)}") from None
        except NotEnoughMemory as error:
            raise CommandError(str(error)) from None


def _header_shape(file: Path, number: int, key: str, pair_list) -> tuple[int, ...]:
    """The loaded spatial shape of one file of a pair list, from its header; a clear error if unreadable."""
    from ..data.pairs import read_header_shape

    try:
        return read_header_shape(file, key)
    except (OSError, ValueError, MemoryError) as error:
        raise CommandError(f"pair {number} of {pair_list}, {key}: {one_line(error)}") from None


def add_parser(commands) -> None:
    """Add ``evaluate`` to the subcommands."""
    parser = commands.add_parser(
        "evaluate", help="evaluate a method on a list of labelled pairs", description=(
            "Register every pair of a CSV list (columns moving,fixed,moving_labels,fixed_labels; "
            "relative paths start at the CSV's folder; label columns may be empty) and print mean "
            "Dice before and after, HD95 (mm, mean over labels, inf when a label vanishes), folding "
            "(% of voxels with det J <= 0) and seconds per pair, with a mean row."))
    parser.add_argument("pairs", metavar="PAIRS.csv", help="the pair list")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    add_common(parser)
    parser.set_defaults(run=run)
