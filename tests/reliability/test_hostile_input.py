"""Item 4: hostile input gets a 400 in the API's own format (or what Ollama itself
would answer), never a 5xx or a dropped connection, and the kept-alive connection
answers the next request."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import Gateway
from tests.reliability.rawhttp import RawConnection, RawResponse

MODEL = "qwen2.5-coder:1.5b"
DEEP = 1000  # levels of nesting


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def check_error(r: RawResponse, path: str, status: int = 400) -> None:
    assert r.status == status, (r.status, r.body)
    err = r.json()["error"]
    if path.startswith("/v1/"):
        assert isinstance(err, dict) and err["message"] and err["type"] == "invalid_request_error"
    else:
        assert isinstance(err, str) and err


def still_usable(conn: RawConnection) -> None:
    r = conn.request("GET", "/api/version")
    assert r.status == 200 and "version" in r.json()


BODIES: list[tuple[str, bytes]] = [
    (
        "deep-array",
        b'{"model":"%s","prompt":"x","options":{"stop":' % MODEL.encode() + b"[" * DEEP + b"]" * DEEP + b"}}",
    ),
    (
        "deep-object",
        b'{"model":"%s","prompt":"x","format":' % MODEL.encode() + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
    ),
    ("huge-int", b'{"model":"%s","prompt":"x","options":{"seed":' % MODEL.encode() + b"9" * 5000 + b"}}"),
    ("crlf-model", b'{"model":"qwen\\r\\nX-Evil: 1","prompt":"x"}'),
    ("nul-model", b'{"model":"qwen\\u0000","prompt":"x"}'),
    ("not-utf8", b'{"model":"\xff\xfe","prompt":"x"}'),
]


@pytest.mark.parametrize("path", ["/api/generate", "/v1/completions"])
@pytest.mark.parametrize(("name", "body"), BODIES, ids=[n for n, _ in BODIES])
def test_hostile_bodies_get_400_and_the_connection_stays(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, path: str, name: str, body: bytes
) -> None:
    with RawConnection(gateway.url) as conn:
        r = conn.request("POST", path, body)
        check_error(r, path)
        still_usable(conn)
    no_tracebacks(caplog)


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/v1/chat/completions", "/api/embed"])
def test_lone_surrogates_are_replaced_as_ollama_does(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    text = "emoji cut in half: CUT"
    doc_: dict[str, object]
    if path == "/api/chat":
        doc_ = {
            "model": MODEL,
            "stream": False,
            "options": {"temperature": 0},
            "messages": [{"role": "user", "content": text}],
        }
    elif path.endswith("completions"):
        doc_ = {"model": MODEL, "stream": False, "temperature": 0, "messages": [{"role": "user", "content": text}]}
    elif path.endswith("embed"):
        doc_ = {"model": "nomic-embed-text", "input": [text]}
    else:
        doc_ = {"model": MODEL, "stream": False, "prompt": text}
    doc = json.dumps(doc_).replace("CUT", "\\ud83d")  # a lone high surrogate, as JSON text
    with RawConnection(gateway.url) as conn:
        r = conn.request("POST", path, doc.encode())
        assert r.status == 200, r.body
        again = conn.request("POST", path, doc.encode())  # and it is cached like any other
        assert again.status == 200 and again.headers["x-powergate-cache"].startswith("hit")
        still_usable(conn)
    no_tracebacks(caplog)


@pytest.mark.parametrize("model", ["模型:latest", "modèle-ünï", "\U0001f600"])
def test_non_latin1_model_names_are_relayed_not_crashed(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, model: str
) -> None:
    body = json.dumps({"model": model, "prompt": "x", "stream": False}).encode()
    with RawConnection(gateway.url) as conn:
        r = conn.request("POST", "/api/generate", body)
        assert r.status == 404, r.body  # what Ollama answers for a model it does not have
        assert "not found" in r.json()["error"]
        assert r.headers["x-powergate-model"].isascii()
        still_usable(conn)
    no_tracebacks(caplog)


@pytest.mark.parametrize("target", [b"/api/tags%00", b"/api/tags%0d%0aX:%201", b"/api/%00/../generate"])
def test_control_characters_in_the_path(gateway: Gateway, caplog: pytest.LogCaptureFixture, target: bytes) -> None:
    with RawConnection(gateway.url) as conn:
        r = conn.request("GET", target)
        check_error(r, "/api/tags")
        still_usable(conn)
    no_tracebacks(caplog)


@pytest.mark.parametrize("value", ["Mozilla é".encode("latin-1"), "Mozilla é".encode(), b"\x80\xff"])
def test_non_ascii_header_values_reach_ollama(gateway: Gateway, caplog: pytest.LogCaptureFixture, value: bytes) -> None:
    body = json.dumps({"model": MODEL, "prompt": "hello", "stream": False}).encode()
    with RawConnection(gateway.url) as conn:
        for method, path, b in (
            ("GET", "/api/tags", None),
            ("POST", "/api/generate", body),
            ("POST", "/api/show", b'{"model":"%s"}' % MODEL.encode()),
        ):
            r = conn.request(method, path, b, headers=[(b"User-Agent", value)])
            assert r.status == 200, (path, r.status, r.body)
        still_usable(conn)
    no_tracebacks(caplog)
