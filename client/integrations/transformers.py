"""A transformers `TrainerCallback` that posts evaluation metrics to the run of a RemoteScheduler.

    scheduler = RemoteScheduler(optimizer, "bert-1", schedule=..., plateau={"metric": "eval_loss"})
    trainer = Trainer(..., optimizers=(optimizer, scheduler), callbacks=[LrtowerCallback(scheduler)])

The Trainer steps the scheduler after every optimizer step. After each evaluation, the callback
posts the metric for the next step, so a plateau reduction applies from the next optimizer step
on. (A Trainer with a local ReduceLROnPlateau applies it to the step in between, which a remote
run cannot do: that step's LR has been served already.) With `eval_strategy="steps"`, the
scheduler is told the evaluation cadence, so its lookahead windows end before each evaluation.

When training begins, a scheduler that was given no `total_steps` (and whose run declares none)
takes the Trainer's `max_steps`, so that its windows stop at the job's last step. The windows
fetched before that (the first, when the scheduler was built) are not shortened: pass
`total_steps=` to the RemoteScheduler as well when it is known then, which also records it on a
run the scheduler creates.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..scheduler import RemoteScheduler


class LrtowerCallback(TrainerCallback):
    """Post `metric` (default `eval_loss`) after every evaluation, under the plateau's metric
    name unless `name` is given."""

    def __init__(
        self, scheduler: RemoteScheduler, metric: str = "eval_loss", name: str | None = None
    ) -> None:
        self.scheduler = scheduler
        self.metric = metric
        self.name = name

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        feed = self.scheduler.feed
        if feed.total_steps is None and state.max_steps and state.max_steps > 0:
            feed.total_steps = int(state.max_steps)
        every = state.eval_steps if str(args.eval_strategy).endswith("steps") else None
        if every and every >= 1:
            # Evaluations follow optimizer steps every, 2 * every, ...; each metric is posted for
            # the step after.
            first = (state.global_step // int(every) + 1) * int(every) + 1
            self.scheduler.feed.expect_metrics(int(every), first)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if metrics and self.metric in metrics:
            self.scheduler.report_metric(metrics[self.metric], self.name)
