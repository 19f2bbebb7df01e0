"""The web console in a real headless Chromium (Debian's or Playwright's own, driven by
Playwright) against a real `lrtower serve` process. Screenshots are kept in artifacts/screenshots/."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from halves import HALVES, unavailable
from proxy import buffering_proxy
from servers import Server

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
STEP = {"type": "StepLR", "step_size": 100, "gamma": 0.5}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, or Playwright's own (`playwright install chromium`); without either the
    tests skip, or fail under LRTOWER_TEST_REQUIRE_BROWSER=1 (as in CI)."""
    with sync_playwright() as playwright:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None and Path(playwright.chromium.executable_path).is_file():
            chromium = playwright.chromium.executable_path
        if chromium is None:
            unavailable(
                "browser",
                "no chromium: `apt-get install chromium` (Debian) or `playwright install chromium`",
                "LRTOWER_TEST_REQUIRE_BROWSER",
            )
        HALVES["browser"] = f"ran, on {chromium}"
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console(start_server: Callable[..., Server], browser: Browser) -> Iterator[tuple[str, Page]]:
    url = start_server().url
    body = {
        "name": "vision-1",
        "lrs": [0.1, 0.01],
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
    images = page.locator("#runs img.sparkline")
    expect(images).to_have_count(2)
    for image in images.all():  # each curve is an image of its own, and it renders
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(SHOTS / f"runs-{request.node.callspec.id}.png"), full_page=True)

    page.click("text=vision-1")
    expect(page).to_have_url(f"{url}/ui/runs/vision-1")
    expect(page.locator(".lr-panel .u-legend .u-series")).to_have_count(2)  # each group
    markers = page.locator(".lr-panel .marker")
    expect(markers).to_have_count(2)
    expect(markers.first).to_have_attribute("title", "scale from step 251 by anonymous: loss spikes")
    markers.first.click()
    expect(page.locator(".marker-detail")).to_have_text("scale from step 251 by anonymous: loss spikes")
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
    expect(page.locator(".lr-panel .marker")).to_have_count(3)


def test_the_playground_shows_a_bad_field_next_to_the_editor(
    console: tuple[str, Page], request: pytest.FixtureRequest
) -> None:
    url, page = console
    page.goto(f"{url}/ui/playground")
    expect(page.locator("#chart .lr-panel canvas")).to_have_count(1)
    page.fill("#spec", '{"type": "StepLR", "step_size": 0}')  # drawn as typed, no submit
    expect(page.locator('#errors [data-field="step_size"]')).to_contain_text("greater than or equal to 1")
    expect(page.locator("#chart")).to_be_hidden()
    page.screenshot(path=str(SHOTS / f"playground-{request.node.callspec.id}.png"), full_page=True)
    page.fill("#spec", '{"type": "ExponentialLR", "gamma": 0.99}')
    expect(page.locator("#errors .field-error")).to_have_count(0)
    expect(page.locator("#chart")).to_be_visible()
    box = over_box(page, "lr-panel")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    step = int(page.locator(".readout").get_attribute("data-step") or "-1")
    spec = {"type": "ExponentialLR", "gamma": 0.99}
    planned = httpx.post(
        f"{url}/schedules/preview", json={"lr": 0.1, "schedule": spec, "start": step, "stop": step + 1}
    )
    assert float(page.locator(".readout .lr .value").inner_text()) == planned.json()["lr"][0]


