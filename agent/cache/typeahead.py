"""Typeahead reuse: the user keeps typing into a suggestion we already have.

The editor's next request has the old prompt plus the typed characters (same
suffix, model and options). If the typed characters are the start of the
completion we gave for the old prompt, the rest of that completion is the
answer, at once and without the model.

Editors send a window: the last ~1,500 characters before the cursor, cut at a
line start. While the user types, that window's start moves down, so the new
prompt is often not an extension of the old one. A record therefore matches on
the text near the cursor, not on the whole prompt: the new prefix must be a
suffix of the old prefix that starts at one of its line starts (lines dropped
from the top only remove context), followed by text the old completion starts
with. The suffix, model and options (the family) must agree exactly, so a
completion computed for a different context is never served.

Index: per family, records by an anchor (a hash of the last `ANCHOR_CHARS`
characters of the stored prefix), and per record the hashes of the prefix's
suffixes at its first line starts. A lookup hashes the anchor at each possible
end of the old prefix in the new one (at most the longest completion's length
back), and only for a record found there compares the typed tail with the
completion and the hash of the whole shared text: no scan of all entries, and
no prompt text kept in memory. Raw FIM prompts (Continue, Twinny, CodeGPT) are
split at their markers, so reuse works while the typed text lands before the
suffix marker.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agent.cache.keys import digest
from agent.fim import marker_sets

MAX_FAMILIES = 1024
MAX_PER_FAMILY = 128
ANCHOR_CHARS = 64  # characters before the cursor that pick candidate records
DROP_SLACK_CHARS = 1024  # characters beyond the typed ones a window may drop from its top (a long line)
MAX_LINE_STARTS = 128  # suffix hashes kept per record
RECORD_OVERHEAD = 200  # bytes of a Record, its prompt hash and list slot besides the completion text
HASH_OVERHEAD = 90  # bytes per line-start hash of a record (the bytes object and its set slot)
MAX_COMPLETION_CHARS = 4096  # longer completions are not indexed (a lookup walks back this far)

# (families, prefix marker, suffix marker, middle marker or ""): from the one table in agent/fim.py
FIM_TEMPLATES = marker_sets()


def split_fim(prompt: str) -> tuple[str, tuple[str, str, str]] | None:
    """(prefix, context) of a raw FIM prompt, where context is everything else."""
    for name, pm, sm, mm in FIM_TEMPLATES:
        i = prompt.find(pm)
        j = prompt.find(sm)
        if i < 0 or j < 0:
            continue
        start = i + len(pm)
        if i < j:  # prefix-suffix-middle: the prefix ends at the suffix marker
            end = j
        else:  # suffix-prefix-middle: the prefix ends at the middle marker, or the end
            k = prompt.find(mm, start) if mm else -1
            end = k if k >= 0 else len(prompt)
        return prompt[start:end], (name, prompt[:start], prompt[end:])
    return None


def _h(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _anchor(text: str) -> int:
    # Python's own string hash: only picks candidates, every match is verified with _h.
    return hash(text[-ANCHOR_CHARS:])


def line_starts(text: str, limit: int) -> list[int]:
    """0 and every position after a newline, up to `limit` characters in and MAX_LINE_STARTS of them."""
    out = [0]
    i = text.find("\n")
    while 0 <= i < limit and i + 1 < len(text) and len(out) < MAX_LINE_STARTS:
        out.append(i + 1)
        i = text.find("\n", i + 1)
    return out


def window_typed(newer: str, older: str) -> str | None:
    """What was typed after `older` if `newer` is `older` with whole lines dropped from its top
    and text typed at its end (the same editing position, typed further, in a window whose
    start moved); None if it is not."""
    if newer.startswith(older):
        return newer[len(older) :]
    for i in line_starts(older, len(older))[1:]:
        rest = older[i:]
        if len(rest) < ANCHOR_CHARS:
            return None  # too little shared text to call it the same position
        if newer.startswith(rest):
            return newer[len(rest) :]
    return None


def window_extends(newer: str, older: str) -> bool:
    """`newer` is `older` typed further, in a window whose start may have moved."""
    return window_typed(newer, older) is not None


def same_position(newer: str, older: str) -> bool:
    """`newer` is `older` with whole lines dropped from its top and nothing typed: the
    editor's window moved, the cursor did not (e.g. the prompt after accepting a suggestion
    that a prefetch is already computing)."""
    if newer == older:
        return True
    if len(newer) >= len(older) or len(newer) < ANCHOR_CHARS or not older.endswith(newer):
        return False
    return older[len(older) - len(newer) - 1] == "\n"


@dataclass(frozen=True)
class Record:
    suffix_hashes: frozenset[bytes]  # hashes of prefix[i:] for its first line starts i
    prompt_hash: bytes  # hash of the whole prefix (one record per prefix)
    completion: str
    entry_key: str


@dataclass(frozen=True)
class Probe:
    family: str
    prefix: str


def probe_for(api: str, model: str, body: dict[str, Any], fields: dict[str, Any]) -> Probe | None:
    """The family and prompt prefix of a completion request (None if not a completion)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return None
    rest = {k: v for k, v in fields.items() if k != "prompt"}
    if body.get("raw"):
        fim = split_fim(prompt)
        if fim is not None:
            prefix, context = fim
            return Probe(digest("ta", api, model, rest, context), prefix)
    return Probe(digest("ta", api, model, rest), prompt)


