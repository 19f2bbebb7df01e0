"""Faults (503s, lost answers, refused connections) injected into a client's requests by an
`httpx.MockTransport` that answers or raises by itself, or forwards to the real server first."""

from __future__ import annotations

from typing import Any

import httpx

LOST = "lost"  # forward to the server, then lose its answer (ReadTimeout)
REFUSED = "refused"  # raise ConnectError without reaching the server
Fault = int | str | None  # an int: answer this status without reaching the server; None: forward


def problem(status: int) -> dict[str, Any]:
    """A problem document for `status`, the body of an answer injected without the server."""
    return {
        "type": "urn:test:problem",
        "title": f"Title {status}",
        "status": status,
        "detail": f"detail {status}",
    }


class Flaky:
    """Forwards every request to a real server, except that the faults planned for a
    (method, path) are injected first, one per request. Records every request it sees."""

    def __init__(self, plan: dict[tuple[str, str], list[Fault]] | None = None) -> None:
        self.plan = {key: list(faults) for key, faults in (plan or {}).items()}
        self.seen: list[httpx.Request] = []

    def requests(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.method == method and r.url.path == path]

    def _fault(self, request: httpx.Request) -> Fault | None:
        self.seen.append(request)
        faults = self.plan.get((request.method, request.url.path))
        fault = faults.pop(0) if faults else None
        if fault == REFUSED:
            raise httpx.ConnectError("connection refused (injected)", request=request)
        return fault

    @staticmethod
    def _copy(response: httpx.Response) -> httpx.Response:
        hop = {"content-length", "content-encoding", "transfer-encoding"}
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in hop]
        return httpx.Response(response.status_code, headers=headers, content=response.content)

    def sync(self, real: httpx.HTTPTransport) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            fault = self._fault(request)
            if isinstance(fault, int):
                return httpx.Response(fault, json=problem(fault))
            response = real.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
            if fault == LOST:
                raise httpx.ReadTimeout("the answer was lost (injected)", request=request)
            return self._copy(response)

        return httpx.MockTransport(handler)

    def async_(self, real: httpx.AsyncHTTPTransport) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            fault = self._fault(request)
            if isinstance(fault, int):
                return httpx.Response(fault, json=problem(fault))
            response = await real.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
            if fault == LOST:
                raise httpx.ReadTimeout("the answer was lost (injected)", request=request)
            return self._copy(response)

        return httpx.MockTransport(handler)
