"""The API's request and response bodies (pydantic): what clients in any language code against."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .core.vocabulary import ChangeKind, RunState, Scope
from .schedules import STEP_MAX, WholeNumber
from .schedules.plateau import PlateauConfig
from .schedules.registry import SPEC_ADAPTER

RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_GROUPS = 64
MAX_LABELS = 32

RunName = Annotated[str, Field(pattern=RUN_NAME, examples=["resnet50-lr-sweep-3"])]
Step = Annotated[int, Field(ge=0, le=STEP_MAX), WholeNumber]
LR = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TotalSteps = Annotated[int, Field(ge=1, le=STEP_MAX + 1), WholeNumber]
TOTAL_STEPS = (
    "How many steps the job plans to run (steps 0 to total_steps - 1); null: not said. Clients' "
    "lookahead stops there, and plots and the console end there by default; a step past it is "
    "still answered (a job may run longer than planned). Set at creation"
)
SEQ_MAX = 2**31 - 1
"""The highest seq an event can have: `events.seq` is a 32-bit integer on every database."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Unicode's control characters (category Cc): C0, DEL and C1."""
NO_CONTROL: dict[str, Any] = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}


def no_control_characters(value: str) -> str:
    """Refuse control characters in free text. PostgreSQL cannot store NUL in text at all; the
    others have no use in names, labels or reasons, and in an audit trail they would let a value
    rewrite what a terminal or a line-oriented view shows (a newline in a reason would forge a
    row of `lrtower events`; an escape sequence, recolour or erase the screen)."""
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters: found U+{ord(found.group()):04X} at index {found.start()}"
        )
    return value


Printable = AfterValidator(no_control_characters)
"""Free text: place it last in `Annotated`, after the length bounds, so theirs are the messages
for too long a text."""
Labels = Annotated[
    dict[
        Annotated[str, Field(max_length=64, json_schema_extra=NO_CONTROL), Printable],
        Annotated[str, Field(max_length=256, json_schema_extra=NO_CONTROL), Printable],
    ],
    Field(max_length=MAX_LABELS),
]


MAX_SPEC_BYTES = 65_536
"""The largest schedule spec, as compact JSON. A spec is compiled for every process that serves
its run and kept in memory; the largest legitimate ones (long milestone lists, a lambda per
group) are a few kilobytes."""


def bounded_spec(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(spec, separators=(",", ":")))
    except (RecursionError, ValueError):  # nesting the engine refuses anyway; NaN cannot be sent
        size = MAX_SPEC_BYTES + 1
    if size > MAX_SPEC_BYTES:
        raise ValueError(f"a schedule spec may take at most {MAX_SPEC_BYTES} bytes as JSON, this one {size}")
    return spec


