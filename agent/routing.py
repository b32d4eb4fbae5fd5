"""Which model really serves a request: aliases, `auto` by complexity, caps per profile."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.config import ModelSettings
from agent.profiles import TIERS, Profile

ALIAS_JOBS = ("autocomplete", "chat", "embed")
AUTO = "auto"
FIM_NUM_PREDICT_MAX = 256  # a generate asking for at most this many tokens is a suggestion
TECH_TERMS = re.compile(
    r"\b(async|await|thread|mutex|race|deadlock|complexity|algorithm|refactor|architecture|"
    r"concurren\w*|optimi[sz]\w*|memory|pointer|regex|sql|schema|protocol|kernel|compile\w*|"
    r"generic|interface|recurs\w*|distributed|latency|security|vulnerab\w*)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    model: str
    job: str  # autocomplete | chat | embed
    reason: str  # "alias", "auto:medium", "cap", "as requested"


def strip_latest(name: str) -> str:
    return name[:-7] if name.endswith(":latest") else name


def alias_name(requested: str) -> str:
    """`chat:latest` is `chat`: clients that list /api/tags may add the default tag."""
    return strip_latest(requested)


def tier_of(model: str, models: ModelSettings) -> str | None:
    m = strip_latest(model)
    for tier in TIERS:
        if strip_latest(getattr(models, tier)) == m:
            return tier
    return None


def complexity_tier(text: str) -> str:
    """small / medium / large from the prompt: length, code blocks, technical terms, questions."""
    score = 0.0
    score += min(len(text) / 1500.0, 3.0)
    score += 1.0 * min(text.count("```") // 2, 2)
    score += 0.5 * min(len(TECH_TERMS.findall(text)), 4)
    score += 0.3 * min(text.count("?"), 3)
    if re.search(r"\b(explain|why|design|compare|review)\b", text, re.IGNORECASE):
        score += 1.0
    if score < 1.5:
        return "small"
    if score < 3.5:
        return "medium"
    return "large"


def min_tier(a: str, b: str) -> str:
    return a if TIERS.index(a) <= TIERS.index(b) else b


def job_of(kind: str, body: dict[str, Any]) -> str:
    if kind in ("embed", "embeddings"):
        return "embed"
    if kind == "chat":
        return "chat"
    opts = body.get("options") if isinstance(body.get("options"), dict) else {}
    n = (opts or {}).get("num_predict", body.get("max_tokens"))
    if body.get("suffix") or body.get("raw") or (isinstance(n, int) and 0 < n <= FIM_NUM_PREDICT_MAX):
        return "autocomplete"
    return "chat"


def prompt_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "chat":
        msgs = body.get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in msgs if isinstance(m, dict))
    return str(body.get("prompt") or "")


def route(requested: str, kind: str, body: dict[str, Any], profile: Profile, models: ModelSettings) -> Route:
    """Decide the served model for one request under one profile."""
    job = job_of(kind, body)
    if alias_name(requested) in (*ALIAS_JOBS, AUTO):
        requested = alias_name(requested)
    if requested in ALIAS_JOBS:
        tier_or_model = getattr(profile, requested)
        if tier_or_model in TIERS and requested != "embed":
            tier_or_model = min_tier(tier_or_model, profile.cap)
        return Route(models.for_tier(tier_or_model), job if requested != "embed" else "embed", "alias")
    if requested == AUTO:
        if job == "embed":
            return Route(models.for_tier(profile.embed), job, "alias")
        tier = min_tier(complexity_tier(prompt_text(kind, body)), profile.cap)
        return Route(models.for_tier(tier), job, f"auto:{tier}")
    if profile.enforce_cap and job != "embed":
        served_tier = tier_of(requested, models)
        if served_tier is not None and TIERS.index(served_tier) > TIERS.index(profile.cap):
            return Route(models.for_tier(profile.cap), job, "cap")
    return Route(requested, job, "as requested")
