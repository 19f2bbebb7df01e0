"""uvicorn's HTTP protocol (httptools), with a deadline for reading each request.

uvicorn bounds how long an idle keep-alive connection stays open, but not how long a request
may take to arrive: a client that sends a header byte every few seconds holds its connection,
and its share of the server's file descriptors and memory, for good. Fifty such clients stayed
open for as long as anyone watched. Here every request must arrive whole (headers and body)
within LRTOWER_READ_TIMEOUT seconds of its first byte, or of the connection's opening; else the
connection is closed, with a 408 problem if no answer had begun.

The deadline is one timer per request, armed at its first byte and cancelled when its last
arrives: nothing runs per byte.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..core.config import Settings
from ..core.problems import TYPE_BASE
from .errors import PROBLEM_JSON


@cache
def _seconds() -> float:
    # Read once per process: uvicorn makes one protocol object per connection.
    return Settings().read_timeout


def _timeout_answer(seconds: float) -> bytes:
    body = json.dumps(
        {
            "type": TYPE_BASE + "request-timeout",
            "title": "Request timeout",
            "status": 408,
            "detail": f"the request did not arrive whole within {seconds:g} s (LRTOWER_READ_TIMEOUT)",
        }
    ).encode()
    head = (
        f"HTTP/1.1 408 Request Timeout\r\ncontent-type: {PROBLEM_JSON}\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class ReadDeadline(HttpToolsProtocol):
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is bounded too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # the next request of a kept-alive connection
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._timer = self.loop.call_later(_seconds(), self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no answer begun for this request
            self.transport.write(_timeout_answer(_seconds()))
        self.transport.close()
