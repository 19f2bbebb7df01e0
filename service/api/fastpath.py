"""The hot path: `GET /runs/{run}/lr`, answered at the ASGI level.

Every rank of every job asks for its LR at every step, so this one call skips FastAPI's
per-request machinery (routing, dependency graph, validation models, the thread pool):

- it parses the query with the route's own parser (wire.py), and checks a token only against
  the tokens cache;
- it answers on the event loop only what is cheap: the bytes already sent, or a few steps at or
  below the mark this process knows. Anything else (a step above the mark, a long range, a costly
  schedule) is served by `Serving` in a worker thread, so that no request stalls the others;
- it writes the JSON (or text) as the route does (wire.py), and keeps the bytes of what it sent in a cache bounded
  by what its entries really hold: a served step never changes, so the same question (the other
  ranks of a job asking for the same step or window) gets the same bytes without computing them.

Anything it does not handle exactly as the route would is passed on untouched to the FastAPI
app behind it, which answers: other paths and methods, a malformed query, a token not in the
cache, a missing or wrong token or scope, an unknown run, a step without a value or out of
reach, a database error. Passing on is always safe, because serving is idempotent: the route
then redoes the work and answers the problem+json. The route stays declared in FastAPI, so
OpenAPI describes it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.auth import Tokens
from ..core.problems import Problem
from ..core.serving import LOOP_WORK, Served, Serving
from .headers import read_headers, request_id
from .observability import FROM_DATABASE, FROM_MEMORY, FROM_SENT, HOT_LATENCY, HOT_OK, SERVED_STEPS
from .wire import JSON, TEXT, answer_body, answer_headers, asked_steps, wants_text

JSON_HEADERS = [(b"content-type", JSON.encode())]
TEXT_HEADERS = [(b"content-type", TEXT.encode())]
FLUSH_SECONDS = 0.25
ENTRY_BYTES = 160
"""What one kept answer costs beyond its key and body (two bytes objects and a dict slot),
measured with tracemalloc at 118 bytes, rounded up for the allocator."""


class LrFastPath:
    """ASGI middleware answering `GET /runs/{run}/lr` in the common cases; see the module doc."""

    def __init__(
        self, app: ASGIApp, serving: Serving, tokens: Tokens | None, cache_bytes: int = 64 << 20
    ) -> None:
        self.app = app
        self.serving = serving
        self.tokens = tokens
        # run and steps asked (and the kind asked) -> the body sent; oldest out beyond cache_bytes.
        # Keys are bytes, not tuples: the garbage collector does not walk them, however many.
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
        try:
            asked = asked_steps(scope["query_string"])
        except Problem:
            return None  # the route refuses it, and explains
        steps = asked.steps
        headers = read_headers(scope["headers"])
        if headers.authorization_twice:
            return None  # the route refuses it
        consume = True
        if self.tokens is not None:
            caller = self.tokens.cached((headers.authorization or b"").decode("latin-1"))
            if caller is None or not caller.allows("read") or not caller.reaches(name):
                return None  # the route refuses it: 401, 403, or 404 outside the token's reach
            consume = caller.allows("write")
        text = wants_text(asked, headers.accept)
        # An answer belongs to an attempt: the bytes kept are looked up under the attempt this
        # process holds (a rewind here drops its copy, so no older answer is found again).
        held = self.serving.held(name)
        if asked.attempt is not None and (held is None or asked.attempt != held.attempt):
            return None  # the route answers an earlier attempt's shared steps, or its 409
        counts = self._counts
        body = None if held is None else self._sent.get(_key(name, held.attempt, steps, text))
        if body is not None and held is not None:
            counts[1] += 1
            attempt, divergence = held.attempt, held.divergence
        else:
            compiled = self.serving.known(name, steps, asked.attempt)
            if (
                compiled is not None
                and compiled.timeline.work(len(steps)) <= LOOP_WORK
                and not compiled.timeline.has_products
            ):
                served = Served(compiled.attempt, compiled.timeline.over(steps), compiled.divergence)
                counts[2] += 1
            else:
                # New steps, cheap to compute, of a run held here: no worker thread, only the
                # group commit's wait. Anything else is served in a thread.
                found = await self.serving.serve_on_loop(name, steps, asked.attempt) if consume else None
                if found is None:
                    found = await anyio.to_thread.run_sync(
                        self.serving.serve, name, steps, consume, asked.attempt
                    )
                served = found
                counts[3] += 1
            attempt, divergence = served.attempt, served.divergence
            body = answer_body(name, attempt, asked, served.answers, text)
            self._keep(_key(name, attempt, steps, text), body)
        counts[4] += len(steps)
        tagged = (b"x-request-id", request_id(headers.request_id))
        if not text and divergence is None:
            return body, [*JSON_HEADERS, tagged]  # the usual answer: no call to build the others
        return body, [
            *(TEXT_HEADERS if text else JSON_HEADERS),
            *answer_headers(attempt, divergence, text),
            tagged,
        ]

    def _keep(self, key: bytes, body: bytes) -> None:
        size = len(key) + len(body) + ENTRY_BYTES
        if key in self._sent or size > self._cache_bytes // 16:
            return  # kept already (two asked at once); or a large range, which would crowd out the rest
        self._sent[key] = body
        self._sent_bytes += size
        while self._sent_bytes > self._cache_bytes:
            oldest = next(iter(self._sent))
            self._sent_bytes -= len(oldest) + len(self._sent.pop(oldest)) + ENTRY_BYTES


def _key(name: str, attempt: int, steps: range, text: bool) -> bytes:
    return b"%s|%d|%d|%d|%d%s" % (
        name.encode(),
        attempt,
        steps.start,
        steps.stop,
        steps.step,
        b"|t" if text else b"",
    )


async def _send(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": 200,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
