"""A Keras 3 callback that sets the LR of every batch from an lrtower run and posts epoch metrics.

    model.fit(x, y, epochs=10, validation_split=0.1,
              callbacks=[LrtowerKerasCallback("mlp-1", url="http://tower:8000")])

Batch k of training (k optimizer steps done before it) runs with the run's LR of step k, as a
Keras learning-rate schedule evaluated at `optimizer.iterations` would. At the end of each epoch
the `monitor` value (default `val_loss`) is posted for the step that follows, so a plateau
reduction applies from the next epoch's first batch. The LRs come through the same lookahead
and outage handling as RemoteScheduler's (see `lrtower.lookahead`), and the windows end at each
epoch's end, where a metric is posted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from .._client import Client
from ..lookahead import LRFeed
from ..scheduler import TRAINING_RETRY, TRAINING_TIMEOUT


class LrtowerKerasCallback(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
    """Set the optimizer's `learning_rate` (and `momentum` or `beta_1`, when the run cycles it)
    before every batch, from `run`.

    Args:
        run: the run's name; with `schedule`, it is created if missing from the optimizer's LR.
        url, token: the server and token (default `$LRTOWER_URL`, `$LRTOWER_TOKEN`).
        monitor: the log key posted at each epoch's end (nothing is posted if it is absent).
        name: the metric's name on the server (default: the plateau's metric).
        lookahead, strict: as for RemoteScheduler.
        schedule, plateau, labels: to create the run if it does not exist.
        client: a Client to use instead of one made from url and token.
    """

    def __init__(
        self,
        run: str,
        url: str | None = None,
        token: str | None = None,
        *,
        monitor: str = "val_loss",
        name: str | None = None,
        lookahead: int = 64,
        strict: bool = False,
        schedule: Mapping[str, Any] | None = None,
        plateau: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        client: Client | None = None,
    ) -> None:
        super().__init__()
        self.run = run
        self.monitor = monitor
        self.name = name
        self._owns_client = client is None
        self.client = client or Client(url, token, timeout=TRAINING_TIMEOUT, retry=TRAINING_RETRY)
        self._definition = (schedule, plateau, labels)
        self.feed = LRFeed(self.client, run, lookahead=lookahead, strict=strict)
        self.history: list[tuple[int, float]] = []
        """(step, LR) of every batch, as set."""

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        schedule, plateau, labels = self._definition
        if schedule is not None:
            # The shortest decimal of the float32 variable: 0.02, not 0.019999999552965164, so
            # that the definition matches the one written by hand elsewhere.
            lr = float(str(np.float32(keras.ops.convert_to_tensor(self.model.optimizer.learning_rate))))
            self.client.create_run(self.run, schedule, lrs=[lr], plateau=plateau, labels=labels)
        steps = self.params.get("steps")
        if steps:
            # Each epoch's metric is posted for the step after its last batch.
            done = self._step()
            self.feed.expect_metrics(int(steps), done + int(steps))

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        step = self._step()
        answer = self.feed.at(step)
        if answer is None:
            return  # an outage with nothing fetched: the current LR holds
        if len(answer.lrs) != 1:
            raise ValueError(
                f"run {self.run!r} has {len(answer.lrs)} param groups; a Keras optimizer has one"
            )
        optimizer = self.model.optimizer
        optimizer.learning_rate = answer.lrs[0]
        if answer.momentum is not None:
            if hasattr(optimizer, "beta_1"):
                optimizer.beta_1 = answer.momentum[0]
            elif hasattr(optimizer, "momentum"):
                optimizer.momentum = answer.momentum[0]
        self.history.append((step, answer.lrs[0]))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None:
            self.feed.post_metric(self._step(), float(value), self.name)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.feed.close()  # first: a fetch still queued would open the client again
        if self._owns_client:
            self.client.close()

    def _step(self) -> int:
        return int(keras.ops.convert_to_tensor(self.model.optimizer.iterations))
