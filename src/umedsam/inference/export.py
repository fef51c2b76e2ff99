"""Export a MedSAMLite-style model as two graphs (encoder, decoder), each checked against PyTorch.

The encoder graph maps preprocessed images (B, 3, S, S) to embeddings (B, C, S/4, S/4). The decoder
graph maps one embedding (1, C, h, w) and N boxes (N, 4, model frame, dynamic N) to single-mask
logits (N, 1, S, S) and IoU estimates (N, 1). Both are traced from small wrapper modules kept apart
from the training modules (as segment_anything/utils/onnx.py does), so the training code keeps its
Python control flow.

Every export ends with a parity check: the exported graphs run in their runtime on a deterministic
synthetic input and are compared with the PyTorch model; the largest absolute differences are logged,
stored in the manifest, and an export beyond tolerance raises ParityError.

Layout of an export folder::

    manifest.json                      model name, checkpoint sha256, image size, versions, parity
    encoder.onnx, decoder.onnx         format "onnx"
    encoder.xml/.bin, decoder.xml/.bin format "openvino" (f32 weights)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from umedsam.inference.export_folder import (  # noqa: F401 (re-exported)
    EXPORT_VERSION,
    FORMATS,
    GRAPH_FILES,
    MANIFEST_NAME,
    ONNX_OPSET,
    PARITY_RTOL,
    ExportManifest,
    ParityError,
    ParityReport,
    _runtime_version,
    describe_parity,
    open_graphs,
    read_manifest,
    require_runtime,
)
from umedsam.models.medsam_lite import MedSAMLite

logger = logging.getLogger(__name__)


class EncoderGraph(nn.Module):
    """Trace-friendly image encoder: (B, 3, S, S) float32 in [0, 1] -> (B, C, S/4, S/4)."""

    def __init__(self, model: MedSAMLite) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of preprocessed images."""
        return self.image_encoder(images)


