"""The sampler: one thread, the profile's interval, changed live."""

from __future__ import annotations

import threading
import time

from agent.power.base import PowerSnapshot
from agent.power.monitor import PowerMonitor
from tests.conftest import wait_for


class CountingSource:
    name = "test"

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.times: list[float] = []

    def read(self) -> PowerSnapshot:
        self.threads.add(threading.get_ident())
        self.times.append(time.monotonic())
        return PowerSnapshot(plugged=True)


def test_samples_on_one_thread_at_the_interval_and_reschedules() -> None:
    src = CountingSource()
    got: list[PowerSnapshot] = []
    m = PowerMonitor(src, 5.0, got.append)
    m.start()
    try:
        assert wait_for(lambda: len(got) == 1, timeout=3)  # first sample at once
        time.sleep(0.5)
        assert len(got) == 1  # nothing before the 5 s interval
        m.set_interval(0.1)
        assert wait_for(lambda: len(got) >= 6, timeout=5)
        assert len(src.threads) == 1 and threading.get_ident() not in src.threads
    finally:
        m.stop()
    n = len(got)
    time.sleep(0.3)
    assert len(got) == n  # stopped means stopped


def test_a_failing_source_does_not_stop_sampling() -> None:
    class Flaky(CountingSource):
        def read(self) -> PowerSnapshot:
            super().read()
            if len(self.times) % 2:
                raise OSError("sensor gone")
            return PowerSnapshot(plugged=False)

    got: list[PowerSnapshot] = []
    m = PowerMonitor(Flaky(), 0.1, got.append)
    m.start()
    try:
        assert wait_for(lambda: len(got) >= 3, timeout=5)
    finally:
        m.stop()
