"""Every call of the API, described without doing any I/O.

A builder here turns a method's arguments into a `Call`: the HTTP request to send and how to
read its answer. `Client` and `AsyncClient` expose each builder as a method and differ only in
how they send the call, so every call is written once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from .results import (
    LR,
    ChangeResult,
    EventPage,
    FallbackReport,
    LRRange,
    MetricResult,
    RewindResult,
    Run,
    RunPage,
    Verification,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer. Built once, so a retry resends it unchanged."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: list[tuple[str, str | int]] = field(default_factory=list)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200, 201})
    """Statuses that are answers, read by `read`; any other is an error."""
    retry: bool = True
    timeout: float | None = None
    """Seconds for this call (connecting included), instead of the client's timeout; None: the client's."""


def _run_path(run: str, *rest: str) -> str:
    return "/".join(["/runs", quote(run, safe=""), *rest])


def _json(result: Callable[[dict[str, Any]], T]) -> Callable[[httpx.Response], T]:
    return lambda response: result(response.json())


def _served(result: Callable[[dict[str, Any]], T]) -> Callable[[httpx.Response], T]:
    """Read an `/lr` answer, with the run's divergence from its header."""

    def read(response: httpx.Response) -> T:
        seq = response.headers.get("lrtower-divergence")
        return result({**response.json(), "divergence": int(seq) if seq and seq.isdigit() else None})

    return read


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def create_run(
    name: str,
    schedule: Mapping[str, Any],
    *,
    lr: float | None = None,
    lrs: list[float] | None = None,
    plateau: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    total_steps: int | None = None,
) -> Call[Run]:
    """Create a run, or return it if it exists with this same definition (Conflict if not).

    Give `lr` (one param group) or `lrs` (one per group). `plateau` configures plateau reduction,
    for example `{"metric": "val_loss", "patience": 3}`. `total_steps` is how many steps the job
    plans (steps 0 to total_steps - 1): lookahead windows, plots and the console stop there.
    """
    body = _without_none(
        name=name,
        schedule=dict(schedule),
        lr=lr,
        lrs=lrs,
        plateau=plateau,
        labels=labels,
        total_steps=total_steps,
    )
    return Call("POST", "/runs", _json(Run.from_json), json=body)


def list_runs(
    *, after: str | None = None, limit: int = 100, labels: Mapping[str, str] | None = None
) -> Call[RunPage]:
    """A page of runs by name, after `after`, keeping those that carry all of `labels`."""
    params: list[tuple[str, str | int]] = [("limit", limit)]
    if after is not None:
        params.append(("after", after))
    params += [("label", f"{key}={value}") for key, value in (labels or {}).items()]
    return Call("GET", "/runs", _json(RunPage.from_json), params=params)


def get_run(run: str) -> Call[Run]:
    """The run: its definition, state, changes, version and high-water mark."""
    return Call("GET", _run_path(run), _json(Run.from_json))


def lr(run: str, step: int, *, attempt: int | None = None) -> Call[LR]:
    """The LR of `step`. It counts as served: it never changes afterwards.

    With `attempt`, the answer is that attempt's: if a rewind has started a newer one, a step
    above the rewind raises `Conflict`, whose `attempt` names the current one."""
    params: list[tuple[str, str | int]] = [("step", step)]
    if attempt is not None:
        params.append(("attempt", attempt))
    return Call("GET", _run_path(run, "lr"), _served(LR.from_json), params=params)


def lr_range(
    run: str, start: int, stop: int, stride: int = 1, *, attempt: int | None = None
) -> Call[LRRange]:
    """The LRs of steps [start, stop) by `stride` (at most 100,000), all counting as served;
    `attempt` as for `lr`."""
    params: list[tuple[str, str | int]] = [("start", start), ("stop", stop), ("stride", stride)]
    if attempt is not None:
        params.append(("attempt", attempt))
    return Call("GET", _run_path(run, "lr"), _served(LRRange.from_json), params=params)


def curve(run: str, start: int = 0, stop: int = 1000, stride: int = 1) -> Call[LRRange]:
    """The planned LRs of [start, stop) by `stride`, for plots: unlike `lr_range`, it serves nothing."""
    params: list[tuple[str, str | int]] = [("start", start), ("stop", stop), ("stride", stride)]
    return Call("GET", _run_path(run, "curve"), _json(LRRange.from_json), params=params)


def post_metric(
    run: str, step: int, value: float, *, name: str | None = None, attempt: int | None = None
) -> Call[MetricResult]:
    """Post a metric for `step` (torch's `step(metric)` count, from 1); the run's plateau may reduce
    the LR. Posting the same (name, step, value) again returns the same result. With `attempt`,
    a post to a run a rewind has moved to another attempt raises `Conflict` instead."""
    body = _without_none(step=step, value=value, name=name, attempt=attempt)
    return Call("POST", _run_path(run, "metrics"), _json(MetricResult.from_json), json=body)