class _PublishedAsSpecUnion:
    """Publishes a field's JSON schema as the engine's discriminated union of every schedule type
    (one schema per type, discriminated on `type`), so that generated clients get typed specs.
    The field itself stays a JSON object: the engine parses it (`schedules.registry.parse_spec`),
    checking its size first and naming errors by the spec's own paths."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(SPEC_ADAPTER.core_schema)


ScheduleSpec = Annotated[dict[str, Any], AfterValidator(bounded_spec), _PublishedAsSpecUnion()]
"""A schedule spec in a request."""
StoredSpec = Annotated[dict[str, Any], _PublishedAsSpecUnion()]
"""A schedule spec in an answer: as it was given."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class RunCreate(Strict):
    """A new run. Give `lr` (one param group) or `lrs` (one per group); optax, keras and mxnet
    schedules carry their own values and may omit both."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "resnet50-a",
                    "lrs": [0.1, 0.01],
                    "schedule": {
                        "type": "SequentialLR",
                        "schedulers": [
                            {"type": "LinearLR", "start_factor": 0.01, "total_iters": 1000},
                            {"type": "CosineAnnealingLR", "T_max": 99000},
                        ],
                        "milestones": [1000],
                    },
                    "plateau": {"metric": "val_loss", "patience": 3},
                    "labels": {"team": "vision"},
                    "total_steps": 100000,
                }
            ]
        },
    )

    name: RunName
    lr: LR | None = None
    lrs: Annotated[list[LR], Field(min_length=1, max_length=MAX_GROUPS)] | None = None
    schedule: ScheduleSpec = Field(
        examples=[{"type": "CosineAnnealingLR", "T_max": 100000, "eta_min": 1e-6}],
        description="A schedule spec: see docs/schedules.md",
    )
    plateau: PlateauConfig | None = None
    labels: Labels = Field(default_factory=dict)
    total_steps: TotalSteps | None = Field(None, description=TOTAL_STEPS)

    @model_validator(mode="after")
    def _one_of_lr_or_lrs(self) -> RunCreate:
        if self.lr is not None and self.lrs is not None:
            raise ValueError("give `lr` or `lrs`, not both")
        return self

    @property
    def base_lrs(self) -> list[float] | None:
        return [self.lr] if self.lr is not None else self.lrs


class ChangeOut(BaseModel):
    seq: int
    kind: ChangeKind
    effective_step: int
    schedule: StoredSpec | None = None
    restart: bool = False
    factor: float | None = None
    factors: list[float] | None = None
    to_step: int | None = Field(None, description="Kind `ran`: the last step of what ran")
    lrs: list[float] | None = Field(None, description="Kind `ran`: the LRs the job ran (a fallback report)")
    momentum: list[float] | None = Field(None, description="Kind `ran`: the momentum it ran, if it said")
    created_at: datetime


class AttemptOut(BaseModel):
    """A rewind: attempt `number` answers steps 0..`rewound_to` as before it; what the attempt
    before it served above them, up to `discarded_to`, is discarded (kept in the audit trail)."""

    number: int
    rewound_to: int
    discarded_to: int
    actor: str
    reason: str
    started_at: datetime


class ForkOut(BaseModel):
    """Where a forked run comes from: it answers steps 0..`at_step` as `parent` did."""

    parent: str
    at_step: int
    parent_head: str = Field(description="The hash that ended the parent's audit trail at the fork")


class ScheduleNow(BaseModel):
    """The schedule a run applies at `step`, the step after its high-water mark, and what carries
    over into it from earlier changes. Until the next change, each group's LR at step s is
    `max(x * f, min(x, min_lr))` with `x = schedule(s - origin) * scale` and `f` its plateau factor
    (1 without a reduction), where `origin` is `from_step` for a restarted schedule and 0 for one
    read at the run's own step."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step": 200,
                    "schedule": {"type": "CosineAnnealingLR", "T_max": 500},
                    "from_step": 200,
                    "restart": True,
                    "change_seq": 3,
                    "scale": 0.5,
                    "plateau_factors": [0.5],
                }
            ]
        }
    )

    step: int = Field(description="The step described: the one after the high-water mark")
    schedule: StoredSpec
    from_step: int = Field(description="Where this schedule took over: 0 for the run's own")
    restart: bool = Field(
        description="The schedule counts its own steps from 0 at from_step; if false, it is read at the run's step"
    )
    change_seq: int | None = Field(
        description="The schedule change (its seq in `changes`) that set it; null: the run's own schedule"
    )
    scale: float = Field(
        description="The product of every scale in force at `step`, made before or after this schedule took over"
    )
    plateau_factors: list[float] | None = Field(
        description="Each group's plateau factor in force at `step`; null while no reduction is"
    )


class RunOut(BaseModel):
    name: str
    lrs: list[float] | None
    schedule: StoredSpec = Field(description="The schedule the run was created with; see `schedule_now`")
    schedule_now: ScheduleNow = Field(
        description="The schedule in force now, with the scale and plateau factors carried into it"
    )
    plateau: dict[str, Any] | None
    labels: dict[str, str]
    state: RunState
    version: int
    high_water: int = Field(description="The highest step served so far (-1: none yet)")
    attempt: int = Field(1, description="The attempt now served: each rewind starts a new one")
    changes: list[ChangeOut]
    attempts: list[AttemptOut] = Field(default_factory=list, description="Every rewind, oldest first")
    fork: ForkOut | None = Field(None, description="Present on a run forked from another")
    total_steps: int | None = Field(None, description=TOTAL_STEPS)
    created_at: datetime
    updated_at: datetime


class RunPage(BaseModel):
    runs: list[RunOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null at the end")


class LrOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": "resnet50-a",
                    "attempt": 1,
                    "step": 5000,
                    "lr": 0.0995977,
                    "lrs": [0.0995977, 0.00995977],
                    "momentum": None,
                }
            ]
        }
    )

    run: str
    attempt: int = Field(description="The attempt this answer belongs to (a rewind starts a new one)")
    step: int
    lr: float = Field(description="The first group's LR")
    lrs: list[float] = Field(description="Every param group's LR")
    momentum: list[float] | None = Field(None, description="Present when the schedule cycles momentum")


class RangeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": "resnet50-a",
                    "attempt": 1,
                    "steps": [5000, 5001],
                    "lr": [0.0995977, 0.0995975],
                    "lrs": [[0.0995977, 0.00995977], [0.0995975, 0.00995975]],
                    "momentum": None,
                }
            ]
        }
    )

    run: str
    attempt: int | None = Field(description="The attempt these answers belong to (null for a preview)")
    steps: list[int]
    lr: list[float] = Field(description="The first group's LR at every step")
    lrs: list[list[float]] | None = Field(None, description="Every group's LR at every step (several groups)")
    momentum: list[list[float]] | None = None


class LrAnswer(RootModel[LrOut | RangeOut]):
    """What `GET /runs/{run}/lr` answers: one step's LR (`step=N`), or a range's."""


class PreviewIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lr": 0.1,
                    "schedule": {"type": "StepLR", "step_size": 30, "gamma": 0.1},
                    "start": 0,
                    "stop": 100,
                    "stride": 10,
                }
            ]
        },
    )

    lr: LR | None = None
    lrs: Annotated[list[LR], Field(min_length=1, max_length=MAX_GROUPS)] | None = None
    schedule: ScheduleSpec
    start: Step = 0
    stop: Step = 1000
    stride: Annotated[int, Field(ge=1, le=STEP_MAX), WholeNumber] = 1

    @property
    def base_lrs(self) -> list[float] | None:
        return [self.lr] if self.lr is not None else self.lrs


Reason = Annotated[str, Field(max_length=1000, json_schema_extra=NO_CONTROL), Printable]
"""Why a change was made: one line, as every form and command that asks for it takes it."""


class ScheduleChangeIn(Strict):
    """Replace the schedule from `from_step` on (default: the step after the high-water mark)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schedule": {"type": "ExponentialLR", "gamma": 0.999},
                    "restart": True,
                    "reason": "switch to a slow decay",
                }
            ]
        },
    )

    schedule: ScheduleSpec
    from_step: Step | None = None
    restart: bool = Field(False, description="The new schedule counts its own steps from 0 at from_step")
    reason: Reason | None = None


class ScaleIn(Strict):
    """Multiply the LR from `from_step` on (default: the step after the high-water mark)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"factor": 0.5, "from_step": 20000, "reason": "loss spikes"}]},
    )

    factor: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    from_step: Step | None = None
    reason: Reason | None = None


class StateIn(Strict):
    """Mark the run finished or archived. Its history and audit trail stay."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"state": "finished", "reason": "converged"}]},
    )

    state: Literal["finished", "archived"]
    reason: Reason | None = None


class ChangeResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": "resnet50-a",
                    "effective_step": 5001,
                    "lr_before": [0.0995975],
                    "lr_after": [0.0497988],
                    "version": 1,
                }
            ]
        }
    )

    run: str
    effective_step: int
    lr_before: list[float] | None = Field(
        description="The LR at effective_step without the change; null where the old plan had none"
    )
    lr_after: list[float]
    version: int


class _Branching(Strict):
    """The changes a rewind or a fork makes where its new plan takes over (the step after k)."""

    schedule: ScheduleSpec | None = Field(None, description="A new schedule from the step after k")
    restart: bool = Field(False, description="The new schedule counts its own steps from 0 there")
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        None, description="Multiply the LR from the step after k"
    )

    @model_validator(mode="after")
    def _restart_needs_a_schedule(self) -> _Branching:
        if self.restart and self.schedule is None:
            raise ValueError("`restart` applies to a new `schedule`: give one, or leave restart false")
        return self


class RewindIn(_Branching):
    """Start a new attempt of the run at k = `to_step`: steps 0..k answer as before; above k,
    the plan as it stood when k was the last step served, plus this call's changes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"to_step": 12000, "scale": 0.5, "reason": "loss spike at 12,400: resume from ckpt 12000"}
            ]
        },
    )

    to_step: Step = Field(description="The step the job resumes after (its checkpoint's): 0 to the mark")
    reason: Reason


