"""Typeahead reuse: the user keeps typing into a suggestion we already have.

The editor's next request has the old prompt plus the typed characters (same
suffix, model and options). If the typed characters are the start of the
completion we gave for the old prompt, the rest of that completion is the
answer, at once and without Ollama.

Index: per family (everything but the prompt prefix), the stored prompt
lengths in a sorted list, and per length the prompt's hash and completion. A
lookup bisects to the lengths the new prompt could extend, compares the typed
tail with each completion, and only then hashes the candidate prefix: no scan
of all entries, and no prompt text kept in memory. Raw FIM prompts (Continue,
Twinny, CodeGPT) are split at their markers, so reuse works while the typed
text lands before the suffix marker.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agent.cache.keys import digest

MAX_FAMILIES = 1024
MAX_PER_FAMILY = 128

# (name, prefix marker, suffix marker, middle marker or "")
FIM_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("qwen/codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("codellama", "<PRE> ", " <SUF>", " <MID>"),
    ("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    ("codestral", "[PREFIX]", "[SUFFIX]", ""),
)


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


@dataclass(frozen=True)
class Record:
    prompt_hash: bytes
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
        self.lengths: list[int] = []
        self.by_length: dict[int, list[Record]] = {}
        self.count = 0
        self.max_completion = 0
        self.bytes = 0


def _record_bytes(r: Record) -> int:
    return len(r.completion) + RECORD_OVERHEAD


RECORD_OVERHEAD = 200  # bytes of a Record, its hash and list slot besides the completion text


class TypeaheadIndex:
    def __init__(self, max_bytes: int = 1 << 62) -> None:
        self._families: OrderedDict[str, Family] = OrderedDict()
        self.hits = 0
        self.lookups = 0
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
        if not completion:
            return
        fam = self._families.get(probe.family)
        if fam is None:
            fam = self._families[probe.family] = Family()
            while len(self._families) > MAX_FAMILIES:
                _, old = self._families.popitem(last=False)
                self.bytes -= old.bytes
        else:
            self._families.move_to_end(probe.family)
        n = len(probe.prefix)
        recs = fam.by_length.get(n)
        if recs is None:
            recs = fam.by_length[n] = []
            bisect.insort(fam.lengths, n)
        ph = _h(probe.prefix)
        before = len(recs)
        gone = sum(_record_bytes(r) for r in recs if r.prompt_hash == ph)
        recs[:] = [r for r in recs if r.prompt_hash != ph]
        rec = Record(ph, completion, entry_key)
        recs.append(rec)
        fam.count += len(recs) - before
        delta = _record_bytes(rec) - gone
        fam.bytes += delta
        self.bytes += delta
        fam.max_completion = max(fam.max_completion, len(completion))
        if fam.count > MAX_PER_FAMILY:
            # Drop the shortest prompts first: the user has typed past them.
            shortest = fam.lengths[0]
            dropped = fam.by_length.pop(shortest)
            fam.count -= len(dropped)
            freed = sum(_record_bytes(r) for r in dropped)
            fam.bytes -= freed
            self.bytes -= freed
            fam.lengths.pop(0)
        self._evict()

    def lookup(self, probe: Probe) -> tuple[str, Record] | None:
        """(remaining completion, record) when the prompt extends a known suggestion."""
        self.lookups += 1
        fam = self._families.get(probe.family)
        if fam is None:
            return None
        p = probe.prefix
        n = len(p)
        lo = bisect.bisect_left(fam.lengths, n - fam.max_completion)
        hi = bisect.bisect_left(fam.lengths, n)  # strictly shorter: equal length is an exact hit
        for qlen in reversed(fam.lengths[lo:hi]):  # the longest known prompt first
            typed = p[qlen:]
            for rec in fam.by_length[qlen]:
                if (
                    len(rec.completion) > len(typed)
                    and rec.completion.startswith(typed)
                    and _h(p[:qlen]) == rec.prompt_hash
                ):
                    self._families.move_to_end(probe.family)
                    self.hits += 1
                    return rec.completion[len(typed) :], rec
        return None

    def clear(self) -> None:
        self._families.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return sum(f.count for f in self._families.values())
