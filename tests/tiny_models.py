"""Test-only models, registered on import: ``test_tiny`` and ``test_tiny_effvit``.

Few-thousand-parameter MedSAMLite models on 64-px inputs (random weights only), so forward,
backward, propagation and export run in well under a second on a CPU. They are not shipped:
``umedsam.models.registry.list_models()`` lists them only once this module is imported.
tests/conftest.py imports it for every in-process test. A process that a test starts must import
it too:

* a CLI subprocess: ``cli_command("predict", ...)`` runs ``python tests/tiny_models.py predict
  ...``, which registers the models and calls ``umedsam.cli.main.main``; torchrun takes the same
  script path (``python -m torch.distributed.run ... tests/tiny_models.py train ...``);
* Dask workers: pass ``TEST_MODELS_PRELOAD`` as the ``preload`` of a local cluster, or start the
  process that creates the cluster with ``subprocess_env()`` (it sets Dask's
  ``distributed.worker.preload``).

Importing this module twice is fine (as ``__main__`` and ``tiny_models`` in a spawned worker of a
CLI subprocess, or from Dask's copy of a preload file): the registry accepts the same definition
again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from umedsam.models.cards import PROMPT_KINDS, ModelCard, register_card
from umedsam.models.encoders.efficient_vit import EfficientViTEncoder
from umedsam.models.encoders.tiny_vit import TinyViT
from umedsam.models.encoders.vit import ImageEncoderViT, ViTConfig
from umedsam.models.medsam_lite import (
    MedSAMLite,
    build_sam_mask_decoder,
    build_sam_prompt_encoder,
)
from umedsam.models.registry import register_model

__all__ = [
    "SCRIPT",
    "TEST_MODELS",
    "TEST_MODELS_PRELOAD",
    "TEST_SAM_MODELS",
    "TINY_VIT",
    "cli_command",
    "subprocess_env",
    "test_tiny",
    "test_tiny_effvit",
    "test_tiny_sam",
]

#: This file; run it as a script to call the umedsam CLI with the test models registered.
SCRIPT = Path(__file__).resolve()

#: Names this module registers.
TEST_MODELS = ("test_tiny", "test_tiny_effvit")
#: SAM-family test models (a ViT encoder on 256-px inputs): the same network in SAM's frame and
#: in MedSAM's.
TEST_SAM_MODELS = ("test_tiny_sam", "test_tiny_medsam")
#: The ViT of the SAM-family test models (64 x 64 token grids would be slow: 16 x 16 here).
TINY_VIT = ViTConfig(32, 2, 2, (1,), window_size=7, img_size=256, patch_size=16, out_chans=32)

#: Dask ``preload`` value that makes each worker import this module (by file path, so the
#: workers need no ``tests/`` on their ``sys.path``).
TEST_MODELS_PRELOAD: tuple[str, ...] = (str(SCRIPT),)


@register_model("test_tiny")
def test_tiny() -> MedSAMLite:
    """A few-thousand-parameter model on 64-px inputs for fast tests (random weights only)."""
    encoder = TinyViT(
        embed_dims=(8, 16, 16, 32),
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 2),
        window_sizes=(7, 7, 7, 7),
        merge_strides=(2, 2, 1),
        out_chans=32,
    )
    return MedSAMLite(
        encoder,
        build_sam_prompt_encoder(embed_dim=32, image_size=64, mask_in_chans=16),
        build_sam_mask_decoder(dim=32, mlp_dim=64, num_heads=2, iou_hidden=32),
    )


@register_model("test_tiny_effvit")
def test_tiny_effvit() -> MedSAMLite:
    """A tiny random-weight student matching ``test_tiny``'s sizes (64-px input), for tests."""
    encoder = EfficientViTEncoder(
        widths=(4, 8, 8, 16, 16),
        depths=(1, 1, 1, 1, 1),
        head_dim=8,
        neck_dim=8,
        out_chans=32,
    )
    return MedSAMLite(
        encoder,
        build_sam_prompt_encoder(embed_dim=32, image_size=64, mask_in_chans=16),
        build_sam_mask_decoder(dim=32, mlp_dim=64, num_heads=2, iou_hidden=32),
    )


@register_model("test_tiny_sam")
def test_tiny_sam() -> MedSAMLite:
    """A tiny random-weight SAM-family model: ViT encoder (:data:`TINY_VIT`) + SAM heads."""
    return MedSAMLite(
        ImageEncoderViT(TINY_VIT),
        build_sam_prompt_encoder(embed_dim=32, image_size=256, mask_in_chans=16, stride=16),
        build_sam_mask_decoder(dim=32, mlp_dim=64, num_heads=2, iou_hidden=32),
    )


# pytest would collect the two builders as tests (their names start with "test")
test_tiny.__test__ = False  # type: ignore[attr-defined]
test_tiny_effvit.__test__ = False  # type: ignore[attr-defined]
test_tiny_sam.__test__ = False  # type: ignore[attr-defined]


for _name in TEST_MODELS:  # the tiny models take every prompt kind (they are never trained)
    register_card(ModelCard(_name, _name, architecture=_name, prompts=PROMPT_KINDS, encoder=_name))
register_card(
    ModelCard(
        "test_tiny_sam",
        "tiny SAM",
        architecture="test_tiny_sam",
        input_size=256,
        preprocessing="sam",
        prompts=("box", "click", "mask"),
        encoder="test_tiny_sam",
    )
)
register_card(
    ModelCard(
        "test_tiny_medsam",
        "tiny MedSAM",
        architecture="test_tiny_sam",
        input_size=256,
        preprocessing="medsam",
        encoder="test_tiny_medsam",
    )
)


def cli_command(*argv: str) -> list[str]:
    """The command line running ``umedsam <argv>`` in a fresh interpreter with these models."""
    return [sys.executable, str(SCRIPT), *argv]


def subprocess_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus the Dask setting preloading this module on workers.

    For a subprocess that starts its own local cluster (``umedsam predict --workers N``).
    """
    env = dict(os.environ if base is None else base)
    env["DASK_DISTRIBUTED__WORKER__PRELOAD"] = json.dumps(list(TEST_MODELS_PRELOAD))
    return env


if __name__ == "__main__":
    from umedsam.cli.main import main

    sys.exit(main(sys.argv[1:]))
