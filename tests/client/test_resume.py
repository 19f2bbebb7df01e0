"""Resuming from a checkpoint that the replay does not follow bit for bit (another batch order):
`load_state_dict` at a step below the run's mark starts, or joins, a new attempt there, as
torch's ReduceLROnPlateau restored from the checkpoint decides the rest from new metrics. Real
server processes, real training loops, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch.optim import lr_scheduler

import resume_job
from lrtower import Client, Conflict
from lrtower.scheduler import RemoteScheduler
from servers import Server, free_port
from training import FLAT, copied, data, model, optimizer

K, END, EVERY = 150, 250, 10
PLATEAU = {"factor": 0.5, "patience": 1, "threshold": 0.1}
DEFINITION = {"schedule": FLAT, "plateau": {"metric": "val_loss", **PLATEAU}}


class Job:
    """The MLP of training.py and its optimizer, stepped by `scheduler`; a validation loss every
    EVERY steps, posted with `step(loss)`."""

    def __init__(self, scheduler: Callable[[torch.optim.Optimizer], Any]) -> None:
        self.x, self.y = data()
        self.net = model()
        self.opt = optimizer("sgd", self.net, 0.05)
        self.scheduler = scheduler(self.opt)
        self.used: dict[int, list[float]] = {}
        """Step -> the LRs it ran with."""

    def steps(self, steps: range, shuffled: bool = False) -> None:
        """Train `steps`: in order, or (a resumed job's data loader) in another order."""
        local = isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau)
        for i in steps:
            self.used[i] = [group["lr"] for group in self.opt.param_groups]
            if shuffled:
                rows = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(i))[:32]
            else:
                rows = torch.arange((i * 32) % len(self.x), (i * 32) % len(self.x) + 32)
            loss = torch.nn.functional.mse_loss(self.net(self.x[rows]).squeeze(1), self.y[rows])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if (i + 1) % EVERY == 0:
                with torch.no_grad():
                    self.scheduler.step(
                        float(torch.nn.functional.mse_loss(self.net(self.x).squeeze(1), self.y))
                    )
            elif not local:
                self.scheduler.step()

    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": {k: v.clone() for k, v in self.net.state_dict().items()},
            "optimizer": copied(self.opt.state_dict()),
            "scheduler": copied(self.scheduler.state_dict()),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """As from a file: torch's optimizer keeps the tensors it loads, so each job gets copies."""
        checkpoint = copied(checkpoint)
        self.net.load_state_dict(checkpoint["model"])
        self.opt.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])

    def weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.net.parameters()])


def remote(run: str, tower: str, **options: Any) -> Callable[[torch.optim.Optimizer], RemoteScheduler]:
    """A job's scheduler on `run`: lookahead 7 and a metric every EVERY steps, unless `options` say."""
    return lambda opt: RemoteScheduler(opt, run, tower, **{"lookahead": 7, "metric_every": EVERY, **options})


def crashed_job(
    scheduler: Callable[[torch.optim.Optimizer], RemoteScheduler], trained_to: int = END
) -> tuple[Job, dict[str, Any]]:
    """A job that trained in order to `trained_to`, then stopped, and its checkpoint of step K."""
    job = Job(scheduler)
    job.steps(range(K))
    saved = job.checkpoint()
    job.steps(range(K, trained_to))
    job.scheduler.feed.close()
    return job, saved


