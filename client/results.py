"""What the API answers, as typed, immutable results.

Each result is built from the server's JSON by `from_json`, which ignores fields it does not
know, so an older client keeps working against a newer server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, Self

Json = dict[str, Any]


def _known(cls: type, data: Json) -> Json:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True, slots=True)
class Change:
    """A change to a run from `effective_step` on: a new schedule, a scale, or a plateau reduction;
    or (kind `ran`) the LRs a job reported it ran on steps `effective_step`..`to_step`, which
    nobody had been served, while it could not reach the server."""

    seq: int
    kind: Literal["schedule", "scale", "plateau", "ran"]
    effective_step: int
    created_at: datetime
    schedule: Json | None = None
    restart: bool = False
    factor: float | None = None
    factors: list[float] | None = None
    to_step: int | None = None
    lrs: list[float] | None = None
    momentum: list[float] | None = None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**{**_known(cls, data), "created_at": datetime.fromisoformat(data["created_at"])})


@dataclass(frozen=True, slots=True)
class Attempt:
    """A rewind: attempt `number` answers steps 0..`rewound_to` as the one before it did, and
    discarded what that one served above them, up to `discarded_to`."""

    number: int
    rewound_to: int
    discarded_to: int
    actor: str
    reason: str
    started_at: datetime

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**{**_known(cls, data), "started_at": datetime.fromisoformat(data["started_at"])})


@dataclass(frozen=True, slots=True)
class Fork:
    """Where a forked run comes from: it answers steps 0..`at_step` as `parent` did, whose audit
    trail ended in `parent_head` then."""

    parent: str
    at_step: int
    parent_head: str

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class ScheduleNow:
    """The schedule a run applies at `step` (the step after its high-water mark) and what carries
    over into it. `from_step` is where it took over (0: the run's own schedule), set by the change
    `change_seq` (None: the run's own); with `restart` it counts its own steps from 0 there,
    otherwise it is read at the run's step. `scale` is the product of every scale in force and
    `plateau_factors` each group's plateau factor (None: no reduction): both multiply the new
    schedule as they did the old one."""

    step: int
    schedule: Json
    from_step: int
    restart: bool
    change_seq: int | None
    scale: float
    plateau_factors: list[float] | None = None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class Run:
    """A run: its definition, state, changes, version and high-water mark (-1: nothing served),
    the attempt it serves (each rewind starts one, and `attempts` lists them), and where it was
    forked from, if it was. `schedule` is the schedule it was created with; `schedule_now` the
    one in force now (None from a server older than this field). `total_steps` is how many steps
    the job plans, if it said (steps 0 to total_steps - 1)."""

    name: str
    lrs: list[float] | None
    schedule: Json
    plateau: Json | None
    labels: dict[str, str]
    state: Literal["live", "finished", "archived"]
    version: int
    high_water: int
    changes: list[Change]
    created_at: datetime
    updated_at: datetime
    attempt: int = 1
    attempts: list[Attempt] = field(default_factory=list)
    fork: Fork | None = None
    schedule_now: ScheduleNow | None = None
    total_steps: int | None = None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        fork, now = data.get("fork"), data.get("schedule_now")
        return cls(
            **{
                **_known(cls, data),
                "changes": [Change.from_json(c) for c in data["changes"]],
                "schedule_now": None if now is None else ScheduleNow.from_json(now),
                "created_at": datetime.fromisoformat(data["created_at"]),
                "updated_at": datetime.fromisoformat(data["updated_at"]),
                "attempts": [Attempt.from_json(a) for a in data.get("attempts", [])],
                "fork": None if fork is None else Fork.from_json(fork),
            }
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """A page of runs; pass `next_after` as `after` for the next one (None: the last page)."""

    runs: list[Run]
    next_after: str | None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls([Run.from_json(r) for r in data["runs"]], data.get("next_after"))


@dataclass(frozen=True, slots=True)
class LR:
    """The LR of one step: `lr` is the first param group's, `lrs` every group's; `momentum` is
    set when the schedule cycles it (one per group); `attempt`, the run's attempt it belongs to."""

    run: str
    step: int
    lr: float
    lrs: list[float]
    momentum: list[float] | None = None
    attempt: int = 1
    divergence: int | None = None
    """Set on a run where a rank ran other LRs than the tower served: the seq of the latest
    `fallback` event that found it (the `lrtower-divergence` header)."""

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class LRRange:
    """The LRs of a range of steps, in columns: `lrs[i]` holds every group's LR at `steps[i]`."""

    run: str
    steps: list[int]
    lr: list[float]
    lrs: list[list[float]]
    momentum: list[list[float]] | None = None
    attempt: int | None = None
    """The run's attempt these LRs belong to (None for a preview)."""
    divergence: int | None = None
    """As `LR.divergence`, for a range of served steps."""

    @classmethod
    def from_json(cls, data: Json) -> Self:
        # The server sends `lrs` only for several groups; here it is always filled.
        lrs = data.get("lrs") or [[lr] for lr in data["lr"]]
        return cls(**{**_known(cls, data), "lrs": lrs})

    def at(self, step: int) -> LR:
        """The answer for one step of the range (IndexError if it is not in it)."""
        index = _index(self.steps, step)
        momentum = self.momentum[index] if self.momentum is not None else None
        return LR(self.run, step, self.lr[index], self.lrs[index], momentum, self.attempt or 1)


def _index(steps: list[int], step: int) -> int:
    if not steps:
        raise IndexError(f"step {step} is not in an empty range")
    stride = steps[1] - steps[0] if len(steps) > 1 else 1
    index, off = divmod(step - steps[0], stride)
    if off or not 0 <= index < len(steps):
        raise IndexError(f"step {step} is not in this range ({steps[0]}..{steps[-1]} by {stride})")
    return index


@dataclass(frozen=True, slots=True)
class MetricResult:
    """What a metric post did: whether the plateau `reduced` the LR, from which step, and the LR
    from there on (None where the plan has no value there, for a metric the plateau does not
    watch)."""

    accepted: bool
    reduced: bool
    effective_step: int
    lr: float | None
    lrs: list[float] | None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """Where a schedule change or scale took effect, and the LR there without and with it
    (`lr_before` is None where the old plan had no value, past the end of a OneCycleLR)."""

    run: str
    effective_step: int
    lr_before: list[float] | None
    lr_after: list[float]
    version: int

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class RewindResult:
    """The attempt a rewind started at `to_step`: the LR at `effective_step` (to_step + 1) in the
    attempt before it and in this one; the steps it discarded (to_step + 1 to `discarded_to`),
    the changes it dropped (their seqs) and the metrics that no longer count."""

    run: str
    attempt: int
    to_step: int
    effective_step: int
    lr_before: list[float] | None
    lr_after: list[float] | None
    discarded_to: int
    dropped_changes: list[int]
    dropped_metrics: int
    version: int

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's audit trail. `damaged` names the fields whose stored value could not
    be read (someone edited the database): those are None, and `verify` reports the event."""

    seq: int | None
    at: datetime | None
    actor: str | None
    kind: str | None
    effective_step: int | None
    lr_before: list[float] | None
    lr_after: list[float] | None
    reason: str | None
    details: Json | None
    prev_hash: str | None
    hash: str | None
    damaged: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Json) -> Self:
        at = datetime.fromisoformat(data["at"]) if data.get("at") else None
        return cls(**{**_known(cls, data), "at": at})


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of the audit trail, oldest first; ask again with `after=events[-1].seq` for more."""

    run: str
    events: list[Event]

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(data["run"], [Event.from_json(e) for e in data["events"]])


@dataclass(frozen=True, slots=True)
class Verification:
    """The audit trail's hash chain, recomputed: `ok`, or the first event that does not match."""

    ok: bool
    count: int
    first_bad_seq: int | None = None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class Divergence:
    """Steps `from_step` to `to_step` ran on `fallback_lrs` while the tower had served them with
    other LRs (`served_lrs` at from_step, `served_lrs_last` at to_step) to another rank."""

    from_step: int
    to_step: int
    fallback_lrs: list[float]
    served_lrs: list[float]
    served_lrs_last: list[float]

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class FallbackReport:
    """A fallback report as recorded: its audit event's `seq`, the steps it covers, where they
    contradict what the tower served (`divergence`), and which became the record of what ran
    (`recorded`), with the run's mark after it."""

    run: str
    seq: int
    steps: int
    diverged: bool
    divergence: list[Divergence] = field(default_factory=list)
    unchecked_steps: int = 0
    recorded: list[tuple[int, int]] = field(default_factory=list)
    """The (from_step, to_step) spans nobody had been served: they now answer what ran."""
    high_water: int | None = None

    @classmethod
    def from_json(cls, data: Json) -> Self:
        known = _known(cls, data)
        known["divergence"] = [Divergence.from_json(d) for d in data.get("divergence") or ()]
        known["recorded"] = [(r["from_step"], r["to_step"]) for r in data.get("recorded") or ()]
        return cls(**known)
