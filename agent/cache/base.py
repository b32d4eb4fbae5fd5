"""The cache tier protocol: memory, disk and Redis each implement it.

Values are `Entry` objects. The memory tier keeps them as they are, so that a
hit costs no decoding; disk and Redis tiers store `Entry.encoded()` bytes
(JSON, compressed, optionally encrypted by the codec they are given).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Entry:
    """One cached answer: the chunks of the upstream stream, as raw JSON lines."""

    api: str  # "generate", "chat", "v1chat", "v1completion", "embedding"
    model: str
    chunks: list[bytes]  # one JSON document per chunk (NDJSON line / SSE data payload)
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. typeahead: {"prompt": ..., "family": ...}
    # derived, cached on first use
    _encoded: bytes | None = field(default=None, repr=False, compare=False)
    _replay: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def encoded(self) -> bytes:
        """A header line, then the chunks one per line (chunks are JSON: no raw newlines)."""
        if self._encoded is None:
            head = {"v": 2, "api": self.api, "model": self.model, "created": self.created, "meta": self.meta}
            self._encoded = b"\n".join([json.dumps(head, separators=(",", ":")).encode(), *self.chunks])
        return self._encoded

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        lines = raw.split(b"\n")
        head = json.loads(lines[0])
        if head.get("v") != 2:
            raise ValueError("unknown entry version")
        e = cls(head["api"], head["model"], lines[1:], head["created"], head.get("meta") or {})
        e._encoded = raw
        return e

    @property
    def size(self) -> int:
        return len(self.encoded())


@dataclass
class TierStats:
    name: str
    enabled: bool = True
    available: bool = True
    error: str = ""
    entries: int = 0
    bytes: int = 0
    max_bytes: int = 0
    hits: int = 0
    misses: int = 0
    writes: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CacheTier(Protocol):
    name: str

    async def get(self, key: str) -> Entry | None: ...

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def clear(self) -> int: ...

    async def stats(self) -> TierStats: ...

    async def resize(self, max_bytes: int) -> None: ...

    async def aclose(self) -> None: ...
