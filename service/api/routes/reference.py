"""/docs and /redoc: the API reference, from files the package ships (static/vendor/), so that it
renders on a cluster with no way out to the internet; and the console's own scripts (/static)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STATIC = StaticFiles(packages=[("lrtower_server.api", "static")])
"""The console's scripts and the vendored front-end files (static/vendor/VENDORED.md)."""

SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lrtower API</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script></body></html>"""
REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lrtower API</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/static/vendor/redoc.standalone.js"></script></body></html>"""


OWN_FILES_ONLY = {
    # The pages, their scripts, styles, images and workers come from this server alone: a
    # reference in a bundle to another host (Redoc's footer logo) is refused by the browser, not
    # fetched.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
}


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER, headers=OWN_FILES_ONLY)


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC, headers=OWN_FILES_ONLY)
