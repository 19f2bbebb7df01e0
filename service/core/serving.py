"""Serving LRs with step consistency: the compiled-run cache and raising the high-water mark.

Each process keeps, per run, the compiled timeline, its version, and the highest step it knows
was served (the mark). The rules (docs/consistency.md):

- A step at or below the known mark is answered from memory: no change can touch it.
- Otherwise the run's durable mark and version are read (a read, no lock). At or below that mark
  the answer needs no write.
- Above it, the answer is computed first, outside any transaction, from the timeline at the
  version read; then one short write raises the mark, on condition that the version is still
  the one computed from (else the run is reloaded and the answer recomputed) and that the step
  lies within `max_ahead` of the mark. Raises waiting at the same moment share that write's
  transaction (marks.py). The answer is sent only after that commit.

Attempts (SPEC §4.10): each rewind starts a new attempt and bumps the version, so a copy of an
older attempt is reloaded before it raises a mark. Every answer names the attempt it belongs to.
A caller pinned to an attempt (`attempt=N`) that a rewind has ended gets the steps the two
attempts share (those at or below every later rewind's step), and a 409 naming the current
attempt for any other; a copy here that is older than the caller's attempt is reloaded first.

Who may raise the mark, and how far (SPEC §4.7): only a consumer (a write token, or anyone on a
server without tokens), and one request at most `max_ahead` steps past the mark. Every request's
work is bounded by points x groups x the schedule's evaluation cost (`max_work`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import NamedTuple

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ..db.store import ChangeRecord, RunRecord, Store
from ..schedules import DomainError, FieldError
from ..schedules.plateau import PlateauConfig
from .auth import Forbidden
from .marks import GroupCommit, reached
from .problems import Conflict, Invalid, NotFound, Unavailable
from .timeline import Answer, Change, PlateauChange, RanChange, ScaleChange, ScheduleChange, Timeline

LOOP_WORK = 200.0
"""Work (points x groups x cost) that may be computed on the event loop, about 0.2 ms."""
RACES = 20
"""How often a raise may lose to a concurrent change before the request gives up with a 503."""
RUN_OVERHEAD_BYTES = 12_288
SCHEDULE_BYTES = 5_120
SPEC_BYTES_FACTOR = 12
CHANGE_BYTES = 512
"""A compiled run's memory, fitted with tracemalloc to specs from a bare cosine to 4,000
milestones (within about 10% under, and up to several times over for many tiny children): a
fixed part, a part per schedule in its specs, about 12 bytes per byte of spec text, and a part
per change; plus what its schedules cache (MultiplicativeLR's products)."""


@dataclass(frozen=True)
class Compiled:
    version: int
    timeline: Timeline
    mark: int
    size: int
    """Its estimated memory, but for what its schedules cache (counted at every keep)."""
    attempt: int = 1
    rewinds: tuple[int, ...] = ()
    """The step each rewind went back to: attempt i + 2 started at rewinds[i]."""
    divergence: int | None = None
    """The seq of the run's latest fallback event that found a divergence: answers name it."""

    def shared_with(self, attempt: int) -> int:
        """The last step that `attempt` (an earlier one) answers as the current attempt does."""
        return min(self.rewinds[attempt - 1 :], default=self.mark)


class Served(NamedTuple):
    """Answers, the attempt they belong to, and the run's latest divergence (`Compiled`)."""

    attempt: int
    answers: list[Answer]
    divergence: int | None = None


@dataclass(frozen=True)
class Limits:
    max_ahead: int = 10_000
    """One request raises the mark at most this many steps past it."""
    max_work: float = 400_000.0
    """The most points x groups x cost one request may ask."""
    cache_runs: int = 10_000
    cache_bytes: int = 256 << 20
    mark_reserve: int = 0
    """Each raise of a mark goes this many steps past the step asked (marks.py)."""
    mark_window: float = 0.0
    """Seconds a group commit waits for more raises after its first."""


class Serving:
    def __init__(self, engine: Engine, limits: Limits = Limits()) -> None:
        self.engine = engine
        self.limits = limits
        self.marks = GroupCommit(engine, limits.max_ahead, limits.mark_reserve, limits.mark_window)
        self._compiled: dict[str, Compiled] = {}
        self._weights: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def held(self, name: str) -> Compiled | None:
        """The run as this process holds it, if it does."""
        return self._compiled.get(name)

    def known(self, name: str, steps: range, attempt: int | None = None) -> Compiled | None:
        """The run as compiled here if every step asked is at or below the mark this process
        knows (no change can alter them) and the caller is not pinned to another attempt, so
        that answering needs no database; None otherwise."""
        compiled = self._compiled.get(name)
        if compiled is None or steps[-1] > compiled.mark or attempt not in (None, compiled.attempt):
            return None
        return compiled

    async def serve_on_loop(self, name: str, steps: range, attempt: int | None) -> Served | None:
        """`serve` for a consumer's new steps of a run this process holds compiled, when they are
        cheap to compute: computed on the event loop, then the mark raised by the group commit,
        awaited without a worker thread. None when `serve` must decide (in a thread): the run is
        not held, the steps are served already or out of reach, costly, or without a value, or
        a condition of the raise failed."""
        compiled = self._compiled.get(name)
        top = steps[-1]
        if compiled is None or not compiled.mark < top <= compiled.mark + self.limits.max_ahead:
            return None
        if attempt not in (None, compiled.attempt):
            return None
        timeline = compiled.timeline
        if timeline.has_products or timeline.work(len(steps)) > LOOP_WORK:
            return None
        try:
            answers = timeline.over(steps)
        except DomainError:
            return None
        mark = reached(await self.marks.raise_mark_on_loop(name, top, compiled.version), top)
        if mark is None:
            return None
        self._keep(name, replace(compiled, mark=mark))
        return Served(compiled.attempt, answers, compiled.divergence)

    def check_work(self, timeline: Timeline, steps: range, field: str = "stop") -> None:
        work = timeline.work(len(steps))
        if work > self.limits.max_work:
            raise Invalid(
                f"this request asks {len(steps)} steps of {timeline.n_groups} param groups of a schedule "
                f"costing {timeline.cost:.3g} per value: {work:.3g} units of work, over the limit of "
                f"{self.limits.max_work:.3g}; ask fewer steps (a larger stride or a shorter range)",
                [FieldError((field,), f"at most {self.limits.max_work:.3g} units of work per request")],
            )

    def answers(self, timeline: Timeline, steps: range, field: str = "stop") -> list[Answer]:
        """The planned answers for `steps`, if their work is within the limit."""
        self.check_work(timeline, steps, field)
        return timeline.over(steps)

    def serve(self, name: str, steps: range, consume: bool, attempt: int | None = None) -> Served:
        """The answers for `steps`, which count as served: they never change afterwards.

        Blocking (it may read and write the database, and compute for a while): call it from a
        worker thread. `consume` says whether the caller may raise the mark (SPEC §4.7);
        `attempt`, the attempt the caller is pinned to, if any.
        """
        field = "step" if len(steps) == 1 else "stop"
        top = steps[-1]
        compiled, fresh = self._compiled.get(name), False
        for _ in range(RACES):
            if compiled is None:
                compiled, fresh = self._read(name), True
            if attempt is not None and attempt != compiled.attempt:
                if not fresh:
                    compiled = None  # a rewind may have started the caller's attempt since
                    continue
                answers = self._shared(name, compiled, attempt, steps, field)
                return Served(attempt, answers, compiled.divergence)
            if top <= compiled.mark:
                return Served(
                    compiled.attempt, self.answers(compiled.timeline, steps, field), compiled.divergence
                )
            if not (consume and top <= compiled.mark + self.limits.max_ahead) and not fresh:
                compiled = None  # the mark known here may be stale: decide on the durable one
                continue
            if not consume:
                raise Forbidden(
                    f"step {top} is above the run's high-water mark {compiled.mark}: serving it moves the "
                    f"mark, which needs a token with 'write' scope; GET /runs/{name}/curve shows the plan "
                    "without serving it",
                    extra={"high_water": compiled.mark},
                )
            self._check_ahead(name, compiled.mark, top, field)
            # Computed before the mark moves: a step without a value raises, and the mark stays put.
            try:
                answers = self.answers(compiled.timeline, steps, field)
            except (DomainError, Invalid):
                if fresh:
                    raise
                compiled = None  # a change since this copy was read may give these steps a value
                continue
            # On this process's copy of the run, a new step costs one write and no read: the
            # write's condition on the version catches a change made since the copy was read.
            raised = self._raise(name, top, compiled.version)
            if raised is not None:
                self._keep(name, replace(compiled, mark=raised))
                return Served(compiled.attempt, answers, compiled.divergence)
            compiled = None  # a change committed since the copy was read: read again, recompute
        raise Unavailable("the run changed under every attempt to serve it; retry shortly")

    def plan(self, name: str, steps: range) -> Served:
        """The planned answers for `steps`, without serving them: later changes may alter them."""
        compiled = self._read(name)
        return Served(compiled.attempt, self.answers(compiled.timeline, steps), compiled.divergence)

    def _shared(self, name: str, compiled: Compiled, attempt: int, steps: range, field: str) -> list[Answer]:
        """The answers of an earlier `attempt` for steps it shares with the current one; a 409
        naming the current attempt for any other (and for an attempt that does not exist)."""
        shared = compiled.shared_with(attempt) if attempt < compiled.attempt else -1
        if steps[-1] > shared:
            where = (
                f"it ended when attempt {attempt + 1} rewound the run to step {compiled.rewinds[attempt - 1]}"
                if attempt < compiled.attempt
                else "it has not started"
            )
            raise Conflict(
                f"run {name!r} is in attempt {compiled.attempt}; attempt {attempt} answers no step above "
                f"{max(shared, -1)}: {where}. Reload the checkpoint the current attempt resumed from, "
                "or follow the current attempt",
                [FieldError(("query", "attempt"), f"the current attempt is {compiled.attempt}")],
                extra={"attempt": compiled.attempt, "high_water": compiled.mark},
            )
        return self.answers(compiled.timeline, steps, field)

    def refresh(self, name: str) -> None:
        """Replace this process's copy of the run by the database's: after a rewind, whose new
        version also keeps a request still computing on the old copy from putting it back."""
        self._read(name)

    def _check_ahead(self, name: str, mark: int, top: int, field: str) -> None:
        limit = mark + self.limits.max_ahead
        if top > limit:
            raise Invalid(
                f"step {top} is {top - mark} steps past the run's high-water mark {mark}: one request may "
                f"serve at most {self.limits.max_ahead} steps past it (LRTOWER_MAX_AHEAD), so that a typo "
                f"cannot freeze a run's future. GET /runs/{name}/curve shows the plan without serving it",
                [FieldError((field,), f"at most {limit} while the high-water mark is {mark}")],
                extra={"high_water": mark, "max_step": limit},
            )

    def _read(self, name: str) -> Compiled:
        """The run as the database has it now, compiled (reusing this process's copy of the same
        version), with the durable mark."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            found = store.mark(name)
            if found is None:
                raise NotFound(f"no run named {name!r}")
            version, mark = found
            cached = self._compiled.get(name)
            if cached is not None and cached.version == version:
                compiled = replace(cached, mark=max(mark, cached.mark))
            else:
                run = store.require_run(name)
                # The row's own version: a change may have committed since the first read.
                compiled = _compile(run, store.changes(run.id), run.version, max(mark, run.high_water))
                rewinds = tuple(a.rewound_to for a in store.attempts(run.id))
                compiled = replace(compiled, attempt=run.attempt, rewinds=rewinds, divergence=run.divergence)
        self._keep(name, compiled)
        return compiled

    def _raise(self, name: str, top: int, version: int) -> int | None:
        """Raise the mark to `top` if the run is still at `version` and `top` within reach; the
        new mark, durable, or None if not. Raises waiting at once share a commit (marks.py)."""
        return self.marks.raise_mark(name, top, version)

    def _keep(self, name: str, compiled: Compiled) -> None:
        # What the schedules cache grows as later steps are asked: it is counted anew each time.
        weight = compiled.size + compiled.timeline.cached_bytes()
        with self._lock:
            current = self._compiled.get(name)
            if current is not None:
                if (current.version, current.mark) >= (compiled.version, compiled.mark):
                    return
                self._bytes -= self._weights.pop(name)
                del self._compiled[name]  # re-inserted last: the most recently refreshed
            self._compiled[name] = compiled
            self._weights[name] = weight
            self._bytes += weight
            while self._compiled and (
                len(self._compiled) > self.limits.cache_runs or self._bytes > self.limits.cache_bytes
            ):
                oldest = next(iter(self._compiled))
                del self._compiled[oldest]
                self._bytes -= self._weights.pop(oldest)

    @property
    def cached_runs(self) -> int:
        return len(self._compiled)

    @property
    def cached_bytes(self) -> int:
        return self._bytes


def timeline_of(run: RunRecord, changes: list[ChangeRecord]) -> Timeline:
    """The run's compiled history: its definition and every change."""
    plateau = PlateauConfig.model_validate(run.plateau) if run.plateau else None
    return Timeline(run.lrs, run.schedule, plateau, [change_of(c) for c in changes])


def change_of(record: ChangeRecord) -> Change:
    """A stored change as the engine takes it."""
    if record.kind == "schedule" and record.schedule is not None:
        return ScheduleChange(record.effective_step, record.schedule, record.restart)
    if record.kind == "scale" and record.factor is not None:
        return ScaleChange(record.effective_step, record.factor)
    if record.kind == "plateau" and record.factors is not None:
        return PlateauChange(record.effective_step, tuple(record.factors))
    if record.kind == "ran" and record.to_step is not None and record.lrs is not None:
        momentum = None if record.momentum is None else tuple(record.momentum)
        return RanChange(record.effective_step, record.to_step, tuple(record.lrs), momentum)
    raise ValueError(f"malformed change {record.seq}: {record.kind}")  # pragma: no cover - schema prevents it


def _compile(run: RunRecord, changes: list[ChangeRecord], version: int, mark: int) -> Compiled:
    timeline = timeline_of(run, changes)
    specs = [repr(run.schedule), *(repr(c.schedule) for c in changes if c.schedule)]
    size = (
        RUN_OVERHEAD_BYTES
        + sum(SCHEDULE_BYTES * text.count("'type'") + SPEC_BYTES_FACTOR * len(text) for text in specs)
        + CHANGE_BYTES * len(changes)
    )
    return Compiled(version, timeline, mark, size)
