"""Group commit: raises of the high-water mark waiting at the same moment share one transaction,
raises of one run coalesce, and every answer still leaves only after its mark is durable."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from lrtower_server.api.app import POSTGRES_MARK_WINDOW_MS, mark_window_ms
from lrtower_server.core.config import Settings
from lrtower_server.core.marks import GroupCommit
from lrtower_server.core.problems import Conflict
from lrtower_server.core.runs import Runs
from lrtower_server.core.serving import Limits, Serving
from lrtower_server.db.engine import make_engine
from lrtower_server.schemas import MetricIn, RunCreate, ScaleIn

SPEC = {"type": "StepLR", "step_size": 3, "gamma": 0.5}


@contextmanager
def database_held(url: str) -> Iterator[None]:
    """Another connection holds what the first raise needs (SQLite's write lock; run-0's row on
    PostgreSQL), so that the raises arriving meanwhile queue up behind it."""
    other: Engine = create_engine(url, isolation_level="AUTOCOMMIT" if url.startswith("postgresql") else None)
    with other.connect() as connection:
        if url.startswith("sqlite"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.execute(text("SELECT 1 FROM runs WHERE name = 'run-0' FOR UPDATE"))
        yield
        connection.exec_driver_sql("COMMIT")
    other.dispose()


def test_raises_waiting_at_once_share_one_commit(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs, serving = Runs(engine), Serving(engine)
    for i in range(10):
        runs.create(RunCreate(name=f"run-{i}", lr=1.0, schedule=SPEC), "test")
    with ThreadPoolExecutor(max_workers=16) as pool:
        with database_held(database_url):
            first = pool.submit(serving.serve, "run-0", range(5, 6), True)
            time.sleep(0.3)  # its group is in flight, blocked
            # Another rank asks for what is in flight: it waits for that commit, writes nothing.
            again = pool.submit(serving.serve, "run-0", range(4, 6), True)
            others = [pool.submit(serving.serve, f"run-{i}", range(5, 6), True) for i in range(1, 10)]
            # Five ranks of one job ask for new steps of run-1 at once: one raise, to the highest.
            ranks = [pool.submit(serving.serve, "run-1", range(s, s + 1), True) for s in range(6, 11)]
            time.sleep(0.3)
            assert not any(f.done() for f in [first, again, *others, *ranks])  # nothing answered early
        answers = [f.result(timeout=30).answers for f in [first, *others, *ranks]]
        assert [a.lrs for a in again.result(timeout=30).answers] == [[0.5**1], [0.5**1]]
    assert [a[0].lrs for a in answers[:10]] == [[0.5**1]] * 10
    assert serving.marks.groups == 2 and serving.marks.raises == 10  # 16 requests, 10 raises, 2 commits
    for i in range(10):
        assert runs.get(f"run-{i}")[0].high_water == (10 if i == 1 else 5)  # durable
    engine.dispose()


def test_a_reserve_answers_the_next_steps_without_a_commit_and_changes_land_above_it(
    database_url: str,
) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs, serving = Runs(engine), Serving(engine, Limits(mark_reserve=8))
    runs.create(RunCreate(name="run", lr=1.0, schedule=SPEC), "test")
    first = serving.serve("run", range(5, 6), True).answers
    assert runs.get("run")[0].high_water == 13  # durable before the answer: 5 and 8 reserved
    later = [serving.serve("run", range(s, s + 1), True).answers for s in range(6, 14)]
    assert serving.marks.groups == 1  # the reserved steps cost no commit
    assert [a[0].lrs for a in [first, *later]] == [[0.5 ** (s // 3)] for s in range(5, 14)]
    assert runs.scale("run", ScaleIn(factor=0.5, reason="test"), "test").effective_step == 14
    # This process's copy is stale: its raise fails on the version, and the run is read again.
    assert serving.serve("run", range(14, 15), True).answers[0].lrs == [0.5 ** (14 // 3) * 0.5]
    assert runs.get("run")[0].high_water == 22 and serving.marks.groups == 3
    engine.dispose()


def test_a_window_gathers_raises_that_arrive_within_it_into_one_commit(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs = Runs(engine)
    for i in range(3):
        runs.create(RunCreate(name=f"run-{i}", lr=1.0, schedule=SPEC), "test")
    marks = GroupCommit(engine, max_ahead=100, window=0.5)
    versions = {i: runs.get(f"run-{i}")[0].version for i in range(3)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = []
        for i in range(3):
            futures.append(pool.submit(marks.raise_mark, f"run-{i}", 4 + i, versions[i]))
            time.sleep(0.05)  # well within the window, though the database is free
        assert [f.result(timeout=30) for f in futures] == [4, 5, 6]
    assert marks.groups == 1 and marks.raises == 3


def test_the_event_loop_and_threads_wait_on_one_group_and_see_its_errors(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs = Runs(engine)
    for i in range(4):
        runs.create(RunCreate(name=f"run-{i}", lr=1.0, schedule=SPEC), "test")
    version = runs.get("run-0")[0].version
    marks = GroupCommit(engine, max_ahead=100, window=0.3)

    async def on_loop() -> list[int | None]:
        awaited = [marks.raise_mark_on_loop(f"run-{i}", 10 + i, version) for i in range(3)]
        awaited.append(marks.raise_mark_on_loop("run-0", 20, version))  # coalesces with run-0's
        awaited.append(marks.raise_mark_on_loop("run-3", 5, version + 1))  # a stale version
        return list(await asyncio.gather(*awaited))

    with ThreadPoolExecutor(max_workers=1) as pool:
        threaded = pool.submit(marks.raise_mark, "run-3", 7, version)
        assert asyncio.run(on_loop()) == [20, 11, 12, 20, None]
        assert threaded.result(timeout=30) == 7
    assert marks.groups == 1 and marks.raises == 5  # one commit; run-0's two raises coalesced

    engine.dispose()
    dead = GroupCommit(create_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'no' / 'such.db'}"), 100)

    async def failing() -> None:
        await dead.raise_mark_on_loop("run-0", 1, 1)

    with pytest.raises(OperationalError):
        asyncio.run(failing())
    engine.dispose()


def test_the_same_metric_again_is_answered_without_the_write_lock(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs = Runs(engine)
    runs.create(RunCreate(name="run-0", lr=1.0, schedule=SPEC, plateau={"patience": 0}), "test")
    first = runs.post_metric("run-0", MetricIn(step=3, value=1.0), "rank-0")
    with ThreadPoolExecutor(max_workers=2) as pool, database_held(database_url):
        # The other ranks of the job post the same all-reduced value while a write holds the run.
        again = pool.submit(runs.post_metric, "run-0", MetricIn(step=3, value=1.0), "rank-1")
        assert again.result(timeout=5) == first
        other = pool.submit(runs.post_metric, "run-0", MetricIn(step=3, value=2.0), "rank-2")
        with pytest.raises(Conflict):
            other.result(timeout=5)
    engine.dispose()


def _count_updates_of_runs(url: str) -> Engine:
    """A trigger counting every row update of `runs` into `updates(n)`: writes, as the database
    sees them, whoever makes them."""
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE updates (n INTEGER NOT NULL)"))
        db.execute(text("INSERT INTO updates VALUES (0)"))
        if url.startswith("sqlite"):
            db.execute(
                text("CREATE TRIGGER counted AFTER UPDATE ON runs BEGIN UPDATE updates SET n = n + 1; END")
            )
        else:
            db.execute(
                text(
                    "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN UPDATE updates SET n = n + 1; RETURN NEW; END $$"
                )
            )
            db.execute(
                text(
                    "CREATE TRIGGER counted AFTER UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION count_update()"
                )
            )
    return engine


def test_replicas_asking_for_a_window_another_raised_write_nothing(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    runs = Runs(engine)
    runs.create(RunCreate(name="run-0", lr=1.0, schedule=SPEC), "test")
    replicas = [Serving(engine), Serving(engine)]
    for replica in replicas:
        replica.serve("run-0", range(0, 4), True)  # both hold the run compiled, at mark 3
    counter = _count_updates_of_runs(database_url)
    first = replicas[0].serve("run-0", range(4, 8), True)
    # The other replica's copy says mark 3: it tries its raise, finds 7, and writes nothing.
    assert replicas[1].serve("run-0", range(4, 8), True) == first
    assert replicas[1].serve("run-0", range(4, 6), True).answers == first.answers[:2]  # from memory now
    with counter.connect() as db:
        assert db.execute(text("SELECT n FROM updates")).scalar_one() == 1
    assert runs.get("run-0")[0].high_water == 7
    counter.dispose()
    engine.dispose()


def test_the_window_is_none_on_sqlite_and_a_millisecond_on_postgresql_unless_set(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    expected = 0.0 if database_url.startswith("sqlite") else POSTGRES_MARK_WINDOW_MS
    assert mark_window_ms(Settings(database_url=database_url), engine) == expected
    assert mark_window_ms(Settings(database_url=database_url, mark_window_ms=4), engine) == 4
    assert mark_window_ms(Settings(database_url=database_url, mark_window_ms=0), engine) == 0
    engine.dispose()
