"""RemoteScheduler against a real server: real training ends with the same weights as with torch's
own scheduler, bit for bit; resuming, creating runs, and outages."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch
from torch.optim import lr_scheduler

from lrtower import Client, NotFound, Retry, ServerError, ServerUnreachable
from lrtower.scheduler import RemoteScheduler
from servers import Server
from training import (
    FLAT,
    WARMUP_COSINE,
    data,
    every_step,
    metric_each_step,
    model,
    optimizer,
    train,
    warmup_cosine,
)

# name: (optimizer, lr, local torch scheduler, lrtower spec, plateau, how the job steps)
CASES: dict[str, tuple[str, float, Callable[[torch.optim.Optimizer], Any], dict[str, Any], Any, Any]] = {
    "onecycle-sgd-momentum": (
        "sgd",
        0.05,
        lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=200),
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 200},
        None,
        every_step,
    ),
    "cyclic-adam-betas": (
        "adam",
        0.01,
        lambda opt: lr_scheduler.CyclicLR(
            opt, base_lr=0.001, max_lr=0.01, step_size_up=15, mode="triangular2"
        ),
        {"type": "CyclicLR", "base_lr": 0.001, "max_lr": 0.01, "step_size_up": 15, "mode": "triangular2"},
        None,
        every_step,
    ),
    "warmup-cosine-two-groups": ("sgd2", 0.05, warmup_cosine, WARMUP_COSINE, None, every_step),
    "plateau-on-validation-loss": (
        "sgd",
        0.05,
        lambda opt: lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=0.01),
        FLAT,
        {"metric": "loss", "factor": 0.5, "patience": 2, "threshold": 0.01},
        metric_each_step,
    ),
}


@pytest.mark.parametrize("lookahead", [1, 7, 64])
@pytest.mark.parametrize("case", CASES)
def test_training_with_a_remote_schedule_ends_with_torchs_weights(
    tower: str, case: str, lookahead: int
) -> None:
    kind, lr, local, spec, plateau, step = CASES[case]
    expected = train(kind, lr, local, steps=200, step=step)

    def remote(opt: torch.optim.Optimizer) -> RemoteScheduler:
        return RemoteScheduler(
            opt, f"{case}-{lookahead}", tower, lookahead=lookahead, schedule=spec, plateau=plateau
        )

    got = train(kind, lr, remote, steps=200, step=step)
    assert torch.equal(got, expected), f"max difference {(got - expected).abs().max().item():.3g}"


def test_a_schedule_with_a_plateau_reduces_exactly_at_each_metric_step(tower: str) -> None:
    """A per-step schedule and a metric every 10th step: with lookahead, windows end before each
    metric step, so every reduction lands where torch's two chained schedulers put it."""
    spec = {"type": "StepLR", "step_size": 25, "gamma": 0.5}
    plateau = {"metric": "loss", "factor": 0.5, "patience": 0, "threshold": 0.05}

    def stepped(local: bool) -> Callable[[Any, int, Callable[[], float]], None]:
        def step(scheduler: Any, i: int, validation_loss: Callable[[], float]) -> None:
            metric_step = (i + 1) % 10 == 0
            if local:
                scheduler[0].step()
                if metric_step:
                    scheduler[1].step(validation_loss())
            elif metric_step:
                scheduler.step(validation_loss())
            else:
                scheduler.step()

        return step

    def local(opt: torch.optim.Optimizer) -> tuple[Any, Any]:
        return (
            lr_scheduler.StepLR(opt, step_size=25, gamma=0.5),
            lr_scheduler.ReduceLROnPlateau(opt, **_torch(plateau)),
        )

    expected = train("sgd", 0.05, local, steps=200, step=stepped(True))
    for name, hint in (("learned", None), ("hinted", 10)):
        run = f"cadence-{name}"

        def remote(opt: torch.optim.Optimizer, run: str = run, hint: int | None = hint) -> RemoteScheduler:
            return RemoteScheduler(
                opt, run, tower, lookahead=64, metric_every=hint, schedule=spec, plateau=plateau
            )

        got = train("sgd", 0.05, remote, steps=200, step=stepped(False))
        with Client(tower) as client:
            reductions = [c.effective_step for c in client.get_run(run).changes if c.kind == "plateau"]
        assert reductions and all(s % 10 == 0 for s in reductions), reductions
        assert torch.equal(got, expected), name


def _torch(plateau: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plateau.items() if k != "metric"}


