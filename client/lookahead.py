"""`LRFeed`: a run's LRs, step by step, fetched ahead in windows and kept going through outages.

What the torch scheduler and the Keras callback share; it needs no framework.

**Windows.** The LR of a step not yet known is fetched with the next `lookahead` steps in one
range request, and as soon as a window is entered the next one is fetched in the background, so
a step normally costs a dictionary lookup. Fetched steps count as served (they never change), so
at most two windows are ahead of the job: a central change reaches it within 2 * `lookahead`
steps.

**Cost.** A window costs about half a millisecond of Python (httpx building the request and
reading the answer, the JSON, one `StepLR` per step), and Python runs one thread at a time (the
GIL). So all of it runs on one long-lived worker thread per feed, never on the job's: `at()`
only hands the worker a window to fetch and takes in a finished one (one `dict.update`). The
worker then mostly runs while the job's thread is inside torch, which lets go of the GIL. A
thread per window would cost each `at()` that starts one 0.2 ms or more: `Thread.start()` waits
until the new thread runs, and that thread keeps the GIL while it builds its request.

**Exactness with plateau.** A metric applies from the step it is posted for, as torch's
`step(metric)` does, only if that step has not been served yet. So when the run reduces on a
plateau, a window never reaches past the next step the job will post a metric for:

- with `metric_every=E`, metrics are expected every E steps, the first at step E (or as
  `expect_metrics(every, first)` says: the framework callbacks set it from the trainer's own
  evaluation cadence);
- otherwise the feed learns the cadence from the steps of the last two posts, and asks for one
  step at a time until it knows it.

A post at a step the feed did not expect re-learns the cadence; the reduction then lands at the
first step not yet fetched, and the server's answer says which (`effective_step`).

**Late metrics.** The feed posts each metric for a step this job has not run yet, so on a run
with a plateau the answer's `effective_step` is that step, unless it was served before the post
came in: by this feed's own window (the metric came off its cadence), or by another rank or
process (rank 0 posts without a barrier while the others run ahead). Then the reduction lands
later than torch's would, and the feed warns once (`LateMetricWarning`, naming both steps and
the likely cause). It is a warning, not a log line, because the application can fix it.

**Outages.** When the server cannot be reached (or answers 5xx after the client's retries), the
feed goes on with the fetched window, then with the last LR, and warns once per outage. Until the
server is back it sends nothing but a probe (`GET /healthz`, 1 s timeout, never retried) on the
worker thread, at most once a second (`PROBE_EVERY`), whatever the outage's length: it never
blocks a step, and it never backs off, so the job is back within about a second of the server.
Metric posts meanwhile are dropped without being sent (so they cannot slow the job or delay
the return) and counted. Once a probe answers, the next step reports the outage before it asks
for its LR (`POST /runs/{run}/fallbacks`, one request, under an Idempotency-Key that its retries
keep): which steps ran on which fallback LR (and momentum), the dropped posts, the feed's
`rank`. The steps nobody was served become the run's record of them: from then on they are
served, and answer what ran. Reporting first means that the steps of the report the tower has
served were served to others (another rank), not to this job as it came back: where their LRs
differ, the answer says so (a divergence) and the feed logs a warning naming the steps and both
LRs. Every other rank's feed warns too, once, when its next window's answer names the run's
divergence (the `lrtower-divergence` header). With `strict=True` the feed raises instead of
going on. Errors that are not transient (401, 403, 404, 422) always raise.

**Attempts.** A rewind of the run starts a new attempt (SPEC §4.10). The feed pins the attempt
of its first answer, and asks every window and posts every metric in it, so it never mixes two.
Once a rewind has ended that attempt, the server answers 409 for steps past the rewind: the feed
then runs out the steps it fetched already (its attempt's), keeps the last LR and warns (once),
or raises with `strict=True`; it asks nothing more of the run. `forget()` (a resume from a checkpoint) unpins it: the resumed job takes the newest
attempt.

**Reach.** The server serves at most `LRTOWER_MAX_AHEAD` steps past a run's mark in one request
(10,000 by default); a larger `lookahead` shrinks to that reach the first time the server says so.

**Planned end.** With `total_steps` (the job's, or else the run's, read when the feed first asks
about the run), no window reaches step `total_steps`: the job's steps 0 to 299 of a 300-step run
are served, not the rest of its last window. A step at or past it that the job asks for is still
answered, one request per step: step `total_steps` is what a loop's last `scheduler.step()`
asks (after its last optimizer step, as torch computes it too), and past that the feed warns
once that the job runs longer than it planned.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, TypeVar

from . import _calls
from ._client import Client
from .errors import APIError, Conflict, LateMetricWarning, LrtowerError, ServerError
from .results import FallbackReport, LRRange, MetricResult

log = logging.getLogger("lrtower")
T = TypeVar("T")
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

MAX_WINDOW = 100_000  # the server's limit per range request
PROBE_EVERY = 1.0  # seconds between the starts of two probes during an outage
PROBE_TIMEOUT = 1.0  # a probe's timeout: a server that does not answer within it is still down
MAX_STRETCHES = 1000  # per fallback report, as the server takes them


@dataclass(frozen=True, slots=True)
class StepLR:
    """What a step should run with: every group's LR, and its momentum (beta1) if cycled."""

    lrs: list[float]
    momentum: list[float] | None


