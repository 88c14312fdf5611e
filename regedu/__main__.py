"""``python -m regedu``: the same as the ``regedu`` command (see :mod:`regedu.cli`)."""

import sys

from .cli import main

sys.exit(main())
