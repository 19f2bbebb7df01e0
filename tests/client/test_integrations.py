"""The transformers Trainer and Keras 3 (torch backend) integrations, training for real against a
real server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # after choosing its backend
from transformers import Trainer, TrainingArguments

from lrtower import Client
from lrtower.integrations.keras import LrtowerKerasCallback
from lrtower.integrations.transformers import LrtowerCallback
from lrtower.scheduler import RemoteScheduler
from lrtower_server.schedules import build_schedule
from training import data

# -- transformers -----------------------------------------------------------------------------


class Regressor(torch.nn.Module):
    """The smallest model a Trainer accepts: it returns its loss."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.net(x).squeeze(1)
        return {"loss": torch.nn.functional.mse_loss(prediction, labels), "logits": prediction}


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [{"x": x[i], "labels": y[i]} for i in range(len(x))]


def _fit_trainer(tmp_path: Path, make: Any, callbacks: Any = None) -> tuple[Regressor, Any]:
    x, y = data()
    model = Regressor()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = make(opt)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=256,
        max_steps=60,
        eval_strategy="steps",
        eval_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_rows(x, y),
        eval_dataset=_rows(x[:64], y[:64]),
        optimizers=(opt, scheduler),
        callbacks=callbacks(scheduler) if callbacks else None,
    )
    trainer.train()
    return model, scheduler


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_a_trainer_with_a_remote_scheduler_trains_like_its_torch_scheduler(
    tower: str, tmp_path: Path
) -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.1, "total_iters": 10},
            {"type": "CosineAnnealingLR", "T_max": 50},
        ],
        "milestones": [10],
    }

    def local(opt: torch.optim.Optimizer) -> lr_scheduler.LRScheduler:
        warmup = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)
        return lr_scheduler.SequentialLR(opt, [warmup, lr_scheduler.CosineAnnealingLR(opt, T_max=50)], [10])

    expected, _ = _fit_trainer(tmp_path, local)
    got, scheduler = _fit_trainer(
        tmp_path, lambda opt: RemoteScheduler(opt, "hf-exact", tower, schedule=spec)
    )
    assert torch.equal(_weights(got), _weights(expected))
    assert scheduler.last_epoch == 60


def test_the_trainer_callback_posts_evaluations_and_the_plateau_acts_on_the_next_step(
    tower: str, tmp_path: Path
) -> None:
    plateau = {"metric": "eval_loss", "patience": 0, "factor": 0.5, "threshold": 0.5}

    def remote(opt: torch.optim.Optimizer) -> RemoteScheduler:
        flat = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
        return RemoteScheduler(opt, "hf-plateau", tower, lookahead=64, schedule=flat, plateau=plateau)

    _, scheduler = _fit_trainer(tmp_path, remote, callbacks=lambda s: [LrtowerCallback(s)])
    with Client(tower) as client:
        run = client.get_run("hf-plateau")
        posted = [e for e in client.events("hf-plateau").events if e.kind == "plateau_reduced"]
    reductions = [c.effective_step for c in run.changes if c.kind == "plateau"]
    # Evaluations follow steps 10, 20, ..., 60; each may reduce from the step after it, and
    # lookahead never fetched past it, so none lands later.
    assert reductions and set(reductions) <= {11, 21, 31, 41, 51, 61}
    assert len(posted) == len(reductions)
    assert float(scheduler.get_last_lr()[0]) == 0.01 * 0.5 ** len([s for s in reductions if s <= 60])


# -- Lightning --------------------------------------------------------------------------------


def _fit_lightning(make: Any) -> torch.Tensor:
    import lightning

    x, y = data()

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Regressor()

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            return self.net(batch[0], batch[1])["loss"]

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": make(opt), "interval": "step"}}

    module = Module()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = lightning.Trainer(
        max_steps=60,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return _weights(module)


# Lightning's own notices: a one-process loader, and its use of torch's pytree API.
@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
def test_lightning_takes_a_remote_scheduler_from_configure_optimizers(tower: str) -> None:
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 60}
    expected = _fit_lightning(lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=60))
    got = _fit_lightning(lambda opt: RemoteScheduler(opt, "lightning", tower, lookahead=16, schedule=spec))
    assert torch.equal(got, expected)


# -- Keras ------------------------------------------------------------------------------------


def _keras_model(learning_rate: Any) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9), loss="mse")
    return model


def _keras_weights(model: keras.Model) -> list[torch.Tensor]:
    # Through the backend's tensors: Keras' own get_weights() warns under NumPy 2.
    return [keras.ops.convert_to_tensor(w).detach().clone() for w in model.weights]


def _keras_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = data()
    return x.numpy(), y.numpy()


def test_a_keras_fit_follows_the_run_at_every_batch(tower: str) -> None:
    spec = {"type": "keras.CosineDecay", "initial_learning_rate": 0.05, "decay_steps": 40, "alpha": 0.1}
    x, y = _keras_data()
    local = _keras_model(keras.optimizers.schedules.CosineDecay(0.05, decay_steps=40, alpha=0.1))
    local.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0)

    callback = LrtowerKerasCallback("keras-cosine", tower, lookahead=16, schedule=spec)
    remote = _keras_model(0.05)
    remote.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=[callback])

    schedule = build_schedule(spec, None)
    assert [s for s, _ in callback.history] == list(range(40))
    assert [lr for _, lr in callback.history] == [schedule.at(s)[0][0] for s in range(40)]
    # Keras computes its schedule in float32 and the callback sets float64 values rounded to
    # float32: the same LRs to float32 precision, so the weights agree to float32 rounding.
    for a, b in zip(_keras_weights(local), _keras_weights(remote), strict=True):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)


def test_keras_epoch_metrics_reduce_on_plateau_from_the_next_epoch(tower: str) -> None:
    flat = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
    plateau = {"metric": "val_loss", "patience": 0, "factor": 0.5, "threshold": 0.5}
    callback = LrtowerKerasCallback("keras-plateau", tower, lookahead=64, schedule=flat, plateau=plateau)
    x, y = _keras_data()
    model = _keras_model(0.02)
    model.fit(
        x, y, batch_size=32, epochs=5, validation_split=0.25, shuffle=False, verbose=0, callbacks=[callback]
    )
    steps_per_epoch = 6  # 192 training rows in batches of 32
    with Client(tower) as client:
        reductions = [
            c.effective_step for c in client.get_run("keras-plateau").changes if c.kind == "plateau"
        ]
    assert reductions and all(step % steps_per_epoch == 0 for step in reductions), reductions
    first = reductions[0]
    history = dict(callback.history)
    assert history[first - 1] == 0.02 and history[first] == 0.01
