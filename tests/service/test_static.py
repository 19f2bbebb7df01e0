"""The API reference and the console's scripts come from the package, never from another host,
and console pages are sent with a Content-Security-Policy that allows only the server's own
scripts."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files

from fastapi.testclient import TestClient

VENDOR = files("lrtower_server.api") / "static" / "vendor"


def test_the_vendored_files_are_the_recorded_ones() -> None:
    recorded = re.findall(
        r"\| `([^`]+)` \| ([\w.-]+) [^|]*\| ([\d.]+) \|[^|]*\| ([0-9a-f]{64}) \|",
        (VENDOR / "VENDORED.md").read_text(),
    )
    assert {name for name, *_ in recorded} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "redoc.standalone.js",
        "uPlot.iife.min.js",
        "uPlot.min.css",
    }
    for name, _, _, digest in recorded:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_docs_and_redoc_name_no_other_host(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/static/") for s in sources), sources
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200 and asset.content, source
    assert "jsdelivr" not in client.get("/docs").text and "googleapis" not in client.get("/redoc").text


def test_console_pages_allow_only_their_own_scripts(client: TestClient) -> None:
    client.post("/runs", json={"name": "r", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 3}})
    for path in ("/ui/runs", "/ui/runs/r", "/ui/playground", "/ui/login"):
        page = client.get(path)
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert (
            page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        )
        assert "<script>" not in page.text, path  # no inline script: every one is a file of the server's
        for source in re.findall(r'<script src="([^"]+)"', page.text):
            assert source.startswith("/static/") and client.get(source).status_code == 200, (path, source)