def test_a_resume_in_another_batch_order_trains_as_torch_resumed_does(tower: str) -> None:
    run = "resume-shuffled"
    first, saved = crashed_job(remote(run, tower, **DEFINITION))
    assert saved["scheduler"]["attempt"] == 1 and saved["scheduler"]["last_epoch"] == K

    resumed = Job(remote(run, tower))
    resumed.restore(saved)  # the mark is past K: a new attempt at K
    resumed.steps(range(K, END), shuffled=True)  # other metrics for steps 160, 170, ...: accepted

    # torch alone: the same job to K, the same checkpoint, ReduceLROnPlateau's state with it.
    local = Job(lambda opt: lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU))
    local.steps(range(K))
    local_saved = local.checkpoint()
    local_resumed = Job(lambda opt: lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU))
    local_resumed.restore(local_saved)
    local_resumed.steps(range(K, END), shuffled=True)

    assert {i: first.used[i] for i in range(K)} == local.used
    assert resumed.used == local_resumed.used  # every LR of the resumed job, bit for bit
    got, expected = resumed.weights(), local_resumed.weights()
    assert torch.equal(got, expected), f"max difference {(got - expected).abs().max().item():.3g}"
    # The replay mattered: the first attempt's LRs after K are not the resumed job's.
    assert any(first.used[i] != resumed.used[i] for i in range(K, END))
    with Client(tower) as client:
        state = client.get_run(run)
    assert state.attempt == 2 and resumed.scheduler.feed.attempt == 2
    assert [(a.number, a.rewound_to) for a in state.attempts] == [(2, K)]
    assert resumed.scheduler.state_dict()["attempt"] == 2  # the next checkpoint says so
    resumed.scheduler.feed.close()


@pytest.mark.parametrize("saved_attempt", [True, False], ids=["checkpoint", "older-checkpoint"])
def test_every_scheduler_that_loads_one_checkpoint_lands_on_one_attempt(
    tower: str, saved_attempt: bool
) -> None:
    run = f"resume-ranks-{saved_attempt}"
    _, saved = crashed_job(remote(run, tower, **DEFINITION))
    state = saved["scheduler"]
    if not saved_attempt:  # as lrtower saved it before it recorded the attempt
        state = {key: value for key, value in state.items() if key != "attempt"}
    ranks = [Job(remote(run, tower)) for _ in range(3)]
    with Client(tower) as client:
        before = client.get_run(run)
    # The last rank read the run before the first one's rewind (a race): it asks for the rewind
    # too, under the same key. The second read it after, and finds the attempt started at K.
    ranks[2].scheduler.client.get_run = lambda name: before  # type: ignore[method-assign]
    ranks[0].scheduler.load_state_dict(state)
    ranks[0].steps(range(K, K + 25), shuffled=True)  # serves past K in the new attempt
    for rank in ranks[1:]:
        rank.scheduler.load_state_dict(state)
        rank.steps(range(K, K + 25), shuffled=True)
    with Client(tower) as client:
        after = client.get_run(run)
        rewinds = [e for e in client.events(run).events if e.kind == "rewound"]
    assert after.attempt == 2 and len(after.attempts) == 1 and len(rewinds) == 1
    assert [rank.scheduler.feed.attempt for rank in ranks] == [2, 2, 2]
    assert ranks[0].used == ranks[1].used == ranks[2].used
    for rank in ranks:
        rank.scheduler.feed.close()


def test_resume_replay_keeps_the_served_steps_and_says_how_to_resume_instead(tower: str) -> None:
    run = "resume-replay"
    first, saved = crashed_job(remote(run, tower, **DEFINITION))
    resumed = Job(remote(run, tower, resume="replay"))
    resumed.restore(saved)
    with pytest.raises(Conflict) as conflict:
        resumed.steps(range(K, END), shuffled=True)
    message = str(conflict.value)
    assert f"step {K + EVERY} of 'val_loss' was posted with value" in message
    assert 'resume="replay"' in message and 'resume="rewind"' in message
    assert {i: resumed.used[i] for i in range(K, K + EVERY)} == {
        i: first.used[i] for i in range(K, K + EVERY)
    }
    with Client(tower) as client:
        state = client.get_run(run)
    assert state.attempt == 1 and state.attempts == [] and resumed.scheduler.feed.attempt == 1
    resumed.scheduler.feed.close()


