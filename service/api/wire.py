"""The wire format of `GET /runs/{run}/lr` and `/curve`, for the hot path and the routes alike: the
query's one strict parser, and the answer's bytes, so that the two paths cannot differ.

The answers are written here, not by pydantic: the hot path writes them for nearly every request,
and a template of known parts is several times faster than a model (`LrOut`, `RangeOut` and
`LrAnswer` in schemas.py describe them in OpenAPI). Floats are `repr`, the shortest text that
reads back as the same double, as `json.dumps` writes them.

A step is a number as JSON writes it, with a whole value: `5`, `5.0` or `5e3`, exactly what an
integer field of a body takes (`schedules.base.whole_number`), so that body and query agree and
both match JSON Schema's `integer`. Python's `int()`, and so FastAPI's own query parsing, also
reads `5_0` as 50 and accepts `+5`, ` 5` or full-width digits: a typo would then serve (and
freeze) steps nobody meant, so those are refused, as is a fraction. A parameter given twice is
refused rather than resolved one way here and another way there. Every other integer of a query
(`limit`, `after`, the console's) is read by the same rule (`QueryInt`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import BeforeValidator
from starlette.datastructures import QueryParams

from ..core.problems import Invalid
from ..core.timeline import Answer
from ..schedules import STEP_MAX, FieldError

MAX_POINTS = 100_000
"""The most steps one range request may ask for."""
STEP_KEYS = ("step", "start", "stop", "stride", "attempt")
_DECIMAL = re.compile(r"[0-9]{1,16}")  # STEP_MAX = 2**53 has 16 digits
_NUMBER = re.compile(r"-?[0-9]+(?P<float>(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)")
"""JSON's number, leading zeros allowed."""
_LONGEST_NUMBER = 64


def whole_number(text: str) -> int | None:
    """The integer `text` writes as a JSON number with no fraction (`5`, `5.0`, `5e3`), or None.

    A number with a fraction or an exponent is read as a double, as a JSON body's is, so that
    both round alike; plain digits are read exactly."""
    if _DECIMAL.fullmatch(text):  # the usual case, first
        return int(text)
    number = _NUMBER.fullmatch(text) if len(text) <= _LONGEST_NUMBER else None
    if number is None:
        return None
    if not number.group("float"):
        return int(text)
    value = float(text)
    return int(value) if value.is_integer() else None


def integer_text(value: Any) -> Any:
    """A query's or a form's text as the integer `whole_number` reads in it; ValueError if none."""
    if not isinstance(value, str):
        return value
    number = whole_number(value)
    if number is None:
        raise ValueError("must be a whole number written in digits (`5`, `5.0` or `5e3`)")
    return number


QueryInt = BeforeValidator(integer_text)
"""Makes an integer query parameter read by `whole_number`; place it after `Query(...)`."""


class Asked(NamedTuple):
    """What a query asks (a tuple: the hot path makes one per request)."""

    steps: range
    single: bool
    """Asked as `step=N` (one answer), not as a range."""
    attempt: int | None = None
    """The attempt the caller is pinned to (`attempt=N`), if any (SPEC §4.10)."""


def parse_step_query(items: Sequence[tuple[str, str]], default_range: range | None = None) -> Asked:
    """The steps a query asks for: `step=N`, or `start`, `stop` and an optional `stride`.

    `default_range` gives `start` and `stop` defaults and forbids `step` (`/curve`). Parameters
    other than these four are ignored, as by every other route. Raises `Invalid` naming the field.
    """
    values: dict[str, int] = {}
    errors: list[FieldError] = []
    for key, text in items:
        if key not in STEP_KEYS:
            continue
        if key in values or any(e.loc == ("query", key) for e in errors):
            errors.append(FieldError(("query", key), "given more than once: give each parameter once"))
            continue
        number = whole_number(text)
        low = 1 if key in ("stride", "attempt") else 0
        if number is None or not low <= number <= STEP_MAX:
            shown = text if len(text) <= 40 else text[:40] + "..."
            errors.append(
                FieldError(("query", key), f"must be a whole number from {low} to {STEP_MAX}, got {shown!r}")
            )
            continue
        values[key] = number
    if errors:
        raise Invalid("the query is invalid", errors)
    attempt = values.pop("attempt", None)
    if default_range is None and "step" in values:
        if values.keys() & {"start", "stop", "stride"}:
            raise Invalid(
                "give `step`, or `start` and `stop`, not both",
                [FieldError(("query", "step"), "not together with start, stop or stride")],
            )
        step = values["step"]
        return Asked(range(step, step + 1), True, attempt)
    if default_range is not None and "step" in values:
        raise Invalid("this call takes a range", [FieldError(("query", "step"), "give start and stop")])
    start = values.get("start", default_range.start if default_range else None)
    stop = values.get("stop", default_range.stop if default_range else None)
    return Asked(steps_of(start, stop, values.get("stride", 1)), False, attempt)


