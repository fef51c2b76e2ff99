"""A restricted unpickler for the pickled keys of the challenge formats (never arbitrary code).

The CVPR 2025 interactive cases store ``boxes``, ``clicks`` and ``clicks_order`` as numpy object
arrays, i.e. pickles. A pickle can name any callable, so these are read with an unpickler that
admits only what such data needs: the opcodes of lists, dicts, tuples, strings, numbers, booleans
and None, plus numpy's array and scalar reconstruction. Anything else (a ``GLOBAL`` naming
``os.system``, say) is refused with an error naming the file and the key. The result is checked
once more, value by value, so that only plain data and numeric arrays come out.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from umedsam.errors import InputError

MAX_PICKLE_BYTES = 64 << 20
MAX_DEPTH = 8
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Raise ValueError unless ``value`` is plain data (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        return
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            for item in value.ravel():
                _check_plain(item, where, depth + 1)
        elif value.dtype.kind not in "biuf":
            raise ValueError(f"{where} holds an array of dtype {value.dtype}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, where, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}")
            _check_plain(item, where, depth + 1)
        return
    raise ValueError(f"{where} holds a {type(value).__name__}")


def load_pickled_key(path: str | Path, key: str) -> Any:
    """Read the object array ``key`` of an .npz with the restricted unpickler.

    Returns:
        The array's contents as a list (an object array of N entries gives N entries); a
        non-object array is returned as is.

    Raises:
        InputError: the key is missing, too large, not a valid .npy member, or its pickle names
            anything beyond plain data and numeric arrays.
    """
    path = Path(path)
    member = f"{key}.npy"
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise InputError(path, f"missing key '{key}'") from None
            if info.file_size > MAX_PICKLE_BYTES:
                raise InputError(
                    path, f"'{key}' is {info.file_size} bytes; at most {MAX_PICKLE_BYTES}"
                )
            raw = zf.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise InputError(path, f"not a readable .npz file ({err})") from err
    fh = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if not dtype.hasobject:
            fh.seek(0)
            return np.lib.format.read_array(fh, allow_pickle=False)
        value = _RestrictedUnpickler(fh).load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refused"):
            raise InputError(path, f"'{key}': {err} (only plain data is accepted)") from err
        raise InputError(path, f"'{key}' is not a readable array ({err})") from err
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises many types; all mean "unusable"
        raise InputError(path, f"'{key}' is not a readable array ({type(err).__name__})") from err
    try:
        _check_plain(value, f"'{key}'")
    except ValueError as err:
        raise InputError(path, f"{err} (only plain data is accepted)") from err
    if isinstance(value, np.ndarray):
        if value.shape != tuple(shape):
            raise InputError(path, f"'{key}' decodes to shape {value.shape}, header says {shape}")
        return value.tolist() if value.dtype.hasobject else value
    return value
