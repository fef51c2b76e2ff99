"""Training samples from labelled sources: challenge npz folders, image/mask folders, nnU-Net raw.

The cases come from one or more :mod:`umedsam.data.sources` (several mix with sampling weights,
see :func:`epoch_order`). A dataset item is one 2D image or one slice of a 3D volume that contains at least one object.
Drawing a sample picks random flips, one random object of that slice, and a jittered box, and
returns the LiteMedSAM-preprocessed image, the object's mask and its box, all in the model frame
(``S x S``, S = 256 for LiteMedSAM). Randomness comes from the ``numpy.random.Generator`` passed
in; :func:`sample_rng` derives one per (seed, epoch, position) so an epoch can be replayed
exactly (resume) and split across processes (DDP) without shared state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from umedsam.data.augment import apply_flips, flip_variant_name, jitter_box, random_flips
from umedsam.data.boxes import mask_to_box
from umedsam.data.sources import CaseSource, LabelledCase, NpzFolderSource
from umedsam.data.transforms import boxes_to_model_frame, preprocess_image, resized_hw
from umedsam.errors import InputError

__all__ = [
    "PREPROCESS_VERSION",
    "SegmentationDataset",
    "SliceRef",
    "TrainingSample",
    "epoch_order",
    "sample_rng",
]

logger = logging.getLogger(__name__)

#: Bumped whenever image preprocessing changes (embedding caches record it).
PREPROCESS_VERSION = "litemedsam-1"


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator for one sample position of one epoch (independent of everything else)."""
    return np.random.default_rng([int(seed), int(epoch), int(position), 7])


