"""Item 9: data dir, cache, logs and state are the user's alone (POSIX modes; on Windows
the ACL is checked and repaired, tested here with the Windows calls injected)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from agent.logs import setup_logging
from agent.platform import private
from agent.platform.private import BROAD_SIDS, Ace, WindowsAcl
from agent.platform.single_instance import SingleInstance
from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimServer

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
USER_SID = "S-1-5-21-1111-2222-3333-1001"
FULL = 0x1F01FF


def others_can_read(p: Path) -> bool:
    return bool(p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def all_paths(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


@posix
def test_cache_and_data_dir_are_private(sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "cache").mkdir(mode=0o755)
    old = data / "cache" / "left-by-an-older-version.db"
    old.write_text("prompt")
    old.chmod(0o644)
    gw = make_gateway(sim.url, data_dir=data)
    with gw.client() as c:
        assert (
            c.post(
                "/api/generate", json={"model": "qwen2.5-coder:1.5b", "prompt": "secret", "stream": False}
            ).status_code
            == 200
        )
    assert wait_for(lambda: any((data / "cache").glob("*.db*")), timeout=10)
    assert wait_for(lambda: gw.runtime.cache.disk.st.writes >= 1, timeout=10)
    paths = all_paths(data)
    assert len(paths) >= 4
    leaky = [str(p) for p in paths if others_can_read(p)]
    assert not leaky, leaky


@posix
def test_logs_are_private(tmp_path: Path) -> None:
    import logging

    log_dir = tmp_path / "logs"
    path = setup_logging(log_dir)
    try:
        logging.getLogger("x").warning("hello")
        assert path is not None and path.exists()
        assert not others_can_read(log_dir) and not others_can_read(path)
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
            h.close()


@posix
def test_state_is_private(tmp_path: Path) -> None:
    inst = SingleInstance(tmp_path / "state", windows=False)
    inst.acquire("http://127.0.0.1:1")
    try:
        assert json.loads((tmp_path / "state" / "agent.json").read_text())["url"]
        leaky = [str(p) for p in all_paths(tmp_path / "state") if others_can_read(p)]
        assert not leaky, leaky
    finally:
        inst.release()


# ------------------------------------------------------------------ Windows, calls injected


class FakeWindows:
    """A directory's DACL and the icacls commands run against it."""

    def __init__(self, aces: list[Ace]) -> None:
        self.aces = aces
        self.commands: list[list[str]] = []

    def read(self, path: Path) -> list[Ace]:
        return list(self.aces)

    def run(self, argv: list[str]) -> int:  # type: ignore[override]
        self.commands.append(list(argv))
        if "/remove:g" in argv:
            gone = {a.lstrip("*") for a in argv if a.startswith("*")}
            self.aces = [a for a in self.aces if a.sid not in gone]
        return 0


def test_windows_private_profile_dir_is_left_alone(tmp_path: Path) -> None:
    fake = FakeWindows([Ace(USER_SID, FULL, True), Ace("S-1-5-18", FULL, True), Ace("S-1-5-32-544", FULL, True)])
    assert WindowsAcl(fake.read, fake.run).ensure_private(tmp_path) == []
    assert fake.commands == []


def test_windows_a_deny_ace_for_everyone_is_not_a_grant(tmp_path: Path) -> None:
    fake = FakeWindows([Ace(USER_SID, FULL, True), Ace("S-1-1-0", FULL, False)])
    assert WindowsAcl(fake.read, fake.run).ensure_private(tmp_path) == []


@pytest.mark.parametrize("sid", sorted(BROAD_SIDS))
def test_windows_loosened_acl_is_repaired(tmp_path: Path, sid: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeWindows([Ace(USER_SID, FULL, True), Ace(sid, 0x120089, True)])  # FILE_GENERIC_READ
    acl = WindowsAcl(fake.read, fake.run)
    assert acl.ensure_private(tmp_path) == [sid]
    assert fake.commands[0] == ["icacls", str(tmp_path), "/inheritance:d", "/Q"]
    assert fake.commands[1][:3] == ["icacls", str(tmp_path), "/remove:g"] and f"*{sid}" in fake.commands[1]
    assert acl.broad_grants(tmp_path) == []
    assert BROAD_SIDS[sid] in caplog.text


def test_private_dir_takes_the_windows_branch_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeWindows([Ace(USER_SID, FULL, True), Ace("S-1-5-11", 0x80000000, True)])
    monkeypatch.setattr(private, "read_aces_win32", fake.read)
    monkeypatch.setattr(private, "run_icacls", fake.run)
    monkeypatch.setattr(private.sys, "platform", "win32")
    private.private_dir(tmp_path / "data")
    monkeypatch.undo()
    assert (tmp_path / "data").is_dir()
    assert any("/remove:g" in c and "*S-1-5-11" in c for c in fake.commands)
