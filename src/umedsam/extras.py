"""Optional dependencies: imported at first use, with an error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from umedsam.errors import MissingExtraError


def import_optional(module: str, *, package: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise :class:`MissingExtraError` naming the extra.

    Args:
        module: importable module name (``"nibabel"``).
        package: the pip distribution to name in the message.
        extra: the umedsam extra that installs it (``"nifti"``).
        purpose: what needs it, e.g. ``"Reading NIfTI files"``.

    Raises:
        MissingExtraError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(package, extra, purpose) from err
