"""Fork safety, one client shared between threads, and AsyncClient (the asyncio twin) and its event loop."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

import httpx
import pytest

from fault_injection import LOST, REFUSED, Flaky, problem
from lr_references import CONSTANT, FAST, STEP, approx, engine_lrs, torch_lrs, torch_plateau
from lrtower import (
    LR,
    AsyncClient,
    ChangeResult,
    Client,
    Conflict,
    Event,
    MetricResult,
    NotFound,
    Retry,
    Run,
    ServerError,
    Verification,
)


@pytest.fixture
def server(tower: str) -> str:
    """One server for the module (each test's runs have names of their own), not one per test."""
    return tower


# -- fork safety and threads ---------------------------------------------------------------


def test_a_forked_child_gets_its_own_connection(server: str) -> None:
    steps = 160
    reference = [lrs[0] for lrs in torch_lrs(STEP, [0.1], steps)]
    # No retries, so that a connection shared by mistake shows instead of being retried away.
    with Client(server, timeout=5, retry=Retry(retries=0)) as tower:
        tower.create_run("forked", STEP, lr=0.1)
        parent_answer = tower.lr("forked", 5).lr  # the parent's pool now holds a connection

        def child(conn: Connection) -> None:
            try:
                conn.send([(a.step, a.lr) for a in (tower.lr("forked", s) for s in [5, *range(1, steps, 2)])])
            except BaseException as exc:  # reported to the parent
                conn.send(repr(exc))
            finally:
                conn.close()

        context = multiprocessing.get_context("fork")
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(target=child, args=(sending,))
        process.start()
        sending.close()
        # The parent keeps asking while the child does: over one socket, their answers would mix.
        ours = [(a.step, a.lr) for a in (tower.lr("forked", s) for s in range(0, steps, 2))]
        assert receiving.poll(20), "the child sent nothing"
        theirs = receiving.recv()
        process.join(10)
        assert process.exitcode == 0
        assert isinstance(theirs, list), theirs
        assert theirs[0] == (5, parent_answer) and parent_answer == approx(reference[5])
        assert [step for step, _ in theirs[1:]] == list(range(1, steps, 2))
        assert [lr for _, lr in theirs[1:]] == approx(reference[1::2])
        assert [step for step, _ in ours] == list(range(0, steps, 2))
        assert [lr for _, lr in ours] == approx(reference[0::2])
        # The parent's connection still works afterwards.
        assert tower.lr("forked", steps).lr == approx(engine_lrs(STEP, [0.1], steps)[0])
        assert tower.get_run("forked").high_water == steps


def test_one_client_shared_between_threads(server: str) -> None:
    reference = torch_lrs(STEP, [0.1], 64)
    with Client(server) as tower:
        tower.create_run("threads", STEP, lr=0.1)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda step: tower.lr("threads", step), range(64)))
        assert [a.step for a in answers] == list(range(64))
        assert [a.lr for a in answers] == approx([r[0] for r in reference])


# -- AsyncClient ---------------------------------------------------------------------------


