"""Shared fixtures: a simulated Ollama and a real powergate gateway on free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config import load_settings
from agent.server import AgentServer
from tests import system
from tests.simollama import SimOllama, SimServer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may read the developer's own config or write into their data dir.
    monkeypatch.setenv("POWERGATE_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("POWERGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for k in ("POWERGATE_HOST", "POWERGATE_PORT", "POWERGATE_UPSTREAM"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimOllama()) as srv:
        yield srv


class Gateway:
    def __init__(self, server: AgentServer) -> None:
        self.server = server
        s = server.settings.server
        self.url = f"http://{s.host}:{s.port}"

    @property
    def runtime(self) -> Any:
        return self.server.runtime

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False, **kw)


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[AgentServer] = []

    def make(
        upstream: str | list[str] | None = None,
        config: str = "",
        profile: str | None = None,
        data_dir: Path | None = None,
        power: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Gateway:
        cfg = tmp_path / f"config{len(started)}.toml"
        if "[power]" not in config:
            # A scripted power source, so tests do not depend on this machine's battery:
            # on battery at 80% -> balanced in auto mode.
            pfile = tmp_path / f"power{len(started)}.json"
            pfile.write_text(
                json.dumps(power or {"plugged": False, "percent": 80, "cpu_percent": 5, "ram_available_mb": 8000})
            )
            config += f'\n[power]\nsource = "file:{pfile.as_posix()}"\n'
        cfg.write_text(config)
        ups = [upstream] if isinstance(upstream, str) else upstream
        settings = load_settings(
            config_file=cfg,
            data_dir=data_dir or tmp_path / f"data{len(started)}",
            host="127.0.0.1",
            port=free_port(),
            upstreams=ups,
            profile=profile,
            **kw,
        )
        server = AgentServer(settings)
        server.start()
        started.append(server)
        return Gateway(server)

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def gateway(sim: SimServer, make_gateway: GatewayFactory) -> Gateway:
    return make_gateway(sim.url)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


class RedisServer:
    """A real redis-server on a free loopback port, in memory only."""

    def __init__(self) -> None:
        self.exe = system.need("redis-server", "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(self._up, timeout=10):
            self.stop()
            pytest.fail("redis-server did not start")

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    srv = RedisServer()
    yield srv
    srv.stop()


def agent_up(port: int) -> bool:
    """The control API of an agent on this port answers."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/agent/status", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def start_agent(
    env: dict[str, str], *args: str, capture: bool = True, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    """`python -m agent run ARGS` as a user starts it, in its own process; `preexec_fn` runs in
    the child before the agent (POSIX only: resource limits)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *args],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=out,
        text=True,
        preexec_fn=preexec_fn,
    )


def stop_agent(proc: subprocess.Popen[str]) -> str:
    """Stop it the way a service manager would; return what it wrote on stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


PLUGGED_IN = {"plugged": True, "percent": 100, "cpu_percent": 3}  # scripted power: on AC, full
AGENT_START_S = 30.0  # seconds an agent process may take until its control API answers


@dataclass
class AgentProcess:
    url: str
    proc: subprocess.Popen[str]
    data_dir: Path


AgentProcessFactory = Callable[..., AgentProcess]


@pytest.fixture
def make_agent_process(tmp_path: Path) -> Iterator[AgentProcessFactory]:
    """Start `powergate run --no-tray ARGS` in its own process (`start_agent`) on a free port, in
    front of `upstream`, with a scripted power file (PLUGGED_IN) ahead of `config` and its data in
    tmp_path/d; return it once it answers, stop it at teardown."""
    started: list[subprocess.Popen[str]] = []

    def make(upstream: str, *args: str, config: str = "", preexec_fn: Callable[[], None] | None = None) -> AgentProcess:
        port = free_port()
        power = tmp_path / "power.json"
        power.write_text(json.dumps(PLUGGED_IN))
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n' + config)
        data = tmp_path / "d"
        env = dict(os.environ, POWERGATE_PORT=str(port), POWERGATE_UPSTREAM=upstream, POWERGATE_CONFIG=str(cfg))
        env["POWERGATE_DATA_DIR"] = str(data)
        proc = start_agent(env, "--no-tray", *args, preexec_fn=preexec_fn)
        started.append(proc)
        assert wait_for(lambda: agent_up(port), timeout=AGENT_START_S, interval=0.1), stop_agent(proc)
        return AgentProcess(f"http://127.0.0.1:{port}", proc, data)

    yield make
    for proc in started:
        stop_agent(proc)


@contextmanager
def balanced_gateway_over_sim() -> Iterator[tuple[SimServer, str, Any]]:
    """One simulated Ollama and an in-process powergate in front of it (on battery at 80 %:
    balanced), for module-scoped fixtures: yields (sim, gateway URL, runtime)."""
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimOllama()) as sim:
        cfg = Path(tmp) / "config.toml"
        power = Path(tmp) / "power.json"
        power.write_text(json.dumps({"plugged": False, "percent": 80}))  # balanced
        cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n')
        settings = load_settings(
            config_file=cfg, data_dir=Path(tmp) / "data", host="127.0.0.1", port=free_port(), upstreams=[sim.url]
        )
        server = AgentServer(settings)
        server.start()
        try:
            yield sim, f"http://127.0.0.1:{settings.server.port}", server.runtime
        finally:
            server.stop()
