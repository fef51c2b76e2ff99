"""Labelled cases where users keep them: challenge npz folders, image/mask folders, nnU-Net raw.

A *source* lists its cases by name and loads one as a :class:`LabelledCase` (the challenge's
arrays: ``imgs`` uint8 ``(H, W, 3)`` or ``(D, H, W)``, ``gts`` objects numbered 1..N). Training
(:class:`umedsam.data.dataset.SegmentationDataset`), distillation and ``umedsam evaluate`` read
every layout through this one interface:

* :class:`NpzFolderSource`: ``imgs/*.npz`` + ``gts/*.npz`` (the CVPR 2024 challenge layout).
* :class:`ImageMaskFolderSource`: an image folder and a mask folder matched by file stem
  (PNG/JPEG/TIFF/BMP), binary or label-valued masks; objects are labels, or connected components
  where asked; an optional ignore/field-of-view folder (mask pixels outside it become background,
  and evaluation scores only inside it).
* :class:`umedsam.data.nnunet.NnUNetRawSource`: the nnU-Net v2 raw layout (``dataset.json``,
  ``imagesTr/<case>_0000<ending>``, ``labelsTr/<case><ending>``), 2D or 3D.

Bad data never stops a run by itself: each source checks what it can see when it lists its cases
(unmatched stems, missing labels) and the dataset checks each case as it loads it (unreadable
file, size mismatch, empty or non-binary mask); each problem is one line naming the file, kept in
``problems`` and logged, and the case is skipped. Sources are built from the config's mappings by
:func:`open_source`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.data.naming import modality_from_name
from umedsam.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "CaseSource",
    "ImageMaskFolderSource",
    "LabelledCase",
    "NpzFolderSource",
    "open_source",
    "read_case_list",
    "sources_from_config",
]

logger = logging.getLogger(__name__)

#: Image files an image/mask folder may hold.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: A mask with more distinct values than this is not a label map (a JPEG-compressed or
#: anti-aliased mask, a probability map).
MAX_MASK_VALUES = 64
#: Mask files in a lossy format: compression adds stray values near 0 and near 255 along every
#: edge, so they cannot hold labels; they are read as binary masks (> LOSSY_THRESHOLD).
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")
LOSSY_THRESHOLD = 127


@dataclass
class LabelledCase:
    """One labelled image in the challenge's arrays.

    Attributes:
        imgs: ``(H, W, 3)`` or ``(D, H, W)`` uint8.
        gts: label map of the spatial shape, objects 1..N (0 = background).
        modality: modality name (``CT``, ``Endoscopy``, ...).
        spacing: volumes: ``(x, y, z)`` mm as the challenge stores it; None for 2D.
        valid: optional bool map of the pixels that count (a field of view); None: all.
    """

    imgs: NDArray
    gts: NDArray
    modality: str
    spacing: NDArray | None = None
    valid: NDArray[np.bool_] | None = None


class CaseSource:
    """Base of the sources: a name, a sampling weight, case names, and a loader.

    Attributes:
        name: short name (logs, image keys, sampling groups).
        weight: relative share of training draws when several sources mix (see
            :func:`umedsam.data.dataset.epoch_order`).
        problems: one line per problem found while listing (unmatched stems, ...).
    """

    name: str = ""
    weight: float = 1.0
    labelled: bool = True  # False: images only (distillation), every ``gts`` is empty

    def __init__(self, name: str, weight: float, modality: str = "") -> None:
        if not weight >= 0:
            raise ValueError(f"source {name!r}: weight must be >= 0; got {weight}")
        self.name = name
        self.weight = float(weight)
        self.problems: list[str] = []
        self._names: list[str] = []
        self._modality = modality

    def case_names(self) -> list[str]:
        """Names of the cases this source offers, sorted."""
        return list(self._names)

    def modality(self, case: str) -> str:
        """Modality of ``case`` (without loading it): the source's own, by default."""
        return self._modality

    def load(self, case: str) -> LabelledCase:
        """The arrays of ``case``.

        Raises:
            InputError: unreadable or inconsistent files, named in the message.
        """
        raise NotImplementedError

    def identity(self) -> str:
        """A string naming the data (folders), stable across runs: keys image caches."""
        raise NotImplementedError

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        logger.warning("%s: %s", self.name, message)