def test_resuming_from_a_checkpoint_continues_at_the_right_step(tower: str) -> None:
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 200}
    expected = train("sgd", 0.05, lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=200), 200)

    x, y = data()
    net = model()
    opt = optimizer("sgd", net, 0.05)
    scheduler = RemoteScheduler(opt, "resumed", tower, schedule=spec)

    def train_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, steps: range) -> None:
        for i in steps:
            start = (i * 32) % len(x)
            loss = torch.nn.functional.mse_loss(net(x[start : start + 32]).squeeze(1), y[start : start + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    train_steps(net, opt, scheduler, range(120))
    checkpoint = {"model": net.state_dict(), "opt": opt.state_dict(), "sched": scheduler.state_dict()}
    assert checkpoint["sched"]["last_epoch"] == 120 and "client" not in checkpoint["sched"]

    net2 = model(seed=1)  # a new process: fresh objects, then the checkpoint
    opt2 = optimizer("sgd", net2, 0.05)
    resumed = RemoteScheduler(opt2, "resumed", tower)
    net2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    resumed.load_state_dict(checkpoint["sched"])
    assert resumed.last_epoch == 120 and resumed.get_last_lr() == scheduler.get_last_lr()
    train_steps(net2, opt2, resumed, range(120, 200))
    got = torch.cat([p.detach().flatten() for p in net2.parameters()])
    assert torch.equal(got, expected)


def test_the_run_is_created_once_and_a_different_definition_is_refused(tower: str) -> None:
    net = model()
    spec = {"type": "StepLR", "step_size": 10}
    first = RemoteScheduler(optimizer("sgd", net, 0.1), "created", tower, schedule=spec)
    again = RemoteScheduler(optimizer("sgd", net, 0.1), "created", tower, schedule=spec)
    assert first.get_last_lr() == again.get_last_lr() == [0.1]
    with pytest.raises(Exception, match="different definition"):
        RemoteScheduler(optimizer("sgd", net, 0.1), "created", tower, schedule={**spec, "gamma": 0.5})
    with pytest.raises(NotFound):  # no spec to create it from: not a hiccup, so it raises
        RemoteScheduler(optimizer("sgd", net, 0.1), "never-created", tower)


def _lr_trace(scheduler: RemoteScheduler, steps: int, pause: float = 0.0) -> list[float]:
    trace = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        trace.append(float(scheduler.get_last_lr()[0]))
        time.sleep(pause)
    return trace


def test_training_goes_on_through_a_server_restart_and_warns_once(
    start_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    port = int(server.url.rsplit(":", 1)[1])
    spec = {"type": "ExponentialLR", "gamma": 0.99}
    opt = optimizer("sgd", model(), 0.1)
    scheduler = RemoteScheduler(opt, "outage", server.url, lookahead=8, schedule=spec)
    caplog.set_level(logging.INFO, logger="lrtower")

    before = _lr_trace(scheduler, 50)
    server.kill()
    during = _lr_trace(scheduler, 30, pause=0.01)
    start_server(port=port)
    deadline = time.monotonic() + 30
    after: list[float] = []
    while not any("is back" in r.message for r in caplog.records):
        assert time.monotonic() < deadline, "the scheduler did not reconnect"
        after += _lr_trace(scheduler, 1, pause=0.05)
    after += _lr_trace(scheduler, 20)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "cannot reach" in r.message]
    assert len(warnings) == 1
    assert before == [0.1 * 0.99**s for s in range(1, 51)]
    # The window fetched before the outage is used, then the last LR holds.
    fetched = [s for s in range(51, 81) if during[s - 51] == pytest.approx(0.1 * 0.99**s, rel=1e-12)]
    assert fetched and fetched == list(range(51, 51 + len(fetched)))
    assert set(during[len(fetched) :]) <= {during[len(fetched) - 1]}
    with Client(server.url) as client:  # after the restart, every step runs on the server's LR again
        final_step = scheduler.last_epoch
        assert (
            after[-1]
            == client.lr("outage", final_step).lr
            == pytest.approx(0.1 * 0.99**final_step, rel=1e-12)
        )


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_server_costs_timeouts_not_a_hang(
    silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client(silent_server, timeout=0.2, retry=Retry(retries=0))
    opt = optimizer("sgd", model(), 0.1)
    started = time.monotonic()
    scheduler = RemoteScheduler(opt, "silent", client=client)
    trace = _lr_trace(scheduler, 200)
    assert time.monotonic() - started < 5
    assert set(trace) == {0.1}  # nothing fetched: the optimizer's own LR holds
    assert len([r for r in caplog.records if "cannot reach" in r.message]) == 1
    with pytest.raises(ServerUnreachable):
        RemoteScheduler(optimizer("sgd", model(), 0.1), "silent", client=client, strict=True)


def test_server_errors_are_retried_and_strict_raises(tower: str, request: pytest.FixtureRequest) -> None:
    spec = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
    forward = httpx.HTTPTransport()
    seen: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) % 3 == 1:  # every third request fails first
            return httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "busy"})
        return forward.handle_request(request)

    client = Client(tower, retry=Retry(retries=3, backoff=0.001), transport=httpx.MockTransport(flaky))
    request.addfinalizer(client.close)
    request.addfinalizer(forward.close)
    scheduler = RemoteScheduler(
        optimizer("sgd", model(), 0.8), "flaky", client=client, lookahead=4, schedule=spec
    )
    assert _lr_trace(scheduler, 12) == [0.8 * 0.5 ** (s // 3) for s in range(1, 13)]
    assert len(seen) > 4

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    broken = Client(tower, retry=Retry(retries=1, backoff=0.001), transport=httpx.MockTransport(down))
    with pytest.raises(ServerError, match="502"):
        RemoteScheduler(optimizer("sgd", model(), 0.8), "flaky", client=broken, strict=True)


def test_a_lookahead_past_the_servers_reach_shrinks_to_it(
    start_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server serves at most LRTOWER_MAX_AHEAD steps past the mark per request; a larger
    lookahead shrinks to that reach once told, and training still ends with torch's weights."""
    monkeypatch.setenv("LRTOWER_MAX_AHEAD", "30")
    url = start_server().url
    expected = train("sgd", 0.05, warmup_cosine, steps=200, step=every_step)

    def remote(opt: torch.optim.Optimizer) -> RemoteScheduler:
        return RemoteScheduler(opt, "far-lookahead", url, lookahead=500, schedule=WARMUP_COSINE)

    got = train("sgd", 0.05, remote, steps=200, step=every_step)
    assert torch.equal(got, expected)
    with Client(url) as client:
        # A window and the next one, prefetched: never more than two reaches ahead of the job.
        assert 200 <= client.get_run("far-lookahead").high_water < 200 + 2 * 30
