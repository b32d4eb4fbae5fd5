"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver), at a
desktop width (1400 px) and a narrow one (420 px): the savings figures at the top match
what the API reports, the charts fit the window and their legends show values, an idle
agent shows an empty state, the timeline says each change once, a button switches the
profile through the API, and hostile values (a script in a profile reason or source, in
an upstream's version string) are shown as text and never run. Screenshots are kept in
tests/artifacts/dashboard-*.png."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.simollama.app as simapp
from tests import system
from tests.conftest import ROOT, Gateway, GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SMALL = "qwen2.5-coder:1.5b"
WIDTHS = (1400, 420)
HOSTILE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_SCRIPT = "<script>window.__pwned=2</script>"

Browser = Callable[[int], Any]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A factory: a headless Chromium whose viewport is `width` CSS pixels wide."""
    chromium = CHROMIUM or system.need("chromium", "chromium")
    chromedriver = system.need("chromedriver", "chromium-driver")
    from selenium import webdriver

    drivers: list[Any] = []

    def make(width: int) -> Any:
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={tmp_path / f'chrome{len(drivers)}'}",
            f"--window-size={width},2200",
        ):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=chromedriver))
        drivers.append(d)
        # a window cannot be narrower than ~500 px even headless: set the viewport itself
        d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": width, "height": 2200, "deviceScaleFactor": 1, "mobile": False}
        )
        return d

    yield make
    for d in drivers:
        d.quit()


def open_dashboard(d: Any, url: str) -> None:
    d.get(url)
    assert wait_for(lambda: d.execute_script("return document.body.dataset.ready") == "1", timeout=20), d.get_log(
        "browser"
    )


def text(d: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(d.find_element(By.CSS_SELECTOR, css).text)


def shot(d: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def fits_the_window(d: Any, width: int) -> None:
    assert d.execute_script("return window.innerWidth") == width
    widths = d.execute_script(
        "return {inner: window.innerWidth, doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " charts: [...document.querySelectorAll('.chart')].map(c => [c.getBoundingClientRect().right,"
        " c.querySelector('canvas').getBoundingClientRect().right, c.parentElement.getBoundingClientRect().right])}"
    )
    assert widths["doc"] <= widths["inner"] and widths["body"] <= widths["inner"], widths  # no sideways scroll
    for chart_right, canvas_right, figure_right in widths["charts"]:
        assert canvas_right <= figure_right + 0.5 and chart_right <= widths["inner"], widths


def traffic(gw: Gateway) -> None:
    for i in range(12):  # 4 misses, 8 hits
        r = httpx.post(
            gw.url + "/api/generate",
            json={"model": "autocomplete", "prompt": f"def f{i % 4}(", "suffix": "\n", "stream": False},
            timeout=10,
        )
        assert r.status_code == 200


@pytest.mark.parametrize("width", WIDTHS)
def test_savings_charts_and_switching(gateway: Gateway, browser: Browser, width: int) -> None:
    from selenium.webdriver.common.by import By

    traffic(gateway)
    d = browser(width)
    open_dashboard(d, gateway.url + "/dashboard")
    # the figures at the top are the API's
    sv = httpx.get(gateway.url + "/agent/status", timeout=10).json()["savings"]
    assert sv["requests"] == 12 and sv["served_without_model"] == 8 and sv["model_time_saved_s"] > 0
    for period, figures in (("total", sv), ("today", sv["today"])):
        for key in ("requests", "served_without_model", "model_time_saved_s", "upstream_calls_avoided", "energy_saved_wh"):
            dd = d.find_element(By.CSS_SELECTOR, f'#savings dl[data-period="{period}"] dd[data-key="{key}"]')
            assert float(dd.get_attribute("data-value")) == pytest.approx(figures[key]), (period, key)
    top = text(d, '#savings dl[data-period="total"]')
    assert "Requests served\n12" in top and "Answered without the model\n67% (8)" in top
    assert "Energy saved (estimate)" in top and "model_watts" in text(d, "#savings-note")
    assert d.find_element(By.ID, "empty").get_attribute("hidden") is not None  # not an empty agent
    # cards, tables and charts
    badge = d.find_element(By.ID, "profile-badge")
    assert badge.text == "Balanced" and badge.get_attribute("data-profile") == "balanced"
    assert "/api/generate" in text(d, "#latency")
    assert text(d, "#upstreams").startswith("up ")
    painted = d.execute_script(
        "return [...document.querySelectorAll('.chart canvas')].map(c => {"
        " const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; });"
    )
    assert len(painted) == 4 and all(n > 500 for n in painted), painted
    # legends show the latest values, not placeholders
    m = httpx.get(gateway.url + "/agent/metrics", timeout=10).json()
    latency_legend = text(d, '.legend[data-for="chart-latency"]')
    assert "--" not in latency_legend and "–" not in latency_legend, latency_legend
    p50 = [b["p50"] for b in m["series"] if b["p50"] is not None][-1] * 1000
    shown = float(latency_legend.split("p50 ")[1].split(" ms")[0])
    assert shown == pytest.approx(p50, rel=0.06, abs=0.01), (latency_legend, p50)
    requests_legend = text(d, '.legend[data-for="chart-requests"]')
    assert "miss 4" in requests_legend and "hit-memory 8" in requests_legend, requests_legend
    # the time axis spans the data it has (a minute at least), not a fixed window
    xs = d.execute_script("const u = window.powergate.charts()['chart-requests']; return [u.scales.x.min, u.scales.x.max];")
    ts = [b["t"] for b in m["series"]]
    assert xs[1] - xs[0] <= max(ts[-1] - ts[0], 60) + 1 and xs[0] <= ts[0] and xs[1] >= ts[-1], (xs, ts)
    fits_the_window(d, width)
    shot(d, f"dashboard-{width}")
    # a button switches the profile through the API
    d.find_element(By.CSS_SELECTOR, 'button[data-profile="battery-saver"]').click()
    assert wait_for(lambda: httpx.get(gateway.url + "/agent/profile").json()["profile"] == "battery-saver", timeout=10)
    assert wait_for(lambda: d.find_element(By.ID, "profile-badge").text == "Battery saver", timeout=10)
    assert httpx.get(gateway.url + "/agent/status").json()["history"][-1]["source"] == "dashboard"
    assert "Balanced → Battery saver" in text(d, "#timeline")
    d.find_element(By.CSS_SELECTOR, 'button[data-mode="auto"]').click()
    assert wait_for(lambda: httpx.get(gateway.url + "/agent/profile").json()["mode"] == "auto", timeout=10)
    logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


def test_an_idle_agent_shows_an_empty_state(gateway: Gateway, browser: Browser) -> None:
    from selenium.webdriver.common.by import By

    d = browser(420)
    open_dashboard(d, gateway.url + "/dashboard")
    empty = d.find_element(By.ID, "empty")
    assert empty.is_displayed() and "No requests yet" in empty.text and gateway.url in empty.text
    assert text(d, '#savings dd[data-key="requests"]') == "0"
    nodata = d.find_elements(By.CSS_SELECTOR, "#chart-latency .nodata")
    assert nodata and nodata[0].text == "No data yet"
    fits_the_window(d, 420)
    shot(d, "dashboard-empty-420")


def test_the_timeline_says_each_change_once(gateway: Gateway, browser: Browser) -> None:
    for _ in range(3):
        r = httpx.put(
            gateway.url + "/agent/profile", json={"profile": "performance", "reason": "testing", "source": "api"}
        )
        assert r.status_code == 200
    d = browser(1400)
    open_dashboard(d, gateway.url + "/dashboard")
    lines = text(d, "#timeline").splitlines()
    switches = [ln for ln in lines if "Balanced → Performance" in ln]
    again = [ln for ln in lines if "Performance testing (api)" in ln and "→" not in ln]
    assert len(switches) == 1 and len(lines) == 3, lines
    assert len(again) == 1 and again[0].endswith("×2"), lines  # the two repeats, once, counted


def test_hostile_values_are_text_and_the_page_is_locked_down(
    make_gateway: GatewayFactory, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By

    monkeypatch.setattr(simapp, "VERSION", HOSTILE)  # an upstream that answers /api/version with markup
    with SimServer(SimOllama()) as sim:
        gw = make_gateway(sim.url, config='[server]\ncontrol_token = "t0ken-t0ken"\n')
        auth = {"X-Powergate-Token": "t0ken-t0ken"}
        r = httpx.put(
            gw.url + "/agent/profile",
            json={"profile": "performance", "reason": HOSTILE, "source": HOSTILE_SCRIPT},
            headers=auth,
        )
        assert r.status_code == 200
        page = httpx.get(gw.url + "/dashboard", timeout=10)
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
        js = httpx.get(gw.url + "/dashboard/static/dashboard.js", timeout=10)
        assert js.headers["content-security-policy"] == csp and "innerHTML" not in js.text
        assert "<script>" not in page.text.replace('<script src="', "")  # no inline script in the page
        assert httpx.get(gw.url + "/agent/status", timeout=10).status_code == 401  # the API still needs the token

        d = browser(1400)
        open_dashboard(d, gw.url + "/dashboard?token=t0ken-t0ken")
        assert "token" not in d.current_url  # gone from the address bar and history at once
        assert d.execute_script("return window.__pwned") is None
        timeline = text(d, "#timeline")
        assert HOSTILE in timeline and HOSTILE_SCRIPT in timeline
        assert HOSTILE in text(d, "#upstreams")
        assert not d.find_elements(By.CSS_SELECTOR, "main img, main script")
        d.refresh()  # the token stays with the tab, not the URL
        open_dashboard(d, d.current_url)
        time.sleep(0.5)  # give an injected onerror handler its chance to run
        assert d.execute_script("return window.__pwned") is None
        assert HOSTILE in text(d, "#timeline")
        shot(d, "dashboard-hostile")
        severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe  # no CSP violations: the page needs nothing the policy forbids


def test_dashboard_uses_no_outside_resources(gateway: Gateway) -> None:
    html = httpx.get(gateway.url + "/dashboard", timeout=10).text
    assert "http://" not in html and "https://" not in html
    for path in (
        "/dashboard/static/dashboard.js",
        "/dashboard/static/vendor/uPlot.iife.min.js",
        "/dashboard/static/dashboard.css",
    ):
        r = httpx.get(gateway.url + path, timeout=10)
        assert r.status_code == 200 and len(r.content) > 500


def test_service_cards_show_the_routing_lightrag_and_database_state(gateway: Gateway, browser: Browser) -> None:
    """The cards of several hosts, LightRAG and Postgres read the same /agent/status the API serves."""
    from selenium.webdriver.common.by import By

    status = httpx.get(gateway.url + "/agent/status", timeout=10).json()
    d = browser(420)
    open_dashboard(d, gateway.url + "/dashboard")
    rows = d.find_elements(By.CSS_SELECTOR, "#routing tbody tr")
    assert [r.get_attribute("data-url") for r in rows] == [u["url"] for u in status["upstreams"]]
    first = status["upstreams"][0]
    assert first["url"] in rows[0].text and first["routing"]["state"]["state"] in rows[0].text
    # nothing configured: each card says which key turns it on
    assert status["lightrag"] is None and "[lightrag] url" in text(d, "#card-lightrag")
    assert status["database"] is None and "[postgres] dsn" in text(d, "#card-database")
    fits_the_window(d, 420)
    shot(d, "dashboard-services-420")


def test_suggestions_card_shows_preemption_and_the_measured_speculation_threshold(
    sim: SimServer, make_gateway: GatewayFactory, browser: Browser
) -> None:
    """The "Suggestions under load" card: preemption on in performance, and per model the
    used share of its speculative guesses and the break-even share it needs, from status."""
    from selenium.webdriver.common.by import By

    gw = make_gateway(sim.url, profile="performance")
    counters = gw.runtime.counters
    for i in range(6):  # the user types something else each time: no guess is ever used
        r = httpx.post(
            gw.url + "/api/generate",
            json={"model": "autocomplete", "prompt": f"value_{i} = ", "suffix": "\n", "stream": False},
            timeout=10,
        )
        assert r.status_code == 200
        assert wait_for(lambda n=i: counters["prefetch_issued"] + counters["prefetch_skipped"] > n)
    status = httpx.get(gw.url + "/agent/status", timeout=10).json()["scheduling"]
    model, m = next(iter(status["speculation"]["models"].items()))
    assert m["request_s"] is not None and m["outcomes"] >= 1  # real traffic measured something
    d = browser(420)
    open_dashboard(d, gw.url + "/dashboard")
    assert text(d, "#preempt-state") == "on"
    row = d.find_element(By.CSS_SELECTOR, "#speculation tbody tr")
    assert row.get_attribute("data-model") == model
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]

    def pct(x: float) -> str:
        return f"{int(x * 100 + 0.5)}%"

    assert cells[0] == model
    assert cells[1] == pct(m["used_share"])
    assert cells[2] == pct(m["threshold"]) + ("" if m["measured"] else "*")
    assert cells[4] == m["decision"]
    fits_the_window(d, 420)
    shot(d, "dashboard-interactive-420")
