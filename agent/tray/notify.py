"""Desktop notifications: profile switches (with the reason), Ollama down/up, first start.

Rate-limited, optional ([notifications] enabled), and never able to break the
agent: pystray's own notify where the backend has it (no second tray icon on
Windows), plyer otherwise, on a worker thread so a slow D-Bus never blocks.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

PER_KIND_INTERVAL_S = 30.0  # the same kind of news at most this often
BURST = 4  # at most this many notifications ...
BURST_WINDOW_S = 120.0  # ... in this many seconds


def plyer_notify(title: str, message: str) -> None:
    import warnings

    from plyer import notification

    with warnings.catch_warnings():
        # plyer warns (instead of raising) when D-Bus or notify-send is missing; we log once.
        warnings.simplefilter("ignore")
        notification.notify(title=title, message=message, app_name="powergate", timeout=5)


class Notifier:
    def __init__(
        self,
        enabled: bool = True,
        icon: Callable[[], Any] = lambda: None,
        fallback: Callable[[str, str], None] = plyer_notify,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._icon = icon
        self._fallback = fallback
        self._clock = clock
        self._last_kind: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="notify")
        self.sent: list[tuple[str, str, str]] = []
        self.dropped = 0
        self.failures: set[str] = set()  # why notifications could not be shown, each logged once

    def notify(self, kind: str, title: str, message: str) -> bool:
        """Queue a notification; False when disabled or rate-limited."""
        if not self.enabled:
            return False
        now = self._clock()
        last = self._last_kind.get(kind)
        while self._recent and now - self._recent[0] > BURST_WINDOW_S:
            self._recent.popleft()
        if (last is not None and now - last < PER_KIND_INTERVAL_S) or len(self._recent) >= BURST:
            self.dropped += 1
            return False
        self._last_kind[kind] = now
        self._recent.append(now)
        self.sent.append((kind, title, message))
        self._pool.submit(self._deliver, title, message)
        return True

    def _deliver(self, title: str, message: str) -> None:
        try:
            icon = self._icon()
            if icon is not None and getattr(icon, "HAS_NOTIFICATION", False) and getattr(icon, "visible", False):
                icon.notify(message, title)
            else:
                self._fallback(title, message)
        except Exception as exc:  # a missing notification service is worth one log line, not one per switch
            why = f"{type(exc).__name__}: {exc}"
            if why not in self.failures:
                self.failures.add(why)
                log.info("notifications are not shown (%s); powergate works without them", why)
            else:
                log.debug("notification not shown (%s)", why)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
