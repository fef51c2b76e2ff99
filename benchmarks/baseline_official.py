"""Faithful re-creation of the official CVPR24 LiteMedSAM inference algorithm, for benchmarks only.

Reproduces ``CVPR24_LiteMedSAM_infer.py`` (bowang-lab/MedSAM, branch LiteMedSAM): float32 eager
PyTorch under ``torch.no_grad``; a 2D image is encoded once and its boxes decoded one at a time; in
3D every object is processed on its own, and every slice of its z-range is preprocessed and
re-encoded (no embedding reuse between objects), then propagated from the middle slice up and down
with the previous mask's box (padded to 256, widened by 3 px, clipped to 256). The model is built and
its weights loaded in the timed process, as the official script does at start-up. ``--overlay``
adds the official script's default output picture: a two-panel 10 x 5 inch matplotlib figure
(image; image with every box and translucent mask) saved as PNG at 300 dpi (3D: the middle slice);
its seconds are reported separately (``overlay_s``) so the benchmark can show ratios with and
without it.

This file is never shipped as an engine. Usage (one case per process, for timing)::

    python benchmarks/baseline_official.py CASE.npz OUT.npz [--threads 2] [--max-slices K] [--overlay]

``--max-slices K`` limits every object to at most K slices around its middle slice (both sweeps
together); the benchmark uses it to time a subset of a very large case and extrapolates, saying so.
"""

from __future__ import annotations

import time

_T_IMPORT = time.perf_counter()  # imports are part of the official script's start-up

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

_IMPORT_S = time.perf_counter() - _T_IMPORT


def resize_longest_side(image: np.ndarray, target_length: int = 256) -> np.ndarray:
    """Official: longest side to 256 with INTER_AREA, sizes rounded half up."""
    oldh, oldw = image.shape[0], image.shape[1]
    scale = target_length * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    neww, newh = int(neww + 0.5), int(newh + 0.5)
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA)


def pad_image(image: np.ndarray, target_size: int = 256) -> np.ndarray:
    """Official: zero-pad bottom/right to 256 x 256."""
    h, w = image.shape[:2]
    padh, padw = target_size - h, target_size - w
    if image.ndim == 3:
        return np.pad(image, ((0, padh), (0, padw), (0, 0)))
    return np.pad(image, ((0, padh), (0, padw)))


