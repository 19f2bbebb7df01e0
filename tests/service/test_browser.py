"""The web console in a real headless Chromium (Debian's, driven by Playwright) against a real
`lrtower serve` process. Screenshots are kept in artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from servers import Server

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
STEP = {"type": "StepLR", "step_size": 100, "gamma": 0.5}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None, "the browser tests need Debian's chromium (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console(start_server: Callable[..., Server], browser: Browser) -> Iterator[tuple[str, Page]]:
    url = start_server().url
    body = {
        "name": "vision-1",
        "lr": 0.1,
        "schedule": STEP,
        "plateau": {"patience": 0},
        "labels": {"team": "vision"},
    }
    assert httpx.post(f"{url}/runs", json=body).status_code == 201
    assert httpx.post(f"{url}/runs", json={"name": "nlp-1", "lr": 0.01, "schedule": STEP}).status_code == 201
    httpx.get(f"{url}/runs/vision-1/lr", params={"step": 250})
    httpx.post(f"{url}/runs/vision-1/scale", json={"factor": 0.5, "reason": "loss spikes"})
    httpx.post(f"{url}/runs/vision-1/metrics", json={"step": 300, "value": 1.0})
    httpx.post(f"{url}/runs/vision-1/metrics", json={"step": 301, "value": 2.0})
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield url, page
    page.close()


def test_the_list_then_a_run_with_its_curve_and_markers(
    console: tuple[str, Page], request: pytest.FixtureRequest
) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs")
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    expect(page.locator('tr[data-run="vision-1"]')).to_contain_text("250")
    page.screenshot(path=str(SHOTS / f"runs-{request.node.callspec.id}.png"), full_page=True)

    page.click("text=vision-1")
    expect(page).to_have_url(f"{url}/ui/runs/vision-1")
    expect(page.locator("svg.curve #curve-0")).to_have_count(1)
    expect(page.locator("svg.curve #served")).to_have_count(1)
    markers = page.locator("svg.curve line.marker")
    expect(markers).to_have_count(2)
    expect(markers.first.locator("title")).to_have_text("scale from step 251 by anonymous: loss spikes")
    expect(page.locator("#verify")).to_contain_text("hash chain intact")
    page.screenshot(path=str(SHOTS / f"run-{request.node.callspec.id}.png"), full_page=True)


def test_a_change_made_through_the_form_lands_in_the_audit_trail(console: tuple[str, Page]) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs/vision-1")
    rows = page.locator("#events tbody tr")
    before = rows.count()
    form = page.locator("#scale-form")
    form.locator('input[name="factor"]').fill("0.25")
    form.locator('input[name="reason"]').fill("cool it down")
    form.locator("button").click()
    expect(rows).to_have_count(before + 1)
    expect(rows.last).to_contain_text("cool it down")
    expect(page.locator("svg.curve line.marker")).to_have_count(3)


def test_the_playground_shows_a_bad_field_next_to_the_editor(
    console: tuple[str, Page], request: pytest.FixtureRequest
) -> None:
    url, page = console
    page.goto(f"{url}/ui/playground")
    expect(page.locator("#preview svg #curve-0")).to_have_count(1)
    page.fill("#spec", '{"type": "StepLR", "step_size": 0}')  # drawn as typed, no submit
    expect(page.locator('#errors [data-field="step_size"]')).to_contain_text("greater than or equal to 1")
    page.screenshot(path=str(SHOTS / f"playground-{request.node.callspec.id}.png"), full_page=True)
    page.fill("#spec", '{"type": "ExponentialLR", "gamma": 0.99}')
    expect(page.locator("#errors .field-error")).to_have_count(0)
    expect(page.locator("#preview svg #curve-0")).to_have_count(1)


def test_a_run_page_updates_live_without_a_reload(console: tuple[str, Page]) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs/vision-1")
    expect(page.locator("#high-water")).to_have_text("250")
    page.evaluate("window.notReloaded = true")
    httpx.get(f"{url}/runs/vision-1/lr", params={"step": 777})  # a job serves on
    expect(page.locator("#high-water")).to_have_text("777", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True
