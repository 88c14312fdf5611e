"""The ``regedu`` command (also ``python -m regedu``): train, register, evaluate, demo.

Each subcommand is a thin layer over the package, in a module of its own: :mod:`.train` over
:func:`regedu.train.train`, :mod:`.register` and :mod:`.evaluate` over :func:`regedu.register`
(every method in :data:`regedu.api.METHODS`, classical or learned) on pairs loaded by
:func:`regedu.data.load_pair` (checked with :func:`regedu.data.check_pair`), :mod:`.demo` over the
offline MNI slice and :mod:`regedu.viz`. What they share lives in :mod:`.common` (errors, option
types, output paths, printing) and :mod:`.methods` (running one method on a pair).

Mistakes a user can make (a missing file, a bad option, a shape mismatch, a wrong checkpoint)
end with one line ``regedu: error: ...`` on stderr and exit status 2, never a traceback
(set ``REGEDU_DEBUG=1`` to see the traceback anyway). These are :class:`CommandError` and what the
package raises for bad input (:data:`~regedu.cli.common.USER_ERRORS`: ``ValueError``, ``OSError``,
...); any other exception is a bug in regedu and keeps its traceback. Results go to stdout;
warnings, notes and progress bars to stderr. No file is overwritten unless ``--overwrite`` (or
``--resume``) says so.

Outputs (:mod:`regedu.outputs`) are claimed before any work, with a lock file beside each (so a
read-only folder, or a second run writing the same file, stops the run at once), and written together
at the end through hidden temporary files: a run leaves all its outputs or none. Inputs are checked up
front as far as headers allow (sizes against the files and against memory, :mod:`regedu.memory`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..data.pairs import NiftiPair as Pair  # Pair, read_pair_list, warp_moving: their home is regedu.data
from ..data.pairs import read_pair_list, warp_moving
from . import demo, evaluate, register, train
from .common import PROG, USER_ERRORS, CommandError, Parser, one_line
from .evaluate import EVALUATION_COLUMNS
from .methods import load_pair
from .train import synthetic_data

__all__ = ["main", "build_parser", "CommandError", "USER_ERRORS", "EVALUATION_COLUMNS", "load_pair",
           "warp_moving", "read_pair_list", "Pair"]


def build_parser() -> Parser:
    """The argument parser of the ``regedu`` command, with its four subcommands."""
    from .. import __version__

    parser = Parser(prog=PROG, description=(
        "regedu: medical image registration, classical and learned, for teaching and experiments."),
        epilog="Run `regedu COMMAND --help` for the options of each command. Errors print one line; "
               "set REGEDU_DEBUG=1 for the full traceback.")
    parser.add_argument("--version", action="version", version=f"regedu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for command in (train, register, evaluate, demo):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``regedu`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    0: success; 2: a usage or input error (one line on stderr); 130: interrupted. Any other
    exception is a bug, raised with its traceback.
    """
    from ..outputs import open_count, release_all

    claimed_before = open_count()
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, *USER_ERRORS) as error:
        if os.environ.get("REGEDU_DEBUG") and not isinstance(error, CommandError):
            raise
        print(f"{PROG}: error: {one_line(error) or type(error).__name__}", file=sys.stderr)
        return 2
    finally:
        release_all(keep=claimed_before)  # locks and temporaries of this run's outputs; committed files stay


_synthetic_data = synthetic_data  # its old private name, used by tests/test_varied.py
