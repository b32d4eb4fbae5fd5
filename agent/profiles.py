"""Profiles: how hard local AI may work, as one immutable value.

A request captures the profile in force when it arrives and uses only that
value until it is answered, so a switch never mixes two profiles in one answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

PERFORMANCE = "performance"
BALANCED = "balanced"
BATTERY_SAVER = "battery-saver"
BUILTIN_ORDER = (PERFORMANCE, BALANCED, BATTERY_SAVER)

PREFETCH_LEVELS = ("off", "warm", "speculative")
TIERS = ("small", "medium", "large")
JOB_TIERS = (*TIERS, "embed")
# LightRAG query modes the `lightrag` model may use (LightRAG's QueryParam.mode, minus "bypass")
LIGHTRAG_MODES = ("naive", "local", "global", "hybrid", "mix")
NUM_THREAD_CHOICES = ("auto", "half")  # "auto": Ollama's choice; "half": half the cores
DEFAULT_TTL_S = 7 * 24 * 3600.0  # seconds a cached answer stays valid
# hnsw.ef_search per profile (0: leave the database alone); chosen from the measured
# recall/latency table in README ("Postgres + pgvector"), bench/pgvector.py.
EF_SEARCH_PERFORMANCE = 100
EF_SEARCH_BALANCED = 64
EF_SEARCH_BATTERY_SAVER = 40


@dataclass(frozen=True)
class Profile:
    name: str
    memory_mb: int
    disk_mb: int
    ttl_s: float
    prefetch: str
    autocomplete: str  # model tier (small/medium/large/embed) or a concrete model name
    chat: str
    embed: str
    cap: str  # biggest tier served for `auto`, and for concrete models when enforce_cap
    enforce_cap: bool
    keep_alive: str
    num_ctx: int
    num_thread: str | int  # "auto", "half" or a thread count
    interval_s: float  # power sampling period (also the LightRAG corpus watch period)
    ef_search: int = 0  # hnsw.ef_search for the [postgres] role after `db apply` consent; 0: untouched
    # LightRAG query mode for the `lightrag` model: "mix" retrieves from the knowledge graph
    # and the chunks (one extra LLM call for keywords); "naive" only from chunks (one LLM call)
    lightrag_mode: str = "mix"
    # the largest num_ctx ever sent; 0 = no cap (a client's bigger num_ctx is never shrunk)
    num_ctx_max: int = 0
    # pause a running lower-priority generation for a waiting suggestion, then resume it
    preempt: bool = True

    def resolved_num_thread(self, cpu_count: int | None = None) -> int | None:
        """Threads to send to Ollama, or None to leave Ollama's choice."""
        if self.num_thread == "auto":
            return None
        if self.num_thread == "half":
            cores = cpu_count if cpu_count is not None else (os.cpu_count() or 2)
            return max(1, cores // 2)
        return int(self.num_thread)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


BUILTIN_PROFILES: dict[str, Profile] = {
    PERFORMANCE: Profile(
        name=PERFORMANCE,
        memory_mb=256,
        disk_mb=2048,
        ttl_s=DEFAULT_TTL_S,
        prefetch="speculative",
        autocomplete="medium",
        chat="large",
        embed="embed",
        cap="large",
        enforce_cap=False,
        keep_alive="30m",
        num_ctx=8192,
        num_thread="auto",
        interval_s=5.0,
        ef_search=EF_SEARCH_PERFORMANCE,
        preempt=True,
    ),
    BALANCED: Profile(
        name=BALANCED,
        memory_mb=128,
        disk_mb=1024,
        ttl_s=DEFAULT_TTL_S,
        prefetch="warm",
        autocomplete="small",
        chat="medium",
        embed="embed",
        cap="medium",
        enforce_cap=False,
        keep_alive="10m",
        num_ctx=4096,
        num_thread="auto",
        interval_s=10.0,
        ef_search=EF_SEARCH_BALANCED,
        preempt=True,
    ),
    BATTERY_SAVER: Profile(
        name=BATTERY_SAVER,
        memory_mb=32,
        disk_mb=512,
        ttl_s=DEFAULT_TTL_S,
        prefetch="off",
        autocomplete="small",
        chat="small",
        embed="embed",
        cap="small",
        enforce_cap=True,
        keep_alive="2m",
        num_ctx=2048,
        num_thread="half",
        interval_s=30.0,
        ef_search=EF_SEARCH_BATTERY_SAVER,
        lightrag_mode="naive",
        preempt=False,
    ),
}

PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Profile) if f.name != "name")


def merge_profile(name: str, overrides: dict[str, Any]) -> Profile:
    """A built-in profile with overrides applied, or a new profile based on `balanced`."""
    base = BUILTIN_PROFILES.get(name, BUILTIN_PROFILES[BALANCED])
    return replace(base, name=name, **overrides)
