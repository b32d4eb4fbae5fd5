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
from dataclasses import asdict, dataclass, replace
from typing import Any

from agent.config import Settings
from agent.power.base import PowerSnapshot
from agent.power.policy import AutoPolicy, Decision
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
        self.policy = AutoPolicy()
        self.power: PowerSnapshot | None = None
        self.decision: Decision | None = None
        initial = settings.initial_profile
        self.mode = "auto" if initial == "auto" else "manual"
        # A pinned manual choice stays across power-source changes; an unpinned one
        # (picking a profile in the tray) lasts until the charger is plugged or pulled.
        self.pinned = initial != "auto"
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

    def set_profile(
        self, name: str, *, reason: str, source: str, manual: bool = True, pin: bool = False
    ) -> ProfileChange | None:
        """Switch to a profile. A manual choice also switches the mode to manual."""
        if name not in self.settings.profiles:
            raise UnknownProfile(name, self.profile_names)
        if manual:
            self.mode = "manual"
            self.pinned = pin
        previous = self.profile.name
        profile = self._effective(name)
        if name == previous and profile == self.profile:
            return self._record(previous, name, reason, source) if manual else None
        if profile.num_thread != self.settings.effective_profile(name).num_thread:
            reason += f"; CPU busy: model threads limited to {profile.resolved_num_thread()}"
        self.profile = profile
        change = self._record(previous, name, reason, source)
        log.info("profile %s -> %s (%s, %s)", previous, name, reason, source)
        for listener in list(self.listeners):
            try:
                listener(self.profile, change)
            except Exception:  # a listener (tray, notifier) must never break a switch
                log.exception("profile listener failed")
        return change

    def _effective(self, name: str) -> Profile:
        # While the policy sees the CPU busy (another process took cores), a model server
        # left to its own thread count collapses (a 2-thread llama.cpp fell from ~550 to
        # ~100 prompt tok/s); half the cores keeps it steady. Only in auto mode: a manual
        # choice is the user's.
        p = self.settings.effective_profile(name)
        if self.mode == "auto" and self.policy.cpu_busy and p.num_thread == "auto":
            p = replace(p, num_thread="half")
        return p

    def set_mode(self, mode: str, *, source: str) -> None:
        """auto: follow the policy now; manual: pin the current profile."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: auto, manual")
        self.pinned = mode == "manual"
        if mode != self.mode:
            self.mode = mode
            self._record(self.profile.name, self.profile.name, f"mode {mode}", source)
        if mode == "auto" and self.decision is not None:
            self.set_profile(self.decision.profile, reason=self.decision.reason, source="policy", manual=False)

    def set_cache_paused(self, paused: bool, *, source: str) -> None:
        if paused != self.cache_paused:
            self.cache_paused = paused
            log.info("cache %s (%s)", "paused" if paused else "resumed", source)
            change = self._record(
                self.profile.name, self.profile.name, "cache paused" if paused else "cache resumed", source
            )
            for listener in list(self.listeners):
                try:
                    listener(self.profile, change)
                except Exception:
                    log.exception("listener failed")

    def on_snapshot(self, snap: PowerSnapshot) -> Decision:
        """A new power reading (on the loop thread): let the policy decide in auto mode."""
        self.power = snap
        decision = self.decision = self.policy.update(snap)
        if decision.power_changed and self.mode == "manual" and not self.pinned:
            self.mode = "auto"
            self._record(
                self.profile.name,
                self.profile.name,
                f"power source changed ({decision.reason}): back to auto",
                "policy",
            )
        if self.mode == "auto":
            self.set_profile(decision.profile, reason=decision.reason, source="policy", manual=False)
        return decision

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "mode": self.mode,
            "profiles": self.profile_names,
            "settings": self.profile.as_dict(),
            "pinned": self.pinned,
            "cache_paused": self.cache_paused,
            "power": self.power.as_dict() if self.power else None,
            "history": [asdict(c) for c in list(self.history)[-50:]],
        }
