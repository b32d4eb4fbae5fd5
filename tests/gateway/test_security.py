"""DNS rebinding and cross-site requests are refused the way Ollama refuses them."""

from __future__ import annotations

import httpx
import pytest

from agent.gateway.security import OriginPolicy, host_allowed
from tests.conftest import Gateway, GatewayFactory


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("localhost:11435", True),
        ("127.0.0.1:11435", True),
        ("[::1]:11435", True),
        ("0.0.0.0:11435", True),
        ("192.168.1.20:11435", True),
        ("10.0.0.2", True),
        ("box.local", True),
        ("dev.internal:80", True),
        ("app.localhost", True),
        ("mybox", True),
        ("MYBOX:11435", True),
        ("evil.com", False),
        ("8.8.8.8", False),
        ("localhost.evil.com", False),
        ("attacker.com:11435", False),
    ],
)
def test_host_rule(host: str, ok: bool) -> None:
    assert host_allowed(host, hostname="mybox") is ok


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://localhost", True),
        ("http://localhost:3000", True),
        ("https://127.0.0.1:8443", True),
        ("http://0.0.0.0:5173", True),
        ("vscode-webview://abc123", True),
        ("vscode-file://vscode-app", True),
        ("app://obsidian.md", True),
        ("file://", True),
        ("tauri://localhost", True),
        ("https://evil.com", False),
        ("http://localhost.evil.com", False),
        ("null", False),
        ("http://192.168.1.5", False),
    ],
)
def test_origin_rule(origin: str, ok: bool) -> None:
    assert OriginPolicy().allowed(origin) is ok


def test_allowed_origins_config(sim, make_gateway: GatewayFactory) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway(
        sim.url, config='[server]\nallowed_origins = ["https://mytool.example", "https://*.corp.example"]\n'
    )
    for origin, status in (
        ("https://mytool.example", 200),
        ("https://a.corp.example", 200),
        ("https://evil.example", 403),
    ):
        assert httpx.get(gw.url + "/api/tags", headers={"Origin": origin}, timeout=10).status_code == status


def test_gateway_enforces_host_and_origin(gateway: Gateway) -> None:
    with gateway.client() as c:
        assert c.get("/api/tags", headers={"Host": "evil.com"}).status_code == 403
        assert (
            c.post(
                "/agent/profile", json={"profile": "performance"}, headers={"Host": "rebind.attacker.net"}
            ).status_code
            == 403
        )
        assert c.get("/api/tags", headers={"Origin": "https://evil.com"}).status_code == 403
        # Twinny's default host, an editor with no Origin, and a webview all pass.
        assert c.get("/api/tags", headers={"Host": f"0.0.0.0:{gateway.server.settings.server.port}"}).status_code == 200
        assert c.get("/api/tags").status_code == 200
        r = c.get("/api/tags", headers={"Origin": "vscode-webview://x"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "vscode-webview://x"
        pre = c.options(
            "/api/chat", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}
        )
        assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
        assert c.options("/api/chat", headers={"Origin": "https://evil.com"}).status_code == 403


def test_control_token_required_when_set(sim, make_gateway: GatewayFactory) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway(sim.url, config='[server]\ncontrol_token = "s3cret"\n')
    assert httpx.get(gw.url + "/agent/status", timeout=10).status_code == 401
    assert httpx.get(gw.url + "/agent/status", headers={"X-Powergate-Token": "s3cret"}, timeout=10).status_code == 200
    assert (
        httpx.get(gw.url + "/agent/status", headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
    )
