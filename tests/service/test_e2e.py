"""A real `lrtower serve` process on a free port, talked to with httpx and with curl."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest


def test_serve_applies_migrations_and_answers(server: str) -> None:
    spec = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
    created = httpx.post(f"{server}/runs", json={"name": "e2e", "lr": 0.1, "schedule": spec})
    assert created.status_code == 201
    assert httpx.get(f"{server}/runs/e2e/lr", params={"step": 25}).json()["lr"] == 0.025


@pytest.mark.slow
def test_curl_reads_an_lr_as_text_and_a_problem_as_json(server: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl on this machine")
    spec = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
    assert httpx.post(f"{server}/runs", json={"name": "e2e", "lr": 0.1, "schedule": spec}).status_code == 201
    as_text = subprocess.run(
        [curl, "-sf", "-H", "Accept: text/plain", f"{server}/runs/e2e/lr?step=10"],
        capture_output=True,
        check=True,
    )
    assert as_text.stdout.decode() == "0.05"
    problem = subprocess.run(
        [curl, "-s", "-i", f"{server}/runs/e2e/lr?step=-3"], capture_output=True, check=True
    )
    head, _, body = problem.stdout.decode().partition("\r\n\r\n")
    assert " 422 " in head.splitlines()[0] and "application/problem+json" in head
    assert json.loads(body)["errors"][0]["field"] == "query.step"


def test_openapi_describes_every_call(server: str) -> None:
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    for path in (
        "/runs",
        "/runs/{run}",
        "/runs/{run}/lr",
        "/runs/{run}/curve",
        "/schedules/preview",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
