"""The command line tells the truth: it finds the agent the way `run` leaves it,
--data-dir means what POWERGATE_DATA_DIR means, start-up says each fact once with
no raw Python warnings, exit codes, `config show` reads back, sentences and sizes."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import _fmt_cleared, fmt_size
from agent.config import load_settings, settings_as_dict
from agent.tray.notify import Notifier
from tests.conftest import agent_up, closed_port_url, free_port, run_cli, start_agent, stop_agent, wait_for


def _env_without_data_dir(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POWERGATE_DATA_DIR", "POWERGATE_PORT", "XDG_RUNTIME_DIR")}
    env.update(extra)
    return env


@pytest.fixture
def agent_on_its_own_port(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], Path, int]]:
    """An agent started with --data-dir and --port only (no environment), as a user would."""
    port = free_port()
    data = tmp_path / "mydata"
    power = tmp_path / "power.json"
    power.write_text('{"plugged": false, "percent": 80, "cpu_percent": 3}')
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n')
    env = _env_without_data_dir(POWERGATE_CONFIG=str(cfg), POWERGATE_UPSTREAM=closed_port_url())
    proc = start_agent(env, "--no-tray", "--data-dir", str(data), "--port", str(port))
    assert wait_for(lambda: agent_up(port), timeout=20, interval=0.1), stop_agent(proc)
    yield proc, env, data, port
    stop_agent(proc)


def test_commands_find_the_agent_of_their_data_dir(
    agent_on_its_own_port: tuple[subprocess.Popen[str], dict[str, str], Path, int], tmp_path: Path
) -> None:
    proc, env, data, port = agent_on_its_own_port
    # no --port: status finds the agent through what `run` wrote in its data dir
    r = run_cli("status", "--data-dir", str(data), env=env)
    assert r.returncode == 0 and f":{port}" in r.stdout, r.stderr
    # the variable means the same as the flag
    r = run_cli("status", env=dict(env, POWERGATE_DATA_DIR=str(data)))
    assert r.returncode == 0 and f":{port}" in r.stdout, r.stderr
    r = run_cli("profile", "battery-saver", "--data-dir", str(data), env=env)
    assert r.returncode == 0 and r.stdout.strip() == "battery-saver (manual)"
    r = run_cli("cache", "stats", "--data-dir", str(data), env=env)
    assert r.returncode == 0 and "memory" in r.stdout and "0 bytes" in r.stdout
    r = run_cli("cache", "clear", "--data-dir", str(data), env=env)
    assert r.returncode == 0 and r.stdout.strip() == "The cache is cleared (it held nothing)."
    # bad usage is exit 2, and says what is valid
    r = run_cli("profile", "nosuch", "--data-dir", str(data), env=env)
    assert r.returncode == 2 and "unknown profile 'nosuch'" in r.stderr and "battery-saver" in r.stderr
    # a second run of the same data dir names where the first listens
    r = run_cli("run", "--no-tray", "--data-dir", str(data), "--port", str(free_port()), env=env)
    assert r.returncode == 1 and f"already running on http://127.0.0.1:{port}" in r.stderr
    # another data dir is another agent: none runs there
    r = run_cli("status", "--data-dir", str(tmp_path / "elsewhere"), env=env)
    assert r.returncode == 1 and "not running" in r.stderr
    # --data-dir moves the log as the variable does
    err = stop_agent(proc)
    log = (data / "logs" / "powergate.log").read_text()
    assert "listening on" in log
    # start-up says each fact once, with no raw Python warnings (XDG_RUNTIME_DIR is unset here)
    assert "Warning" not in err and "warnings.warn" not in err, err
    assert len([ln for ln in err.splitlines() if "not reachable" in ln]) == 1, err


def test_config_show_reads_back_to_the_same_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "in.toml"
    cfg.write_text(
        '[server]\nport = 11500\nmax_body_mb = 16\n\n'
        '[[upstream]]\nurl = "http://127.0.0.1:11434"\nmax_concurrency = 2\n\n'
        '[[upstream]]\nurl = "http://10.0.0.5:11434"\nweight = 3\n\n'
        '[cache]\nmemory_mb = 64\nttl_s = 3600\n\n'
        '[profiles.quiet]\nmemory_mb = 16\nprefetch = "off"\ninterval_s = 0.5\n'
    )
    r = run_cli("config", "show", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    shown = r.stdout
    assert shown.count("[[upstream]]") == 2 and "max_body_mb = 16\n" in shown and "memory_mb = 64\n" in shown
    assert "16.0" not in shown and "604800.0" not in shown  # integers stay integers
    out = tmp_path / "out.toml"
    out.write_text(shown)
    first = settings_as_dict(load_settings(config_file=cfg))
    again = settings_as_dict(load_settings(config_file=out))
    assert again == first
    r2 = run_cli("config", "show", "--config", str(out))
    assert r2.stdout.splitlines()[1:] == shown.splitlines()[1:]  # only the "# file:" line differs


def test_config_show_keeps_the_token_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "in.toml"
    cfg.write_text('[server]\ncontrol_token = "s3cret-token"\n')
    r = run_cli("config", "show", "--config", str(cfg))
    assert r.returncode == 0 and "s3cret-token" not in r.stdout and "control_token is set" in r.stdout


def test_sizes_and_sentences() -> None:
    assert fmt_size(0) == "0 bytes" and fmt_size(512) == "512 bytes"
    assert fmt_size(3_400) == "3.4 kB" and fmt_size(999_999) == "1000.0 kB"
    assert fmt_size(12_000_000) == "12.0 MB" and fmt_size(2_500_000_000) == "2.5 GB"
    assert _fmt_cleared({"cleared": {"memory": 2, "disk": 1}}) == "The cache is cleared: 3 entries removed (memory 2, disk 1)."
    assert _fmt_cleared({"cleared": {"memory": 1}}) == "The cache is cleared: 1 entry removed (memory 1)."


def test_a_missing_notification_service_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def no_service(title: str, message: str) -> None:
        raise OSError("org.freedesktop.Notifications was not provided by any .service files")

    t = [0.0]
    n = Notifier(fallback=no_service, clock=lambda: t[0])
    with caplog.at_level(logging.DEBUG, logger="agent.tray.notify"):
        for i in range(3):
            t[0] += 100  # past every rate limit
            assert n.notify(f"switch{i}", "powergate", "switched")
        n._pool.shutdown(wait=True)
    shown = [r for r in caplog.records if r.levelno >= logging.INFO and "not shown" in r.getMessage()]
    assert len(shown) == 1 and "powergate works without them" in shown[0].getMessage()
    assert len([r for r in caplog.records if "not shown" in r.getMessage()]) == 3

