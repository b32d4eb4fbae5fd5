"""Item 1: nobody else in. Every way to ask for a non-loopback bind either needs the
control token or is refused at start with the key named (exit 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.config import is_loopback_host, load_settings
from agent.errors import ConfigError
from tests.conftest import run_cli


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["", " ", "0.0.0.0", "::", "[::]", "0", "192.168.1.20", "10.0.0.1", "no-such-host.invalid"]
)
def test_every_interface_or_lan_is_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_a_name_resolving_to_a_lan_address_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host: str, *a: object, **kw: object) -> list[tuple[object, ...]]:
        if host == "devbox":  # /etc/hosts or mDNS: loopback and the LAN address
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.1.1", 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", 0)),
            ]
        return real(host, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert not is_loopback_host("devbox")
    with pytest.raises(ConfigError, match="control_token"):
        load_settings(host="devbox")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_empty_host_in_the_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.host"):
        load_settings(config_file=write(tmp_path, '[server]\nhost = ""\n'))


def test_empty_host_with_a_token_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.host"):
        load_settings(config_file=write(tmp_path, '[server]\nhost = ""\ncontrol_token = "t"\n'))


def test_empty_host_on_the_command_line_and_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--host"):
        load_settings(host="")
    monkeypatch.setenv("POWERGATE_HOST", "")
    with pytest.raises(ConfigError, match="POWERGATE_HOST"):
        load_settings()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_every_interface_needs_the_token(host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="control_token"):
        load_settings(host=host)
    monkeypatch.setenv("POWERGATE_HOST", host)
    with pytest.raises(ConfigError, match="control_token"):
        load_settings()
    # with a token it is allowed, and known for what it is
    s = load_settings(config_file=write(tmp_path, '[server]\ncontrol_token = "t"\n'))
    assert s.server.host == host and not s.server.is_loopback


def test_run_with_an_empty_host_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[server]\nhost = ""\n')
    r = run_cli("run", "--no-tray", "--config", str(cfg), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "server.host" in r.stderr
    r = run_cli("run", "--no-tray", "--host", "", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--host" in r.stderr
