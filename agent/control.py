"""The one place that changes the agent's profile, mode and cache pause.

The HTTP control API, the tray and the automatic policy all call these
methods on the event loop (the tray and sampler hand their calls over with
loop.call_soon_threadsafe), so there is exactly one path to a profile change.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent.config import Settings
from agent.profiles import BALANCED, Profile

log = logging.getLogger(__name__)

HISTORY_LENGTH = 500  # profile changes kept for status and the dashboard
MODES = ("auto", "manual")


@dataclass(frozen=True)
class ProfileChange:
    at: float
    previous: str | None
    profile: str
    mode: str
    reason: str
    source: str  # "start", "api", "tray", "cli", "policy"


class UnknownProfile(ValueError):
    def __init__(self, name: str, valid: list[str]) -> None:
        self.valid = valid
        super().__init__(f"unknown profile {name!r}; valid: {', '.join(['auto', *valid])}")


Listener = Callable[[Profile, ProfileChange], None]


class Controller:
    """Holds the profile in force; every change is recorded with its reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.history: deque[ProfileChange] = deque(maxlen=HISTORY_LENGTH)
        self.listeners: list[Listener] = []
        self.cache_paused = False
        initial = settings.initial_profile
        self.mode = "auto" if initial == "auto" else "manual"
        # In auto mode the policy picks the real profile at its first sample; until then
        # balanced is the safe middle.
        name = BALANCED if initial == "auto" else initial
        self.profile: Profile = settings.effective_profile(name)
        self._record(None, self.profile.name, "start", "start")

    @property
    def profile_names(self) -> list[str]:
        return list(self.settings.profiles)

    def _record(self, previous: str | None, name: str, reason: str, source: str) -> ProfileChange:
        change = ProfileChange(time.time(), previous, name, self.mode, reason, source)
        self.history.append(change)
        return change

    def set_profile(self, name: str, *, reason: str, source: str, manual: bool = True) -> ProfileChange | None:
        """Switch to a profile. A manual choice also switches the mode to manual."""
        if name not in self.settings.profiles:
            raise UnknownProfile(name, self.profile_names)
        if manual:
            self.mode = "manual"
        previous = self.profile.name
        if name == previous and manual:
            return self._record(previous, name, reason, source)
        if name == previous:
            return None
        self.profile = self.settings.effective_profile(name)
        change = self._record(previous, name, reason, source)
        log.info("profile %s -> %s (%s, %s)", previous, name, reason, source)
        for listener in list(self.listeners):
            try:
                listener(self.profile, change)
            except Exception:  # a listener (tray, notifier) must never break a switch
                log.exception("profile listener failed")
        return change

    def set_mode(self, mode: str, *, source: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: auto, manual")
        if mode != self.mode:
            self.mode = mode
            self._record(self.profile.name, self.profile.name, f"mode {mode}", source)

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "mode": self.mode,
            "profiles": self.profile_names,
            "settings": self.profile.as_dict(),
            "cache_paused": self.cache_paused,
            "history": [asdict(c) for c in list(self.history)[-50:]],
        }
