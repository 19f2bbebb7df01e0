"""Raising high-water marks in groups: raises waiting at the same moment share one transaction.

Every new step a job asks for raises its run's mark, and the answer may leave only once that
raise is durable: one commit (an fsync on SQLite, a WAL flush on PostgreSQL) per new step would
cap a server at a few hundred of them a second. So raises queue here, and one committer thread
takes whatever is waiting, raises every mark in one transaction, commits once, and only then
wakes the requests, each with its run's new mark. Raises of one run at one version coalesce
into one raise to the highest step asked, and one statement raises the whole group
(`Store.raise_marks`, which locks rows in name order on PostgreSQL).

While one commit is in flight the next group gathers, so the group grows with the load and a
lone request pays one commit. A window (waiting that long after a group's first raise) makes
groups larger still: measured, it only slowed SQLite, whose commit is a local fsync, and made
PostgreSQL, whose commit costs round trips and the server's own CPU, half again as fast at 1 ms
(docs/performance.md); so the default is none on SQLite and 1 ms on PostgreSQL.

A reserve raises each mark that many steps past the step asked, so that the next steps of a job
that fetches one step at a time are answered from memory, without a commit. Its price: every
change (an operator's, a plateau's) lands up to that many steps later. Off by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ..db.engine import writer
from ..db.store import Store
from .metrics import MARK_GROUPS, MARK_RAISES


class _Raise:
    """One run's raise in the group being gathered, and everyone waiting for it: threads on a
    future, the event loop on its own futures, settled in one call per group (see _settle)."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.done: Future[int | None] | None = None
        self.awaiting: list[asyncio.Future[int | None]] = []


class GroupCommit:
    """Mark raises from many threads at once, one transaction per group of waiting raises."""

    def __init__(self, engine: Engine, max_ahead: int, reserve: int = 0, window: float = 0.0) -> None:
        self._writer = writer(engine)
        self.max_ahead = max_ahead
        self.reserve = reserve
        self.window = window
        self._waiting: dict[tuple[str, int], _Raise] = {}
        self._in_flight: dict[tuple[str, int], _Raise] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.groups = 0
        self.raises = 0
        """Transactions committed, and raises they carried: their ratio is the mean group size."""

    def raise_mark(self, name: str, top: int, version: int) -> int | None:
        """Raise `name`'s mark to `top` (plus the reserve) if the run is still at `version` and
        `top` is within `max_ahead` of the mark; the mark after the commit, or None if a condition
        failed.

        Blocks until the group it joined is committed; database errors reach every caller.
        """
        with self._wake:
            waiting = self._join(name, top, version)
            if waiting.done is None:
                waiting.done = Future()
            done = waiting.done
        return reached(done.result(), top)

    def raise_mark_on_loop(self, name: str, top: int, version: int) -> asyncio.Future[int | None]:
        """`raise_mark` for the event loop: a future of the loop's own, to await, of the mark its
        group commits (it may be above `top`: see `reached`). Every future of a group is settled
        by one wake-up of the loop, not one per request."""
        awaited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        with self._wake:
            self._join(name, top, version).awaiting.append(awaited)
        return awaited

    def _join(self, name: str, top: int, version: int) -> _Raise:
        # Called holding self._wake.
        flying = self._in_flight.get((name, version))
        if flying is not None and flying.top >= top:
            # The other ranks of a job, asking for the window one of them is raising: they wait
            # for that commit instead of writing the same raise again in the next group.
            return flying
        waiting = self._waiting.get((name, version))
        if waiting is None:
            waiting = self._waiting[(name, version)] = _Raise(top)
        else:
            waiting.top = max(waiting.top, top)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lrtower-marks", daemon=True)
            self._thread.start()
        self._wake.notify()
        return waiting

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
            if self.window:
                time.sleep(self.window)
            with self._wake:
                group, self._waiting = self._waiting, {}
                self._in_flight = group
            self._commit(group)

    def _commit(self, group: dict[tuple[str, int], _Raise]) -> None:
        outcome: Callable[[tuple[str, int]], Any]
        try:
            with Session(self._writer) as session, session.begin():
                asked = [(name, version, waiting.top) for (name, version), waiting in group.items()]
                outcome = Store(session).raise_marks(asked, self.max_ahead, self.reserve).get
        except BaseException as exc:  # the callers get the database's error, and answer 503
            error = exc
            outcome = lambda _: error  # noqa: E731
        else:
            self.groups += 1
            self.raises += len(group)
            MARK_GROUPS.inc()
            MARK_RAISES.inc(len(group))
        with self._wake:  # from here on, no one joins these raises: each waiter is settled below
            self._in_flight = {}
        _settle_all(group, outcome)


def _settle_all(group: dict[tuple[str, int], _Raise], outcome: Callable[[tuple[str, int]], Any]) -> None:
    """Wake everyone waiting on `group`: each raise's outcome (its mark, None, or an exception)."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int | None], Any]]] = {}
    for key, waiting in group.items():
        result = outcome(key)
        if waiting.done is not None:
            if isinstance(result, BaseException):
                waiting.done.set_exception(result)
            else:
                waiting.done.set_result(result)
        for awaited in waiting.awaiting:
            loops.setdefault(awaited.get_loop(), []).append((awaited, result))
    for loop, settled in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop (shutdown): no one awaits them
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[int | None], Any]]) -> None:
    # On the loop, once per group: far cheaper than a thread-safe wake-up per request.
    for awaited, result in settled:
        if awaited.done():  # its request was cancelled (the client left)
            continue
        if isinstance(result, BaseException):
            awaited.set_exception(result)
        else:
            awaited.set_result(result)


def reached(mark: int | None, top: int) -> int | None:
    """The mark, if the group's raise covered `top`. A raise coalesced to a higher step may fail
    its reach where this one alone would not: then the caller reads again and retries, as after
    any failed condition."""
    return mark if mark is not None and mark >= top else None
