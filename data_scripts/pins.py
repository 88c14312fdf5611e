"""Trust on first use: SHA-256 values recorded locally for files whose source publishes none.

Some providers publish only an MD5 (neurite OASIS 2D) or no checksum at all
(Learn2Reg OASIS). For those, the first download is checked against what the
source publishes (the MD5 where there is one), then its SHA-256 is computed and
written to a pin file next to the downloads (``<root>/downloads/sha256-pins.json``);
every later download, or copy placed there by hand, must have that SHA-256.

This protects against a file that changes later (a corrupted mirror, a replaced
archive); it cannot tell whether the *first* download was the genuine file, which
is why it is announced with a warning. To trust a new version on purpose, delete
its entry from the pin file (or the whole file).

The pin file is JSON: ``{"<file name>": {"sha256": hex, "url": ..., "first_verified_by": ...,
"recorded": ISO date}}``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["PIN_FILE_NAME", "PinFileError", "pinned_sha256", "record_pin"]

PIN_FILE_NAME = "sha256-pins.json"


class PinFileError(ValueError):
    """The pin file exists but cannot be read as pins."""


def read_pins(pin_file) -> dict[str, dict]:
    """All pins in ``pin_file`` (``{}`` when it does not exist yet)."""
    pin_file = Path(pin_file)
    if not pin_file.exists():
        return {}
    try:
        pins = json.loads(pin_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PinFileError(
            f"cannot read the SHA-256 pin file {pin_file} ({error}). Repair it, or delete it: the next "
            f"download of each file is then trusted on first use again."
        ) from None
    if not isinstance(pins, dict) or not all(isinstance(pin, dict) and "sha256" in pin
                                             for pin in pins.values()):
        raise PinFileError(f"{pin_file} is not a pin file written by data_scripts: move it away, run again.")
    return pins


def pinned_sha256(pin_file, name: str) -> str | None:
    """The SHA-256 recorded for file ``name``, or None if it has no pin yet."""
    pin = read_pins(pin_file).get(name)
    return pin["sha256"] if pin else None


def record_pin(pin_file, name: str, sha256: str, url: str, verified_by: str) -> None:
    """Record ``sha256`` for file ``name`` (atomically: the pin file is never half-written)."""
    pin_file = Path(pin_file)
    pins = read_pins(pin_file)
    pins[name] = {"sha256": sha256, "url": url, "first_verified_by": verified_by,
                  "recorded": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    pin_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = pin_file.with_name(f".{pin_file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, pin_file)
