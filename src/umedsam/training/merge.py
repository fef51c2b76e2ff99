"""Training-free weight merges of a base model and a fine-tuned one (WiSE-FT style).

The merged tensor is ``(1 - alpha) * base + alpha * tuned``: ``alpha = 0`` gives the base model,
``alpha = 1`` the fine-tuned one. Only the tensors of the named parts are merged (for example
the mask decoder); every other tensor is the base model's, so the merge is a model of the
same architecture that keeps part of what the base model did well.
"""

from __future__ import annotations

import torch


def merge_state_dicts(
    base: dict[str, torch.Tensor],
    tuned: dict[str, torch.Tensor],
    alpha: float,
    parts: tuple[str, ...] = ("mask_decoder",),
) -> dict[str, torch.Tensor]:
    """The full state dict of the merge of ``tuned`` into ``base`` (float32 where merged).

    Raises:
        ValueError: alpha outside [0, 1], different keys or shapes, no tensor in ``parts``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if base.keys() != tuned.keys():
        missing = sorted(base.keys() ^ tuned.keys())
        raise ValueError(f"the two models have different tensors, e.g. {missing[0]}")
    prefixes = tuple(f"{p}." for p in parts)
    merged: dict[str, torch.Tensor] = {}
    count = 0
    for key, b in base.items():
        t = tuned[key]
        if b.shape != t.shape:
            raise ValueError(f"{key}: shapes differ ({tuple(b.shape)} vs {tuple(t.shape)})")
        if key.startswith(prefixes) and b.is_floating_point():
            merged[key] = torch.lerp(b.float(), t.float(), alpha)
            count += 1
        else:
            merged[key] = b.clone()
    if not count:
        raise ValueError(f"no floating-point tensor under {', '.join(parts)}")
    return merged
