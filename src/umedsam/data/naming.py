"""What challenge case file names say: the modality token of ``2DBox_CT_...`` style names.

Only the modality is read from a name (to group results and balance training); whether a case is
2D or 3D always comes from its array shapes.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["modality_from_name"]

# "2DBox_", "3DBox_", "2D_", "3D_" or any other "2D<Word>_"/"3D<Word>_" prefix, then the modality
_MODALITY_RE = re.compile(r"^[23]D[A-Za-z]*_([^_]+)_")


def modality_from_name(name: str) -> str:
    """Modality parsed from a challenge case name.

    Args:
        name: a case or file name, or a path to one, such as ``2DBox_Dermoscopy_PH2_IMD003.npz``,
            ``3DBox_CT_DeepLesion_000001.npz`` or ``2D_US_HC18_001.npz``.

    Returns:
        The token between a ``2D<Word>_``/``3D<Word>_`` prefix (``2DBox_``, ``3DBox_``, ``2D_``,
        ``3D_``, ...) and the next ``_`` (e.g. ``"Dermoscopy"``, ``"CT"``), or ``"unknown"`` when
        the name has no such prefix or no further ``_`` after the modality.
    """
    match = _MODALITY_RE.match(Path(name).name)
    return match.group(1) if match else "unknown"
