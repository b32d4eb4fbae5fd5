"""The LightRAG corpus version: what the query cache keys on, so no answer outlives its documents.

LightRAG's own query cache keys on the question but not on the documents, so after
a document changes it answers the old answer. Ours adds a corpus version to every
key; the version moves whenever the documents may have changed:

- a document call made through powergate (upload, text, texts, scan, delete, clear...)
  moves it before the call is forwarded and starts *settling*: LightRAG indexes in the
  background after answering the call, so until its pipeline is seen idle with the
  change done, answers are served but not stored (they may predate the new document);
- for changes made behind our back (LightRAG's web UI, its input folder, another
  client), a watch reads /documents/pipeline_status, /documents/status_counts and
  /health at the profile's sampling interval (never faster: battery) and moves the
  version when any of them changed. Answers through /lightrag/ of the two document paths
  are observed too, so a client that polls the pipeline keeps the version current
  for free.

The version carries a per-run nonce: answers stored on disk by an earlier run are
never served, since nobody watched the corpus while powergate was not running.
LightRAG's model identity (LLM and embedding binding, host, model, versions; from
/health) is part of every key as well.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# pipeline_status fields whose change means the pipeline did something
PIPELINE_FIELDS = ("busy", "job_name", "job_start", "docs", "batchs", "cur_batch", "latest_message")
IDENTITY_FIELDS = (
    "llm_binding",
    "llm_binding_host",
    "llm_model",
    "embedding_binding",
    "embedding_binding_host",
    "embedding_model",
)
# Document calls that do not start the pipeline: the version moves, nothing to settle
# (nor for graph edits, which LightRAG applies before it answers).
NO_PIPELINE_WRITES = ("/documents/clear_cache", "/documents/cancel_pipeline")
SETTLE_IDLE_POLLS = 2  # idle, unchanged watch polls after which a no-op write counts as settled


@dataclass
class CorpusState:
    """What the watch knows about LightRAG's corpus (read by status, metrics, the dashboard)."""

    run: str = field(default_factory=lambda: secrets.token_hex(4))
    version: int = 1
    reachable: bool | None = None
    error: str = ""
    busy: bool | None = None
    latest_message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)
    core_version: str = ""
    api_version: str = ""
    checked_at: float = 0.0
    changes_seen: int = 0  # version moves caused by what the watch observed
    writes_seen: int = 0  # version moves caused by document calls through powergate
    settling: bool = False

    @property
    def tag(self) -> str:
        """The corpus version as it goes into cache keys."""
        return f"{self.run}.{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "error": self.error,
            "corpus_version": self.tag,
            "pipeline_busy": self.busy,
            "latest_message": self.latest_message,
            "status_counts": dict(self.counts),
            "identity": dict(self.identity),
            "core_version": self.core_version,
            "api_version": self.api_version,
            "checked_at": self.checked_at,
            "changes_seen": self.changes_seen,
            "writes_seen": self.writes_seen,
            "settling": self.settling,
        }


def _fingerprint(doc: dict[str, Any], fields: tuple[str, ...]) -> str:
    picked = {k: doc.get(k) for k in fields}
    history = doc.get("history_messages")
    if isinstance(history, list):
        picked["history_len"] = len(history)
        picked["history_last"] = history[-1] if history else None
    return json.dumps(picked, sort_keys=True, default=str)


