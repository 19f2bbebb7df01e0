"""What `Client` and `AsyncClient` share: configuration, retries, and reading answers.

Sending is the only thing they do differently. Each asks `Core.settle` what an attempt came to:
a result, an error to raise, or a pause before the next attempt.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx

from . import __version__
from ._calls import Call
from .errors import ServerUnreachable, UnreadableAnswer, api_error

T = TypeVar("T")
log = logging.getLogger("lrtower")
HTTP_LOGGERS = ("httpx", "httpcore")
"""httpx logs every request at INFO ("HTTP Request: POST ..."), and httpcore its connections."""


class Unset:
    """The type of `UNSET`: an argument not given, as opposed to one given as None."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Only these answers are transient: anything else would fail the same way again.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """Retry policy: up to `retries` more attempts after the first, after exponential backoff
    with full jitter (a random pause up to `backoff * 2**attempt`, at most `max_backoff`), or
    after what the server's Retry-After asks, within `max_backoff`."""

    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0

    def pause(self, attempt: int, response: httpx.Response | None) -> float:
        asked = _retry_after(response)
        if asked is not None:
            return min(asked, self.max_backoff)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:  # absent, or an HTTP date: fall back to backoff
        return None


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds, then send the call again."""

    seconds: float


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T


class Core:
    """The configuration of a client, and the rules that turn attempts into results."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        timeout: float | httpx.Timeout | Unset | None,
        retry: Retry,
    ) -> None:
        self.url = (url or os.environ.get("LRTOWER_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("LRTOWER_TOKEN")
        self.headers = {"accept": "application/json", "user-agent": f"lrtower-client/{__version__}"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.timeout = DEFAULT_TIMEOUT if isinstance(timeout, Unset) else httpx.Timeout(timeout)
        self.retry = retry
        quiet_http_logs()

    def http_options(self) -> dict[str, Any]:
        """Arguments for the httpx client (sync or async) that sends the calls."""
        return {"base_url": self.url, "headers": self.headers, "timeout": self.timeout}

    def request_options(self, call: Call[Any]) -> dict[str, Any]:
        options = {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.json,
            "headers": call.headers,
        }
        if call.timeout is not None:
            options["timeout"] = call.timeout
        return options

    def settle(
        self, call: Call[T], attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> Answer[T] | Pause:
        """What attempt number `attempt` (from 0) of `call` came to; raises when it failed for good."""
        more = call.retry and attempt < self.retry.retries
        if isinstance(outcome, httpx.TransportError):
            if more:
                pause = self.retry.pause(attempt, None)
                log.debug("%s %s: %s; retrying in %.2fs", call.method, call.path, outcome, pause)
                return Pause(pause)
            raise ServerUnreachable(
                f"{call.method} {self.url}{call.path}: {type(outcome).__name__}: {outcome}"
            ) from outcome
        if outcome.status_code in call.ok:
            try:
                return Answer(call.read(outcome))
            except (ValueError, KeyError, TypeError) as exc:
                raise UnreadableAnswer(
                    f"{call.method} {self.url}{call.path}: {outcome.status_code} with a body that is not "
                    f"lrtower's: {outcome.text[:200]!r}"
                ) from exc
        if outcome.status_code in RETRY_STATUSES and more:
            pause = self.retry.pause(attempt, outcome)
            log.debug("%s %s: %d; retrying in %.2fs", call.method, call.path, outcome.status_code, pause)
            return Pause(pause)
        raise api_error(outcome.status_code, _problem(outcome))


def quiet_http_logs() -> None:
    """Set httpx's and httpcore's loggers to WARNING, unless the application has given them a
    level itself (one other than NOTSET). A job under `logging.basicConfig(level=logging.INFO)`
    would otherwise print a line for every request its scheduler sends. The client's own events
    go to the `lrtower` logger."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer; a stand-in built from the status when the body is
    not one (an HTML page from a proxy, say)."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and "title" in problem:
        return problem
    return {
        "type": "about:blank",
        "title": response.reason_phrase,
        "status": response.status_code,
        "detail": response.text[:200],
    }
