"""The context size (`num_ctx`) each request is sent with: never smaller than the client asked.

Ollama reloads a model whenever a request asks for another `num_ctx` than its loaded
runner has, so powergate sends one value per model instead of each client's own. That
value is only ever rounded *up*: the largest of what the client asked, the profile's
`num_ctx` and the context of the runner Ollama already has loaded (`context_length` in
`/api/ps`). A RAG client that needs 32768 gets at least 32768; a client that sends none
gets the profile's value, or the loaded runner's if that is bigger (no reload).

A profile may set `num_ctx_max` to cap it (0, the default, means no cap); a capped
answer says so in the `X-Powergate-Num-Ctx-Capped` header.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.profiles import Profile
from agent.routing import strip_latest

REFRESH_S = 10.0  # seconds between two reads of /api/ps (only when requests come in)
H_NUM_CTX_CAPPED = "X-Powergate-Num-Ctx-Capped"  # "asked=32768; sent=8192"


@dataclass(frozen=True)
class ContextChoice:
    sent: int
    wanted: int  # before the profile's cap

    @property
    def capped(self) -> bool:
        return self.sent < self.wanted

    def header(self) -> dict[str, str]:
        return {H_NUM_CTX_CAPPED: f"asked={self.wanted}; sent={self.sent}"} if self.capped else {}


class RunnerContexts:
    """What context each model's loaded runner has, from /api/ps and from what we sent."""

    def __init__(self) -> None:
        self._by_model: dict[str, int] = {}
        self._read_at = float("-inf")

    def loaded(self, model: str) -> int:
        return self._by_model.get(strip_latest(model), 0)

    async def refresh(self, upstreams: Iterable[Any]) -> None:
        """Ask every upstream what its runners have, at most every REFRESH_S seconds."""
        now = time.monotonic()
        if now - self._read_at < REFRESH_S:
            return
        self._read_at = now
        seen: dict[str, int] = {}
        for up in upstreams:
            for name, ctx in (await up.loaded_contexts()).items():
                key = strip_latest(name)
                seen[key] = max(seen.get(key, 0), ctx)
        self._by_model = seen

    def choose(self, model: str, profile: Profile, asked: Any) -> ContextChoice:
        """The num_ctx to send for `model`; remembered as what its runner will have."""
        client = asked if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0 else 0
        wanted = max(client, profile.num_ctx, self.loaded(model))
        sent = min(wanted, profile.num_ctx_max) if profile.num_ctx_max > 0 else wanted
        self._by_model[strip_latest(model)] = sent
        return ContextChoice(sent, wanted)
