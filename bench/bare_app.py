"""The baseline of bench/hotpath.py: a bare ASGI app answering a constant JSON body of the lr
endpoint's shape, with nothing else."""

from __future__ import annotations

from typing import Any

BODY = b'{"run":"bench","step":10,"lr":0.09999975326,"lrs":[0.09999975326],"momentum":null}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
