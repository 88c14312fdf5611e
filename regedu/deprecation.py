"""Old names that keep working for one release, with a ``DeprecationWarning`` that names the new one.

When a keyword or a function is renamed (so that one word keeps one meaning across the package),
the old spelling still works for one release: it warns, then does exactly what the new one does.

* :func:`renamed_keyword`: inside a function, the value of a keyword that has a new name;
* :func:`renamed_function`: a function under its old name.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable

__all__ = ["warn_renamed", "renamed_keyword", "renamed_function"]


def warn_renamed(old: str, new: str) -> None:
    """Warn (``DeprecationWarning``) that ``old`` is now called ``new``.

    The warning names the line of the user's code that used the old name: the first caller outside
    regedu (and torch, whose ``no_grad`` decorator wraps some functions), which is also what makes
    Python show it (a ``DeprecationWarning`` is shown by default when it points into ``__main__``,
    a notebook cell for example).
    """
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new} instead "
                  f"(same meaning).", DeprecationWarning, stacklevel=_first_outside_library())


def _first_outside_library() -> int:
    """``stacklevel`` (for a ``warnings.warn`` in :func:`warn_renamed`) of the first frame whose module
    is neither regedu's nor torch's."""
    frame, level = sys._getframe(2), 2  # the caller of warn_renamed is level 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in ("regedu", "torch"):
        frame, level = frame.f_back, level + 1
    return level


def renamed_keyword(new_value, old_value, new: str, old: str, default=None):
    """The value a function should use for a keyword renamed from ``old`` to ``new``.

    Call it as ``value = renamed_keyword(new_value, old_value, "new", "old", default)`` with the
    two keywords' values (the old one defaulting to ``None``). When only the old keyword was given,
    it warns and returns its value; when both were (``new_value`` is not ``default``), it raises
    ``TypeError``; otherwise it returns ``new_value``.
    """
    if old_value is None:
        return new_value
    if _differs(new_value, default):
        raise TypeError(f"`{old}` is the old name of `{new}`: give only `{new}`.")
    warn_renamed(f"the keyword `{old}`", f"`{new}`")
    return old_value


def _differs(value, default) -> bool:
    """Whether ``value`` is not the keyword's ``default`` (arrays and tensors count as given)."""
    if value is default:
        return False
    try:
        return bool(value != default)
    except (TypeError, ValueError, RuntimeError):
        return True


def renamed_function(function: Callable, old_name: str) -> Callable:
    """``function`` under its old name ``old_name``: it warns on every call, then calls ``function``."""

    @functools.wraps(function)
    def old(*args, **kwargs):
        warn_renamed(f"`{old_name}`", f"`{function.__module__}.{function.__name__}`")
        return function(*args, **kwargs)

    old.__name__ = old.__qualname__ = old_name
    old.__doc__ = f"Deprecated name of :func:`{function.__module__}.{function.__name__}` (it warns)."
    return old
