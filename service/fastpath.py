"""The hot path: `GET /runs/{run}/lr`, answered at the ASGI level.

Every rank of every job asks for its LR at every step, so this one call skips FastAPI's
per-request machinery (routing, dependency graph, validation models, the thread pool):

- it parses the query itself (`step=N`, or `start`, `stop` and `stride`), and checks a token
  only against the tokens cache;
- it answers from the memory of `Runs` when every step asked is at or below the mark this
  process knows, and otherwise goes to the database in a worker thread;
- it writes the JSON (or text) itself, and keeps the bytes of what it sent in a cache bounded
  in size: a served step never changes, so the same question (the other ranks of a job asking
  for the same step or window) gets the same bytes without computing them again.

Anything it does not handle exactly as the route would is passed on untouched to the FastAPI
app behind it, which answers: other paths and methods, other or malformed parameters, a token
not in the cache, a missing or wrong token, an unknown run, a step without a value, a database
error. Passing on is always safe, because serving is idempotent: the route then redoes the work
and answers the problem+json. The route stays declared in FastAPI, so OpenAPI describes it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import Tokens
from .observability import FROM_DATABASE, FROM_MEMORY, FROM_SENT, HOT_LATENCY, HOT_OK, SERVED_STEPS
from .routes.runs import MAX_POINTS
from .runs import Runs
from .schedules import STEP_MAX
from .timeline import Answer

JSON_HEADERS = [(b"content-type", b"application/json")]
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
RANGE_KEYS = {b"start", b"stop", b"stride"}
FLUSH_SECONDS = 0.25


class LrFastPath:
    """ASGI middleware answering `GET /runs/{run}/lr` in the common cases; see the module doc."""

    def __init__(self, app: ASGIApp, runs: Runs, tokens: Tokens | None, cache_bytes: int = 64 << 20) -> None:
        self.app = app
        self.runs = runs
        self.tokens = tokens
        # path?query (and the kind asked) -> the body sent; oldest out beyond cache_bytes. Keys
        # are bytes, not tuples: the garbage collector does not walk them, however many there are.
        self._sent: dict[bytes, bytes] = {}
        self._sent_bytes = 0
        self._cache_bytes = cache_bytes
        # Answered, from the bytes sent, from memory, from the database, steps: see flush().
        self._counts = [0, 0, 0, 0, 0]
        self._flush_due = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.endswith("/lr"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            answer = await self._answer(scope, path)
        except Exception:  # the route answers it, as a problem if it is one
            answer = None
        if answer is None:
            await self.app(scope, receive, send)
            return
        await _send(send, *answer)  # once sending has begun, errors are the server's to see
        HOT_LATENCY.observe(time.perf_counter() - started)
        self._counts[0] += 1
        if not self._flush_due:
            # Counters add up here and reach Prometheus at most a quarter second later: a lock
            # per increment would cost the hot path more than all the rest of its bookkeeping.
            self._flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the hot path's counts to the Prometheus counters."""
        ok, sent, memory, database, steps = self._counts
        self._counts[:] = [0, 0, 0, 0, 0]
        self._flush_due = False
        for counter, count in (
            (HOT_OK, ok),
            (FROM_SENT, sent),
            (FROM_MEMORY, memory),
            (FROM_DATABASE, database),
        ):
            if count:
                counter.inc(count)
        if steps:
            SERVED_STEPS.inc(steps)

    async def _answer(self, scope: Scope, path: str) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The body and headers to answer with, or None to let the route answer."""
        name = path[len("/runs/") : -len("/lr")]
        if not path.startswith("/runs/") or not name or "/" in name:
            return None
        asked = _steps(scope["query_string"])
        if asked is None:
            return None
        steps, single = asked
        headers = dict(scope["headers"])
        if self.tokens is not None:
            caller = self.tokens.cached(headers.get(b"authorization", b"").decode("latin-1"))
            if caller is None or not caller.allows("read"):
                return None
        text = single and b"text/plain" in headers.get(b"accept", b"")
        key = b"%s?%s%s" % (path.encode(), scope["query_string"], b"|text" if text else b"")
        counts = self._counts
        body = self._sent.get(key)
        if body is not None:
            counts[1] += 1
        else:
            answers = self.runs.from_memory(name, steps)
            if answers is not None:
                counts[2] += 1
            else:
                answers = await anyio.to_thread.run_sync(self.runs.serve_from_database, name, steps)
                counts[3] += 1
            if not single:
                body = _range(name, answers)
            elif text:
                body = repr(answers[0].lrs[0]).encode()
            else:
                body = _one(name, answers[0])
            self._keep(key, body)
        counts[4] += len(steps)
        extra = [(b"x-request-id", headers[b"x-request-id"])] if b"x-request-id" in headers else []
        return body, [*(TEXT_HEADERS if text else JSON_HEADERS), *extra]

    def _keep(self, key: bytes, body: bytes) -> None:
        if key in self._sent or len(body) > self._cache_bytes // 16:
            return  # kept already (two asked at once); or a large range, which would crowd out the rest
        self._sent[key] = body
        self._sent_bytes += len(body)
        while self._sent_bytes > self._cache_bytes:
            self._sent_bytes -= len(self._sent.pop(next(iter(self._sent))))


def _steps(query: bytes) -> tuple[range, bool] | None:
    """The steps asked, and whether as one `step=N` (else `start`, `stop` and optionally
    `stride`); None for anything else (the route validates it and explains)."""
    if query.startswith(b"step=") and b"&" not in query:
        digits = query[5:]
        if digits.isdigit() and len(digits) <= 17 and int(digits) <= STEP_MAX:
            step = int(digits)
            return range(step, step + 1), True
        return None
    values: dict[bytes, int] = {}
    for part in query.split(b"&"):
        key, _, digits = part.partition(b"=")
        if key not in RANGE_KEYS or key in values or not digits.isdigit() or len(digits) > 17:
            return None
        values[key] = int(digits)
    start, stop, stride = values.get(b"start"), values.get(b"stop"), values.get(b"stride", 1)
    if start is None or stop is None or not 0 <= start < stop <= STEP_MAX or not 1 <= stride <= STEP_MAX:
        return None
    steps = range(start, stop, stride)
    return (steps, False) if len(steps) <= MAX_POINTS else None


def _floats(values: list[float]) -> str:
    # repr is the shortest text that reads back as the same double: what json.dumps writes.
    return "[" + ",".join([repr(v) for v in values]) + "]"


def _one(run: str, answer: Answer) -> bytes:
    # `run` needs no JSON escaping: it names a run that exists, and run names are [A-Za-z0-9._-].
    lrs = answer.lrs
    lr = repr(lrs[0])
    momentum = "null" if answer.momentum is None else _floats(answer.momentum)
    return (
        f'{{"run":"{run}","step":{answer.step},"lr":{lr},'
        f'"lrs":{"[" + lr + "]" if len(lrs) == 1 else _floats(lrs)},"momentum":{momentum}}}'
    ).encode()


def _range(run: str, answers: list[Answer]) -> bytes:
    several = len(answers[0].lrs) > 1
    cycled = all(a.momentum is not None for a in answers)
    lrs = "[" + ",".join([_floats(a.lrs) for a in answers]) + "]" if several else "null"
    momentum = "[" + ",".join([_floats(a.momentum or []) for a in answers]) + "]" if cycled else "null"
    return (
        f'{{"run":"{run}","steps":[{",".join([str(a.step) for a in answers])}],'
        f'"lr":{_floats([a.lrs[0] for a in answers])},"lrs":{lrs},"momentum":{momentum}}}'
    ).encode()


async def _send(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": 200,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