def test_a_run_page_updates_live_without_a_reload(console: tuple[str, Page]) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs/vision-1")
    expect(page.locator("#high-water")).to_have_text("250")
    page.evaluate("window.notReloaded = true")
    httpx.get(f"{url}/runs/vision-1/lr", params={"step": 777})  # a job serves on
    expect(page.locator("#high-water")).to_have_text("777", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True


# Every fetch of the page (not the chart's data) is held until the test lets it go, and counted: how many were asked
# for, and the most ever in flight at once. `document.hidden` follows `window.tabHidden`.
HOLD_FETCHES = """
window.asked = 0; window.inFlight = 0; window.most = 0; window.held = []; window.tabHidden = false;
const realFetch = window.fetch.bind(window);
window.fetch = (...args) => {
  if (String(args[0]).includes("/chart.json")) return realFetch(...args);  // the chart's own data: not the page's
  window.asked += 1; window.inFlight += 1; window.most = Math.max(window.most, window.inFlight);
  return new Promise(go => window.held.push(go)).then(() => realFetch(...args)).finally(() => { window.inFlight -= 1; });
};
window.release = () => window.held.splice(0).forEach(go => go());
Object.defineProperty(document, "hidden", {configurable: true, get: () => window.tabHidden});
"""


def test_the_live_refresh_waits_for_a_slow_fetch_and_rests_while_hidden(console: tuple[str, Page]) -> None:
    url, page = console
    page.clock.install()
    page.add_init_script(HOLD_FETCHES)
    page.goto(f"{url}/ui/runs/vision-1")

    def asked_after(seconds: int) -> int:
        """Fetches asked for after `seconds` of page time, given real time to settle in between."""
        for _ in range(seconds):
            page.clock.run_for(1000)
            time.sleep(0.05)
        return int(page.evaluate("window.asked"))

    assert asked_after(10) == 1  # one refresh, held: no other is started behind it
    page.evaluate("window.release()")
    deadline = time.monotonic() + 10
    while asked_after(1) < 2 and time.monotonic() < deadline:
        pass  # the next refresh comes a period after the first one settled
    assert page.evaluate("[window.asked, window.most]") == [2, 1]

    page.evaluate("window.tabHidden = true; window.release()")
    assert asked_after(10) == 2  # a hidden tab fetches nothing
    page.evaluate("window.tabHidden = false")
    assert asked_after(4) == 3 and page.evaluate("window.most") == 1


def test_the_api_reference_renders_with_every_other_host_blocked(
    start_server: Callable[..., Server], browser: Browser, request: pytest.FixtureRequest
) -> None:
    """An air-gapped cluster: the browser may reach the server and nothing else. /docs and /redoc
    render every operation from the package's own files, and ask no other host for anything."""
    url = start_server().url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(f"{url}/docs")
    expect(page.locator(".opblock-summary-path", has_text="/runs/{run}/lr").first).to_be_visible(
        timeout=30_000
    )
    assert page.locator(".opblock").count() >= 20
    page.screenshot(path=str(SHOTS / f"docs-{request.node.callspec.id}.png"))
    page.goto(f"{url}/redoc")
    expect(page.get_by_text("/runs/{run}/rewind").first).to_be_attached(timeout=30_000)
    assert elsewhere == []
    page.close()


def test_the_playground_type_picker_fills_a_spec_that_draws(console: tuple[str, Page]) -> None:
    url, page = console
    page.goto(f"{url}/ui/playground")
    for name in ("OneCycleLR", "optax.warmup_cosine_decay_schedule", "timm.cosine"):
        page.select_option("#type-picker", name)
        expect(page.locator("#spec")).to_have_value(re.compile(f'"type": "{re.escape(name)}"'))
        expect(page.locator("#hints code").first).to_have_text(name)
        expect(page.locator("#errors .field-error")).to_have_count(0)
        expect(page.locator(".lr-panel .u-legend .u-label")).to_have_text(["group 0"])


def over_box(page: Page, panel: str) -> dict[str, float]:
    """Where a chart panel's plotting area is on the page."""
    box = page.locator(f".{panel} .u-over").bounding_box()
    assert box is not None
    return dict(box)


def test_hovering_a_step_shows_each_groups_lr_as_the_api_answers_it(
    console: tuple[str, Page], request: pytest.FixtureRequest
) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs/vision-1")
    expect(page.locator(".lr-panel .marker")).to_have_count(2)
    expect(page.locator(".lr-panel .u-legend .u-series .u-label")).to_have_text(["group 0", "group 1"])
    box, readout = over_box(page, "lr-panel"), page.locator(".readout")
    seen = set()
    for fraction in (0.02, 0.11, 0.26, 0.29, 0.31, 0.55, 0.97):
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
        expect(readout).to_contain_text("step")
        step = int(readout.get_attribute("data-step") or "-1")
        shown = [float(text) for text in readout.locator(".lr .value").all_inner_texts()]
        planned = httpx.get(f"{url}/runs/vision-1/curve", params={"start": step, "stop": step + 1}).json()
        assert shown == planned["lrs"][0], step  # both groups, every bit
        if step >= 301:  # the metric's last post at or before the step is shown beside the LRs
            expect(readout.locator(".metric")).to_contain_text("loss (plateau) 2 (step 301)")
        seen.add(step)
    assert len(seen) == 7
    page.screenshot(path=str(SHOTS / f"run-hover-{request.node.callspec.id}.png"), full_page=True)


def test_a_drag_zooms_both_panels_onto_one_step_axis_and_a_double_click_resets(
    console: tuple[str, Page],
) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs/vision-1")
    note = page.locator("#chart .range")
    expect(note).to_have_text("steps 0 to 999")
    box = over_box(page, "lr-panel")
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.up()
    expect(note).not_to_have_text("steps 0 to 999")
    # The zoomed range is asked for again, and drawn at every step in it.
    drawn = "lrtowerCharts.lr.data[0].filter(s => s >= lrtowerCharts.lr.scales.x.min && s <= lrtowerCharts.lr.scales.x.max).length"
    page.wait_for_function(
        f"{drawn} >= Math.floor(lrtowerCharts.lr.scales.x.max) - Math.ceil(lrtowerCharts.lr.scales.x.min)"
    )
    scales = "[lrtowerCharts.lr.scales.x.min, lrtowerCharts.lr.scales.x.max, lrtowerCharts.metrics.scales.x.min, lrtowerCharts.metrics.scales.x.max]"
    low, high, metrics_low, metrics_high = page.evaluate(scales)
    assert (metrics_low, metrics_high) == (low, high)
    assert 200 < low < 300 and 450 < high < 550, (low, high)
    # One step axis: every step is at the same x on both panels, and their plots line up.
    for step in (low, (low + high) / 2, high):
        on_lr, on_metrics = page.evaluate(
            f"[lrtowerCharts.lr.valToPos({step}, 'x'), lrtowerCharts.metrics.valToPos({step}, 'x')]"
        )
        assert on_lr == pytest.approx(on_metrics) and -1 <= on_lr <= box["width"] + 1
    assert over_box(page, "lr-panel")["x"] == over_box(page, "metrics-panel")["x"]
    assert over_box(page, "lr-panel")["width"] == over_box(page, "metrics-panel")["width"]
    page.mouse.dblclick(box["x"] + box["width"] / 2, y)
    expect(note).to_have_text("steps 0 to 999")
    assert page.evaluate(scales) == [0, 999, 0, 999]


def test_a_plateau_reduction_is_marked_at_its_effective_step_on_both_panels(
    console: tuple[str, Page],
) -> None:
    url, page = console
    events = httpx.get(f"{url}/runs/vision-1/events").json()["events"]
    (reduction,) = [e for e in events if e["kind"] == "plateau_reduced"]
    page.goto(f"{url}/ui/runs/vision-1")
    for panel, chart in (("lr-panel", "lr"), ("metrics-panel", "metrics")):
        marker = page.locator(f".{panel} .marker[data-kind=plateau]")
        expect(marker).to_have_count(1)
        expect(marker).to_have_attribute("data-step", str(reduction["effective_step"]))
        at, per_pixel = page.evaluate(
            """([panel, chart]) => {
              const label = document.querySelector(`.${panel} .marker[data-kind=plateau]`).getBoundingClientRect();
              const over = document.querySelector(`.${panel} .u-over`).getBoundingClientRect();
              const drawn = lrtowerCharts[chart];
              return [drawn.posToVal(label.left + label.width / 2 - over.left, "x"), drawn.posToVal(1, "x") - drawn.posToVal(0, "x")];
            }""",
            [panel, chart],
        )
        assert abs(at - reduction["effective_step"]) <= per_pixel
    legend = page.locator(".metrics-panel .u-legend .u-label")
    expect(legend).to_have_text(["loss (plateau)"])


def test_runs_ticked_in_the_list_are_overlaid_on_one_chart(
    console: tuple[str, Page], request: pytest.FixtureRequest
) -> None:
    url, page = console
    page.goto(f"{url}/ui/runs")
    page.check('input[aria-label="compare vision-1"]')
    page.check('input[aria-label="compare nlp-1"]')
    page.click("text=Compare")
    expect(page).to_have_url(re.compile(r"/ui/compare\?run=nlp-1&run=vision-1$"))
    labels = page.locator(".lr-panel .u-legend .u-series .u-label")
    expect(labels).to_have_text(["nlp-1", "vision-1 · group 0", "vision-1 · group 1"])
    drawn = page.evaluate("lrtowerCharts.lr.data.slice(1).map(s => s.filter(v => v != null).length)")
    assert len(drawn) == 3 and min(drawn) >= 500, drawn  # each run's curve, over the whole range
    expect(page.locator(".metrics-panel .u-legend .u-label")).to_have_text(["vision-1 · loss (plateau)"])
    page.screenshot(path=str(SHOTS / f"compare-{request.node.callspec.id}.png"), full_page=True)


def test_every_type_the_playground_picker_offers_is_a_spec_the_preview_accepts(
    console: tuple[str, Page],
) -> None:
    url, page = console
    page.goto(f"{url}/ui/playground")
    names = [
        name
        for name in page.locator("#type-picker option").evaluate_all("os => os.map(o => o.value)")
        if name
    ]
    assert len(names) >= 50
    for name in names:
        page.select_option("#type-picker", name)
        spec = json.loads(page.input_value("#spec"))
        assert spec["type"] == name
        answer = httpx.post(f"{url}/schedules/preview", json={"lr": 0.1, "schedule": spec, "stop": 50})
        assert answer.status_code == 200, (name, answer.text)


def test_copy_as_torch_code_gives_a_scheduler_from_torch_reads_back_as_the_spec(
    console: tuple[str, Page], browser: Browser, request: pytest.FixtureRequest
) -> None:
    from lrtower import from_torch

    url, _ = console
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    page.goto(f"{url}/ui/playground")
    page.select_option("#type-picker", "OneCycleLR")
    expect(page.locator("#torch-code")).to_contain_text("OneCycleLR(optimizer")
    page.click("#copy-torch")
    expect(page.locator("#copy-torch")).to_have_text("Copied")
    code = page.evaluate("navigator.clipboard.readText()")
    scope: dict[str, object] = {}
    exec(compile(code, "<copied>", "exec"), scope)  # the copied code, run as a user runs it
    spec = json.loads(page.input_value("#spec"))
    read = from_torch(scope["scheduler"])["schedule"]
    assert {key: read[key] for key in spec} == spec  # with torch's defaults written out besides
    page.screenshot(path=str(SHOTS / f"playground-torch-{request.node.callspec.id}.png"), full_page=True)
    page.select_option("#type-picker", "optax.warmup_cosine_decay_schedule")
    expect(page.locator("#torch-code")).to_have_count(0)  # not a torch schedule: no torch code
    context.close()


def test_a_log_scale_draws_a_curve_that_reaches_zero(console: tuple[str, Page]) -> None:
    url, page = console
    spec = {"type": "CosineAnnealingLR", "T_max": 100}  # 0 at step 100, and back up after it
    assert httpx.post(f"{url}/runs", json={"name": "to-zero", "lr": 0.1, "schedule": spec}).status_code == 201
    page.goto(f"{url}/ui/runs/to-zero?start=90&stop=111&log=1")
    expect(page.locator("#chart .range")).to_have_text("steps 90 to 110")
    assert page.evaluate("lrtowerCharts.lr.scales.y.distr") == 4  # asinh: log-like, and 0 has a place
    zero, small, top = page.evaluate("[0, 1e-5, 0.01].map(v => lrtowerCharts.lr.valToPos(v, 'y'))")
    height = page.evaluate("lrtowerCharts.lr.bbox.height / devicePixelRatio")
    assert 0 <= top < small < zero <= height  # every value on the plot, in order, zero included
    box = over_box(page, "lr-panel")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    expect(page.locator(".readout")).to_have_attribute("data-step", "100")
    planned = httpx.get(f"{url}/runs/to-zero/curve", params={"start": 100, "stop": 101}).json()["lr"][0]
    assert float(page.locator(".readout .lr .value").inner_text()) == planned < 1e-15


def test_the_console_works_behind_a_buffering_proxy_with_two_workers(
    start_server: Callable[..., Server], browser: Browser
) -> None:
    direct = start_server("--workers", "2").url
    assert httpx.post(f"{direct}/runs", json={"name": "far", "lr": 0.1, "schedule": STEP}).status_code == 201
    with buffering_proxy(direct) as (url, asked):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/runs/far")
        expect(page.locator(".lr-panel .u-legend .u-label")).to_have_text(["group 0"])
        httpx.get(f"{direct}/runs/far/lr", params={"step": 321})  # a job, served by either worker
        expect(page.locator("#high-water")).to_have_text("321", timeout=15_000)
        form = page.locator("#scale-form")
        form.locator('input[name="factor"]').fill("0.5")
        form.locator('input[name="reason"]').fill("through the proxy")
        form.locator("button").click()
        expect(page.locator("#events tbody tr").last).to_contain_text("through the proxy")
        expect(page.locator(".lr-panel .marker[data-kind=scale]")).to_have_attribute("data-step", "322")
        page.close()
    assert sum("/chart.json" in path for path in asked) >= 2  # the chart fetched its data again, live