class Family:
    def __init__(self) -> None:
        self.by_anchor: dict[int, list[Record]] = {}
        self.order: OrderedDict[bytes, int] = OrderedDict()  # prompt hash -> anchor, oldest first
        self.max_completion = 0
        self.bytes = 0


def _record_bytes(r: Record) -> int:
    return len(r.completion) + RECORD_OVERHEAD + HASH_OVERHEAD * len(r.suffix_hashes)


class TypeaheadIndex:
    def __init__(self, max_bytes: int = 1 << 62) -> None:
        self._families: OrderedDict[str, Family] = OrderedDict()
        self.hits = 0
        self.lookups = 0
        self.window_hits = 0  # hits where the prompt's start had moved (lines dropped from the top)
        self.max_bytes = max_bytes
        self.bytes = 0  # completion text and records held, counted against the memory budget

    def resize(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._evict()

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._families:
            _, fam = self._families.popitem(last=False)
            self.bytes -= fam.bytes

    def add(self, probe: Probe, completion: str, entry_key: str) -> None:
        if not completion or len(completion) > MAX_COMPLETION_CHARS:
            return
        fam = self._families.get(probe.family)
        if fam is None:
            fam = self._families[probe.family] = Family()
            while len(self._families) > MAX_FAMILIES:
                _, old = self._families.popitem(last=False)
                self.bytes -= old.bytes
        else:
            self._families.move_to_end(probe.family)
        p = probe.prefix
        starts = line_starts(p, len(completion) + DROP_SLACK_CHARS)
        ph = _h(p)
        rec = Record(frozenset(_h(p[i:]) for i in starts), ph, completion, entry_key)
        anchor = _anchor(p)
        self._drop(fam, ph)
        fam.by_anchor.setdefault(anchor, []).append(rec)
        size = _record_bytes(rec)
        fam.bytes += size
        self.bytes += size
        fam.order[ph] = anchor
        fam.max_completion = max(fam.max_completion, len(completion))
        while len(fam.order) > MAX_PER_FAMILY:
            # The oldest first: the user has typed on since.
            self._drop(fam, next(iter(fam.order)))
        self._evict()

    def _drop(self, fam: Family, ph: bytes) -> None:
        anchor = fam.order.pop(ph, None)
        if anchor is None:
            return
        freed = sum(_record_bytes(r) for r in fam.by_anchor.get(anchor, []) if r.prompt_hash == ph)
        fam.bytes -= freed
        self.bytes -= freed
        recs = [r for r in fam.by_anchor.get(anchor, []) if r.prompt_hash != ph]
        if recs:
            fam.by_anchor[anchor] = recs
        else:
            fam.by_anchor.pop(anchor, None)

    def lookup(self, probe: Probe) -> tuple[str, Record] | None:
        """(remaining completion, record) when the prompt is a known prompt typed further
        (and possibly with lines dropped from its top)."""
        self.lookups += 1
        fam = self._families.get(probe.family)
        if fam is None:
            return None
        p = probe.prefix
        n = len(p)
        for t in range(min(fam.max_completion, n)):  # t: characters typed since; the fewest first
            recs = fam.by_anchor.get(_anchor(p[: n - t]))
            if not recs:
                continue
            typed = p[n - t :]
            shared: bytes | None = None
            for rec in recs:
                if len(rec.completion) > t and rec.completion.startswith(typed):
                    shared = shared or _h(p[: n - t])
                    if shared in rec.suffix_hashes:
                        self._families.move_to_end(probe.family)
                        self.hits += 1
                        if shared != rec.prompt_hash:
                            self.window_hits += 1
                        return rec.completion[t:], rec
        return None

    def clear(self) -> None:
        self._families.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return sum(len(f.order) for f in self._families.values())
