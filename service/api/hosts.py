"""The Host allow-list of a server without tokens, against DNS rebinding.

A server without tokens trusts whoever reaches it, which on loopback means this machine's own
users. A web page can still reach it: its attacker's domain re-resolves to 127.0.0.1, and the
browser then sends the page's requests (same-origin, as far as the browser knows) with the
attacker's name in `Host`. Refusing every `Host` not on a list (loopback names by default,
LRTOWER_ALLOWED_HOSTS) closes that door. With tokens, a page has no token to send.

Starlette's TrustedHostMiddleware does the same check but answers text/plain; every 4xx here is
problem+json naming its field, and the check runs before the hot path, once per request, as one
scan of the raw headers and one set lookup.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.problems import Problem
from ..schedules import FieldError
from .errors import problem_response

VERDICTS = 256
"""Host header values whose verdict is kept."""


class AllowedHosts:
    """ASGI middleware: HTTP requests whose `Host` is not allowed get a 400 problem."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        allowed = [host.lower().strip("[]") for host in hosts]
        self.any = "*" in allowed
        self.exact = {host for host in allowed if not host.startswith("*.")}
        self.suffixes = tuple(host[1:] for host in allowed if host.startswith("*."))
        # Host header -> allowed: nearly every request repeats one of a few values.
        self._verdicts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self.any:
            await self.app(scope, receive, send)
            return
        host = b""
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
                break
        allowed = self._verdicts.get(host)
        if allowed is None:
            allowed = self._allows(host)
            if len(self._verdicts) < VERDICTS:  # past the bound, a name is checked anew (cheaply)
                self._verdicts[host] = allowed
        if allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: refused before it is accepted
            await send({"type": "websocket.close", "code": 1008})
            return
        problem = Problem(
            f"this server runs without tokens and answers only to the host names it knows; "
            f"{_name(host) or 'no host'!r} is not one of them (LRTOWER_ALLOWED_HOSTS)",
            [FieldError(("header", "Host"), "not an allowed host name")],
        )
        await problem_response(problem)(scope, receive, send)

    def _allows(self, host: bytes) -> bool:
        name = _name(host)
        return name in self.exact or bool(self.suffixes and name.endswith(self.suffixes))


def _name(header: bytes) -> str:
    """The host name of a Host header, without its port: `[::1]:8000` -> `::1`."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