def test_a_resume_where_nothing_was_served_past_the_checkpoint_rewinds_nothing(tower: str) -> None:
    run = "resume-at-the-mark"
    _, saved = crashed_job(remote(run, tower, lookahead=1, metric_every=None, **DEFINITION), trained_to=K)
    with Client(tower) as client:
        assert client.get_run(run).high_water == K
    resumed = Job(remote(run, tower, lookahead=1, metric_every=None))
    resumed.restore(saved)
    resumed.steps(range(K, K + 30), shuffled=True)
    with Client(tower) as client:
        state = client.get_run(run)
    assert state.attempt == 1 and state.attempts == [] and state.high_water == K + 30
    resumed.scheduler.feed.close()


def test_resume_must_be_rewind_or_replay() -> None:
    with pytest.raises(ValueError, match="resume must be"):
        RemoteScheduler(optimizer("sgd", model(), 0.1), "r", "http://127.0.0.1:9", resume="again")  # type: ignore[arg-type]


def _train_ranks(world: int, url: str | None, run: str, out: Path) -> list[dict[str, Any]]:
    mp.start_processes(
        resume_job.run_rank,
        args=(world, free_port(), url, run, str(out)),
        nprocs=world,
        start_method="spawn",
    )
    return [torch.load(out / f"{run}-rank{rank}.pt") for rank in range(world)]


def test_two_ddp_ranks_resume_together_on_one_new_attempt(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()
    remote = _train_ranks(2, server.url, "ddp-resume", tmp_path)
    local = _train_ranks(2, None, "local", tmp_path)

    assert remote[0]["attempt"] == remote[1]["attempt"] == 2
    assert torch.equal(remote[0]["lrs"], remote[1]["lrs"])  # every rank the same LRs
    assert torch.equal(remote[0]["weights"], remote[1]["weights"])
    assert torch.equal(remote[0]["lrs"], local[0]["lrs"])  # torch's own, resumed the same way
    assert torch.equal(remote[0]["weights"], local[0]["weights"])
    with Client(server.url) as client:
        run = client.get_run("ddp-resume")
    assert run.attempt == 2 and [(a.number, a.rewound_to) for a in run.attempts] == [(2, resume_job.K)]


def test_a_second_launch_from_the_same_checkpoint_starts_an_attempt_of_its_own(
    tower: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job crashes again before its next checkpoint and is launched once more from the same
    one: that launch makes a new attempt (its metrics differ from the first resume's), and every
    rank of it joins that one."""
    run = "resume-twice"
    _, saved = crashed_job(remote(run, tower, **DEFINITION))
    monkeypatch.setenv("LRTOWER_LAUNCH_ID", "launch-2")
    second = Job(remote(run, tower))
    second.restore(saved)
    second.steps(range(K, K + 40), shuffled=True)  # and crashes again
    second.scheduler.feed.close()
    monkeypatch.setenv("LRTOWER_LAUNCH_ID", "launch-3")
    third = [Job(remote(run, tower)) for _ in range(2)]  # two ranks of the third launch
    for rank in third:
        rank.restore(saved)
        rank.steps(range(K, K + 40))  # in order this time: other metrics than the second launch's
    with Client(tower) as client:
        after = client.get_run(run)
    assert after.attempt == 3 and [a.rewound_to for a in after.attempts] == [K, K]
    assert [rank.scheduler.feed.attempt for rank in third] == [3, 3]
    assert third[0].used == third[1].used != second.used
    for rank in third:
        rank.scheduler.feed.close()


def test_a_launch_is_what_its_ranks_share(monkeypatch: pytest.MonkeyPatch) -> None:
    from lrtower.scheduler import _launch

    monkeypatch.delenv("LRTOWER_LAUNCH_ID", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job 7")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = _launch()
    assert first is not None and first == _launch() and len(first) == 16
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted the ranks
    assert _launch() not in (None, first)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("WORLD_SIZE", "2")  # ranks launched some other way share nothing lrtower sees
    assert _launch() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert _launch() is not None  # a job that is one process