def test_async_client_against_the_real_server(server: str) -> None:
    reference = torch_lrs(STEP, [0.1], 12)
    values = [1.0, 1.0, 1.0]
    plateau = torch_plateau(values, 0.1, patience=1, factor=0.5)
    config = {"metric": "val_loss", "patience": 1, "factor": 0.5}

    async def tour() -> None:
        async with AsyncClient(server, retry=FAST) as tower:
            assert tower.url == server and await tower.ready() is True
            tour = {"suite": "async-tour"}
            run = await tower.create_run("async", STEP, lr=0.1, labels=tour)
            assert isinstance(run, Run) and run.state == "live" and run.high_water == -1
            assert (await tower.create_run("async", STEP, lr=0.1, labels=tour)).created_at == run.created_at
            one = await tower.lr("async", 4)
            assert isinstance(one, LR) and one.lr == approx(reference[4][0])
            span = await tower.lr_range("async", 0, 12, 2)
            assert span.lr == approx([reference[s][0] for s in span.steps]) and span.at(4).lr == one.lr
            assert (await tower.curve("async", 0, 12)).lrs == approx(reference)
            assert (await tower.get_run("async")).high_water == 10
            await tower.create_run("async-plateau", CONSTANT, lr=0.1, plateau=config, labels=tour)
            results = [await tower.post_metric("async-plateau", s, v) for s, v in enumerate(values, start=1)]
            assert all(isinstance(r, MetricResult) for r in results)
            assert [r.lr for r in results] == approx(plateau)
            assert [r.reduced for r in results] == [False, False, True]
            assert (await tower.lr("async-plateau", 3)).lr == approx(plateau[2])
            scaled = await tower.scale("async", 0.5)
            assert isinstance(scaled, ChangeResult) and scaled.effective_step == 11
            page = await tower.events("async")
            assert [e.kind for e in page.events] == ["run_created", "scaled"]
            assert [e.seq for e in page.events] == [1, 2] and {e.actor for e in page.events} == {"anonymous"}
            assert all(isinstance(e, Event) for e in page.events)
            assert (await tower.verify("async")) == Verification(ok=True, count=2)
            assert [e.kind for e in (await tower.events("async-plateau")).events][-1] == "plateau_reduced"
            assert [r.name for r in (await tower.list_runs(labels=tour)).runs] == ["async", "async-plateau"]
            assert (await tower.preview(STEP, lr=0.1, stop=12)).lrs == approx(reference)
            with pytest.raises(NotFound) as missing:
                await tower.get_run("nope")
            assert missing.value.status == 404
            with pytest.raises(Conflict) as conflict:
                await tower.scale("async", 0.5, from_step=3)
            assert conflict.value.high_water == 10
            # Concurrent calls over one client.
            many = await asyncio.gather(*(tower.lr("async", s) for s in range(5)))
            assert [m.lr for m in many] == approx([r[0] for r in reference[:5]])

    asyncio.run(tour())


def test_async_retries_and_lost_answers(server: str) -> None:
    flaky = Flaky(
        {
            ("GET", "/runs/async-retry/lr"): [503, 504, REFUSED],
            ("POST", "/runs/async-retry/scale"): [LOST],
        }
    )

    async def scenario() -> None:
        async with httpx.AsyncHTTPTransport() as real:
            retry = Retry(retries=3, backoff=0.001)
            async with AsyncClient(server, retry=retry, transport=flaky.async_(real)) as tower:
                await tower.create_run("async-retry", STEP, lr=0.1)
                assert (await tower.lr("async-retry", 2)).lr == approx(engine_lrs(STEP, [0.1], 2)[0])
                assert len(flaky.requests("GET", "/runs/async-retry/lr")) == 4
                result = await tower.scale("async-retry", 0.5)
                attempts = flaky.requests("POST", "/runs/async-retry/scale")
                assert (
                    len(attempts) == 2
                    and attempts[0].headers["idempotency-key"] == attempts[1].headers["idempotency-key"]
                )
                assert result.lr_after == approx([engine_lrs(STEP, [0.1], 3)[0] * 0.5])
                assert [c.kind for c in (await tower.get_run("async-retry")).changes] == ["scale"]

    asyncio.run(scenario())


def test_async_retries_exhausted() -> None:
    seen: list[httpx.Request] = []
    refused: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not refused:  # the very first attempt: refused; then 503s
            refused.append(request)
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, json=problem(503))

    async def scenario() -> None:
        async with AsyncClient(
            "http://tower.test", retry=FAST, transport=httpx.MockTransport(handler)
        ) as tower:
            with pytest.raises(ServerError) as raised:
                await tower.lr("r", 1)
            assert raised.value.status == 503
            assert len(seen) == 3
            seen.clear()
            assert await tower.ready() is False  # 503 answered once, not retried
            assert len(seen) == 1

    asyncio.run(scenario())


def test_an_async_client_refuses_a_second_event_loop_clearly(server: str) -> None:
    async def use(tower: AsyncClient) -> bool:
        return await tower.ready()

    async def first_and_close(tower: AsyncClient) -> bool:
        ready = await tower.ready()
        await tower.aclose()
        return ready

    tower = AsyncClient(server)
    first = asyncio.new_event_loop()
    assert first.run_until_complete(use(tower))
    with pytest.raises(RuntimeError, match="one per loop"):
        asyncio.run(use(tower))
    first.run_until_complete(tower.aclose())
    first.close()
    fresh = AsyncClient(server)
    assert asyncio.run(first_and_close(fresh))
    assert asyncio.run(first_and_close(fresh))  # closed: the next loop opens anew
