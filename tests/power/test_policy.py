"""The auto policy on scripted sequences of snapshots: right answers, and no flapping."""

from __future__ import annotations

from agent.power.base import PowerSnapshot
from agent.power.policy import AutoPolicy, PolicyConfig


def snap(
    plugged: bool = True, percent: float | None = 80, cpu: float = 10, ram: float = 8000, saver: bool = False
) -> PowerSnapshot:
    return PowerSnapshot(plugged=plugged, percent=percent, cpu_percent=cpu, ram_available_mb=ram, battery_saver=saver)


def run(policy: AutoPolicy, steps: list[tuple[float, PowerSnapshot]]) -> list[str]:
    return [policy.update(s, now=t).profile for t, s in steps]


def test_power_source_decides_at_once() -> None:
    p = AutoPolicy()
    assert run(p, [(0, snap(True)), (5, snap(False)), (10, snap(True))]) == ["performance", "balanced", "performance"]
    d = p.update(snap(False), now=15)
    assert d.power_changed and d.reason == "on battery"


def test_desktop_without_battery_is_performance() -> None:
    d = AutoPolicy().update(PowerSnapshot(plugged=True, percent=None, has_battery=False), now=0)
    assert d.profile == "performance" and "desktop" in d.reason


def test_battery_thresholds_have_hysteresis() -> None:
    p = AutoPolicy()
    levels = [30, 24, 21, 20, 21, 23, 24, 22, 19, 24, 25, 24, 21, 20]
    got = run(p, [(i * 30, snap(False, lv)) for i, lv in enumerate(levels)])
    assert got == [
        "balanced",
        "balanced",
        "balanced",
        "battery-saver",  # enter at 20%
        "battery-saver",
        "battery-saver",
        "battery-saver",
        "battery-saver",
        "battery-saver",
        "battery-saver",
        "balanced",  # leave at 25%
        "balanced",
        "balanced",
        "battery-saver",
    ]
    switches = sum(1 for a, b in zip(got, got[1:], strict=False) if a != b)
    assert switches == 3


def test_os_battery_saver_wins_and_counts_as_a_source_change() -> None:
    p = AutoPolicy()
    p.update(snap(False, 90), now=0)
    d = p.update(snap(False, 90, saver=True), now=10)
    assert d.profile == "battery-saver" and d.power_changed and "battery saver" in d.reason
    d = p.update(snap(True, 90, saver=True), now=20)
    assert d.profile == "battery-saver"  # the OS asks to save power even on AC
    assert p.update(snap(True, 90), now=30).profile == "performance"


def test_cpu_load_needs_dwell_and_ignores_spikes() -> None:
    p = AutoPolicy(PolicyConfig(cpu_high=85, cpu_low=60, cpu_dwell_s=60))
    seq = [
        (0, 95),
        (5, 40),
        (10, 95),
        (40, 96),
        (69, 97),
        (70, 98),
        (75, 70),
        (80, 90),
        (85, 50),
        (100, 55),
        (144, 50),
        (145, 40),
    ]
    got = run(p, [(t, snap(True, cpu=c)) for t, c in seq])
    assert got == [
        "performance",
        "performance",  # a spike is not a build
        "performance",
        "performance",
        "performance",
        "balanced",  # 60 s above 85%
        "balanced",
        "balanced",  # 70% is neither high nor low
        "balanced",
        "balanced",
        "balanced",
        "performance",  # 60 s below 60%
    ]


def test_memory_pressure_hysteresis() -> None:
    p = AutoPolicy(PolicyConfig(ram_low_mb=1024, ram_ok_mb=1536))
    flags = [p.update(snap(ram=r), now=i).memory_pressure for i, r in enumerate([4000, 900, 1200, 1500, 1600, 1000])]
    assert flags == [False, True, True, True, False, True]
