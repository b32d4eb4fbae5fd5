"""When the policy sees the CPU busy, the model's threads are limited too (auto mode only)."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_settings
from agent.control import Controller
from agent.power.base import PowerSnapshot
from agent.runtime import Runtime


def snap(at: float, cpu: float, plugged: bool = True) -> PowerSnapshot:
    return PowerSnapshot(plugged=plugged, percent=80, cpu_percent=cpu, ram_available_mb=8000, at=at)


def controller(tmp_path: Path, profile: str | None = None) -> Controller:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    return Controller(load_settings(config_file=cfg, data_dir=tmp_path / "d", profile=profile))


def test_busy_cpu_lowers_the_profile_and_halves_the_threads(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.on_snapshot(snap(0, 10))
    assert c.profile.name == "performance" and c.profile.resolved_num_thread() is None
    c.on_snapshot(snap(1, 95))
    c.on_snapshot(snap(70, 95))  # busy for longer than the dwell time
    assert c.profile.name == "balanced"
    assert c.profile.num_thread == "half" and c.profile.resolved_num_thread(8) == 4
    assert "threads limited" in c.history[-1].reason
    c.on_snapshot(snap(80, 20))
    c.on_snapshot(snap(150, 20))  # calm for longer than the dwell time
    assert c.profile.name == "performance" and c.profile.num_thread == "auto"


def test_busy_cpu_on_battery_halves_the_threads_of_the_same_profile(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.on_snapshot(snap(0, 95, plugged=False))
    assert c.profile.name == "balanced" and c.profile.num_thread == "auto"
    c.on_snapshot(snap(70, 95, plugged=False))
    assert c.profile.name == "balanced" and c.profile.num_thread == "half"


def test_a_manual_choice_keeps_its_threads(tmp_path: Path) -> None:
    c = controller(tmp_path, profile="performance")
    c.on_snapshot(snap(0, 95))
    c.on_snapshot(snap(70, 95))
    assert c.profile.name == "performance" and c.profile.num_thread == "auto"


async def test_the_runtime_sends_the_limited_threads(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    rt = Runtime(load_settings(config_file=cfg, data_dir=tmp_path / "d"))
    rt.controller.on_snapshot(snap(0, 95))
    rt.controller.on_snapshot(snap(70, 95))
    body = {"model": "m", "prompt": "x", "options": {"num_thread": 16}}
    await rt.normalise_runner(body, rt.controller.profile, "generate")
    assert body["options"]["num_thread"] == rt.controller.profile.resolved_num_thread() >= 1
    await rt.aclose()
