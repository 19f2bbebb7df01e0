"""A run's planned length from the trainer: transformers' `max_steps` through the callback, and
Lightning's `trainer.estimated_stepping_batches` passed to the scheduler, training for real
against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Trainer, TrainingArguments

from lrtower import Client
from lrtower.integrations.transformers import LrtowerCallback
from lrtower.scheduler import RemoteScheduler
from training import data

COSINE = {"type": "CosineAnnealingLR", "T_max": 60}


@pytest.fixture
def client(tower: str) -> Iterator[Client]:
    with Client(tower) as client:
        yield client


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.net(x).squeeze(1)
        return {"loss": torch.nn.functional.mse_loss(prediction, labels), "logits": prediction}


def test_the_trainer_callback_stops_the_windows_at_max_steps(
    tower: str, client: Client, tmp_path: Path
) -> None:
    x, y = data()
    model = Regressor()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    # Built before the Trainer knows its length: the windows fetched now (steps 0 to 31) are not
    # shortened, the later ones stop at max_steps.
    scheduler = RemoteScheduler(opt, "hf-max-steps", tower, lookahead=16, schedule=COSINE)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=32,
        max_steps=60,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        logging_strategy="no",
    )
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        optimizers=(opt, scheduler),
        callbacks=[LrtowerCallback(scheduler)],
    )
    trainer.train()
    assert scheduler.feed.total_steps == 60 and scheduler.last_epoch == 60
    # Steps 0 to 59 trained, and the last scheduler.step() asked 60: nothing of a window past it.
    assert client.get_run("hf-max-steps").high_water == 60


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
def test_lightning_passes_its_estimated_stepping_batches(tower: str, client: Client) -> None:
    import lightning

    x, y = data()

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Regressor()

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            return self.net(batch[0], batch[1])["loss"]

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            scheduler = RemoteScheduler(
                opt,
                "lightning-planned",
                tower,
                lookahead=16,
                schedule=COSINE,
                total_steps=self.trainer.estimated_stepping_batches,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = lightning.Trainer(
        max_epochs=5,  # 8 batches each: 40 steps
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), loader)
    steps = trainer.estimated_stepping_batches
    run = client.get_run("lightning-planned")
    assert run.total_steps == steps == trainer.global_step
    assert run.high_water == steps  # not the end of a 16-step window past it
