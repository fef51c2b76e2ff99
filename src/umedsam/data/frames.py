"""Model frames: how an image, its prompts and the decoder's logits map between original pixels
and the square input a model family was trained on, exactly as each family's authors run it.

``litemedsam`` (LiteMedSAM and every model derived from it; :mod:`umedsam.data.transforms`):
    longest side to 256 px (OpenCV INTER_AREA), min-max to [0, 1], zero padding bottom-right;
    boxes scaled by 256 / max(H, W) and truncated; low-resolution logits (256 px, the frame
    itself) cropped to the content and resized bilinearly; mask = sigmoid > 0.5.
``sam`` (segment-anything's ``SamPredictor``):
    uint8 RGB resized with its longest side to 1024 px (PIL bilinear, as torchvision resizes a
    PIL image), normalised with SAM's pixel mean and std, zero padding bottom-right; boxes and
    clicks scaled per axis by new / old size (not truncated); the 256-px logits upsampled to
    1024, cropped to the content, resized to the image; mask = logits > 0.
``medsam`` (MedSAM's ``MedSAM_Inference.py``):
    the 3-channel image stretched to 1024 x 1024 (scikit-image, bicubic with anti-aliasing,
    cast back to uint8), min-max to [0, 1], no padding; boxes scaled per axis by 1024 / W and
    1024 / H; sigmoid of the 256-px logits resized to the image; mask = probability > 0.5.

A frame is numpy-only (engines without torch use it). :func:`make_frame` builds one from a
model card's ``preprocessing`` and ``input_size``.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from umedsam.data import transforms as T
from umedsam.errors import MissingExtraError

FRAME_KINDS = ("litemedsam", "sam", "medsam")
SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
MASK_PROMPT_LOGIT = 8.0
"""A binary previous mask becomes the dense prompt +8 inside, -8 outside (sigmoid 0.9997)."""
BOX_MARGIN_FRACTION = T.NEXT_SLICE_BOX_MARGIN / T.MODEL_SIZE
"""Margin of a propagated box, as a fraction of the frame side (3 px at 256, 12 px at 1024)."""


class Frame:
    """LiteMedSAM's frame (the base class; other families override what differs).

    Attributes:
        kind: one of :data:`FRAME_KINDS`.
        size: side S of the square model input.
        low_res: side L of the decoder's logits and mask prompts.
        mirrorable: the stroke mirror average (``predictor.MIRROR_STROKES``) applies; it was
            validated in LiteMedSAM's frame only.
    """

    kind = "litemedsam"
    mirrorable = True

    def __init__(self, size: int = T.MODEL_SIZE, low_res: int | None = None) -> None:
        self.size = int(size)
        self.low_res = int(size if low_res is None else low_res)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, low_res={self.low_res})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (self.kind, self.size, self.low_res) == (
            other.kind,
            other.size,
            other.low_res,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.size, self.low_res))

    # -- images ------------------------------------------------------------------------------
    def resized_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the image content inside the S x S frame."""
        return T.resized_hw(orig_hw, self.size)

    def low_res_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the image content inside the L x L logits (rounded up)."""
        h, w = self.resized_hw(orig_hw)
        if self.low_res == self.size:
            return h, w
        f = self.low_res / self.size
        return min(self.low_res, int(np.ceil(h * f))), min(self.low_res, int(np.ceil(w * f)))

    def preprocess_image(self, image: NDArray) -> tuple[NDArray[np.float32], tuple[int, int]]:
        """(1, 3, S, S) float32 model input of an (H, W) or (H, W, 3) image, and its content hw."""
        return T.preprocess_image(image, self.size)

    def preprocess_slices(self, slices: NDArray) -> tuple[NDArray[np.float32], tuple[int, int]]:
        """(N, 3, S, S) model inputs of grey slices (N, H, W), and the content hw."""
        return T.preprocess_slices(slices, self.size)

    # -- prompts -----------------------------------------------------------------------------
    def scale_xy(self, orig_hw: tuple[int, int]) -> tuple[float, float]:
        """Multipliers (x, y) from original pixels to the frame."""
        ratio = self.size / max(orig_hw)
        return ratio, ratio

    def points_to_frame(self, points: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.float64]:
        """(..., 2) xy points in original pixels -> the frame (sub-pixels kept)."""
        sx, sy = self.scale_xy(orig_hw)
        return np.asarray(points, np.float64) * np.array([sx, sy])

    def boxes_to_frame(self, boxes: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.float32]:
        """(N, 4) xyxy boxes in original pixels -> the frame (LiteMedSAM truncates)."""
        return T.boxes_to_model_frame(boxes, orig_hw, self.size)

    def mask_to_box(self, mask: NDArray, label: int = 1) -> NDArray[np.float32] | None:
        """Box prompt for the next slice from a mask in original pixels (3D propagation), or
        None when the mask is empty; LiteMedSAM's official rule."""
        return T.mask_to_model_box(mask, label=label, size=self.size)

    def boxes_to_low_res(self, boxes: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.float32]:
        """(N, 4) boxes in original pixels -> the L x L logits' pixels (uncertainty's box
        agreement compares them with masks there)."""
        framed = self.boxes_to_frame(boxes, orig_hw)
        return framed if self.low_res == self.size else framed * (self.low_res / self.size)

    def box_margin(self) -> float:
        """Margin around a propagated box, frame pixels."""
        return BOX_MARGIN_FRACTION * self.size

    def mask_prompt(self, mask: NDArray) -> NDArray[np.float32]:
        """A binary mask in original pixels as a dense prompt: (1, L, L) pseudo-logits (the mask
        resized like the image, nearest neighbour, then +/-:data:`MASK_PROMPT_LOGIT`)."""
        h, w = self.low_res_hw(mask.shape[:2])
        small = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        out = np.full((1, self.low_res, self.low_res), -MASK_PROMPT_LOGIT, np.float32)
        out[0, :h, :w][small > 0] = MASK_PROMPT_LOGIT
        return out

    # -- logits ------------------------------------------------------------------------------
    def low_res_to_masks(self, low_res: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.bool_]:
        """(N, H, W) masks of (N, 1, L, L) logits, exactly as the family thresholds them."""
        return T.low_res_to_masks(low_res, self.resized_hw(orig_hw), orig_hw)

    def full_logits(
        self, low_res: NDArray, orig_hw: tuple[int, int]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """(N, 1, H, W) logits at the image's resolution and the masks they give."""
        logits = T.postprocess_logits(low_res, self.resized_hw(orig_hw), orig_hw)
        return logits, T.logits_to_mask(logits)


class SamFrame(Frame):
    """segment-anything's frame (``SamPredictor``): see the module docstring."""

    kind = "sam"
    mirrorable = False

    def preprocess_image(self, image: NDArray) -> tuple[NDArray[np.float32], tuple[int, int]]:
        rgb = as_uint8_rgb(image)
        new_h, new_w = self.resized_hw(rgb.shape[:2])
        try:
            from PIL import Image
        except ImportError as err:
            raise MissingExtraError("pillow", "sam", "SAM preprocessing") from err
        resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR))
        normed = (resized.astype(np.float32) - SAM_PIXEL_MEAN) / SAM_PIXEL_STD
        out = T.pad_bottom_right(normed, self.size).transpose(2, 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)[None], (new_h, new_w)

    def preprocess_slices(self, slices: NDArray) -> tuple[NDArray[np.float32], tuple[int, int]]:
        arrays = [self.preprocess_image(s) for s in np.asarray(slices)]
        return np.concatenate([a for a, _ in arrays]), self.resized_hw(slices.shape[1:3])

    def scale_xy(self, orig_hw: tuple[int, int]) -> tuple[float, float]:
        new_h, new_w = self.resized_hw(orig_hw)
        return new_w / orig_hw[1], new_h / orig_hw[0]

    def boxes_to_frame(self, boxes: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.float32]:
        pts = np.asarray(boxes, np.float64).reshape(-1, 2, 2)
        return self.points_to_frame(pts, orig_hw).reshape(-1, 4).astype(np.float32)

    def mask_to_box(self, mask: NDArray, label: int = 1) -> NDArray[np.float32] | None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return None
        # the tight box (inclusive max, as the data's boxes) in the frame, widened
        tight = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], np.float64)
        box = self.boxes_to_frame(tight, mask.shape[:2])[0]
        m = self.box_margin()
        return np.clip(box + np.array([-m, -m, m, m]), 0, self.size).astype(np.float32)

    def _upsampled(self, low_res: NDArray) -> NDArray[np.float32]:
        return T.resize_bilinear(np.asarray(low_res, np.float32), (self.size, self.size))

    def low_res_to_masks(self, low_res: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.bool_]:
        up = self._upsampled(low_res)
        return T.low_res_to_masks(up, self.resized_hw(orig_hw), orig_hw, threshold=_ABOVE_ZERO)

    def full_logits(
        self, low_res: NDArray, orig_hw: tuple[int, int]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        logits = T.postprocess_logits(self._upsampled(low_res), self.resized_hw(orig_hw), orig_hw)
        return logits, logits > 0


class MedSAMFrame(SamFrame):
    """MedSAM's frame (``MedSAM_Inference.py``): see the module docstring."""

    kind = "medsam"

    def resized_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        return self.size, self.size

    def preprocess_image(self, image: NDArray) -> tuple[NDArray[np.float32], tuple[int, int]]:
        rgb = as_uint8_rgb(image)  # MedSAM reads 8-bit images
        stretched = stretch_like_medsam(rgb, self.size)
        array = T.normalize_minmax(stretched).transpose(2, 0, 1)
        return np.ascontiguousarray(array)[None], (self.size, self.size)

    def scale_xy(self, orig_hw: tuple[int, int]) -> tuple[float, float]:
        return self.size / orig_hw[1], self.size / orig_hw[0]

    def low_res_to_masks(self, low_res: NDArray, orig_hw: tuple[int, int]) -> NDArray[np.bool_]:
        prob = sigmoid32(low_res)
        full = (self.low_res, self.low_res)
        return T.low_res_to_masks(prob, full, orig_hw, threshold=_ABOVE_HALF)

    def full_logits(
        self, low_res: NDArray, orig_hw: tuple[int, int]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        prob = T.resize_bilinear(sigmoid32(low_res), orig_hw)
        clipped = np.clip(prob, 1e-7, 1 - 1e-7)
        logits = (np.log(clipped) - np.log1p(-clipped)).astype(np.float32)
        return logits, prob > 0.5


def stretch_like_medsam(rgb: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """MedSAM's ``transform.resize(img_3c, (size, size), order=3, preserve_range=True,
    anti_aliasing=True).astype(np.uint8)`` (scikit-image), channel by channel.

    The (H, W, 3) call spends most of its time interpolating along the channel axis, where the
    zoom is 1; resizing each channel alone gives the same uint8 values (checked against the
    three-channel call in tests/data/test_frames.py and by the parity tests) about 6 times
    faster, and a grey image (three equal channels) is resized once. The cast back to uint8
    wraps bicubic overshoots, as MedSAM's code does.

    Raises:
        MissingExtraError: scikit-image is not installed (extra ``sam``).
    """
    try:
        from skimage.transform import resize
    except ImportError as err:
        raise MissingExtraError("scikit-image", "sam", "MedSAM preprocessing") from err

    def one(channel: NDArray) -> NDArray[np.uint8]:
        out = resize(channel, (size, size), order=3, preserve_range=True, anti_aliasing=True)
        return out.astype(np.uint8)

    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
        return np.repeat(one(rgb[..., 0])[..., None], 3, axis=-1)
    return np.stack([one(rgb[..., c]) for c in range(3)], axis=-1)


_ABOVE_ZERO = np.nextafter(np.float32(0), np.float32(1))
_ABOVE_HALF = np.nextafter(np.float32(0.5), np.float32(1))


def sigmoid32(x: NDArray) -> NDArray[np.float32]:
    """Float32 sigmoid (as ``torch.sigmoid`` on float32)."""
    x = np.asarray(x, np.float32)
    return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def as_uint8_rgb(image: NDArray) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 of a grey or RGB image; other dtypes are min-max scaled to 0-255 first
    (SAM's predictor takes uint8 RGB)."""
    image = T.to_rgb(np.asarray(image))
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    scaled = T.normalize_minmax(image.astype(np.float64)) * 255.0
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8))


_KINDS: dict[str, type[Frame]] = {"litemedsam": Frame, "sam": SamFrame, "medsam": MedSAMFrame}


def make_frame(kind: str, size: int, low_res: int | None = None) -> Frame:
    """The frame of a model family (a card's ``preprocessing`` and ``input_size``).

    Raises:
        ValueError: unknown kind.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown preprocessing {kind!r}; expected one of {FRAME_KINDS}")
    if low_res is None:  # SAM's ViT: 16-px patches, logits 4x the embedding grid
        low_res = size if kind == "litemedsam" else size // 4
    return _KINDS[kind](size, low_res)


def frame_of(backend: object) -> Frame:
    """The frame an engine's backend runs in (LiteMedSAM's at its size when it names none)."""
    frame = getattr(backend, "frame", None)
    if isinstance(frame, Frame):
        return frame
    return Frame(int(getattr(backend, "image_size", T.MODEL_SIZE)))


def as_frame(frame_or_size: Frame | int) -> Frame:
    """A frame from a frame or a LiteMedSAM frame side."""
    return frame_or_size if isinstance(frame_or_size, Frame) else Frame(int(frame_or_size))
