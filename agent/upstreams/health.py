"""What powergate knows of one upstream's health, and who hears when it changes.

The tray badge, notifications and the pool's choice all read this one record;
listeners are told only when reachability flips, not on every check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HealthListener = Callable[[Any, bool], None]  # (upstream, reachable)


@dataclass
class UpstreamHealth:
    reachable: bool | None = None  # None: not checked yet
    version: str = ""
    error: str = ""
    checked_at: float = 0.0
    listeners: list[HealthListener] = field(default_factory=list)

    def mark(self, owner: Any, ok: bool, error: str = "") -> None:
        """Record a check's outcome; listeners hear about a flip (owner is passed to them)."""
        changed = self.reachable is not ok
        self.reachable = ok
        self.error = error
        self.checked_at = time.time()
        if not changed:
            return
        if ok:
            log.info("upstream %s is reachable", owner.url)
        else:
            log.warning("upstream %s is not reachable: %s", owner.url, error)
        for listener in list(self.listeners):
            try:
                listener(owner, ok)
            except Exception:  # the tray or a notifier must not break a request
                log.exception("upstream listener failed")