Steps: TypeAlias = dict[int, StepLR]
"""A fetched window, in step order: what the job's thread merges into what it knows."""


def _superseded(error: LrtowerError) -> int | None:
    """The run's current attempt, if `error` says a rewind ended the attempt asked for."""
    return error.attempt if isinstance(error, Conflict) else None


class Window(NamedTuple):
    """A fetched window: the attempt it belongs to, its steps, and the run's divergence."""

    attempt: int | None
    steps: Steps
    divergence: int | None = None


def _window(fetched: LRRange) -> Window:
    momentum = fetched.momentum
    steps = {
        step: StepLR(fetched.lrs[i], momentum[i] if momentum is not None else None)
        for i, step in enumerate(fetched.steps)
    }
    return Window(fetched.attempt, steps, fetched.divergence)


_Jobs: TypeAlias = queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]
"""A worker's fetches (windows, probes, reports) to run, each with the future it answers; None
stops the worker."""


class _Worker:
    """One daemon thread that runs a feed's background fetches, one after the other.

    Started on first use, and again in a forked child (the parent's thread does not exist there).
    Daemon, as the thread per window it replaces was: a fetch stuck on a silent server never
    holds up the job's exit (a `ThreadPoolExecutor` joins its threads at exit). It stops when
    its feed is closed or collected: the thread holds only its queue, never the feed.
    """

    def __init__(self) -> None:
        self._jobs: _Jobs = queue.SimpleQueue()
        self._pid: int | None = None

    def submit(self, fetch: Callable[[], T]) -> Future[T]:
        if self._pid != os.getpid():
            self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
            threading.Thread(target=_serve, args=(self._jobs,), name="lrtower-lookahead", daemon=True).start()
            weakref.finalize(self, _stop, self._jobs)
        future: Future[T] = Future()
        self._jobs.put((fetch, future))
        return future

    def stop(self) -> None:
        if self._pid == os.getpid():
            _stop(self._jobs)
        self._pid = None


def _serve(jobs: _Jobs) -> None:
    while (job := jobs.get()) is not None:
        fetch, future = job
        try:
            future.set_result(fetch())
        except BaseException as exc:  # handed to the job's thread by LRFeed._collect
            future.set_exception(exc)
        # Hold nothing of the job while waiting for the next: its client may be closed and collected.
        del job, fetch, future


def _stop(jobs: _Jobs) -> None:
    """End the worker after the fetch it is running. The fetches not begun are dropped: their feed
    is gone, and the client they would use may be closed already (sending on a closed `Client`
    opens it again, and nothing would close it)."""
    while True:
        try:
            jobs.get_nowait()
        except queue.Empty:
            break
    jobs.put(None)