class ForkIn(_Branching):
    """Make a new run `name` that answers steps 0..k (k = `at_step`) as this one does; above k,
    this run's plan as it stood when k was the last step served, plus this call's changes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "gpt-small-lr-half", "at_step": 12000, "scale": 0.5, "reason": "try half the LR"}
            ]
        },
    )

    name: RunName
    at_step: Step = Field(description="The last step the new run shares with this one: 0 to the mark")
    labels: Labels | None = Field(None, description="The new run's labels (default: this run's)")
    reason: Reason | None = None


class RewindResult(BaseModel):
    run: str
    attempt: int = Field(description="The new attempt")
    to_step: int
    effective_step: int = Field(description="to_step + 1, where the new attempt's plan takes over")
    lr_before: list[float] | None = Field(
        description="What the previous attempt answered (or planned) at effective_step; null if nothing"
    )
    lr_after: list[float] | None = Field(description="What the new attempt answers there; null if nothing")
    discarded_to: int = Field(
        description="The previous attempt's mark: its steps above to_step up to here are discarded"
    )
    dropped_changes: list[int] = Field(
        description="The seqs of the changes decided above to_step, now discarded"
    )
    dropped_metrics: int = Field(description="How many metrics posted above to_step no longer count")
    version: int


class MetricIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"step": 12, "value": 0.731, "name": "val_loss"}]},
    )

    step: Annotated[int, Field(ge=1, le=STEP_MAX), WholeNumber] = Field(
        description="torch's step(metric) count: the first is 1"
    )
    value: Annotated[float, Field(allow_inf_nan=False)]
    name: (
        Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=NO_CONTROL), Printable] | None
    ) = Field(None, description="The metric's name; default: the one the run's plateau watches")
    attempt: Annotated[int, Field(ge=1, le=STEP_MAX), WholeNumber] | None = Field(
        None, description="The attempt the job runs in: a post to a run rewound since then is a 409"
    )


class MetricOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"accepted": True, "reduced": False, "effective_step": 12, "lr": 0.0012, "lrs": [0.0012]}
            ]
        }
    )

    accepted: bool
    reduced: bool
    effective_step: int
    lr: float | None = Field(description="The LR from effective_step on; null where the plan has none")
    lrs: list[float] | None


MAX_STRETCHES = 1000
"""Stretches per fallback report: a job sends one per outage, more only if its LR changed."""


class FallbackStretch(Strict):
    """Steps `from_step` to `to_step` (both included) ran on `lrs`, one per param group."""

    from_step: Step
    to_step: Step
    lrs: Annotated[list[LR], Field(min_length=1, max_length=MAX_GROUPS)]
    momentum: (
        Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=MAX_GROUPS)] | None
    ) = Field(
        None,
        description="The momentum (beta1) it ran with, one per group, on a schedule that cycles it; "
        "null: the plan's",
    )


class FallbacksIn(Strict):
    """What a job ran while it could not reach the server: the steps of each stretch ran on its
    `lrs` (the last LR it had), in step order and without overlap."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempt": 1,
                    "rank": 3,
                    "stretches": [{"from_step": 180, "to_step": 1203, "lrs": [0.0496]}],
                    "dropped_metric_posts": 51,
                    "reason": "GET /runs/resnet50-a/lr: ConnectError: connection refused",
                }
            ]
        },
    )

    attempt: Annotated[int, Field(ge=1, le=STEP_MAX), WholeNumber] | None = Field(
        None, description="The attempt the job ran in; divergence is checked only against the current one"
    )
    rank: Annotated[int, Field(ge=0, le=SEQ_MAX), WholeNumber] | None = Field(
        None, description="The reporting process's rank in a distributed job"
    )
    stretches: Annotated[list[FallbackStretch], Field(max_length=MAX_STRETCHES)]
    dropped_metric_posts: Annotated[int, Field(ge=0, le=STEP_MAX), WholeNumber] = Field(
        0, description="Metric posts the job dropped meanwhile: the plateau never saw them"
    )
    reason: Reason | None = Field(None, description="Why the job fell back (the error it met)")


class Divergence(BaseModel):
    """Steps `from_step` to `to_step` of a fallback stretch, which the tower had served with
    other LRs: `served_lrs` at from_step and `served_lrs_last` at to_step; the job ran
    `fallback_lrs`."""

    from_step: int
    to_step: int
    fallback_lrs: list[float]
    served_lrs: list[float]
    served_lrs_last: list[float]


class StepSpan(BaseModel):
    from_step: int
    to_step: int


class FallbacksOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": "resnet50-a",
                    "seq": 7,
                    "steps": 1024,
                    "diverged": False,
                    "divergence": [],
                    "unchecked_steps": 0,
                    "recorded": [{"from_step": 180, "to_step": 1203}],
                    "high_water": 1203,
                }
            ]
        }
    )

    run: str
    seq: int = Field(description="The audit event that records the report")
    steps: int = Field(description="The steps the stretches cover")
    diverged: bool = Field(description="Whether the tower had served other LRs for some of them")
    divergence: list[Divergence]
    unchecked_steps: int = Field(
        0, description="Served steps past the check's bound, not compared (a very long stretch)"
    )
    recorded: list[StepSpan] = Field(
        [],
        description="The steps nobody had been served: they now count as served, and /lr and /curve answer "
        "them with what ran",
    )
    high_water: int | None = Field(None, description="The run's high-water mark after the report")


