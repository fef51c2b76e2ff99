"""Optimizers: Sharpness-Aware Minimization and the factory that builds training optimizers."""

from __future__ import annotations

from umedsam.optim.factory import base_optimizer, build_optimizer, build_scheduler
from umedsam.optim.sam import SAM, disable_running_stats, sam_step, unscale_grads_

__all__ = [
    "SAM",
    "base_optimizer",
    "build_optimizer",
    "build_scheduler",
    "disable_running_stats",
    "sam_step",
    "unscale_grads_",
]
