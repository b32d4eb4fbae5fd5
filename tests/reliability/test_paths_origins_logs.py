"""Items 5, 11, 13, 14: dot-segment paths are routed as what they mean, `[::1]` origins
match, logged values cannot forge lines, per-model tables stay bounded."""

from __future__ import annotations

import json
import logging

import pytest

from agent.gateway.security import OriginPolicy, remove_dot_segments
from agent.logs import SafeFormatter, escape_controls
from agent.runtime import MAX_RUNNER_MODELS
from tests.conftest import Gateway
from tests.reliability.rawhttp import RawConnection
from tests.simollama import SimServer

# ------------------------------------------------------------------ item 11


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/api/x/../generate", "/api/generate"),
        ("/api/./chat", "/api/chat"),
        ("/../../api/chat", "/api/chat"),
        ("/v1/../api/generate", "/api/generate"),
        ("/api/tags", "/api/tags"),
    ],
)
def test_remove_dot_segments(raw: str, clean: str) -> None:
    assert remove_dot_segments(raw) == clean


def test_dot_segment_path_goes_through_routing_and_cache(gateway: Gateway, sim: SimServer) -> None:
    # raw bytes: httpx would remove the dot segments itself before sending
    body = json.dumps(
        {"model": "qwen2.5-coder:1.5b", "prompt": "def add(a, b):", "stream": False, "options": {"temperature": 0}}
    ).encode()
    with RawConnection(gateway.url) as conn:
        first = conn.request("POST", "/api/x/../generate", body)
        again = conn.request("POST", "/api/x/%2e%2e/./generate", body)
    assert first.status == 200, first.body
    # routed as /api/generate: the gateway's headers, the cache and the profile's runner options
    assert first.headers["x-powergate-cache"] == "miss"
    assert again.headers["x-powergate-cache"] == "hit-memory"
    sent = sim.sim.inference_log()
    assert [e.path for e in sent] == ["/api/generate"]  # one upstream call, under its real name
    assert sent[0].body["options"]["num_ctx"] == 4096  # the balanced profile's num_ctx was applied


# ------------------------------------------------------------------ item 14


@pytest.mark.parametrize("origin", ["http://[::1]:5173", "https://[::1]", "http://[::1]"])
def test_ipv6_loopback_origin_is_allowed(origin: str) -> None:
    assert OriginPolicy().allowed(origin)


@pytest.mark.parametrize("origin", ["http://1:5173", "http://:", "http://evil.example", "http://[::2]:80"])
def test_brackets_are_not_a_character_class(origin: str) -> None:
    assert not OriginPolicy().allowed(origin)


def test_user_patterns_with_brackets_and_wildcards() -> None:
    policy = OriginPolicy(["http://[fd00::5]:*", "https://*.corp.example"])
    assert policy.allowed("http://[fd00::5]:8080")
    assert not policy.allowed("http://f:8080")
    assert policy.allowed("https://tools.corp.example")
    assert not policy.allowed("https://corp.example.evil")


def test_ipv6_origin_through_the_gateway(gateway: Gateway) -> None:
    with gateway.client() as c:
        r = c.get("/api/tags", headers={"Origin": "http://[::1]:5173"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://[::1]:5173"


# ------------------------------------------------------------------ item 13


def test_escape_controls() -> None:
    assert escape_controls("a\nb\rc\x1b[31m\x00\u2028é") == "a\\nb\\rc\\x1b[31m\\x00\\u2028é"


def test_a_newline_in_a_profile_reason_cannot_forge_a_log_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "ok\n2026-01-01 00:00:00,000 WARNING agent.security: token leaked"
    fmt = SafeFormatter("%(levelname)s %(name)s: %(message)s")
    with caplog.at_level(logging.INFO), gateway.client() as c:
        r = c.put("/agent/profile", json={"profile": "battery-saver", "reason": forged, "source": "x\r\ny"})
        assert r.status_code == 200, r.text
    lines = [fmt.format(rec) for rec in caplog.records if "battery-saver" in rec.getMessage()]
    assert lines, "the switch was logged"
    for line in lines:
        assert "\n" not in line and "\r" not in line
        assert "ok\\n2026-01-01" in line


def test_a_traceback_keeps_its_lines() -> None:
    fmt = SafeFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad\nvalue", None, sys.exc_info())
    out = fmt.format(rec)
    assert out.startswith("bad\\nvalue\nTraceback")


# ------------------------------------------------------------------ item 5


def test_made_up_model_names_do_not_grow_the_runner_table(gateway: Gateway) -> None:
    with gateway.client() as c:
        for i in range(MAX_RUNNER_MODELS * 3):
            r = c.post("/api/generate", json={"model": f"made-up-{i}", "prompt": "x", "stream": False})
            assert r.status_code == 404, r.text  # Ollama's answer for an unknown model, relayed
    assert len(gateway.runtime._client_runner) <= MAX_RUNNER_MODELS
    assert f"made-up-{MAX_RUNNER_MODELS * 3 - 1}" in gateway.runtime._client_runner  # the newest is kept