class _SingleMaskDecoder(nn.Module):
    """What both decoder graphs share: the two-way transformer and the first mask token's head.

    Args:
        model: a MedSAMLite-style model (``prompt_encoder``, ``mask_decoder``).
    """

    out_tokens: torch.Tensor
    dense_embed: torch.Tensor
    image_pe: torch.Tensor
    frame_wh: torch.Tensor

    def __init__(self, model: MedSAMLite) -> None:
        super().__init__()
        pe, md = model.prompt_encoder, model.mask_decoder
        self.pe_layer = pe.pe_layer
        self.transformer = md.transformer
        self.output_upscaling = md.output_upscaling
        self.mask_mlp = md.output_hypernetworks_mlps[0]
        self.iou_head = md.iou_prediction_head
        with torch.no_grad():
            out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
            dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
            image_pe = pe.get_dense_pe()
            h, w = pe.input_image_size
            frame = torch.tensor([float(w), float(h)])
        self.register_buffer("out_tokens", out_tokens.clone())
        self.register_buffer("dense_embed", dense.clone())
        self.register_buffer("image_pe", image_pe.clone())
        self.register_buffer("frame_wh", frame)

    def masks(
        self, src: torch.Tensor, sparse: torch.Tensor, chw: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens ``src`` (N, C, h, w) with the dense prompt added and ``sparse`` prompt
        tokens (N, T, C) -> logits (N, 1, 4h, 4w) and IoU (N, 1)."""
        n = sparse.shape[0]
        c, h, w = chw
        tokens = torch.cat([self.out_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
        pos = self.image_pe.expand(n, -1, -1, -1)
        hs, src_tokens = self.transformer(src, pos, tokens)
        upscaled = self.output_upscaling(src_tokens.transpose(1, 2).reshape(n, c, h, w))
        hyper = self.mask_mlp(hs[:, 1, :]).unsqueeze(1)
        logits = (hyper @ upscaled.flatten(2)).reshape(n, 1, upscaled.shape[2], upscaled.shape[3])
        iou = self.iou_head(hs[:, 0, :])[:, :1]
        return logits, iou


class DecoderGraph(_SingleMaskDecoder):
    """Trace-friendly box decoder: one embedding, N boxes -> single-mask logits and IoU.

    Equivalent to ``model.decode(embedding, boxes)`` with ``multimask=False`` and no mask prompt,
    written with tensor ops only: the box embedding without in-place writes, the shared embedding
    broadcast with ``expand`` and only the first mask token's hypernetwork evaluated.

    Args:
        model: a MedSAMLite-style model (``prompt_encoder``, ``mask_decoder``).
    """

    corner_embed: torch.Tensor

    def __init__(self, model: MedSAMLite) -> None:
        super().__init__(model)
        pe = model.prompt_encoder
        with torch.no_grad():
            box_corners = [cast(nn.Embedding, pe.point_embeddings[i]) for i in (2, 3)]
            corners = torch.stack([e.weight[0] for e in box_corners])
        self.register_buffer("corner_embed", corners.clone())

    def forward(
        self, embedding: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """embedding (1, C, h, w), boxes (N, 4) xyxy model frame -> logits (N, 1, 4h, 4w), iou (N, 1)."""
        n = boxes.shape[0]
        corners = (boxes.reshape(-1, 2, 2) + 0.5) / self.frame_wh
        sparse = self.pe_layer._encode(corners) + self.corner_embed
        src = (embedding + self.dense_embed).expand(n, -1, -1, -1)
        chw = (embedding.shape[1], embedding.shape[2], embedding.shape[3])
        return self.masks(src, sparse, chw)


class PromptDecoderGraph(_SingleMaskDecoder):
    """Trace-friendly decoder of interactive prompts: labelled points and a mask prompt.

    Equivalent to ``model.decode_prompts(embedding, coords, labels, mask_input, has_mask)``:
    labels -1 padding, 0 negative, 1 positive, 2/3 box corners; ``has_mask`` blends each
    object's downscaled mask prompt with the no-mask embedding.

    Args:
        model: a MedSAMLite-style model (``prompt_encoder``, ``mask_decoder``).
    """

    label_embed: torch.Tensor
    not_a_point: torch.Tensor

    def __init__(self, model: MedSAMLite) -> None:
        super().__init__(model)
        pe = model.prompt_encoder
        self.mask_downscaling = pe.mask_downscaling
        with torch.no_grad():
            labels = torch.stack(
                [cast(nn.Embedding, pe.point_embeddings[i]).weight[0] for i in range(4)]
            )
        self.register_buffer("label_embed", labels.clone())
        self.register_buffer("not_a_point", pe.not_a_point_embed.weight.detach().clone())

    def forward(
        self,
        embedding: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """embedding (1, C, h, w), coords (N, P, 2), labels (N, P), mask_input (N, 1, S, S),
        has_mask (N,) -> logits (N, 1, S, S), iou (N, 1)."""
        n = coords.shape[0]
        lab = labels.unsqueeze(-1)
        sparse = self.pe_layer._encode((coords + 0.5) / self.frame_wh)
        sparse = torch.where(lab == -1, self.not_a_point.expand_as(sparse), sparse)
        for k in range(4):
            sparse = sparse + (lab == k).to(sparse.dtype) * self.label_embed[k]
        flag = has_mask.reshape(-1, 1, 1, 1)
        dense = flag * self.mask_downscaling(mask_input) + (1 - flag) * self.dense_embed
        src = embedding.expand(n, -1, -1, -1) + dense
        chw = (embedding.shape[1], embedding.shape[2], embedding.shape[3])
        return self.masks(src, sparse, chw)


def prompt_parity_inputs(
    image_size: int, low_res: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic interactive prompts for the parity check: 3 objects, 4 tokens each.

    A box with a negative click and a mask prompt, positive and negative clicks without a box
    (padded), and a box with a positive click. Mask prompts are ``low_res`` pixels a side (the
    decoder's logits; ``image_size`` when None, as for LiteMedSAM).
    """
    side = image_size if low_res is None else low_res
    s = float(image_size)
    coords = torch.tensor(
        [
            [[0.25, 0.2], [0.55, 0.5], [0.3, 0.45], [0.0, 0.0]],
            [[0.4, 0.35], [0.45, 0.3], [0.8, 0.9], [0.0, 0.0]],
            [[0.55, 0.6], [0.9, 0.8], [0.7, 0.7], [0.0, 0.0]],
        ]
    )
    coords = (coords * s).floor()
    labels = torch.tensor([[2.0, 3, 0, -1], [1, 1, 0, -1], [2, 3, 1, -1]])
    gen = torch.Generator().manual_seed(1)
    mask_input = torch.randn(3, 1, side, side, generator=gen) * 4
    has_mask = torch.tensor([1.0, 0.0, 1.0])
    return coords, labels, mask_input, has_mask


def parity_inputs(image_size: int, num_boxes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic check input: a (1, 3, S, S) image in [0, 1] with bright shapes, and (N, 4) boxes.

    The image is smooth noise plus a bright disk and rectangle (so the decoder sees structure); the
    boxes cover the disk, the rectangle and most of the frame.
    """
    s = image_size
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 1, s // 8, s // 8, generator=gen)
    image = torch.nn.functional.interpolate(noise, size=(s, s), mode="bilinear") * 0.4
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    disk = ((yy - 0.35 * s) ** 2 + (xx - 0.4 * s) ** 2) <= (0.15 * s) ** 2
    image[0, 0][disk] += 0.5
    image[0, 0, int(0.6 * s) : int(0.8 * s), int(0.55 * s) : int(0.9 * s)] += 0.4
    image = image.clamp(0, 1).expand(1, 3, s, s).contiguous()
    boxes = torch.tensor(
        [
            [0.25 * s, 0.2 * s, 0.55 * s, 0.5 * s],
            [0.55 * s, 0.6 * s, 0.9 * s, 0.8 * s],
            [0.05 * s, 0.05 * s, 0.95 * s, 0.95 * s],
            [0.1 * s, 0.6 * s, 0.3 * s, 0.9 * s],
        ]
    ).floor()
    return image, boxes[:num_boxes].contiguous()


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_parity(
    model: MedSAMLite,
    encode: Callable[[np.ndarray], np.ndarray],
    decode: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    rtol: float = PARITY_RTOL,
    decode_prompts: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> ParityReport:
    """Compare an exported engine with the PyTorch model on ``parity_inputs``.

    Args:
        model: the PyTorch model the graphs came from.
        encode: exported encoder, numpy (1, 3, S, S) -> (1, C, h, w).
        decode: exported decoder, numpy (embedding, boxes (N, 4)) -> (logits, iou).
        rtol: tolerance relative to max(1, max |reference|) per output.
        decode_prompts: exported prompt decoder, numpy (embedding, coords, labels, mask_input,
            has_mask) -> (logits, iou); checked on ``prompt_parity_inputs`` when given.

    Returns:
        ParityReport (the caller decides whether a failure is fatal).
    """
    image, boxes = parity_inputs(int(model.image_size))
    with torch.inference_mode():
        ref_emb = model.encode(image)
        ref_logits, ref_iou = model.decode(ref_emb, boxes)
    emb = encode(image.numpy())
    # The decoder is checked on the reference embedding so its own error is measured.
    logits, iou = decode(ref_emb.numpy(), boxes.numpy())
    diffs = {
        "encoder": (_max_abs(emb, ref_emb.numpy()), ref_emb),
        "logits": (_max_abs(logits, ref_logits.numpy()), ref_logits),
        "iou": (_max_abs(iou, ref_iou.numpy()), ref_iou),
    }
    if decode_prompts is not None:
        inputs = prompt_parity_inputs(int(model.image_size), int(model.low_res_size))
        with torch.inference_mode():
            ref_p_logits, ref_p_iou = model.decode_prompts(ref_emb, *inputs)
        p_logits, p_iou = decode_prompts(ref_emb.numpy(), *(t.numpy() for t in inputs))
        ref_both = torch.cat([ref_p_logits.flatten(), ref_p_iou.flatten()])
        both = np.concatenate([np.ravel(p_logits), np.ravel(p_iou)])
        diffs["prompts"] = (_max_abs(both, ref_both.numpy()), ref_both)
    passed = all(d <= rtol * max(1.0, float(ref.abs().max())) for d, ref in diffs.values())
    return ParityReport(
        encoder=diffs["encoder"][0],
        logits=diffs["logits"][0],
        iou=diffs["iou"][0],
        passed=passed,
        prompts=diffs["prompts"][0] if "prompts" in diffs else 0.0,
    )


def _export_onnx_graphs(model: MedSAMLite, folder: Path, opset: int = ONNX_OPSET) -> None:
    """Trace both wrappers into folder/encoder.onnx and folder/decoder.onnx."""
    size = int(model.image_size)
    image, boxes = parity_inputs(size, num_boxes=2)  # N=2 so that N is not specialised to 1
    enc, dec = EncoderGraph(model).eval(), DecoderGraph(model).eval()
    prompt_dec = PromptDecoderGraph(model).eval()
    with torch.no_grad():
        emb = enc(image)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter is deprecated in favour of torch.export, but it needs no
        # extra package (onnxscript) and traces these wrappers exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            enc,
            (image,),
            str(folder / "encoder.onnx"),
            dynamo=False,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
        )
        torch.onnx.export(
            dec,
            (emb, boxes),
            str(folder / "decoder.onnx"),
            dynamo=False,
            input_names=["embedding", "boxes"],
            output_names=["logits", "iou"],
            dynamic_axes={
                "boxes": {0: "num_boxes"},
                "logits": {0: "num_boxes"},
                "iou": {0: "num_boxes"},
            },
            opset_version=opset,
        )
        torch.onnx.export(
            prompt_dec,
            (emb, *prompt_parity_inputs(size, int(model.low_res_size))),
            str(folder / "prompt_decoder.onnx"),
            dynamo=False,
            input_names=["embedding", "coords", "labels", "mask_input", "has_mask"],
            output_names=["logits", "iou"],
            dynamic_axes={
                "coords": {0: "num_objects", 1: "num_points"},
                "labels": {0: "num_objects", 1: "num_points"},
                "mask_input": {0: "num_objects"},
                "has_mask": {0: "num_objects"},
                "logits": {0: "num_objects"},
                "iou": {0: "num_objects"},
            },
            opset_version=opset,
        )


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    fmt: str = "onnx",
    model_name: str = "litemedsam",
    checkpoint_sha256: str = "",
    threads: int | None = None,
    rtol: float = PARITY_RTOL,
) -> ExportManifest:
    """Export ``model`` to ``out_dir`` in ``fmt``, check parity, and write the manifest.

    The graphs are written to a temporary folder next to ``out_dir`` and moved into place only after
    the parity check passes, so a half-written or failing export never looks complete.

    Args:
        model: MedSAMLite-style model with weights loaded.
        out_dir: destination folder (created; existing graph files are replaced).
        fmt: "onnx" (ONNX Runtime) or "openvino" (OpenVINO IR, f32).
        model_name, checkpoint_sha256: provenance recorded in the manifest (cache key).
        threads: runtime threads for the parity run (None: runtime default).
        rtol: parity tolerance (see check_parity).

    Returns:
        The manifest written to ``out_dir/manifest.json``.

    Raises:
        TypeError: ``model`` is not a MedSAMLite (encoder, prompt encoder, mask decoder).
        MissingExtraError: the runtime for ``fmt`` is not installed.
        ParityError: the exported graphs disagree with PyTorch.
    """
    if not isinstance(model, MedSAMLite):
        raise TypeError(f"export needs a MedSAMLite model; got {type(model).__name__}")
    require_runtime(fmt)
    model = model.eval()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        t0 = time.perf_counter()
        _export_onnx_graphs(model, tmp)
        if fmt == "openvino":
            _onnx_to_openvino(tmp)
        logger.info("exported %s graphs in %.1f s", fmt, time.perf_counter() - t0)
        backend = open_graphs(fmt, tmp, int(model.image_size), threads=threads, cache_dir=None)
        report = check_parity(
            model, backend.encode, backend.decode, rtol, decode_prompts=backend.run_prompt_decoder
        )
        del backend
        logger.info(
            "parity %s vs torch: max |diff| encoder %.3g, logits %.3g, iou %.3g, prompts %.3g",
            fmt,
            report.encoder,
            report.logits,
            report.iou,
            report.prompts,
        )
        if not report.passed:
            raise ParityError(
                f"{fmt} export differs from PyTorch beyond tolerance (rtol {rtol}): max |diff| "
                f"encoder {report.encoder:.3g}, logits {report.logits:.3g}, iou {report.iou:.3g}, "
                f"prompts {report.prompts:.3g}"
            )
        manifest = _make_manifest(model, fmt, model_name, checkpoint_sha256, report)
        manifest.write(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _make_manifest(
    model: MedSAMLite, fmt: str, model_name: str, sha: str, report: ParityReport
) -> ExportManifest:
    from umedsam import __version__

    size = int(model.image_size)
    with torch.inference_mode():
        shape = tuple(int(v) for v in model.encode(torch.zeros(1, 3, size, size)).shape[1:])
    return ExportManifest(
        format=fmt,
        model_name=model_name,
        checkpoint_sha256=sha,
        image_size=size,
        embedding_shape=shape,  # type: ignore[arg-type]
        files=dict(GRAPH_FILES[fmt]),
        parity={
            "encoder": report.encoder,
            "logits": report.logits,
            "iou": report.iou,
            "prompts": report.prompts,
        },
        umedsam_version=__version__,
        export_version=EXPORT_VERSION,
        torch_version=torch.__version__,
        runtime_version=_runtime_version(fmt),
    )


def _onnx_to_openvino(folder: Path) -> None:
    """Convert folder/{encoder,decoder,prompt_decoder}.onnx to OpenVINO IR (f32 weights) and drop the ONNX files."""
    import openvino as ov

    for role in ("encoder", "decoder", "prompt_decoder"):
        onnx_path = folder / f"{role}.onnx"
        ov_model = ov.convert_model(str(onnx_path))
        # compress_to_fp16 defaults to True, which would round the weights: keep f32 for parity.
        ov.save_model(ov_model, str(folder / f"{role}.xml"), compress_to_fp16=False)
        onnx_path.unlink()