def change_schedule(
    run: str,
    schedule: Mapping[str, Any],
    *,
    from_step: int | None = None,
    restart: bool = False,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Call[ChangeResult]:
    """Replace the schedule from `from_step` (default: the step after the high-water mark).

    With `restart`, the new schedule counts its steps from 0 there. The call carries an
    `Idempotency-Key` (a new UUID unless given), so a retry never changes the run twice.
    """
    body = _without_none(schedule=dict(schedule), from_step=from_step, restart=restart, reason=reason)
    return Call(
        "POST",
        _run_path(run, "schedule"),
        _json(ChangeResult.from_json),
        json=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
    )


def scale(
    run: str,
    factor: float,
    *,
    from_step: int | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Call[ChangeResult]:
    """Multiply the LR by `factor` from `from_step` (default: the step after the high-water mark),
    under an `Idempotency-Key` like `change_schedule`."""
    body = _without_none(factor=factor, from_step=from_step, reason=reason)
    return Call(
        "POST",
        _run_path(run, "scale"),
        _json(ChangeResult.from_json),
        json=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
    )


def rewind(
    run: str,
    to_step: int,
    *,
    reason: str,
    schedule: Mapping[str, Any] | None = None,
    restart: bool = False,
    scale: float | None = None,
    idempotency_key: str | None = None,
) -> Call[RewindResult]:
    """Start a new attempt of the run at `to_step` (a served step: a checkpoint's). Steps up to
    it answer as before; above it, the plan as it stood when it was the last step served, with
    this call's new `schedule` (counting from 0 there with `restart`) and `scale` from the step
    after. Under an `Idempotency-Key` like `change_schedule`: every rank of a resumed job that
    passes the same key lands on the same attempt."""
    body = _without_none(
        to_step=to_step, reason=reason, schedule=None if schedule is None else dict(schedule), scale=scale
    )
    if restart:
        body["restart"] = True
    return Call(
        "POST",
        _run_path(run, "rewind"),
        _json(RewindResult.from_json),
        json=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
    )


def fork(
    run: str,
    name: str,
    at_step: int,
    *,
    reason: str | None = None,
    schedule: Mapping[str, Any] | None = None,
    restart: bool = False,
    scale: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> Call[Run]:
    """Make the run `name`, which answers steps up to `at_step` as `run` did; above them, `run`'s
    plan as it stood then, with this call's `schedule` and `scale` from the step after. The same
    fork again returns the run; another run of that name raises `Conflict`."""
    body = _without_none(
        name=name,
        at_step=at_step,
        reason=reason,
        schedule=None if schedule is None else dict(schedule),
        scale=scale,
        labels=None if labels is None else dict(labels),
    )
    if restart:
        body["restart"] = True
    return Call("POST", _run_path(run, "fork"), _json(Run.from_json), json=body)


def set_state(run: str, state: Literal["finished", "archived"], *, reason: str | None = None) -> Call[Run]:
    """Mark the run finished or archived: it still serves its LRs, but takes no more changes."""
    body = _without_none(state=state, reason=reason)
    return Call("POST", _run_path(run, "state"), _json(Run.from_json), json=body)


def events(run: str, *, after: int = 0, limit: int = 100) -> Call[EventPage]:
    """The audit trail, oldest first, from after the event `after` (a seq)."""
    params: list[tuple[str, str | int]] = [("after", after), ("limit", limit)]
    return Call("GET", _run_path(run, "events"), _json(EventPage.from_json), params=params)


def verify(run: str) -> Call[Verification]:
    """Recompute the audit trail's hash chain: any edited or deleted event breaks it."""
    return Call("GET", _run_path(run, "events", "verify"), _json(Verification.from_json))


def preview(
    schedule: Mapping[str, Any],
    *,
    lr: float | None = None,
    lrs: list[float] | None = None,
    start: int = 0,
    stop: int = 1000,
    stride: int = 1,
) -> Call[LRRange]:
    """Validate a schedule spec and evaluate it over [start, stop) by `stride`, storing nothing."""
    body = _without_none(schedule=dict(schedule), lr=lr, lrs=lrs, start=start, stop=stop, stride=stride)
    return Call("POST", "/schedules/preview", _json(LRRange.from_json), json=body)


def ready() -> Call[bool]:
    """Whether the server is up, its database reachable and migrated. Asked once, never retried."""
    return Call(
        "GET",
        "/readyz",
        lambda response: response.status_code == 200,
        ok=frozenset({200, 503}),
        retry=False,
    )


def healthz(*, timeout: float = 1.0) -> Call[bool]:
    """Whether the server process answers at all: a cheap probe, asked once within `timeout`
    seconds and never retried (a client in an outage asks it about once a second)."""
    return Call("GET", "/healthz", lambda response: response.status_code == 200, retry=False, timeout=timeout)


def report_fallbacks(
    run: str,
    stretches: list[dict[str, Any]],
    *,
    attempt: int | None = None,
    rank: int | None = None,
    dropped_metric_posts: int = 0,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Call[FallbackReport]:
    """Record what a job ran while it could not reach the server: `stretches` of
    `{"from_step", "to_step", "lrs"}` (steps included at both ends, one LR per param group; and
    `"momentum"`, one per group, where the schedule cycles it). The run appends it to its audit
    trail as a `fallback` event; the steps nobody was served become served, answering what ran
    (`recorded`); the answer says whether the tower had served any of the others with other LRs
    (a divergence). Under an `Idempotency-Key` like `change_schedule`, so a retry records it once."""
    body = _without_none(
        attempt=attempt,
        rank=rank,
        stretches=stretches,
        dropped_metric_posts=dropped_metric_posts,
        reason=None if reason is None else re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", reason)[:1000],
    )
    return Call(
        "POST",
        _run_path(run, "fallbacks"),
        _json(FallbackReport.from_json),
        json=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
    )
