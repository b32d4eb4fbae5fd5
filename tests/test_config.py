"""Config: TOML validated at start, environment overrides, `powergate config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import ConfigError
from tests.conftest import run_cli


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_match_the_interface(tmp_path: Path) -> None:
    s = load_settings(config_file=None)
    assert (s.server.host, s.server.port) == ("127.0.0.1", 11435)
    assert [u.url for u in s.upstreams] == ["http://127.0.0.1:11434"]
    assert s.server.max_body_mb == 32 and s.cache.chat == "deterministic"
    assert set(s.profiles) == {"performance", "balanced", "battery-saver"}
    assert s.models.small == "qwen2.5-coder:1.5b" and s.models.embed == "nomic-embed-text"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nhots = 1\n", "server.hots"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[cache]\nchat = 'sometimes'\n", "cache.chat"),
        ("[cache]\nredis_url = 'http://x'\n", "cache.redis_url"),
        ("[power]\nsource = 'battery'\n", "power.source"),
        ("[power]\ninterval_s = 0.01\n", "power.interval_s"),
        ("[[upstream]]\nurl = 'ftp://x'\n", "upstream[0].url"),
        ("[[upstream]]\nweight = 2\n", "upstream[0].url"),
        ("[profiles.fast]\nprefetch = 'always'\n", "profiles.fast.prefetch"),
        ("[profiles.balanced]\nnum_thread = 'lots'\n", "profiles.balanced.num_thread"),
        ("[profiles.balanced]\nkeep_alive = 'forever'\n", "profiles.balanced.keep_alive"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[server]\nhost = '0.0.0.0'\n", "server.host"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(config_file=path)
    assert e.value.key == key and str(path) in str(e.value)


def test_overrides_and_custom_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "[server]\nport = 12000\n[[upstream]]\nurl = 'http://127.0.0.1:1'\n"
        "[models]\nsmall = 'tiny'\n[profiles.battery-saver]\nkeep_alive = '1m'\n"
        "[profiles.quiet]\ncap = 'small'\nprefetch = 'off'\n",
    )
    s = load_settings(config_file=path)
    assert s.server.port == 12000 and s.models.small == "tiny"
    assert s.profiles["battery-saver"].keep_alive == "1m" and s.profiles["battery-saver"].enforce_cap
    assert s.profiles["quiet"].cap == "small" and s.profiles["quiet"].memory_mb == 128  # based on balanced
    monkeypatch.setenv("POWERGATE_PORT", "12001")
    monkeypatch.setenv("POWERGATE_UPSTREAM", "http://127.0.0.1:2, http://127.0.0.1:3")
    s = load_settings(config_file=path)
    assert s.server.port == 12001 and [u.url for u in s.upstreams] == ["http://127.0.0.1:2", "http://127.0.0.1:3"]
    s = load_settings(config_file=path, port=12002, upstreams=["http://127.0.0.1:4"])
    assert s.server.port == 12002 and [u.url for u in s.upstreams] == ["http://127.0.0.1:4"]


def test_cli_run_exits_2_naming_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[cache]\nmemory_mb = -5\n")
    r = run_cli("run", "--no-tray", "--config", str(path))
    assert r.returncode == 2
    assert "cache.memory_mb" in r.stderr and str(path) in r.stderr


def test_cli_config_path_and_show(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 12345\ncontrol_token = 'hide-me'\n")
    r = run_cli("config", "path", env={"POWERGATE_CONFIG": str(path)})
    assert r.returncode == 0 and r.stdout.strip() == str(path)
    r = run_cli("config", "show", "--config", str(path))
    assert r.returncode == 0 and "port = 12345" in r.stdout and "hide-me" not in r.stdout
    assert "[profiles.battery-saver]" in r.stdout