class EventOut(BaseModel):
    """One event of the audit trail. A field whose stored value cannot be read back as its type
    (the database was edited behind the service's back) is null and named in `damaged`; verify
    reports such an event as broken."""

    seq: int | None
    at: datetime | None
    actor: str | None
    kind: str | None
    effective_step: int | None
    lr_before: list[float] | None
    lr_after: list[float] | None
    reason: str | None
    details: dict[str, Any] | None
    prev_hash: str | None
    hash: str | None
    damaged: list[str] = Field(
        default_factory=list,
        description="The fields whose stored value could not be read (they are null); empty for an intact event",
        examples=[["lr_after"]],
    )


class EventPage(BaseModel):
    run: str
    events: list[EventOut]


class AuditPage(BaseModel):
    """A page of the admin trail: token creations, rotations, revocations and changes."""

    events: list[EventOut]


RunPattern = Annotated[str, Field(pattern=r"^[A-Za-z0-9._*?-]{1,128}$", examples=["vision-*"])]
"""A run-name glob: a run name's characters, with `*` (any characters) and `?` (any one)."""
Patterns = Annotated[list[RunPattern], Field(min_length=1, max_length=32)]
TokenName = Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=NO_CONTROL), Printable]


class TokenOut(BaseModel):
    """A token as administrators see it: never its secret."""

    name: str
    scope: Scope
    runs: list[str] | None = Field(description="The run-name patterns it reaches; null: every run")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Noted at most once a minute")
    revoked_at: datetime | None
    previous_until: datetime | None = Field(
        description="After a rotation: until when the replaced secret is still accepted"
    )


class TokenCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "vision-ci",
                    "scope": "write",
                    "runs": ["vision-*"],
                    "expires_in_days": 90,
                    "reason": "CI of the vision team",
                }
            ]
        },
    )

    name: TokenName
    scope: Scope = "write"
    runs: Patterns | None = Field(None, description="Run-name patterns it reaches; none: every run")
    expires_in_days: Annotated[int, Field(ge=1, le=36_500), WholeNumber] | None = None
    reason: Reason | None = None


class TokenSecret(BaseModel):
    """A token and its secret, which is shown this once: only its SHA-256 is stored."""

    token: TokenOut
    secret: str


class TokenRotate(Strict):
    grace_seconds: Annotated[int, Field(ge=0, le=30 * 86_400), WholeNumber] = Field(
        3600, description="How long the replaced secret still works"
    )
    reason: Reason | None = None


class TokenChange(Strict):
    """Change a token's scope, the runs it reaches (`every_run` lifts its patterns), or its expiry."""

    scope: Scope | None = None
    runs: Patterns | None = None
    every_run: bool = False
    expires_in_days: Annotated[int, Field(ge=1, le=36_500), WholeNumber] | None = None
    never_expires: bool = False
    reason: Reason | None = None


class TokenRevoke(Strict):
    reason: Reason | None = None


class VerifyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ok": True, "count": 3, "first_bad_seq": None}]}
    )

    ok: bool
    count: int
    first_bad_seq: int | None = None


class FieldProblem(BaseModel):
    loc: list[str | int]
    field: str = Field(examples=["schedule.step_size"])
    msg: str = Field(examples=["Input should be greater than or equal to 1, got 0"])


class ProblemOut(BaseModel):
    """RFC 9457 problem details, as every 4xx and 5xx answer carries them."""

    type: str = Field(examples=["urn:lrtower:problem:invalid"])
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None
    high_water: int | None = Field(None, description="On 409: the run's highest served step")
    attempt: int | None = Field(None, description="On 409 for an attempt a rewind ended: the current attempt")
    step: int | None = Field(None, description="On 422 for a step without a value: that step")
    max_step: int | None = Field(
        None, description="On 422 for a step out of reach: the highest step one request may serve now"
    )
    retry_after: int | None = Field(None, description="On 429: seconds to wait, as in Retry-After")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all problem+json."""
    return {
        status: {
            "model": ProblemOut,
            "content": {"application/problem+json": {}},
            "description": PROBLEM_TITLES[status],
        }
        for status in statuses
    }


PROBLEM_TITLES = {
    401: "Missing or unknown bearer token",
    403: "The token's scope does not allow this",
    404: "No such run",
    409: "Conflicts with the run's history (the high-water mark) or its definition",
    413: "Request body too large",
    429: "Over the token's rate of writes or run creations: retry after `Retry-After` seconds",
    422: "Invalid request: every bad field is named",
    503: "The database is unreachable or busy (or, for /readyz, not migrated): retry shortly",
}
