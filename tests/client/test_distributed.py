"""Data-parallel training (torch.distributed, gloo, two CPU ranks) against one real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp

from distributed_job import run_rank
from lrtower import Client
from servers import Server, free_port


def _train(world: int, url: str | None, run: str, out: Path) -> list[torch.Tensor]:
    mp.start_processes(
        run_rank, args=(world, free_port(), url, run, str(out)), nprocs=world, start_method="spawn"
    )
    return [torch.load(out / f"{run}-rank{rank}.pt") for rank in range(world)]


def test_two_ranks_on_one_run_train_like_local_schedulers(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()
    remote = _train(2, server.url, "ddp", tmp_path)
    local = _train(2, None, "local", tmp_path)
    single = _train(1, None, "single", tmp_path)

    assert torch.equal(remote[0], remote[1])  # every rank got the same LRs
    assert torch.equal(remote[0], local[0])  # the LRs torch's own schedulers give, bit for bit
    # One process with the whole batch: the same training, up to the order of float sums.
    torch.testing.assert_close(remote[0], single[0], rtol=1e-4, atol=1e-5)
    with Client(server.url) as client:
        run = client.get_run("ddp")
        reductions = [c.effective_step for c in run.changes if c.kind == "plateau"]
        events = client.events("ddp").events
    assert reductions and all(step % 10 == 0 for step in reductions)  # at the metric steps themselves
    assert [e.kind for e in events].count("plateau_reduced") == len(
        reductions
    )  # two ranks posting one value: one reduction
