"""A small, deterministic training job (an MLP on generated regression data, on CPU), to check
that a remote schedule trains exactly like a local torch one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

WARMUP_COSINE = {
    "type": "SequentialLR",
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 20},
        {"type": "CosineAnnealingLR", "T_max": 180, "eta_min": 1e-4},
    ],
    "milestones": [20],
}
"""A warmup, then a cosine: the run's spec of `warmup_cosine`."""
FLAT = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
"""The base LR at every step: a plateau run's schedule."""


def warmup_cosine(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """WARMUP_COSINE as torch's own schedulers."""
    return torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=20),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=180, eta_min=1e-4),
        ],
        milestones=[20],
    )


Step = Callable[[Any, int, Callable[[], float]], None]
"""Steps the scheduler after training step i: `step(scheduler, i, validation_loss)`."""


def data(seed: int = 0, n: int = 256, features: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    y = (x @ w).squeeze(1) + 0.1 * torch.randn(n, generator=generator)
    return x, y


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def optimizer(kind: str, net: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum, or Adam; `sgd2`/`adam2` split the model into two param groups at lr, lr/10."""
    first, second = list(net[0].parameters()), list(net[2].parameters())  # type: ignore[index]
    groups: list[dict[str, Any]] = (
        [{"params": first + second}]
        if kind in ("sgd", "adam")
        else [{"params": first}, {"params": second, "lr": lr / 10}]
    )
    if kind.startswith("sgd"):
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return torch.optim.Adam(groups, lr=lr)


def every_step(scheduler: Any, i: int, validation_loss: Callable[[], float]) -> None:
    scheduler.step()


def metric_each_step(scheduler: Any, i: int, validation_loss: Callable[[], float]) -> None:
    scheduler.step(validation_loss())


def train(
    kind: str,
    lr: float,
    make_scheduler: Callable[[torch.optim.Optimizer], Any],
    steps: int,
    step: Step = every_step,
    batch: int = 32,
) -> torch.Tensor:
    """Train for `steps` steps and return every weight, flattened."""
    x, y = data()
    net = model()
    opt = optimizer(kind, net, lr)
    scheduler = make_scheduler(opt)

    def validation_loss() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(x).squeeze(1), y))

    for i in range(steps):
        start = (i * batch) % len(x)
        loss = torch.nn.functional.mse_loss(
            net(x[start : start + batch]).squeeze(1), y[start : start + batch]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        step(scheduler, i, validation_loss)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def copied(state: Any) -> Any:
    """A checkpoint's state with every tensor copied, as if read back from a file: torch's
    `load_state_dict` may keep the tensors it is given."""
    if isinstance(state, dict):
        return {k: copied(v) for k, v in state.items()}
    if isinstance(state, list):
        return [copied(v) for v in state]
    return state.clone() if isinstance(state, torch.Tensor) else state