def _application_level() -> int:
    """The `stacklevel` of the first caller outside lrtower, so that a warning points at the
    application's line (what Python 3.12's `skip_file_prefixes` does)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_code.co_filename.startswith(_PACKAGE) and frame.f_back is not None:
        level, frame = level + 1, frame.f_back
    return level


def whole_steps(total_steps: float | None) -> int | None:
    """A planned length as a whole number of steps (300.0 is 300; Lightning's
    `estimated_stepping_batches` is a float); ValueError for anything else, an unlimited
    trainer's `inf` included, before any request is made."""
    if total_steps is None:
        return None
    if isinstance(total_steps, bool) or not float(total_steps).is_integer() or total_steps < 1:
        raise ValueError(f"total_steps must be a whole number of steps >= 1, got {total_steps!r}")
    return int(total_steps)


def _transient(error: LrtowerError) -> bool:
    return not isinstance(error, APIError) or isinstance(error, ServerError)


def _no_value_from(error: LrtowerError) -> int | None:
    """The first step without a value, if that is what `error` says (OneCycleLR past its end)."""
    if isinstance(error, APIError) and error.type.endswith(":no-value"):
        step = error.problem.get("step")
        return step if isinstance(step, int) else None
    return None


def _reach_from(error: LrtowerError) -> int | None:
    """The end (exclusive) of what one request may serve, if `error` says the window went past it."""
    if isinstance(error, APIError) and error.status == 422:
        highest = error.problem.get("max_step")
        return highest + 1 if isinstance(highest, int) else None
    return None


class _Outage:
    """An outage as the feed records it for its report: since when, why, which steps ran on which
    fallback LRs (`[from_step, to_step, StepLR]`, steps in order), how many metric posts it dropped."""

    def __init__(self, since: float, reason: str) -> None:
        self.since = since
        self.reason = reason
        self.stretches: list[list[Any]] = []
        self.full: list[list[list[Any]]] = []  # earlier runs of stretches: full, or before a jump back
        self.sealed: list[tuple[str, dict[str, Any]]] = []  # reports to send: (Idempotency-Key, body)
        self.missed = 0
        self.dropped = 0  # since the last report was sealed
        self.dropped_in_all = 0

    def ran(self, step: int, held: StepLR) -> None:
        last = self.stretches[-1] if self.stretches else None
        if last is not None and last[1] == step - 1 and last[2] == held:
            last[1] = step
            return
        if last is not None and (step <= last[1] or len(self.stretches) >= MAX_STRETCHES):
            self.full.append(self.stretches)  # a report's stretches are in step order, and bounded
            self.stretches = []
        self.stretches.append([step, step, held])

    def seal(self, attempt: int | None, rank: int | None) -> None:
        """Turn what was recorded into reports, each under a key of its own that its retries keep."""
        runs = [*self.full, self.stretches] if self.stretches else self.full
        if not runs and self.dropped:
            runs = [[]]
        for i, stretches in enumerate(runs):
            body = {
                "stretches": [
                    {"from_step": a, "to_step": b, "lrs": held.lrs}
                    | ({} if held.momentum is None else {"momentum": held.momentum})
                    for a, b, held in stretches
                ],
                "attempt": attempt,
                "rank": rank,
                "dropped_metric_posts": self.dropped if i == 0 else 0,
                "reason": self.reason,
            }
            self.sealed.append((str(uuid.uuid4()), body))
        self.stretches, self.full, self.dropped = [], [], 0


