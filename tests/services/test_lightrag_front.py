"""The LightRAG front's edges, without a LightRAG: configuration, absence, a server that is down."""

from __future__ import annotations

import pytest

from agent.config import load_settings
from agent.errors import ConfigError
from tests.conftest import GatewayFactory, closed_port_url
from tests.simollama import SimServer


def test_lightrag_config_is_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[lightrag]\nurl = "ftp://x"\n')
    with pytest.raises(ConfigError, match="lightrag.url"):
        load_settings(config_file=cfg)
    cfg.write_text("[lightrag]\nport = 1\n")
    with pytest.raises(ConfigError, match="lightrag.port: unknown key"):
        load_settings(config_file=cfg)
    cfg.write_text('[profiles.balanced]\nlightrag_mode = "everything"\n')
    with pytest.raises(ConfigError, match="profiles.balanced.lightrag_mode"):
        load_settings(config_file=cfg)
    cfg.write_text('[lightrag]\nurl = "http://127.0.0.1:9621/"\napi_key = "k"\n')
    s = load_settings(config_file=cfg)
    assert s.lightrag.url == "http://127.0.0.1:9621" and s.lightrag.enabled
    assert s.profile("battery-saver").lightrag_mode == "naive" and s.profile("performance").lightrag_mode == "mix"


def test_without_lightrag_configured_the_answers_say_how(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url)
    with gw.client() as c:
        r = c.post("/lightrag/query", json={"query": "q"})
        assert r.status_code == 404 and "[lightrag] url" in r.json()["detail"]
        r = c.post("/api/chat", json={"model": "lightrag", "messages": [{"role": "user", "content": "q"}]})
        assert r.status_code == 404 and "[lightrag] url" in r.json()["error"]
        r = c.post("/v1/chat/completions", json={"model": "lightrag", "messages": [{"role": "user", "content": "q"}]})
        assert r.status_code == 404 and "[lightrag] url" in r.json()["error"]["message"]
        assert c.get("/agent/status").json()["lightrag"] is None
    assert not sim.sim.inference_log()  # never sent to Ollama as a model name


def test_a_lightrag_that_is_down_gets_clear_errors(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, config=f'[lightrag]\nurl = "{closed_port_url()}"\n')
    with gw.client() as c:
        for method, path in (
            ("POST", "/lightrag/query"),
            ("GET", "/lightrag/health"),
            ("POST", "/lightrag/documents/text"),
        ):
            r = c.request(method, path, json={"query": "q", "text": "t"})
            assert r.status_code == 502 and "LightRAG is not reachable" in r.json()["detail"], path
            assert r.headers["x-powergate-cache"] == "bypass"
        r = c.post(
            "/api/chat", json={"model": "lightrag", "messages": [{"role": "user", "content": "q"}], "stream": False}
        )
        assert r.status_code == 502 and "LightRAG is not reachable" in r.json()["error"]
        r = c.post("/api/chat", json={"model": "lightrag", "messages": [{"role": "system", "content": "only system"}]})
        assert r.status_code == 400 and "user message" in r.json()["error"]
        st = c.get("/agent/status").json()["lightrag"]
        assert st["reachable"] is False and "not reachable" in st["error"]
        metrics = c.get("/metrics").text
        assert "powergate_lightrag_up 0.0" in metrics


def test_the_configured_key_is_lent_to_local_clients_only(sim: SimServer, make_gateway: GatewayFactory) -> None:
    from starlette.requests import Request

    gw = make_gateway(sim.url, config='[lightrag]\nurl = "http://127.0.0.1:9"\napi_key = "k1"\n')
    front = gw.runtime.lightrag

    def request(client: str, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
        return Request(
            {
                "type": "http",
                "method": "POST",
                "path": "/lightrag/query",
                "headers": headers or [],
                "client": (client, 5000),
            }
        )

    assert front._headers(request("127.0.0.1"))["x-api-key"] == "k1"
    assert front._headers(None)["x-api-key"] == "k1"  # powergate's own watch and model `lightrag`
    assert "x-api-key" not in front._headers(request("192.168.1.20"))
    own = front._headers(request("127.0.0.1", [(b"authorization", b"Bearer jwt")]))
    assert own["authorization"] == "Bearer jwt" and "x-api-key" not in own  # the client's own credentials win