class CorpusWatch:
    """Moves the corpus version on every sign that LightRAG's documents may have changed."""

    def __init__(self) -> None:
        self.state = CorpusState()
        self._pipeline_fp: str | None = None
        self._counts_fp: str | None = None
        self._settle_from: tuple[str | None, str | None] | None = None
        self._idle_polls = 0

    def _bump(self, why: str) -> None:
        self.state.version += 1
        log.info("LightRAG corpus version %s (%s)", self.state.tag, why)

    # ------------------------------------------------------------ writes through powergate
    def note_write(self, path: str) -> None:
        """A document call is about to be forwarded: nothing cached before it may be served after."""
        self.state.writes_seen += 1
        self._bump(f"document call {path}")
        if path.startswith("/documents") and path not in NO_PIPELINE_WRITES:
            self.state.settling = True
            self._settle_from = (self._pipeline_fp, self._counts_fp)
            self._idle_polls = 0

    def write_done(self, path: str) -> None:
        """The call was answered; an answer computed meanwhile saw an unknown state."""
        self._bump(f"document call {path} answered")

    @property
    def storable(self) -> bool:
        """May an answer computed now be stored? Not while a change is being indexed."""
        return not self.state.settling and self.state.busy is not True

    # ------------------------------------------------------------ observations
    def observe_pipeline(self, doc: dict[str, Any], from_poll: bool = False) -> None:
        fp = _fingerprint(doc, PIPELINE_FIELDS)
        busy = bool(doc.get("busy"))
        self.state.busy = busy
        self.state.latest_message = str(doc.get("latest_message") or "")[:200]
        if self._pipeline_fp is not None and fp != self._pipeline_fp:
            self.state.changes_seen += 1
            self._bump("pipeline changed" + (" (busy)" if busy else ""))
        self._pipeline_fp = fp
        self._settle(busy, from_poll)

    def observe_counts(self, doc: dict[str, Any]) -> None:
        counts = doc.get("status_counts")
        if not isinstance(counts, dict):
            return
        clean = {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
        fp = json.dumps(clean, sort_keys=True)
        if self._counts_fp is not None and fp != self._counts_fp:
            self.state.changes_seen += 1
            self._bump("document status counts changed")
        self._counts_fp = fp
        self.state.counts = clean

    def observe_health(self, doc: dict[str, Any]) -> None:
        raw = doc.get("configuration")
        conf: dict[str, Any] = raw if isinstance(raw, dict) else {}
        identity = {k: str(conf.get(k) or "") for k in IDENTITY_FIELDS}
        identity["core_version"] = str(doc.get("core_version") or "")
        identity["api_version"] = str(doc.get("api_version") or "")
        if self.state.identity and identity != self.state.identity:
            # A LightRAG restarted with other models or another version answers differently.
            self._bump("LightRAG's models or version changed")
        self.state.identity = identity
        self.state.core_version = identity["core_version"]
        self.state.api_version = identity["api_version"]
        if "pipeline_busy" in doc:
            self.state.busy = bool(doc.get("pipeline_busy"))

    def mark(self, reachable: bool, error: str = "") -> None:
        if reachable is False and self.state.reachable is not False:
            # While it is away it may be changed or replaced: start over when it is back.
            self._bump("LightRAG not reachable")
        self.state.reachable = reachable
        self.state.error = error
        self.state.checked_at = time.time()

    def blind(self, error: str) -> None:
        """LightRAG answers, but not to the watch (e.g. 401: powergate has no API key for it).
        Unwatched, no answer may be cached; whatever changed meanwhile is unknown."""
        if self.state.identity:
            self._bump("LightRAG cannot be watched")
        self.state.identity = {}
        self.state.reachable = True
        self.state.error = error
        self.state.checked_at = time.time()

    @property
    def sees(self) -> bool:
        """Can the watch see LightRAG? Only then are its answers cached."""
        return bool(self.state.identity) and self.state.reachable is not False

    def _settle(self, busy: bool, from_poll: bool) -> None:
        if not self.state.settling or busy:
            self._idle_polls = 0
            return
        before = self._settle_from or (None, None)
        changed = before != (self._pipeline_fp, self._counts_fp)
        if from_poll:
            self._idle_polls += 1
        if changed or self._idle_polls >= SETTLE_IDLE_POLLS:
            # Idle and the change is in (or it was a no-op): answers from now on see it.
            self.state.settling = False
            self._settle_from = None
            self._bump("pipeline idle after a document call")