def read_case_list(path: str | Path) -> list[str]:
    """Case names from a text file: one per line, ``#`` comments and blank lines ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(path, f"cannot read the case list ({err.strerror or err})") from err
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def _selected(names: list[str], cases: Sequence[str] | None, source: CaseSource) -> list[str]:
    """``names`` restricted to ``cases`` (all when None); unknown listed names are problems."""
    if cases is None:
        return names
    known = set(names)
    for missing in sorted(set(cases) - known):
        source._problem(f"case {missing!r} of the case list is not in the source")
    wanted = set(cases)
    return [n for n in names if n in wanted]


class NpzFolderSource(CaseSource):
    """Challenge npz cases: ``root/imgs/<case>.npz`` with ``root/gts/<case>.npz``.

    Args:
        root: the folder.
        name: source name (default: the folder's name).
        weight: sampling weight.
        cases: keep only these case names (file names, with or without ``.npz``).
        modalities: keep only cases of these modalities (file-name token).

    Raises:
        FileNotFoundError: ``imgs/`` or ``gts/`` is missing.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        name: str | None = None,
        weight: float = 1.0,
        cases: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        super().__init__(name or self.root.name, weight)
        for sub in ("imgs", "gts"):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(
                    f"{self.root / sub}: folder not found (need imgs/ and gts/)"
                )
        names = []
        for path in sorted((self.root / "imgs").glob("*.npz")):
            if not (self.root / "gts" / path.name).is_file():
                self._problem(f"{path.name}: no ground truth in {self.root / 'gts'}")
            elif modalities is None or modality_from_name(path.name) in set(modalities):
                names.append(path.name)
        wanted = None if cases is None else [c if c.endswith(".npz") else f"{c}.npz" for c in cases]
        self._names = _selected(names, wanted, self)

    def modality(self, case: str) -> str:
        """From the file name's modality token."""
        return modality_from_name(case)

    def identity(self) -> str:
        """The resolved folder."""
        return str(self.root.resolve())

    def load(self, case: str) -> LabelledCase:
        """Read and check ``imgs/<case>`` and ``gts/<case>``."""
        from umedsam.data.npz import load_case

        image = load_case(self.root / "imgs" / case)
        gts_path = self.root / "gts" / case
        try:
            with np.load(gts_path, allow_pickle=False) as data:
                if "gts" not in data.files:
                    raise InputError(gts_path, f"missing key 'gts' (keys: {sorted(data.files)})")
                gts = data["gts"]
        except (OSError, ValueError) as err:
            raise InputError(gts_path, f"not a readable npz ({err})") from err
        spatial = image.imgs.shape if image.is_3d else image.imgs.shape[:2]
        if gts.shape != spatial:
            raise InputError(
                gts_path, f"'gts' shape {gts.shape} does not match the image's {spatial}"
            )
        if gts.dtype.kind not in "ui":
            raise InputError(gts_path, f"'gts' must be integer labels; got {gts.dtype}")
        return LabelledCase(image.imgs, gts, self.modality(case), image.spacing)


def _files_by_stem(folder: Path, source: CaseSource, what: str) -> dict[str, Path]:
    """Image files of ``folder`` by stem; a stem seen twice is a problem (first kept)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            source._problem(f"{path.name}: a second {what} file for stem {path.stem!r} (ignored)")
            continue
        found[path.stem] = path
    return found


def labelled_case(
    image: NDArray, meta: Any, labels: NDArray, label_path: Path, modality: str, **options: Any
) -> dict[str, NDArray]:
    """The challenge arrays of an image and its labels (:func:`umedsam.data.convert.convert_case`
    with ``options``); a problem names ``label_path``."""
    from umedsam.data.convert import convert_case

    try:
        return convert_case(image, meta, labels, modality=modality, **options)
    except ValueError as err:
        raise InputError(label_path, str(err)) from err


def mask_to_labels(mask: NDArray, path: Path) -> NDArray[np.int64]:
    """A mask image as integer labels: binary (0 and one value) -> 0/1; else its label values.
    A JPEG mask (lossy) is binary: its pixels above :data:`LOSSY_THRESHOLD` are the object.

    Raises:
        InputError: colour mask with different channels, empty mask, or a mask with more than
            :data:`MAX_MASK_VALUES` distinct values (JPEG-compressed, anti-aliased, probabilities).
    """
    from umedsam.data.convert import as_label_map

    if mask.ndim == 3:
        raise InputError(path, "colour mask: save labels as a single-channel (grey) image")
    if path.suffix.lower() in LOSSY_MASK_SUFFIXES:
        mask = (mask > LOSSY_THRESHOLD).astype(np.uint8)
    values = np.unique(mask)
    if values.size > MAX_MASK_VALUES:
        raise InputError(
            path,
            f"not a binary or label mask ({values.size} distinct values; a JPEG-compressed or "
            "smoothed mask? save masks as PNG with one value per label)",
        )
    if values.max(initial=0) == 0:
        raise InputError(path, "empty mask (no foreground pixel)")
    if values.size == 2:
        return (mask > 0).astype(np.int64)
    try:
        return as_label_map(mask)
    except ValueError as err:
        raise InputError(path, str(err)) from err


class ImageMaskFolderSource(CaseSource):
    """2D images and masks in two folders, matched by file stem.

    Args:
        images: folder of images (PNG, JPEG, TIFF, BMP; grey or RGB).
        masks: folder of masks with the same stems: binary (0 and one value, e.g. 0/255) or
            label-valued (0 = background); None for unlabelled images (distillation only).
        modality: modality of every image (e.g. ``Endoscopy``, ``Fundus``).
        objects: ``labels`` (one object per label value) or ``components`` (one per connected
            component of each label, e.g. several polyps in one binary mask).
        ignore: optional folder of field-of-view masks with the same stems: pixels outside
            (value 0) never count as an object and are not scored by evaluation.
        name: source name (default: the parent folder's name, or the images folder's).
        weight: sampling weight.
        cases: keep only these stems.
        min_size: drop components smaller than this many pixels (0 keeps all).

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: an unknown ``objects`` value.
    """

    def __init__(
        self,
        images: str | Path,
        masks: str | Path | None,
        *,
        modality: str,
        objects: str = "labels",
        ignore: str | Path | None = None,
        name: str | None = None,
        weight: float = 1.0,
        cases: Sequence[str] | None = None,
        min_size: int = 0,
    ) -> None:
        self.images = Path(images)
        self.masks = None if masks is None else Path(masks)
        self.labelled = self.masks is not None
        self.ignore = None if ignore is None else Path(ignore)
        default = self.images.parent.name if self.images.name == "images" else self.images.name
        super().__init__(name or default, weight, modality)
        if objects not in ("labels", "components"):
            raise ValueError(f"objects must be 'labels' or 'components'; got {objects!r}")
        for folder in (self.images, self.masks, self.ignore):
            if folder is not None and not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder not found")
        self.split_components = objects == "components"
        self.min_size = int(min_size)
        image_files = _files_by_stem(self.images, self, "image")
        self._pairs: dict[str, tuple[Path, Path | None, Path | None]]
        if self.masks is None:
            self._pairs = {s: (p, None, None) for s, p in image_files.items()}
            self._names = _selected(sorted(image_files), cases, self)
            return
        mask_files = _files_by_stem(self.masks, self, "mask")
        lossy = sum(p.suffix.lower() in LOSSY_MASK_SUFFIXES for p in mask_files.values())
        if lossy:
            logger.warning(
                "%s: %d mask(s) in JPEG, a lossy format: each is read as one binary mask "
                "(pixels > %d; --objects components splits it into pieces)",
                self.name, lossy, LOSSY_THRESHOLD,
            )  # fmt: skip
        fov_files = _files_by_stem(self.ignore, self, "ignore") if self.ignore else {}
        for stem in sorted(set(image_files) - set(mask_files)):
            self._problem(f"{image_files[stem].name}: no mask with stem {stem!r} in {self.masks}")
        for stem in sorted(set(mask_files) - set(image_files)):
            self._problem(f"{mask_files[stem].name}: no image with stem {stem!r} in {self.images}")
        matched = sorted(set(image_files) & set(mask_files))
        if self.ignore is not None:
            for stem in [s for s in matched if s not in fov_files]:
                self._problem(f"{image_files[stem].name}: no ignore mask in {self.ignore}")
            matched = [s for s in matched if s in fov_files]
        self._pairs = {s: (image_files[s], mask_files[s], fov_files.get(s)) for s in matched}
        self._names = _selected(matched, cases, self)

    def identity(self) -> str:
        """The resolved image and mask folders."""
        masks = "unlabelled" if self.masks is None else self.masks.resolve()
        return f"{self.images.resolve()}+{masks}"

    def load(self, case: str) -> LabelledCase:
        """Read the pair; check sizes and mask values; objects as configured."""
        from umedsam.data.convert import convert_case
        from umedsam.data.readers import read_image

        image_path, mask_path, fov_path = self._pairs[case]
        image, meta = read_image(image_path)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        if mask_path is None:
            imgs = convert_case(image, meta, modality=self._modality)["imgs"]
            return LabelledCase(imgs, np.zeros(imgs.shape[:2], np.uint8), self._modality)
        mask, _ = read_image(mask_path, labels=True)
        if mask.shape[:2] != image.shape[:2]:
            raise InputError(
                mask_path,
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from the image's "
                f"{image.shape[1]}x{image.shape[0]} ({image_path.name})",
            )
        labels = mask_to_labels(mask, mask_path)
        valid = None
        if fov_path is not None:
            fov, _ = read_image(fov_path, labels=True)
            if fov.shape[:2] != image.shape[:2]:
                raise InputError(fov_path, "ignore mask size differs from the image's")
            valid = np.asarray(fov if fov.ndim == 2 else fov.max(axis=2)) > 0
            labels = np.where(valid, labels, 0)
        arrays = labelled_case(
            image,
            meta,
            labels,
            mask_path,
            self._modality,
            min_size=self.min_size,
            split_components=self.split_components,
        )
        return LabelledCase(arrays["imgs"], arrays["gts"], self._modality, None, valid)


def _case_list(spec: Mapping[str, Any], base: Path) -> list[str] | None:
    cases = spec.get("cases")
    if cases is None:
        return None
    if isinstance(cases, str):
        return read_case_list(base / cases)
    return [str(c) for c in cases]


def open_source(spec: Mapping[str, Any], base: str | Path = ".") -> CaseSource:
    """A source from a config mapping.

    Keys: ``kind`` (``npz``, ``folder``, ``nnunet``), ``weight``, ``name``, ``cases`` (a list,
    or a text file of names, one per line) and the kind's own keys: ``root`` (npz, nnunet),
    ``images``, ``masks``, ``modality``, ``objects``, ``ignore``, ``min_size`` (folder),
    ``objects``, ``split`` (nnunet: ``Tr`` or ``Ts``). Relative paths are relative to ``base``.

    Raises:
        ValueError: an unknown kind or key, or a missing required key.
        FileNotFoundError: a folder that does not exist.
    """
    kinds = {
        "npz": {"root", "modalities"},
        "folder": {"images", "masks", "modality", "objects", "ignore", "min_size"},  # masks: opt.
        "nnunet": {"root", "objects", "split"},
    }
    kind = spec.get("kind")
    if kind not in kinds:
        raise ValueError(f"source kind must be one of {', '.join(kinds)}; got {kind!r}")
    common = {"kind", "weight", "name", "cases"}
    unknown = sorted(set(spec) - common - kinds[kind])
    if unknown:
        raise ValueError(f"{kind} source: unknown key(s) {unknown}; known {sorted(kinds[kind])}")
    base = Path(base)

    def path(key: str) -> Path:
        if not spec.get(key):
            raise ValueError(f"{kind} source: '{key}' is required")
        return base / str(spec[key])

    shared: dict[str, Any] = {
        "name": spec.get("name"),
        "weight": float(spec.get("weight", 1.0)),
        "cases": _case_list(spec, base),
    }
    if kind == "npz":
        modalities = spec.get("modalities")
        return NpzFolderSource(path("root"), modalities=modalities, **shared)
    if kind == "folder":
        if not spec.get("modality"):
            raise ValueError("folder source: 'modality' is required (e.g. Endoscopy)")
        return ImageMaskFolderSource(
            path("images"),
            path("masks") if spec.get("masks") else None,
            modality=str(spec["modality"]),
            objects=str(spec.get("objects", "labels")),
            ignore=path("ignore") if spec.get("ignore") else None,
            min_size=int(spec.get("min_size", 0)),
            **shared,
        )
    from umedsam.data.nnunet import NnUNetRawSource

    split = str(spec.get("split", "Tr"))
    if split not in ("Tr", "Ts"):
        raise ValueError(f"nnunet source: split must be Tr or Ts; got {split!r}")
    return NnUNetRawSource(
        path("root"), objects=str(spec.get("objects", "labels")), images=f"images{split}", **shared
    )


def sources_from_config(
    root: str | None,
    specs: Sequence[Mapping[str, Any]],
    *,
    modalities: Sequence[str] | None = None,
    labelled: bool = True,
) -> list[CaseSource]:
    """The sources of a config's data section: ``root`` (a challenge folder) and ``specs``.

    Args:
        root: a challenge npz folder, or None/"" for none.
        specs: source mappings (see :func:`open_source`).
        modalities: restrict the challenge folder to these modalities.
        labelled: refuse unlabelled sources (training needs masks; distillation does not).

    Raises:
        ValueError: no source at all, a bad spec, or an unlabelled source where labels are needed.
        FileNotFoundError: a missing folder.
    """
    sources: list[CaseSource] = []
    if root:
        sources.append(NpzFolderSource(root, modalities=modalities))
    sources.extend(open_source(spec) for spec in specs)
    if not sources:
        raise ValueError("no training data: set data.train_root or list data.sources")
    if labelled:
        bare = [s.name for s in sources if not s.labelled]
        if bare:
            raise ValueError(
                f"source(s) {bare} have no masks: unlabelled images feed distillation only"
            )
    return sources


def index_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an ``index.csv`` (the shared data folders' file lists)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