def resize_box_to_256(box: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """Official: each coordinate int(c * 256 / max(H, W)), in the box's own dtype."""
    new_box = np.zeros_like(box)
    ratio = 256 / max(original_size)
    for i in range(len(box)):
        new_box[i] = int(box[i] * ratio)
    return new_box


def get_bbox256(mask_256: np.ndarray, bbox_shift: int = 3) -> np.ndarray:
    """Official: tight box of the padded 256 mask, widened by 3 px, clipped to the 256 frame."""
    y_indices, x_indices = np.where(mask_256 > 0)
    x_min, x_max = np.min(x_indices), np.max(x_indices)
    y_min, y_max = np.min(y_indices), np.max(y_indices)
    h, w = mask_256.shape
    x_min = max(0, x_min - bbox_shift)
    x_max = min(w, x_max + bbox_shift)
    y_min = max(0, y_min - bbox_shift)
    y_max = min(h, y_max + bbox_shift)
    return np.array([x_min, y_min, x_max, y_max])


def preprocess(img_3c: np.ndarray) -> tuple[torch.Tensor, int, int]:
    """Official per-image preprocessing -> (1, 3, 256, 256) float32 tensor and the resized (h, w)."""
    img_256 = resize_longest_side(img_3c, 256)
    new_h, new_w = img_256.shape[:2]
    img_256 = (img_256 - img_256.min()) / np.clip(
        img_256.max() - img_256.min(), a_min=1e-8, a_max=None
    )
    img_256 = pad_image(img_256, 256)
    return torch.tensor(img_256).float().permute(2, 0, 1).unsqueeze(0), new_h, new_w


@torch.no_grad()
def medsam_inference(model, img_embed, box_256, new_size, original_size) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Official: one box -> uint8 mask at the original size."""
    box_torch = torch.as_tensor(box_256, dtype=torch.float, device=img_embed.device)
    if len(box_torch.shape) == 2:
        box_torch = box_torch[:, None, :]
    sparse, dense = model.prompt_encoder(points=None, boxes=box_torch, masks=None)
    low_res_logits, _ = model.mask_decoder(
        image_embeddings=img_embed,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    low_res = low_res_logits[..., : new_size[0], : new_size[1]]
    low_res = F.interpolate(low_res, size=original_size, mode="bilinear", align_corners=False)
    pred = torch.sigmoid(low_res).squeeze().cpu().numpy()
    return (pred > 0.5).astype(np.uint8)


def infer_2d(model, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    """Official 2D: encode once, decode each box separately, later boxes overwrite."""
    img_3c = np.repeat(img[:, :, None], 3, axis=-1) if img.ndim == 2 else img
    h, w = img_3c.shape[:2]
    tensor, new_h, new_w = preprocess(img_3c)
    with torch.no_grad():
        embedding = model.image_encoder(tensor)
    segs = np.zeros(img_3c.shape[:2], dtype=np.uint8)
    for idx, box in enumerate(boxes, start=1):
        box256 = resize_box_to_256(box, original_size=(h, w))[None, ...]
        mask = medsam_inference(model, embedding, box256, (new_h, new_w), (h, w))
        segs[mask > 0] = idx
    return segs, 1


def infer_3d(
    model, img_3d: np.ndarray, boxes_3d: np.ndarray, max_slices: int | None = None
) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    """Official 3D: per object, every slice of its z-range re-encoded; returns segs and encoder calls."""
    segs = np.zeros_like(img_3d, dtype=np.uint8)
    calls = 0
    d = img_3d.shape[0]
    for idx, box3d in enumerate(boxes_3d, start=1):
        segs_3d_temp = np.zeros_like(img_3d, dtype=np.uint8)
        x_min, y_min, z_min, x_max, y_max, z_max = box3d
        box_default = np.array([x_min, y_min, x_max, y_max])
        z_middle = int((z_max - z_min) / 2 + z_min)
        z_hi = min(z_max + 1, d)
        z_lo = max(-1, z_min - 1)
        if max_slices is not None:  # benchmark subset: K slices around the middle, same order
            up = max(1, (max_slices + 1) // 2)
            z_hi = min(z_hi, z_middle + up)
            z_lo = max(z_lo, z_middle - 1 - (max_slices - up))
        h = w = 0
        for z_range, step in ((range(z_middle, z_hi), -1), (range(z_middle - 1, z_lo, -1), 1)):
            for z in z_range:
                img_3c = np.repeat(img_3d[z, :, :][:, :, None], 3, axis=-1)
                h, w = img_3c.shape[:2]
                tensor, new_h, new_w = preprocess(img_3c)
                with torch.no_grad():
                    embedding = model.image_encoder(tensor)
                calls += 1
                if z == z_middle:
                    box_256 = resize_box_to_256(box_default, original_size=(h, w))
                else:
                    pre_seg = segs_3d_temp[z + step, :, :]
                    pre_seg256 = resize_longest_side(pre_seg)
                    if np.max(pre_seg256) > 0:
                        box_256 = get_bbox256(pad_image(pre_seg256))
                    else:
                        box_256 = resize_box_to_256(box_default, original_size=(h, w))
                mask = medsam_inference(
                    model, embedding, box_256[None, ...], [new_h, new_w], [h, w]
                )
                segs_3d_temp[z, mask > 0] = idx
        segs[segs_3d_temp > 0] = idx
    return segs, calls


def save_overlay(image: np.ndarray, boxes: np.ndarray, segs: np.ndarray, path: Path) -> float:
    """The official default picture: image | image + boxes + masks, 10 x 5 in at 300 dpi; seconds."""
    start = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = np.repeat(image[:, :, None], 3, axis=-1) if image.ndim == 2 else image
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, title in zip(axes, ("Image", "LiteMedSAM Segmentation"), strict=True):
        ax.imshow(rgb)
        ax.set_title(title)
        ax.axis("off")
    rng = np.random.default_rng(0)
    for i, box in enumerate(boxes, start=1):
        color = rng.random(3)
        x0, y0, x1, y1 = (float(v) for v in box)
        axes[1].add_patch(
            plt.Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor=color, facecolor="none", lw=2)
        )
        layer = (segs == i)[:, :, None] * np.concatenate([color, [0.6]])[None, None, :]
        axes[1].imshow(layer)
    fig.tight_layout()
    fig.savefig(path, dpi=300)
    plt.close(fig)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Load the model, segment one case like the official script, write segs + a timing JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-slices", type=int, default=None)
    parser.add_argument("--overlay", action="store_true", help="also save the official PNG")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    from umedsam.models.pretrained import load_pretrained

    torch.manual_seed(2024)
    model, _ = load_pretrained("litemedsam")  # official: build MedSAM_Lite, torch.load, eval()
    t_load = time.perf_counter() - t0
    with np.load(args.case, allow_pickle=False) as npz:
        imgs, boxes = npz["imgs"], npz["boxes"]
    if boxes.shape[-1] == 6:
        segs, calls = infer_3d(model, imgs, boxes, args.max_slices)
    else:
        segs, calls = infer_2d(model, imgs, boxes)
    np.savez_compressed(args.out, segs=segs)
    overlay_s = 0.0
    if args.overlay:
        png = args.out.with_suffix(".png")
        if boxes.shape[-1] == 6:
            mid = imgs.shape[0] // 2
            overlay_s = save_overlay(imgs[mid], boxes[:, [0, 1, 3, 4]], segs[mid], png)
        else:
            overlay_s = save_overlay(imgs, boxes, segs, png)
    info = {
        "import_s": _IMPORT_S,
        "load_s": t_load,
        "total_s": time.perf_counter() - t0,
        "encoder_calls": calls,
        "overlay_s": overlay_s,
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
