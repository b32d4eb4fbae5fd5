"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver):
it renders, shows the live profile, a button switches the profile through the
API, and the charts draw. The screenshot is kept in tests/artifacts/dashboard.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import system
from tests.conftest import ROOT, Gateway, wait_for

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium = CHROMIUM or system.need("chromium", "chromium")
    chromedriver = system.need("chromedriver", "chromium-driver")
    from selenium import webdriver

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
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=1280,1500",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=chromedriver))
    yield driver
    driver.quit()


def test_dashboard_renders_switches_and_draws(gateway: Gateway, browser: object) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    for i in range(12):
        httpx.post(
            gateway.url + "/api/generate",
            json={"model": "autocomplete", "prompt": f"def f{i % 4}(", "suffix": "\n", "stream": False},
            timeout=10,
        )
    d.get(gateway.url + "/dashboard")  # type: ignore[attr-defined]
    assert wait_for(lambda: d.execute_script("return document.body.dataset.ready") == "1", timeout=15)  # type: ignore[attr-defined]
    badge = d.find_element(By.ID, "profile-badge")  # type: ignore[attr-defined]
    assert badge.text == "Balanced" and badge.get_attribute("data-profile") == "balanced"
    assert "/api/generate" in d.find_element(By.ID, "latency").text  # type: ignore[attr-defined]
    assert d.find_element(By.ID, "upstreams").text.startswith("up ")  # type: ignore[attr-defined]
    # every chart drew something: count non-transparent pixels on each canvas
    painted = d.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('.chart canvas')].map(c => {"
        " const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; });"
    )
    assert len(painted) == 4 and all(n > 500 for n in painted), painted
    d.find_element(By.CSS_SELECTOR, 'button[data-profile="battery-saver"]').click()  # type: ignore[attr-defined]
    assert wait_for(lambda: httpx.get(gateway.url + "/agent/profile").json()["profile"] == "battery-saver", timeout=10)
    assert wait_for(lambda: d.find_element(By.ID, "profile-badge").text == "Battery saver", timeout=10)  # type: ignore[attr-defined]
    assert httpx.get(gateway.url + "/agent/status").json()["history"][-1]["source"] == "dashboard"
    assert "Battery saver" in d.find_element(By.ID, "timeline").text  # type: ignore[attr-defined]
    d.find_element(By.CSS_SELECTOR, 'button[data-mode="auto"]').click()  # type: ignore[attr-defined]
    assert wait_for(lambda: httpx.get(gateway.url + "/agent/profile").json()["mode"] == "auto", timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "dashboard.png"))  # type: ignore[attr-defined]
    logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
    assert not logs, logs


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
