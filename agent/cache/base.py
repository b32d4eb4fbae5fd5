"""The cache tier protocol: memory, disk and Redis each implement it.

Values are `Entry` objects. The memory tier keeps them as they are, so that a
hit costs no decoding; disk and Redis tiers store `Entry.encoded()` bytes
(JSON, compressed, optionally encrypted by the codec they are given).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# CPython object sizes, for counting what an entry really costs (64-bit builds)
BYTES_OVERHEAD = 33  # a bytes object's header
POINTER = 8  # a list slot
ENTRY_OVERHEAD = 600  # the Entry, its dicts and list, the tier's bookkeeping


@dataclass
class Entry:
    """One cached answer: the chunks of the upstream stream, as raw JSON lines."""

    api: str  # "generate", "chat", "v1chat", "v1completion", "embedding"
    model: str
    chunks: list[bytes]  # one JSON document per chunk (NDJSON line / SSE data payload)
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. typeahead: {"prompt": ..., "family": ...}
    # the answer in the forms clients asked for (stream with/without usage, whole), kept
    # for the next hit; a tier holding the entry counts them through `on_grow`
    _replay: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    on_grow: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def _head(self) -> bytes:
        head = {"v": 2, "api": self.api, "model": self.model, "created": self.created, "meta": self.meta}
        return json.dumps(head, separators=(",", ":")).encode()

    def encoded(self) -> bytes:
        """A header line, then the chunks one per line (chunks are JSON: no raw newlines).
        Built on each call, not kept: a kept copy doubled what the memory tier held."""
        return b"\n".join([self._head(), *self.chunks])

    def replay_form(self, form: str) -> bytes | None:
        return self._replay.get(form)

    def remember_form(self, form: str, content: bytes) -> None:
        """Keep a replay form; the tier that holds this entry counts its bytes."""
        if form in self._replay:
            return
        self._replay[form] = content
        if self.on_grow is not None:
            self.on_grow(len(content) + BYTES_OVERHEAD)

    @property
    def footprint(self) -> int:
        """Bytes this entry really holds in memory: chunks and replay forms with their
        object overheads (the memory tier's bound is on this, not on the encoded size)."""
        chunks = sum(len(c) for c in self.chunks) + len(self.chunks) * (BYTES_OVERHEAD + POINTER)
        forms = sum(len(v) + BYTES_OVERHEAD for v in self._replay.values())
        meta = len(json.dumps(self.meta)) if self.meta else 0
        return ENTRY_OVERHEAD + chunks + forms + len(self.model) + meta

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        lines = raw.split(b"\n")
        head = json.loads(lines[0])
        if head.get("v") != 2:
            raise ValueError("unknown entry version")
        return cls(head["api"], head["model"], lines[1:], head["created"], head.get("meta") or {})

    @property
    def size(self) -> int:
        """Length of `encoded()`, without building it."""
        return len(self._head()) + sum(len(c) for c in self.chunks) + len(self.chunks)


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
    failures: int = 0  # calls that failed on the tier's side (a full disk, an absent Redis)
    rejected: int = 0  # values read back that failed their check (Redis: HMAC, size)

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