class LRFeed:
    """The LRs of `run` for steps asked in (mostly) increasing order. See the module doc.

    Args:
        client: the client to fetch with.
        run: the run's name.
        lookahead: steps per range request (1: ask every step).
        plateau: whether the run reduces on a plateau; None asks the server.
        metric_every: the steps between the job's metric posts, when known in advance.
        strict: raise on any failure instead of going on with the last LR.
        total_steps: how many steps the job plans: no window reaches step `total_steps` or past
            it. None takes the run's, when the feed asks the server about the run.
    """

    def __init__(
        self,
        client: Client,
        run: str,
        *,
        lookahead: int = 64,
        plateau: bool | None = None,
        metric_every: int | None = None,
        strict: bool = False,
        total_steps: float | None = None,
    ) -> None:
        if not 1 <= lookahead <= MAX_WINDOW:
            raise ValueError(f"lookahead must be in [1, {MAX_WINDOW}], got {lookahead}")
        self.total_steps = whole_steps(total_steps)
        """The job's planned length: windows end before it, and steps past it are asked one by one."""
        self._noted_past_end = False
        self.client = client
        self.run = run
        self.lookahead = lookahead
        self.strict = strict
        self._plateau = plateau
        self._cadence: int | None = None
        self._last_metric: int | None = None
        if metric_every is not None:
            self.expect_metrics(metric_every, first=metric_every)
        self._known: dict[int, StepLR] = {}
        self._limit: int | None = None  # the first step the schedule has no value for, once met
        self._top = -1  # the highest step in _known
        self._pending: Future[Window] | None = None
        self._pending_start = 0
        self._worker = _Worker()
        self._pid = os.getpid()
        self._down_since: float | None = None  # unreachable since: nothing is sent but probes
        self._probe: Future[bool] | None = None
        self._probe_at = 0.0  # when the next probe may start
        self._outage: _Outage | None = None  # open from the first failure to the first answer after it
        self._last: StepLR | None = None  # the last answer the job ran with: what it keeps in an outage
        self.held: list[float] | None = None
        """The LRs the job runs with before any answer (the optimizer's own), for the fallback report
        of an outage that starts before the first one."""
        self.rank: int | None = None
        """This process's rank in a distributed job, named in its fallback reports."""
        self.attempt: int | None = None
        """The attempt of the run this feed follows: pinned by the first answer."""
        self._ended_by: int | None = None  # the attempt that superseded ours, once the server says so
        self._warned_late = False
        self._divergence: int | None = None  # the run's divergence warned about (its event's seq)

    # -- what the job calls -----------------------------------------------------------------

    def at(self, step: int) -> StepLR | None:
        """The LRs for `step`, or None during an outage with nothing fetched for it (keep the
        current LR). Raises LrtowerError if strict, or if the error is not transient."""
        self._collect()
        known = self._known.pop(step, None)
        if known is None and self._ended_by is not None:
            return None  # our attempt ended: never an LR of another one
        if known is None:
            self._note_past_end(step)
            known = self._fetch_now(step)
            if known is None:
                self._fell_back(step)
                return None
        self._last = known
        self._maybe_refill(step)
        return known

    def post_metric(self, step: int, value: float, name: str | None = None) -> MetricResult | None:
        """Post a metric for `step`, before its LR is asked for. During an outage it is dropped
        without being sent (the plateau does not see it; the count is logged and reported on
        recovery) and None is returned. Warns (`LateMetricWarning`, once) if the run applies it
        from a later step."""
        fetched = self._top >= step or (self._pending is not None and self._pending_start <= step)
        self._learn_cadence(step)
        if self._ended_by is not None:
            return None
        if self._down_since is not None:
            # Not even tried: the probes alone tell when the server is back.
            self._dropped_post()
            self._watch()
            return None
        try:
            result = self.client.post_metric(self.run, step, value, name=name, attempt=self.attempt)
        except LrtowerError as exc:
            self._failed(exc)
            self._dropped_post()
            return None
        self._recovered()
        # On a run without a plateau, a metric changes no LR: when it lands does not matter.
        if result.effective_step > step and self._plateau is not False:
            self._warn_late(step, result.effective_step, fetched)
        return result

    def _warn_late(self, step: int, effective: int, fetched: bool) -> None:
        if self._warned_late:
            return
        self._warned_late = True
        if fetched:
            cause = (
                f"this job had fetched step {step} already (lookahead {self.lookahead}): the metric came "
                "at a step it did not expect. Pass metric_every= (the steps between metrics) and post "
                "at that cadence, or use lookahead=1"
            )
        else:
            cause = (
                f"another rank or process was served step {step} before this metric arrived, as when "
                "rank 0 posts without a barrier while the other ranks run ahead. Post before any rank "
                "asks for the next step (a dist.barrier() right after rank 0's post), or post the "
                "all-reduced value from every rank"
            )
        warnings.warn(
            LateMetricWarning(
                f"lrtower: run {self.run!r}: the metric posted for step {step} applies from step "
                f"{effective}: the LRs of steps {step} to {effective - 1} were served before it "
                f"arrived, so a plateau reduction lands {effective - step} steps later than torch's "
                f"ReduceLROnPlateau would. Likely cause: {cause}. (Warned once per run.)"
            ),
            stacklevel=_application_level(),
        )

    def expect_metrics(self, every: int, first: int) -> None:
        """Metrics will be posted for steps `first`, `first + every`, ...: windows end before each."""
        if every < 1 or first < 1:
            raise ValueError(
                f"metrics are expected every >= 1 steps from step >= 1, got {every} from {first}"
            )
        self._cadence, self._last_metric = every, first - every

    def close(self) -> None:
        """Stop fetching in the background (before the client is closed): a fetch not begun yet is
        dropped, and the worker thread ends. A later step starts another."""
        self._pending = None
        self._worker.stop()

    def forget(self, at: int | None = None) -> None:
        """Drop what was fetched, and the attempt pinned (after a jump to another step, such as
        a resume from a checkpoint): the next window pins the run's newest attempt. With `at`,
        the step the job goes on from: the metric cadence is counted from there, so that the
        first post after the jump is not taken for one cadence after the last post before it."""
        self._known.clear()
        self._top = -1
        self._pending = None
        self.attempt = None
        self._ended_by = None
        if at is not None and self._last_metric is not None:
            if self._cadence is None:
                self._last_metric = None  # one post seen: learn the cadence afresh
            else:
                self._last_metric += self._cadence * ((at - self._last_metric) // self._cadence)

    # -- windows ----------------------------------------------------------------------------

    def _window_end(self, start: int) -> int:
        """The end (exclusive) of a window from `start`: `lookahead` steps, but not past a step a
        metric is expected for and not yet posted. Equal to `start` when `start` is such a step."""
        end = start + self.lookahead if self._limit is None else min(start + self.lookahead, self._limit)
        if self._plateau is None:
            self._plateau = self._ask_plateau()
        if self.total_steps is not None:  # the job's own asks past its planned end go one by one
            end = min(end, max(start, self.total_steps))
        if self._plateau is False:
            return end
        if self._cadence is None or self._last_metric is None:
            # The cadence is not known yet: any step may get a metric, `start` too, so nothing is
            # fetched before the job asks for it (after its post, if it posts there).
            return start
        # The next expected metric step at or after `start`: last + j * cadence, j >= 1.
        last, cadence = self._last_metric, self._cadence
        upcoming = last + cadence * max(1, -(-(start - last) // cadence))
        return min(end, upcoming)

    def _ask_plateau(self) -> bool | None:
        try:
            found = self.client.get_run(self.run)
        except LrtowerError as exc:
            self._failed(exc)
            return None  # unknown: windows of one step until the server answers
        if self.total_steps is None:
            self.total_steps = found.total_steps
        return found.plateau is not None

    def _note_past_end(self, step: int) -> None:
        # Step total_steps itself is what a loop's last `scheduler.step()` asks, after the last
        # planned optimizer step (torch computes it too): answered alone, and not a surprise.
        if self.total_steps is None or step <= self.total_steps or self._noted_past_end:
            return
        self._noted_past_end = True
        log.warning(
            "lrtower: run %r: step %d is past the %d steps this job planned (total_steps): it is "
            "answered, but from here on each step is fetched on its own, with no lookahead",
            self.run,
            step,
            self.total_steps,
        )

    def _learn_cadence(self, step: int) -> None:
        if self._last_metric is not None and step > self._last_metric:
            self._cadence = step - self._last_metric
        self._last_metric = step

    def _fetch_now(self, step: int) -> StepLR | None:
        if self._pending is not None and self._pending_start <= step and self._down_since is None:
            self._collect(wait=True)
            known = self._known.pop(step, None)
            if known is not None:
                return known
        if self._down_since is not None:
            self._watch()
            return None
        if self._outage is not None and not self._report():  # the report first: see _report
            return None
        while True:
            # At least `step` itself: the job asks for it, metric expected there or not.
            end = max(self._window_end(step), step + 1)
            if self._down_since is not None:  # asking about the run failed: do not wait twice
                return None
            try:
                window = self.client.lr_range(self.run, step, end, attempt=self.attempt)
                break
            except LrtowerError as exc:
                if not self._ends_before(exc, step):  # else: again, up to the schedule's end
                    self._failed(exc)
                    return None
        self._store(_window(window))
        self._recovered()
        return self._known.pop(step)

    def _ends_before(self, error: LrtowerError, start: int) -> bool:
        """Whether `error` says a window from `start` should end sooner, and may be asked again:
        the schedule ends after `start` (then windows stop at its end), or the window reaches
        further past the run's mark than the server serves in one request (then windows shrink
        to that reach)."""
        reach = _reach_from(error)
        if reach is not None and reach > start:
            self.lookahead = min(self.lookahead, reach - start)
            return True
        end = _no_value_from(error)
        if end is None:
            return False
        self._limit = end if self._limit is None else min(self._limit, end)
        return end > start

    def _maybe_refill(self, step: int) -> None:
        if self.lookahead == 1 or self._pending is not None or self._down_since is not None:
            return
        if self._top - step >= self.lookahead:  # a whole window is still ahead
            return
        start = max(self._top + 1, step + 1)
        end = self._window_end(start)
        if end > start:
            self._submit(start, end)

    def _submit(self, start: int, stop: int) -> None:
        # The worker builds the window's StepLRs too: off the job's thread. The fetch holds the
        # client and run, not the feed, so that a feed dropped while its fetch waits in the queue
        # goes at once, and the fetch with it (see _stop).
        client, run, attempt = self.client, self.run, self.attempt
        self._pending = self._worker.submit(
            lambda: _window(client.lr_range(run, start, stop, attempt=attempt))
        )
        self._pending_start = start

    def _collect(self, wait: bool = False) -> None:
        """Take in a finished background fetch (waiting for it if `wait`), and a finished probe."""
        if os.getpid() != self._pid:  # a forked child: the parent's thread is not ours
            self._pid, self._pending, self._probe = os.getpid(), None, None
        if self._probe is not None and self._probe.done():
            self._probed(self._probe)
        future = self._pending
        if future is None or not (wait or future.done()):
            return
        self._pending = None
        try:
            window = future.result()
        except LrtowerError as exc:
            if _no_value_from(exc) is None:
                self._failed(exc)
            else:
                self._ends_before(exc, self._pending_start)
            return
        self._store(window)
        self._recovered()

    def _store(self, window: Window) -> None:
        if self.attempt is None:
            self.attempt = window.attempt  # pinned by the first answer
        if window.divergence is not None and window.divergence != self._divergence:
            self._divergence = window.divergence
            log.warning(
                "lrtower: run %r diverged: a rank ran other LRs than the tower served it, for want "
                "of the server (a partition it alone saw), so the job's ranks did not all run the "
                "same LRs. The steps, both LRs and the rank are in the run's audit trail: event %d "
                "(lrtower events %s --after %d)",
                self.run,
                window.divergence,
                self.run,
                window.divergence - 1,
            )
        steps = window.steps
        self._known.update(steps)
        if steps:
            self._top = max(self._top, next(reversed(steps)))  # the last: steps are in order

    # -- outages ----------------------------------------------------------------------------

    def _failed(self, error: LrtowerError) -> None:
        current = _superseded(error)
        if current is not None and not self.strict:
            if self._ended_by is None:
                log.warning(
                    "lrtower: run %r was rewound: it is in attempt %d, and this job's attempt %s ended; "
                    "training goes on with the last LR and asks nothing more. Restart the job from the "
                    "checkpoint the rewind went back to",
                    self.run,
                    current,
                    self.attempt,
                )
            self._ended_by = current
            self._pending = None  # the steps fetched already are our attempt's: they are used still
            return
        if self.strict or not _transient(error):
            raise error
        now = time.monotonic()
        if self._outage is None:
            self._outage = _Outage(now, f"{type(error).__name__}: {error}")
            log.warning(
                "lrtower: cannot reach %s for run %r (%s); training goes on with the fetched steps, "
                "then the last LR, and reconnects by itself (metrics posted meanwhile are dropped)",
                self.client.url,
                self.run,
                error,
            )
        if self._down_since is None:
            # Whatever failed, and however often: the next probe is a second away, never more.
            self._down_since, self._probe_at = now, now + PROBE_EVERY

    def _watch(self) -> None:
        """While the server is down: start a probe on the worker thread, if one is due."""
        if self._probe is None and time.monotonic() >= self._probe_at:
            client = self.client
            self._probe_at = time.monotonic() + PROBE_EVERY
            self._probe = self._worker.submit(lambda: client.send(_calls.healthz(timeout=PROBE_TIMEOUT)))

    def _probed(self, probe: Future[bool]) -> None:
        self._probe = None
        try:
            up = probe.result()
        except LrtowerError:
            up = False
        if up and self._down_since is not None:
            self._down_since = None  # the next step asks the server; its answer ends the outage

    def _fell_back(self, step: int) -> None:
        """`step` runs on the LR the job has (the last answer's), for want of one."""
        if self._outage is None:
            return
        self._outage.missed += 1
        if self._last is not None:
            self._outage.ran(step, self._last)
        elif self.held is not None:
            self._outage.ran(step, StepLR(self.held, None))

    def _dropped_post(self) -> None:
        if self._outage is not None:
            self._outage.dropped += 1
            self._outage.dropped_in_all += 1

    def _recovered(self) -> bool:
        """A real answer came: the outage is over once its report is sent. False if that failed
        (the server is down again)."""
        if self._outage is not None and not self._report():
            return False
        self._down_since = None
        outage, self._outage = self._outage, None
        if outage is not None:
            log.info(
                "lrtower: %s is back for run %r after %.1f s; %d steps ran on the last LR, "
                "%d metric posts were dropped",
                self.client.url,
                self.run,
                time.monotonic() - outage.since,
                outage.missed,
                outage.dropped_in_all,
            )
        return True

    def _report(self) -> bool:
        """Send the outage's report, on the job's thread and before the feed asks the run for
        anything else: then the steps the tower has served that the report covers were served to
        others, not to this job as it comes back. False if the server is down again (the report
        is kept, and sent under the same key at the next return)."""
        outage = self._outage
        assert outage is not None
        outage.seal(self.attempt, self.rank)
        while outage.sealed:
            key, body = outage.sealed[0]
            try:
                result = self.client.send(_calls.report_fallbacks(self.run, **body, idempotency_key=key))
            except LrtowerError as exc:
                if _transient(exc):
                    self._failed(exc)  # raises if strict
                    return False
                log.warning(
                    "lrtower: run %r did not take the report of the steps run on the last LR: %s",
                    self.run,
                    exc,
                )
            else:
                self._diverged(result)
            outage.sealed.pop(0)
        return True

    def _diverged(self, result: FallbackReport) -> None:
        if result.diverged:
            self._divergence = result.seq  # warned here: the header naming it adds nothing
        for divergence in result.divergence:
            log.warning(
                "lrtower: run %r diverged: steps %d to %d ran on LR %s here%s, where the tower had "
                "served other ranks LR %s (step %d) to %s (step %d): the job's ranks did not all "
                "run the same LRs. Recorded in the run's audit trail (event %d)",
                self.run,
                divergence.from_step,
                divergence.to_step,
                divergence.fallback_lrs,
                "" if self.rank is None else f" (rank {self.rank})",
                divergence.served_lrs,
                divergence.from_step,
                divergence.served_lrs_last,
                divergence.to_step,
                result.seq,
            )