def epoch_order(
    modalities: Sequence[str],
    *,
    seed: int,
    epoch: int,
    num_samples: int | None = None,
    balanced: bool = False,
    modality_weights: Mapping[str, float] | None = None,
    sources: Sequence[int] | None = None,
    source_weights: Sequence[float] | None = None,
) -> NDArray[np.int64]:
    """Item indices to visit in one epoch.

    With items from several sources (``sources`` names each item's source, ``source_weights``
    each source's weight), every draw first picks a source with probability proportional to its
    weight, then an item of it as below (so 1,600 polyp frames do not drown 2 CT volumes); with
    one source the order is exactly the single-source one.

    Args:
        modalities: modality of each dataset item.
        seed: run seed.
        epoch: epoch number (each epoch gets its own order).
        num_samples: samples per epoch (default: the dataset size).
        balanced: draw a modality uniformly first, then an item of it (with replacement);
            otherwise a permutation (repeated when ``num_samples`` exceeds the size).
        modality_weights: with ``balanced``, draw modality ``m`` with probability proportional
            to ``modality_weights.get(m, 1)`` instead of uniformly (e.g. ``{"CT": 0.25}`` caps how
            often a scarce modality's few items repeat).

    Returns:
        ``(num_samples,)`` int64 indices.

    Raises:
        ValueError: for an empty dataset or a non-positive ``num_samples``.
    """
    n = len(modalities)
    if n == 0:
        raise ValueError("cannot plan an epoch over an empty dataset")
    total = n if num_samples is None else int(num_samples)
    if total <= 0:
        raise ValueError(f"num_samples must be > 0; got {num_samples}")
    if sources is not None and len(set(sources)) > 1:
        return _weighted_source_order(
            modalities, sources, source_weights, seed, epoch, total, balanced, modality_weights
        )
    rng = np.random.default_rng([int(seed), int(epoch), 3])
    if balanced:
        groups: dict[str, list[int]] = {}
        for i, mod in enumerate(modalities):
            groups.setdefault(mod, []).append(i)
        names = sorted(groups)
        weights = np.array([(modality_weights or {}).get(m, 1.0) for m in names], dtype=float)
        if weights.sum() <= 0:
            raise ValueError(f"modality_weights leave no modality to draw: {modality_weights}")
        if np.all(weights == 1.0):
            picks = rng.integers(0, len(names), size=total)
        else:
            picks = rng.choice(len(names), size=total, p=weights / weights.sum())
        return np.array(
            [groups[names[g]][rng.integers(0, len(groups[names[g]]))] for g in picks],
            dtype=np.int64,
        )
    reps = -(-total // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:total].astype(np.int64)


def _weighted_source_order(
    modalities: Sequence[str],
    sources: Sequence[int],
    source_weights: Sequence[float] | None,
    seed: int,
    epoch: int,
    total: int,
    balanced: bool,
    modality_weights: Mapping[str, float] | None,
) -> NDArray[np.int64]:
    """Draw a source by weight, then an item of it (by modality first when ``balanced``)."""
    if len(sources) != len(modalities):
        raise ValueError(f"{len(sources)} source ids for {len(modalities)} items")
    present = sorted({int(s) for s in sources})
    weights = np.array(
        [1.0 if source_weights is None else float(source_weights[s]) for s in present]
    )
    if weights.sum() <= 0:
        raise ValueError(f"source weights leave no source to draw: {list(weights)}")
    rng = np.random.default_rng([int(seed), int(epoch), 5])
    members = {s: [i for i, v in enumerate(sources) if v == s] for s in present}
    # each source's own draw order, from its own stream (independent of the other sources)
    own = {
        s: epoch_order(
            [modalities[i] for i in members[s]],
            seed=seed + 7919 * (s + 1),
            epoch=epoch,
            num_samples=total,
            balanced=balanced,
            modality_weights=modality_weights,
        )
        for s in present
    }
    picks = rng.choice(len(present), size=total, p=weights / weights.sum())
    used = dict.fromkeys(present, 0)
    order = np.empty(total, dtype=np.int64)
    for k, g in enumerate(picks):
        s = present[int(g)]
        order[k] = members[s][int(own[s][used[s]])]
        used[s] += 1
    return order


@dataclass(frozen=True)
class SliceRef:
    """One dataset item: a 2D case or one slice of a volume.

    Attributes:
        case: case name within its source (npz file name, file stem, nnU-Net identifier).
        z: slice index for a volume, None for a 2D image.
        labels: labels present on it with at least ``min_area`` model-frame pixels.
        modality: the case's modality.
        source: index of its source in the dataset's ``sources``.
    """

    case: str
    z: int | None
    labels: tuple[int, ...]
    modality: str
    source: int = 0


class TrainingSample(NamedTuple):
    """One training example in the model frame.

    Attributes:
        image: ``(3, S, S)`` float32 in [0, 1], or None when the dataset skips images.
        mask: ``(1, S, S)`` float32 0/1 mask of the chosen object (zero in the padding).
        box: ``(4,)`` float32 xyxy box prompt in the model frame (jittered when training).
        image_key: identifies the preprocessed image (case, slice, flips), e.g. for caching.
        modality: modality of the case.
        label: the chosen object's label value.
        new_hw: ``(h, w)`` of the image content inside the ``S x S`` frame.
    """

    image: torch.Tensor | None
    mask: torch.Tensor
    box: torch.Tensor
    image_key: str
    modality: str
    label: int
    new_hw: tuple[int, int]


class SegmentationDataset:
    """Box-prompted training samples over one or more labelled sources.

    Args:
        sources: a challenge folder (``root/imgs`` + ``root/gts``), or sources from
            :mod:`umedsam.data.sources` (image/mask folders, nnU-Net raw, npz folders), mixed by
            their weights in :meth:`epoch_order`.
        image_size: model frame side S.
        max_box_shift: box jitter, 0..max_box_shift model-frame pixels per side.
        flips: allowed random flips (``"horizontal"``, ``"vertical"``), each applied with
            probability ``flip_prob``.
        flip_prob: probability of each allowed flip.
        min_area: smallest object (in model-frame pixels) used as a training target.
        slices_per_volume: keep at most this many object-bearing slices per volume, evenly
            spaced (None: all).
        modalities: keep only cases of these modalities (None: all).
        load_images: return preprocessed images (False when embeddings come from a cache).
        progress: called with the number of cases indexed so far.
        neighbour_box_prob: for a slice of a volume, the probability that its prompt is the
            object's box on an adjacent slice (where the object is present there), as 3D
            propagation prompts each slice with the box of its neighbour's mask: a model trained
            on tight boxes only learns to fill the box, and over-segments where an object
            shrinks from one slice to the next.

    A case that cannot be read or checked is skipped with one line (logged, and kept in
    :attr:`problems` with the sources' own); only when nothing usable is left is it an error.

    Raises:
        FileNotFoundError: if a challenge folder lacks ``imgs/`` or ``gts/``.
        ValueError: on bad options, or sources without a usable object.
    """

    def __init__(
        self,
        sources: str | Path | CaseSource | Sequence[CaseSource],
        *,
        image_size: int = 256,
        max_box_shift: int = 5,
        flips: Sequence[str] = ("horizontal", "vertical"),
        flip_prob: float = 0.5,
        min_area: int = 4,
        slices_per_volume: int | None = None,
        modalities: Sequence[str] | None = None,
        load_images: bool = True,
        progress: Callable[[int], None] | None = None,
        neighbour_box_prob: float = 0.0,
    ) -> None:
        if isinstance(sources, (str, Path)):
            sources = [NpzFolderSource(sources)]
        elif isinstance(sources, CaseSource):
            sources = [sources]
        self.sources: list[CaseSource] = list(sources)
        if not self.sources:
            raise ValueError("a dataset needs at least one source")
        if image_size <= 0 or max_box_shift < 0 or min_area < 1:
            raise ValueError(
                "need image_size > 0, max_box_shift >= 0, min_area >= 1; got "
                f"{image_size}, {max_box_shift}, {min_area}"
            )
        if slices_per_volume is not None and slices_per_volume < 1:
            raise ValueError(f"slices_per_volume must be >= 1 or None; got {slices_per_volume}")
        self.image_size = image_size
        self.max_box_shift = max_box_shift
        self.flips = tuple(flips)
        apply_flips(np.zeros((1, 1)), self.flips)  # validates the names
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1]; got {flip_prob}")
        if not 0.0 <= neighbour_box_prob <= 1.0:
            raise ValueError(f"neighbour_box_prob must be in [0, 1]; got {neighbour_box_prob}")
        self.neighbour_box_prob = float(neighbour_box_prob)
        self.flip_prob = flip_prob
        self.min_area = min_area
        self.load_images = load_images
        self._cases: dict[tuple[int, str], LabelledCase] = {}
        self._ids = [source.identity() for source in self.sources]
        self._key_index: dict[str, tuple[int, tuple[str, ...]]] | None = None
        self.problems: list[str] = [p for source in self.sources for p in source.problems]
        wanted = None if modalities is None else set(modalities)
        self.refs: list[SliceRef] = []
        count = 0
        for index, source in enumerate(self.sources):
            for name in source.case_names():
                count += 1
                modality = source.modality(name)
                if wanted is not None and modality not in wanted:
                    continue
                try:
                    self.refs.extend(self._index_case(index, name, modality, slices_per_volume))
                except InputError as err:
                    self.problems.append(f"{source.name}: {err}")
                    logger.warning("skipping %s: %s", name, err)
                if progress is not None:
                    progress(count)
        if not self.refs:
            raise ValueError(
                f"{', '.join(s.name for s in self.sources)}: no usable object (cases {count}, "
                f"modalities {modalities}, min_area {min_area}; {len(self.problems)} problem(s))"
            )

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def modalities(self) -> list[str]:
        """Modality of each item, in index order."""
        return [ref.modality for ref in self.refs]

    def epoch_order(
        self,
        *,
        seed: int,
        epoch: int,
        num_samples: int | None = None,
        balanced: bool = False,
        modality_weights: Mapping[str, float] | None = None,
    ) -> NDArray[np.int64]:
        """Item indices of one epoch: :func:`epoch_order` with the sources' weights."""
        return epoch_order(
            self.modalities,
            seed=seed,
            epoch=epoch,
            num_samples=num_samples,
            balanced=balanced,
            modality_weights=modality_weights,
            sources=[ref.source for ref in self.refs],
            source_weights=[source.weight for source in self.sources],
        )

    def _load(self, source: int, name: str) -> LabelledCase:
        key = (source, name)
        if key not in self._cases:
            self._cases[key] = self.sources[source].load(name)
        return self._cases[key]

    def _labels(self, label_map: NDArray) -> tuple[int, ...]:
        counts = np.bincount(label_map.ravel().astype(np.int64))
        ratio = self.image_size / max(label_map.shape)
        min_orig = self.min_area / (ratio * ratio)
        return tuple(int(v) for v in np.nonzero(counts)[0] if v > 0 and counts[v] >= min_orig)

    def _index_case(
        self, source: int, name: str, modality: str, slices_per_volume: int | None
    ) -> list[SliceRef]:
        gts = self._load(source, name).gts
        if not self.sources[source].labelled:  # images only: every image (slice) is an item
            zs: list[int | None] = [None] if gts.ndim == 2 else list(range(gts.shape[0]))
            return [SliceRef(name, z, (), modality, source) for z in zs]
        if gts.ndim == 2:
            labels = self._labels(gts)
            return [SliceRef(name, None, labels, modality, source)] if labels else []
        refs = []
        for z in range(gts.shape[0]):
            labels = self._labels(gts[z])
            if labels:
                refs.append(SliceRef(name, z, labels, modality, source))
        if slices_per_volume is not None and len(refs) > slices_per_volume:
            keep = np.linspace(0, len(refs) - 1, slices_per_volume).round().astype(int)
            refs = [refs[i] for i in sorted(set(keep.tolist()))]
        return refs

    def _slice(self, ref: SliceRef) -> tuple[NDArray, NDArray]:
        case = self._load(ref.source, ref.case)
        if ref.z is None:
            return case.imgs, case.gts
        return case.imgs[ref.z], case.gts[ref.z]

    def image_key(self, index: int, flips: Sequence[str] = ()) -> str:
        """Key of the preprocessed image of item ``index`` under ``flips``.

        The key names the source's data (its folder), the case, the slice and the flips, e.g.
        ``/data/train|3DBox_MR_x.npz|z12|h``.
        """
        ref = self.refs[index]
        z = "2d" if ref.z is None else f"z{ref.z}"
        return f"{self._ids[ref.source]}|{ref.case}|{z}|{flip_variant_name(tuple(flips))}"

    def image_for_key(self, key: str) -> torch.Tensor:
        """Preprocessed ``(3, S, S)`` image for a key made by :meth:`image_key`.

        Raises:
            KeyError: if the key does not belong to this dataset.
        """
        if self._key_index is None:
            self._key_index = {
                self.image_key(i, flips): (i, flips)
                for i in range(len(self.refs))
                for flips in self.flip_variants()
            }
        if key not in self._key_index:
            raise KeyError(f"image key {key!r} does not belong to this dataset")
        index, flips = self._key_index[key]
        return self.image_tensor(index, flips)[0]

    def image_tensor(
        self, index: int, flips: Sequence[str] = ()
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Preprocessed ``(3, S, S)`` image of item ``index`` under ``flips``, and its new_hw."""
        image, _ = self._slice(self.refs[index])
        array, new_hw = preprocess_image(apply_flips(image, tuple(flips)), self.image_size)
        return torch.from_numpy(array[0]), new_hw

    def make_sample(
        self,
        index: int,
        label: int,
        flips: Sequence[str] = (),
        rng: np.random.Generator | None = None,
    ) -> TrainingSample:
        """The sample for a given item, object label and flips.

        Args:
            index: item index.
            label: object label (must be present on the item).
            flips: flips to apply.
            rng: generator for the box jitter; None means no jitter (validation).

        Returns:
            The :class:`TrainingSample`.

        Raises:
            ValueError: if ``label`` is not an object of the item.
        """
        ref = self.refs[index]
        if label not in ref.labels:
            raise ValueError(f"label {label} is not on {ref.case} (z={ref.z}); has {ref.labels}")
        flips = tuple(flips)
        image, label_map = self._slice(ref)
        mask = apply_flips(label_map == label, flips)
        orig_hw = (int(mask.shape[0]), int(mask.shape[1]))
        new_hw = resized_hw(orig_hw, self.image_size)
        tight = mask_to_box(mask)
        if tight is None:  # indexing keeps only labels present on the item
            raise ValueError(f"label {label} has an empty mask on {ref.case} (z={ref.z})")
        if (  # short-circuits: the rng is untouched when the option is off
            rng is not None
            and ref.z is not None
            and self.neighbour_box_prob > 0
            and rng.random() < self.neighbour_box_prob
        ):
            tight = self._neighbour_box(ref, label, flips, rng, tight)
        box = boxes_to_model_frame(tight[None], orig_hw, self.image_size)[0]
        if rng is not None and self.max_box_shift > 0:
            box = jitter_box(box, rng, self.max_box_shift, new_hw)
        small = cv2.resize(
            mask.astype(np.uint8), (new_hw[1], new_hw[0]), interpolation=cv2.INTER_NEAREST
        )
        mask_s = np.zeros((self.image_size, self.image_size), dtype=np.float32)
        mask_s[: new_hw[0], : new_hw[1]] = small
        image_t = None
        if self.load_images:
            image_t, _ = self.image_tensor(index, flips)
        return TrainingSample(
            image=image_t,
            mask=torch.from_numpy(mask_s)[None],
            box=torch.from_numpy(np.asarray(box, dtype=np.float32)),
            image_key=self.image_key(index, flips),
            modality=ref.modality,
            label=int(label),
            new_hw=new_hw,
        )

    def _neighbour_box(
        self,
        ref: SliceRef,
        label: int,
        flips: tuple[str, ...],
        rng: np.random.Generator,
        own: NDArray,
    ) -> NDArray:
        """The object's tight box on the slice before or after ``ref``'s (random order; ``own``
        if on neither)."""
        gts, z0 = self._load(ref.source, ref.case).gts, int(ref.z or 0)
        for z in rng.permutation([z0 - 1, z0 + 1]):
            if 0 <= z < gts.shape[0]:
                box = mask_to_box(apply_flips(gts[int(z)] == label, flips))
                if box is not None:
                    return box
        return own

    def sample(self, index: int, rng: np.random.Generator) -> TrainingSample:
        """A random training sample of item ``index``: random flips, object and box jitter."""
        ref = self.refs[index]
        if not ref.labels:
            raise ValueError(f"{ref.case} has no mask (unlabelled images feed distillation only)")
        flips = random_flips(rng, self.flips, self.flip_prob)
        label = ref.labels[int(rng.integers(0, len(ref.labels)))]
        return self.make_sample(index, label, flips, rng)

    def flip_variants(self) -> list[tuple[str, ...]]:
        """Every flip combination a sample can have (for precomputing embeddings)."""
        if self.flip_prob == 0.0:
            return [()]
        ordered = [f for f in ("vertical", "horizontal") if f in self.flips]
        out: list[tuple[str, ...]] = [()]
        for name in ordered:
            out += [v + (name,) for v in out]
        return sorted(out, key=lambda v: (len(v), v))
