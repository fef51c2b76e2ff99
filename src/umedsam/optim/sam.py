"""Sharpness-Aware Minimization (SAM, Foret et al. 2021) and adaptive SAM (ASAM, Kwon et al. 2021).

``SAM`` wraps a base optimizer (AdamW by default) and shares its ``param_groups``. One update is:

1. forward/backward at w, giving g = grad L(w);
2. :meth:`SAM.first_step`: w <- w + e with e = rho * g / ||g|| (SAM) or
   e = rho * |w|^2 g / || |w| g || (ASAM); ||.|| is one global L2 norm over every parameter of
   every group whose ``rho`` is > 0;
3. forward/backward at w + e;
4. :meth:`SAM.second_step`: restore w exactly, then ``base_optimizer.step()`` with the gradient
   taken at w + e.

Each parameter group may carry its own ``rho``; a group with ``rho = 0`` is never perturbed and
does not count in the norm. umedsam puts the uncertainty loss's learned log-variances in such a
group (``umedsam.optim.factory``): the sharpness we want to flatten is the model's, and
perturbing the loss weights would only rescale the objective.

Pitfalls handled here (see the SAM literature and ``davda54/sam`` issues):

- BatchNorm running statistics must not update in the second forward:
  :func:`disable_running_stats`.
- Learning-rate schedulers go on ``optimizer.base_optimizer``.
- Mixed precision: gradients must be unscaled before the first step and non-finite steps
  skipped: :func:`unscale_grads_` and :func:`sam_step`.
- DDP: the first backward runs under ``model.no_sync()`` so each replica perturbs with its local
  gradient (as the paper prescribes); the second backward all-reduces as usual: :func:`sam_step`.
- Gradient clipping on the second gradient may only rescale it (``clip_grad_norm_`` does).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["SAM", "disable_running_stats", "sam_step", "unscale_grads_"]

logger = logging.getLogger(__name__)


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization around a base optimizer.

    Args:
        params: parameters or parameter groups (a group may set its own ``rho``/``adaptive``).
        base_optimizer_cls: the base optimizer class, built on the same parameter groups.
        rho: neighbourhood radius (>= 0). Default 0.05 for SAM; ASAM usually needs ~2.0.
        adaptive: use the scale-invariant ASAM perturbation.
        eps: added to the gradient norm to avoid division by zero.
        **base_kwargs: passed to ``base_optimizer_cls`` (lr, weight_decay, betas, ...).

    Raises:
        ValueError: on a negative or non-finite ``rho`` or a non-positive ``eps``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eps: float = 1e-12,
        **base_kwargs: Any,
    ) -> None:
        _check_rho(rho)
        if not eps > 0:
            raise ValueError(f"eps must be > 0; got {eps}")
        defaults = {"rho": rho, "adaptive": adaptive, **base_kwargs}
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_rho(group["rho"])
        self.eps = eps
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self._perturbed = False

    @property
    def is_perturbed(self) -> bool:
        """True between :meth:`first_step` and :meth:`second_step`/:meth:`restore`."""
        return self._perturbed

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the (ASAM-scaled) gradients of every group with ``rho > 0``."""
        norms = []
        device = None
        for group in self.param_groups:
            if group["rho"] == 0:
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                device = device or p.device
                scaled = torch.abs(p) * p.grad if group["adaptive"] else p.grad
                norms.append(scaled.norm(p=2).to(device))
        if not norms:
            return torch.zeros(())
        return torch.norm(torch.stack(norms), p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> bool:
        """Move to the adversarial point w + e (ascent step).

        Args:
            zero_grad: clear the gradients afterwards (ready for the second backward).

        Returns:
            True if the parameters were perturbed; False (nothing changed) if the gradient
            norm is not finite, e.g. after a mixed-precision overflow.

        Raises:
            RuntimeError: if already perturbed (``first_step`` twice without ``second_step``).
        """
        if self._perturbed:
            raise RuntimeError("first_step called twice; call second_step() or restore() first")
        norm = self.grad_norm()
        if not math.isfinite(norm.item()):
            logger.warning("SAM first_step skipped: gradient norm is %s", norm.item())
            if zero_grad:
                self.zero_grad()
            return False
        for group in self.param_groups:
            scale = group["rho"] / (norm + self.eps)
            for p in group["params"]:
                if p.grad is None or group["rho"] == 0:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(e_w)
        self._perturbed = True
        if zero_grad:
            self.zero_grad()
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the parameters back to w exactly (no update); a no-op if not perturbed."""
        if not self._perturbed:
            return
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and "old_p" in state:
                    p.copy_(state.pop("old_p"))
        self._perturbed = False

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and apply the base optimizer with the gradient taken at w + e.

        Args:
            zero_grad: clear the gradients afterwards.

        Raises:
            RuntimeError: if :meth:`first_step` was not called first.
        """
        if not self._perturbed:
            raise RuntimeError("second_step called without first_step")
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(  # type: ignore[override]
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """One full SAM update, or the second half of one.

        With a ``closure`` (which must zero nothing, and run forward + backward and return the
        loss): the gradient must already be computed at w; this does ``first_step``, calls the
        closure under ``torch.enable_grad()`` and does ``second_step``. Without a closure, after
        :meth:`first_step`: the second half (so ``GradScaler.step(optimizer)`` works).

        Args:
            closure: re-evaluates the loss and its gradient.

        Returns:
            The closure's loss, or None.

        Raises:
            RuntimeError: without a closure when :meth:`first_step` was not called.
        """
        if closure is None:
            if not self._perturbed:
                raise RuntimeError(
                    "SAM.step() needs a closure, or first_step() before it; see sam_step()"
                )
            self.second_step()
            return None
        if not self.first_step(zero_grad=True):
            return None
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear gradients of every parameter (shared with the base optimizer)."""
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (moments, step counts) with ``rho``/``adaptive`` per group.

        Raises:
            RuntimeError: between ``first_step`` and ``second_step`` (parameters are perturbed).
        """
        if self._perturbed:
            raise RuntimeError("cannot save SAM state while perturbed; finish the step first")
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` and re-link the shared parameter groups."""
        self.restore()
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        for group in self.param_groups:
            group.setdefault("rho", self.defaults["rho"])
            group.setdefault("adaptive", self.defaults["adaptive"])

    def __repr__(self) -> str:
        rhos = [g["rho"] for g in self.param_groups]
        return f"SAM(base={type(self.base_optimizer).__name__}, rho={rhos})"


def _check_rho(rho: float) -> None:
    if not (isinstance(rho, int | float) and math.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0; got {rho!r}")


@contextlib.contextmanager
def disable_running_stats(module: nn.Module) -> Iterator[None]:
    """Freeze BatchNorm running statistics inside the block (for SAM's second forward).

    Sets ``momentum`` to 0 on every batch-norm layer and restores ``momentum`` and
    ``num_batches_tracked`` on exit, so the running mean/var are exactly as before the block.
    Normalisation inside the block still uses batch statistics in train mode.

    Args:
        module: any module; modules without batch norm are unaffected.
    """
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def unscale_grads_(optimizer: torch.optim.Optimizer, scale: float | torch.Tensor) -> bool:
    """Divide every gradient by the loss scale and report whether all are finite.

    Used for SAM's first backward under mixed precision, where ``GradScaler.unscale_`` cannot be
    called (it may be called once per iteration and is needed for the second backward).

    Args:
        optimizer: the optimizer whose parameters' gradients to unscale.
        scale: the current loss scale (``scaler.get_scale()``).

    Returns:
        True when every gradient is finite after unscaling.
    """
    inv = 1.0 / float(scale)
    finite = True
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            p.grad.mul_(inv)
            if finite and not torch.isfinite(p.grad).all():
                finite = False
    return finite


def _total(result: Any) -> torch.Tensor:
    return result.total if hasattr(result, "total") else result


def sam_step(
    optimizer: SAM,
    compute_loss: Callable[[], Any],
    *,
    model: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
) -> tuple[Any, Any | None]:
    """One complete SAM update with the BatchNorm, DDP and mixed-precision details handled.

    ``compute_loss`` runs the forward pass and returns a scalar tensor or an object with a
    ``.total`` tensor (e.g. ``LossOutput``); it is called twice. Gradients are zeroed first.

    - The first backward runs under ``model.no_sync()`` when ``model`` has it (DDP), so the
      ascent direction is each replica's local gradient.
    - The second forward runs under :func:`disable_running_stats` (when ``model`` is given).
    - With a ``scaler``: both losses are scaled; the first gradients are unscaled with
      :func:`unscale_grads_` before ``first_step``; a non-finite first gradient skips the whole
      update and lowers the scale; the second is unscaled by ``scaler.unscale_`` and stepped by
      ``scaler.step`` (which skips non-finite steps, after which w is restored).
    - ``max_grad_norm`` clips the second gradient by rescaling only (direction kept).

    Args:
        optimizer: the SAM optimizer.
        compute_loss: forward pass returning the loss.
        model: the module being trained (DDP-wrapped or not).
        scaler: a ``GradScaler`` for mixed precision, or None.
        max_grad_norm: optional clipping of the second gradient.

    Returns:
        ``(first_result, second_result)``; ``second_result`` is None when the step was skipped.
    """
    optimizer.zero_grad()
    no_sync = getattr(model, "no_sync", None) if model is not None else None
    sync_ctx = no_sync() if callable(no_sync) else None
    with sync_ctx if sync_ctx is not None else contextlib.nullcontext():
        first = compute_loss()
        loss = _total(first)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None and not unscale_grads_(optimizer, scaler.get_scale()):
        optimizer.zero_grad()
        scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
        logger.warning("SAM step skipped: non-finite gradients in the first pass")
        return first, None
    if not optimizer.first_step(zero_grad=True):
        return first, None
    bn_ctx = disable_running_stats(model) if model is not None else contextlib.nullcontext()
    try:
        with bn_ctx:
            second = compute_loss()
            loss = _total(second)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.second_step()
    finally:
        # A skipped scaler step (inf/NaN) or an exception leaves w + e: put w back.
        optimizer.restore()
    optimizer.zero_grad()
    return first, second
