"""Item 6: header and body read timeouts, an idle timeout, and a connection cap below
the descriptor limit, against real slow clients on loopback (bounded in count and time)."""

from __future__ import annotations

import socket
import sys
import threading
import time

import httpx
import pytest

import agent.server
from agent.gateway.connections import ConnectionLimits, max_connections
from tests.conftest import AgentProcess, AgentProcessFactory, GatewayFactory, stop_agent
from tests.simollama import SimOllama, SimServer

SHORT = ConnectionLimits(header_timeout_s=1.0, body_idle_timeout_s=1.0, keep_alive_s=2.0, max_connections=6)
WAIT_S = 15.0  # seconds a test waits for the server's reaction at most (the timeouts are 1 s)


@pytest.fixture
def short_limits(monkeypatch: pytest.MonkeyPatch) -> ConnectionLimits:
    monkeypatch.setattr(agent.server, "connection_limits", lambda: SHORT)
    return SHORT


def read_until_closed(sock: socket.socket, limit_s: float = WAIT_S) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our request unread: a reset is a close too
            return data
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open ({data[:200]!r})")


def connect(url: str) -> socket.socket:
    host, port = url.split("://")[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=WAIT_S)


def test_max_connections_stays_below_the_descriptor_limit() -> None:
    assert max_connections(256) < 256
    assert max_connections(64) >= 16
    assert max_connections(None) == 1024


def test_a_connection_that_sends_nothing_is_closed(
    short_limits: ConnectionLimits, sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url)
    with connect(gw.url) as s:
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert gw.server.connection_counters.header_timeouts >= 1


def test_headers_sent_a_byte_at_a_time_time_out(
    short_limits: ConnectionLimits, sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url)
    with connect(gw.url) as s:
        s.sendall(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stop = time.monotonic() + WAIT_S
        closed = False
        while time.monotonic() < stop and not closed:
            try:
                s.sendall(b"X")  # a header line that never ends
            except OSError:
                closed = True
                break
            s.settimeout(0.2)
            try:
                closed = s.recv(65536).startswith(b"HTTP/1.1 408") or closed
            except TimeoutError:
                pass
        assert closed, "a trickled header kept the connection open"


def test_a_stalled_body_times_out_and_the_gateway_answers_others(
    short_limits: ConnectionLimits, sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url)
    with connect(gw.url) as s:
        s.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model":'
        )
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"body" in answer, answer
    assert gw.server.connection_counters.body_timeouts == 1
    with gw.client() as c:
        assert c.get("/api/version").status_code == 200


def test_idle_keep_alive_is_closed(
    short_limits: ConnectionLimits, sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url)
    with connect(gw.url) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_until_closed(s)  # the answer, then the close after keep_alive_s
    assert answer.startswith(b"HTTP/1.1 200")


def test_past_the_cap_with_every_connection_busy_a_clear_503(
    short_limits: ConnectionLimits, make_gateway: GatewayFactory
) -> None:
    with SimServer(SimOllama(token_delay_s=0.05, default_tokens=400)) as slow:
        gw = make_gateway(slow.url)
        busy: list[socket.socket] = []
        try:
            for i in range(SHORT.max_connections):
                s = connect(gw.url)
                body = b'{"model":"qwen2.5-coder:1.5b","prompt":"busy %d","stream":true}' % i
                s.sendall(
                    b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nCache-Control: no-cache, no-store\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
                busy.append(s)
            time.sleep(0.5)  # every request has its headers in: none is waiting for a request
            with connect(gw.url) as extra:
                extra.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = read_until_closed(extra)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in answer.lower() and b"too many connections" in answer
        finally:
            for s in busy:
                s.close()


SLOW_CLIENTS = 300  # sockets the attacker holds; above the agent's descriptor limit below
AGENT_FD_LIMIT = 256
REACHABLE_S = 8.0  # seconds an editor's request may take while under attack (without the cap: minutes)


def _slowloris(url: str, n: int, stop: threading.Event, held: list[socket.socket]) -> None:
    host, port = url.split("://")[1].rsplit(":", 1)
    for _ in range(n):
        if stop.is_set():
            return
        try:
            s = socket.create_connection((host, int(port)), timeout=2)
            s.sendall(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(s)
        except OSError:
            pass


@pytest.fixture
def limited_agent(sim: SimServer, make_agent_process: AgentProcessFactory) -> AgentProcess:
    if sys.platform == "win32":
        pytest.skip("descriptor limits are a POSIX notion")
    import resource

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (AGENT_FD_LIMIT, AGENT_FD_LIMIT))

    return make_agent_process(sim.url, preexec_fn=lower_limit)


@pytest.mark.slow
def test_slowloris_beyond_the_descriptor_limit_leaves_the_gateway_reachable(
    limited_agent: AgentProcess,
) -> None:
    url, proc = limited_agent.url, limited_agent.proc
    held: list[socket.socket] = []
    stop = threading.Event()
    attacker = threading.Thread(target=_slowloris, args=(url, SLOW_CLIENTS, stop, held), daemon=True)
    attacker.start()
    attacker.join(60)
    try:
        assert len(held) > AGENT_FD_LIMIT // 2, "the attack did not get going"
        # a real editor request while the attacker holds its sockets
        with httpx.Client(base_url=url, timeout=REACHABLE_S, trust_env=False) as c:
            for _ in range(3):
                r = c.get("/api/version", headers={"Connection": "close"})
                assert r.status_code == 200
    finally:
        stop.set()
        for s in held:
            s.close()
        err = stop_agent(proc)
    # the cap kept the agent inside its descriptors: asyncio never ran out while accepting
    assert "out of system resource" not in err and "Too many open files" not in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
