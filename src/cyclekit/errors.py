"""User-facing errors.

Everything a user can cause (a bad path, an unreadable image, a wrong option, a missing
optional dependency) raises a subclass of :class:`UserError` whose message names the thing
and the fix. The CLI prints such errors as one line and exits non-zero; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """An error caused by input or configuration, with a message that says how to fix it."""


class ConfigError(UserError, ValueError):
    """An invalid configuration value."""


class DataError(UserError):
    """An unreadable, missing or unsuitable data file or folder."""


class CheckpointError(UserError):
    """A missing, incomplete or incompatible model or training-state file."""


class OutputError(UserError, OSError):
    """An output file could not be written (full disk, read-only folder, ...)."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency or raise a clear error naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"the optional dependency '{module}' is needed{what} but is not installed; "
            f"install it with: pip install 'cyclekit[{extra}]'"
        ) from exc