def asked_steps(query: bytes) -> Asked:
    """The steps a raw query string asks for (`parse_step_query`), with `step=N` alone or
    `step=N&attempt=M`, the usual queries, read without parsing the whole query."""
    if query.startswith(b"step="):
        digits, pinning, pinned = query[5:].partition(b"&attempt=")
        if (
            digits.isdigit()  # ASCII digits only
            and len(digits) <= 16
            and int(digits) <= STEP_MAX
            and (not pinning or (pinned.isdigit() and len(pinned) <= 16 and 1 <= int(pinned) <= STEP_MAX))
        ):
            step = int(digits)
            return Asked(range(step, step + 1), True, int(pinned) if pinned else None)
    return parse_step_query(QueryParams(query.decode("latin-1")).multi_items())


def steps_of(start: int | None, stop: int | None, stride: int, where: str = "query") -> range:
    """[start, stop) by stride, at most MAX_POINTS points; errors name fields `where` (the query,
    or the body of a preview)."""
    if start is None or stop is None:
        missing = "start" if start is None else "stop"
        raise Invalid("give `step`, or `start` and `stop`", [FieldError((where, missing), "required")])
    if stop <= start:
        raise Invalid(
            "`stop` must be above `start`", [FieldError((where, "stop"), f"must be > start ({start})")]
        )
    steps = range(start, stop, stride)
    if len(steps) > MAX_POINTS:
        raise Invalid(
            f"a range holds at most {MAX_POINTS} points, this one {len(steps)}",
            [FieldError((where, "stop"), f"at most {MAX_POINTS} points per request")],
        )
    return steps


STEP_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1 if name in ("stride", "attempt") else 0,
            "maximum": STEP_MAX,
        },
        "description": description,
    }
    for name, description in (
        ("step", "One step: the answer is that step's LR. A whole number: `5`, `5.0` or `5e3`."),
        ("start", "The first step of a range (with `stop`)."),
        ("stop", f"The end of a range, excluded; at most {MAX_POINTS} points."),
        ("stride", "Every stride-th step of the range (default 1)."),
        (
            "attempt",
            "The attempt the caller runs in: if a rewind started a newer one, steps above the "
            "rewind answer 409 naming it, instead of the new attempt's LR.",
        ),
    )
]
"""The OpenAPI description of the query `parse_step_query` reads."""


JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def wants_text(asked: Asked, accept: bytes) -> bool:
    """Whether `/lr` answers as text: one step, with `Accept` asking `text/plain`."""
    return asked.single and b"text/plain" in accept


def answer_body(run: str, attempt: int, asked: Asked, answers: list[Answer], text: bool) -> bytes:
    """The body of `/lr`'s answer: one step as JSON (`LrOut`), or as text (`wants_text`; its
    attempt goes in the ATTEMPT_HEADER), or a range (`RangeOut`)."""
    if not asked.single:
        return range_body(run, answers, attempt)
    if text:
        return repr(answers[0].lrs[0]).encode()
    return one_body(run, attempt, answers[0])


ATTEMPT_HEADER = b"lrtower-attempt"
"""The attempt of an answer given as text, which has no field to name it."""
DIVERGENCE_HEADER = b"lrtower-divergence"
"""On every `/lr` answer of a run where a rank ran other LRs than the tower served (a fallback
report found a divergence): the seq of the latest such `fallback` event, so that every rank can
warn. A header, not a field: kept answers are bytes, and the divergence may come after them."""


def answer_headers(attempt: int, divergence: int | None, text: bool) -> list[tuple[bytes, bytes]]:
    """The headers of `/lr`'s answer besides its content type: the attempt of a text answer, and
    the run's divergence if it has one."""
    headers = [(ATTEMPT_HEADER, b"%d" % attempt)] if text else []
    if divergence is not None:
        headers.append((DIVERGENCE_HEADER, b"%d" % divergence))
    return headers


def _floats(values: list[float]) -> str:
    return "[" + ",".join([repr(v) for v in values]) + "]"


def one_body(run: str, attempt: int, answer: Answer) -> bytes:
    """One step's answer (`LrOut`). `run` needs no JSON escaping: it names a run that exists,
    and run names are [A-Za-z0-9._-]."""
    lrs = answer.lrs
    lr = repr(lrs[0])
    momentum = "null" if answer.momentum is None else _floats(answer.momentum)
    return (
        f'{{"run":"{run}","attempt":{attempt},"step":{answer.step},"lr":{lr},'
        f'"lrs":{"[" + lr + "]" if len(lrs) == 1 else _floats(lrs)},"momentum":{momentum}}}'
    ).encode()


def range_body(run: str, answers: list[Answer], attempt: int | None) -> bytes:
    """A range's answer (`RangeOut`): `lrs` only with several groups, `momentum` only where the
    schedule cycles it at every step. `run` as in `one_body`; a preview has neither a run (its
    is empty) nor an attempt."""
    several = len(answers[0].lrs) > 1
    cycled = all(a.momentum is not None for a in answers)
    lrs = "[" + ",".join([_floats(a.lrs) for a in answers]) + "]" if several else "null"
    momentum = "[" + ",".join([_floats(a.momentum or []) for a in answers]) + "]" if cycled else "null"
    return (
        f'{{"run":"{run}","attempt":{"null" if attempt is None else attempt},'
        f'"steps":[{",".join([str(a.step) for a in answers])}],'
        f'"lr":{_floats([a.lrs[0] for a in answers])},"lrs":{lrs},"momentum":{momentum}}}'
    ).encode()
