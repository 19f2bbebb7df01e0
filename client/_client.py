"""`Client` and `AsyncClient`: every call of the API, over one shared core.

Each API method is declared once, in `_Api`, from its builder in `_calls`. Read through a
`Client` it sends the call and returns the result; through an `AsyncClient` it returns an
awaitable of the same result.

    with Client("http://tower:8000", token="...") as tower:
        tower.create_run("job-1", {"type": "CosineAnnealingLR", "T_max": 10000}, lr=0.1)
        tower.lr("job-1", 0).lr
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from . import _calls
from ._calls import Call
from ._core import UNSET, Answer, Core, Retry, Unset

P = ParamSpec("P")
T = TypeVar("T")


class _Endpoint(Generic[P, T]):
    """An API method: its builder's signature and documentation, sent by whichever client reads it.

    Read on a client, it is that client's method; read on a class (`help(Client)`, an editor's
    `inspect.signature(Client.lr)`), a function with the method's signature: `self`, the
    builder's arguments, and what the method returns there (`LR` on a `Client`,
    `Awaitable[LR]` on an `AsyncClient`), with the builder's documentation."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        built = inspect.signature(build)
        result = str(built.return_annotation).removeprefix("Call[").removesuffix("]")  # Call[LR] -> LR
        self.parameters = list(built.parameters.values())
        self.results = {"sync": result, "async": f"Awaitable[{result}]"}

    def signature(self, owner: type, bound: bool) -> inspect.Signature:
        result = self.results["async" if issubclass(owner, AsyncClient) else "sync"]
        itself = [] if bound else [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        return inspect.Signature([*itself, *self.parameters], return_annotation=result)

    @overload
    def __get__(self, client: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, client: Client | AsyncClient | None, owner: type) -> Any:
        build = self.build
        if client is None:

            def unbound(client: Client | AsyncClient, *args: Any, **kwargs: Any) -> Any:
                return client.send(build(*args, **kwargs))

            return self._named(unbound, owner, bound=False)
        send = client.send

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(build(*args, **kwargs))

        return self._named(method, owner, bound=True)

    def _named(self, method: Callable[..., Any], owner: type, bound: bool) -> Callable[..., Any]:
        method.__name__ = self.build.__name__
        method.__qualname__ = f"{owner.__name__}.{self.build.__name__}"
        method.__doc__ = self.build.__doc__
        method.__signature__ = self.signature(owner, bound)  # type: ignore[attr-defined]
        return method


class _Api:
    create_run = _Endpoint(_calls.create_run)
    list_runs = _Endpoint(_calls.list_runs)
    get_run = _Endpoint(_calls.get_run)
    lr = _Endpoint(_calls.lr)
    lr_range = _Endpoint(_calls.lr_range)
    curve = _Endpoint(_calls.curve)
    post_metric = _Endpoint(_calls.post_metric)
    change_schedule = _Endpoint(_calls.change_schedule)
    scale = _Endpoint(_calls.scale)
    rewind = _Endpoint(_calls.rewind)
    fork = _Endpoint(_calls.fork)
    set_state = _Endpoint(_calls.set_state)
    events = _Endpoint(_calls.events)
    verify = _Endpoint(_calls.verify)
    preview = _Endpoint(_calls.preview)
    ready = _Endpoint(_calls.ready)


class Client(_Api):
    """A client of an lrtower server.

    Args:
        url: the server's base URL; default `$LRTOWER_URL`, else http://127.0.0.1:8000.
        token: the bearer token; default `$LRTOWER_TOKEN`, else none.
        timeout: seconds, or an `httpx.Timeout`; default 10 s (5 s to connect). None waits forever.
        retry: how often and how long to retry connection errors and 408/429/502/503/504
            answers. Every write is idempotent, so writes are retried too.
        transport: an httpx transport, to route requests elsewhere (a test app, a proxy).

    Safe to share between threads, and to use in a child after `fork` (a DataLoader worker):
    the child opens its own connections.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout | Unset | None = UNSET,
        retry: Retry = Retry(),  # noqa: B008  # immutable
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = Core(url, token, timeout, retry)
        self._transport = transport
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return self._core.url

    def _connection(self) -> httpx.Client:
        # After fork, the parent's pooled sockets are not ours to use: open our own.
        if self._http is None or self._pid != os.getpid():
            with self._lock:
                if self._http is None or self._pid != os.getpid():
                    self._http = httpx.Client(transport=self._transport, **self._core.http_options())
                    self._pid = os.getpid()
        return self._http

    def send(self, call: Call[T]) -> T:
        """Send `call`, retrying as the policy allows; return its result or raise an LrtowerError."""
        http = self._connection()
        attempt = 0
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = http.request(
                    **self._core.request_options(call)
                )
            except httpx.TransportError as exc:
                outcome = exc
            settled = self._core.settle(call, attempt, outcome)
            if isinstance(settled, Answer):
                return settled.value
            time.sleep(settled.seconds)
            attempt += 1

    def close(self) -> None:
        if self._http is not None and self._pid == os.getpid():
            self._http.close()
        self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_Api):
    """The asyncio twin of `Client`: the same methods and arguments, awaited. Like httpx's, it
    serves one event loop: the one it is first used in."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout | Unset | None = UNSET,
        retry: Retry = Retry(),  # noqa: B008  # immutable
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = Core(url, token, timeout, retry)
        self._transport = transport
        self._pid = os.getpid()
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return self._core.url

    def _connection(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._pid != os.getpid():
            self._http = httpx.AsyncClient(transport=self._transport, **self._core.http_options())
            self._pid, self._loop = os.getpid(), loop
        elif self._loop is not loop:
            # Its pooled connections live in the first loop, and cannot move.
            raise RuntimeError("an AsyncClient serves the event loop it was first used in: make one per loop")
        return self._http

    async def send(self, call: Call[T]) -> T:
        """Send `call`, retrying as the policy allows; return its result or raise an LrtowerError."""
        http = self._connection()
        attempt = 0
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = await http.request(
                    **self._core.request_options(call)
                )
            except httpx.TransportError as exc:
                outcome = exc
            settled = self._core.settle(call, attempt, outcome)
            if isinstance(settled, Answer):
                return settled.value
            await asyncio.sleep(settled.seconds)
            attempt += 1

    async def aclose(self) -> None:
        if self._http is not None and self._pid == os.getpid():
            await self._http.aclose()
        self._http = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
