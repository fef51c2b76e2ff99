"""Sharpness-Aware Minimization: exact perturbation, descent, state round trip, pitfalls."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from umedsam.optim import SAM, disable_running_stats, sam_step, unscale_grads_
from umedsam.optim.factory import base_optimizer


def _params_with_grads() -> tuple[nn.Parameter, nn.Parameter]:
    # float64 so that (w + e) - w recovers e to ~1e-16.
    a = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([[0.5, -1.5]], dtype=torch.float64))
    a.grad = torch.tensor([3.0, 0.0, -4.0], dtype=torch.float64)
    b.grad = torch.tensor([[12.0, 0.0]], dtype=torch.float64)
    return a, b


def test_perturbation_is_rho_g_over_norm() -> None:
    a, b = _params_with_grads()
    a0, b0 = a.detach().clone(), b.detach().clone()
    opt = SAM([a, b], torch.optim.SGD, rho=0.1, lr=0.1)
    assert opt.first_step()
    norm = 13.0  # sqrt(9 + 16 + 144)
    torch.testing.assert_close(a.detach() - a0, 0.1 * a.grad / norm, rtol=0, atol=1e-14)
    torch.testing.assert_close(b.detach() - b0, 0.1 * b.grad / norm, rtol=0, atol=1e-14)
    opt.restore()
    assert torch.equal(a.detach(), a0)
    assert torch.equal(b.detach(), b0)


def test_adaptive_perturbation() -> None:
    a, b = _params_with_grads()
    a0, b0 = a.detach().clone(), b.detach().clone()
    opt = SAM([a, b], torch.optim.SGD, rho=2.0, adaptive=True, lr=0.1)
    opt.first_step()
    # || |w| g || over both tensors
    norm = torch.cat([(a0.abs() * a.grad).flatten(), (b0.abs() * b.grad).flatten()]).norm()
    torch.testing.assert_close(a.detach() - a0, 2.0 * a0**2 * a.grad / norm)
    torch.testing.assert_close(b.detach() - b0, 2.0 * b0**2 * b.grad / norm)


def test_rho_zero_group_is_not_perturbed_nor_counted() -> None:
    a, b = _params_with_grads()
    a0, b0 = a.detach().clone(), b.detach().clone()
    opt = SAM([{"params": [a]}, {"params": [b], "rho": 0.0}], torch.optim.SGD, rho=0.5, lr=0.1)
    opt.first_step()
    assert torch.equal(b.detach(), b0)
    torch.testing.assert_close(a.detach() - a0, 0.5 * a.grad / 5.0)  # norm of a.grad only


def test_second_step_uses_gradient_at_perturbed_point() -> None:
    w = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.5)
    loss_fn = lambda: (w**2).sum() / 2  # noqa: E731 - grad = w
    loss_fn().backward()
    opt.first_step(zero_grad=True)
    w_adv = w.detach().clone()
    loss_fn().backward()
    opt.second_step()
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 1.0]) - 0.5 * w_adv)


def _toy_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=gen)
    y = x @ torch.randn(5, 1, generator=gen) + 0.1 * torch.randn(64, 1, generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    return model, x, y


def _train(model, opt, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        first, _ = sam_step(opt, lambda: nn.functional.mse_loss(model(x), y), model=model)
        losses.append(first.item())
    return losses


@pytest.mark.parametrize("adaptive", [False, True])
def test_toy_loss_falls(adaptive: bool) -> None:
    model, x, y = _toy_problem()
    opt = SAM(
        model.parameters(),
        torch.optim.AdamW,
        rho=2.0 if adaptive else 0.05,
        adaptive=adaptive,
        lr=0.02,
    )
    losses = _train(model, opt, x, y, 60)
    assert losses[-1] < 0.3 * losses[0]


def test_step_with_closure_matches_sam_step() -> None:
    model, x, y = _toy_problem()
    model2 = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=0.01)
    opt2 = SAM(model2.parameters(), torch.optim.AdamW, rho=0.05, lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()

        def closure():
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        sam_step(opt2, lambda: nn.functional.mse_loss(model2(x), y), model=model2)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_round_trip_reproduces_trajectory() -> None:
    model, x, y = _toy_problem()
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=0.01, weight_decay=0.01)
    _train(model, opt, x, y, 5)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    assert saved_opt["state"], "base optimizer moments must be in the state dict"
    assert saved_opt["param_groups"][0]["rho"] == 0.05
    expected = _train(model, opt, x, y, 5)

    model2, _, _ = _toy_problem(seed=1)
    model2.load_state_dict(saved_model)
    opt2 = SAM(model2.parameters(), torch.optim.AdamW, rho=0.05, lr=0.01, weight_decay=0.01)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    assert _train(model2, opt2, x, y, 5) == expected
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_scheduler_on_base_optimizer_changes_shared_lr() -> None:
    model, x, y = _toy_problem()
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(base_optimizer(opt), factor=0.5, patience=0)
    sched.step(1.0)
    sched.step(2.0)  # no improvement -> decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    _train(model, opt, x, y, 1)  # still steps fine


def test_batchnorm_stats_updated_once_per_sam_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    reference = copy.deepcopy(model)
    reference(x)  # one forward: the expected running statistics
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    sam_step(opt, lambda: nn.functional.mse_loss(model(x), y), model=model)
    bn, bn_ref = model[1], reference[1]
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var)
    assert bn.num_batches_tracked.item() == 1
    assert bn.momentum == 0.1  # restored


def test_disable_running_stats_context() -> None:
    bn = nn.BatchNorm1d(3)
    with disable_running_stats(bn):
        bn(torch.randn(8, 3) + 5.0)
    assert torch.equal(bn.running_mean, torch.zeros(3))
    assert bn.num_batches_tracked.item() == 0
    bn(torch.randn(8, 3) + 5.0)
    assert bn.running_mean.abs().sum() > 0


def test_amp_scaler_unscales_before_first_step() -> None:
    model, x, y = _toy_problem()
    model2 = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    opt2 = SAM(model2.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for _ in range(3):
        sam_step(opt, lambda: nn.functional.mse_loss(model(x), y), model=model, scaler=scaler)
        sam_step(opt2, lambda: nn.functional.mse_loss(model2(x), y), model=model2)
    # Power-of-two scaling is exact in float32: identical trajectories prove the unscaling.
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_amp_non_finite_first_gradient_skips_step() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    first, second = sam_step(
        opt, lambda: (w * torch.tensor([float("inf"), 1.0])).sum(), scaler=scaler
    )
    assert second is None
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0]))
    assert scaler.get_scale() < 2.0**10
    assert not opt.is_perturbed


def test_amp_non_finite_second_gradient_restores_weights() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    calls = []

    def compute():
        calls.append(1)
        factor = 1.0 if len(calls) == 1 else float("nan")
        return (w * factor).sum()

    sam_step(opt, compute, scaler=scaler)
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0]))
    assert not opt.is_perturbed


def test_unscale_grads_reports_non_finite() -> None:
    w = nn.Parameter(torch.ones(2))
    w.grad = torch.tensor([4.0, 8.0])
    opt = torch.optim.SGD([w], lr=0.1)
    assert unscale_grads_(opt, 4.0)
    assert torch.equal(w.grad, torch.tensor([1.0, 2.0]))
    w.grad = torch.tensor([float("inf"), 1.0])
    assert not unscale_grads_(opt, 2.0)


class _FakeDDP(nn.Module):
    """Records whether backward ran inside no_sync (stands in for DistributedDataParallel)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.in_no_sync = False
        self.backward_in_no_sync: list[bool] = []

    @contextlib.contextmanager
    def no_sync(self):
        self.in_no_sync = True
        try:
            yield
        finally:
            self.in_no_sync = False

    def forward(self, x):
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(lambda g: self.backward_in_no_sync.append(self.in_no_sync) or g)
        return out


def test_first_backward_under_no_sync_only() -> None:
    model, x, y = _toy_problem()
    wrapped = _FakeDDP(model)
    opt = SAM(wrapped.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    sam_step(opt, lambda: nn.functional.mse_loss(wrapped(x), y), model=wrapped)
    assert wrapped.backward_in_no_sync == [True, False]


def test_clipping_keeps_direction() -> None:
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = SAM([w], torch.optim.SGD, rho=1e-8, lr=1.0)
    sam_step(opt, lambda: (w * torch.tensor([30.0, 40.0])).sum(), max_grad_norm=1.0)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.6, 4.0 - 0.8]))


def test_call_order_and_bad_values_raise() -> None:
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="rho must be a finite number >= 0; got -0.1"):
        SAM([w], torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(ValueError, match="rho must be"):
        SAM([{"params": [w], "rho": float("nan")}], torch.optim.SGD, lr=0.1)
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="second_step called without first_step"):
        opt.second_step()
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()
    w.grad = torch.ones(2)
    opt.first_step()
    with pytest.raises(RuntimeError, match="first_step called twice"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="while perturbed"):
        opt.state_dict()
    opt.restore()
    assert torch.equal(w.detach(), torch.ones(2))
