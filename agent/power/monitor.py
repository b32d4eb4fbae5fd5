"""The sampler: one apscheduler job on one worker thread reads the power source
at the active profile's interval and hands each snapshot to the event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from agent.power.base import PowerSnapshot, PowerSource

log = logging.getLogger(__name__)

JOB_ID = "power-sample"


class PowerMonitor:
    def __init__(self, source: PowerSource, interval_s: float, deliver: Callable[[PowerSnapshot], None]) -> None:
        self.source = source
        self.interval_s = interval_s
        self.deliver = deliver
        self.samples = 0
        # One worker thread: psutil keeps its cpu_percent baseline per thread.
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )

    def _sample(self) -> None:
        try:
            snap = self.source.read()
        except Exception:  # a failing sensor must not stop the sampler
            log.exception("reading power state failed")
            return
        self.samples += 1
        self.deliver(snap)

    def start(self) -> None:
        self.scheduler.add_job(
            self._sample, "interval", seconds=self.interval_s, id=JOB_ID, next_run_time=datetime.now(timezone.utc)
        )
        self.scheduler.start()

    def set_interval(self, seconds: float) -> None:
        if seconds != self.interval_s and self.scheduler.running:
            self.interval_s = seconds
            self.scheduler.reschedule_job(JOB_ID, trigger="interval", seconds=seconds)
            log.debug("power sampling every %.1f s", seconds)

    def sample_now(self) -> None:
        """Run one sample as soon as the worker is free (after a manual change, for instance)."""
        if self.scheduler.running:
            self.scheduler.modify_job(JOB_ID, next_run_time=datetime.now(timezone.utc))

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
