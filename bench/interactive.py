"""`python -m bench --real`, interactive part: suggestions while a chat answer streams, and what
speculative prefetch costs, on the real model (llama-cpp-python + Gemma 3 270M).

Chat while typing. A typist types a real source file (the standard library's textwrap.py) on
its own clock: a few characters at TYPE_CPS, then a pause of READ_S. The editor asks for a
suggestion DEBOUNCE_S into the pause with the last ~WINDOW characters before the cursor, cut at
a line start (what editors send), and aborts it when the typist types on: a suggestion is
*shown* only when it arrives within the pause. Beside it a chat user asks a question every
CHAT_EVERY_S (CHAT_TOKENS tokens, streamed, temperature 0, Gemma's turn format as a plain
completion: the chat lane of powergate, /v1/completions directly). Contenders: the server
directly, powergate with preemption, powergate without; the same keystrokes and questions,
interleaved by round, ROUNDS rounds.

Speculation. The same typist without chat load, through powergate's performance profile with
speculation adaptive (the default) and always on, and balanced (no speculation) as the
baseline: model CPU-seconds per suggestion shown, and the share of model CPU the guesses cost.

Typeahead share. The typing trace replayed with the trimmed window, counting the answers
typeahead gave (run against this checkout: the figure before the moving-window matching is
the README's, measured on the commit before it).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.config import load_settings
from agent.server import AgentServer
from bench import harness
from bench.real import SOURCE_MODULE, CountingProxy, accepted, complete, keystrokes, wait_idle
from tests.editor import editor_window
from tests.real.server import MODEL_ALIAS, RealLlamaServer, free_port, model_file, real_config

WINDOW = 1500  # characters before the cursor an editor sends, cut at a line start
NUM_PREDICT = 8  # tokens per suggestion
DEBOUNCE_S = 0.35  # the editor asks this long after the last keystroke
TYPE_CPS = 8.0  # characters per second while typing
READ_S = 3.0  # seconds the typist pauses: a suggestion arriving later is not shown (aborted)
CHAT_EVERY_S = 5.0  # seconds between the chat user's questions (the load)
CHAT_TOKENS = 200  # tokens per chat answer: about 4.5 s of generation on the quiet 2-core machine
# The model server keeps earlier prompts' state in RAM (llama-cpp-python's `--cache`, as
# llama.cpp's own server does by default with `--cache-ram`): without it every suggestion
# after a chat answer re-evaluates its whole 1,500-character window (3.5-4.7 s measured
# here), longer than the pause, and no contender could show one. Its --cache_size counts
# only the KV state (~7 MB here), not the copy of the logits each saved state keeps
# (n_batch x Gemma's 262k vocabulary, ~0.5 GB): the default 2 GiB let the server grow
# to 20 GB in 8 minutes, so the cache is bounded at a few states.
SERVER_ARGS = ("--cache", "True", "--cache_size", str(32 << 20))
REGION_CHARS = 160  # characters typed per round
ROUNDS = 3
NO_CACHE = {"cache-control": "no-cache, no-store"}  # every chat question really runs
QUESTIONS = (
    "Explain what a text wrapper does, briefly.",
    "Why do editors indent code?",
    "What is a lighthouse for?",
    "Describe a good unit test.",
    "What does a compiler do?",
    "Why are small models fast?",
)
CLIENT_TIMEOUT = 600.0  # seconds (a chat answer on a busy shared machine)


def window(text: str) -> str:
    return editor_window(text, WINDOW)


def chat_prompt(question: str) -> str:
    return f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"


@dataclass
class Side:
    name: str
    url: str
    direct: bool
    proxy: CountingProxy
    asked: int = 0
    shown: int = 0
    shown_ms: list[float] = field(default_factory=list)
    waits_ms: list[float] = field(default_factory=list)  # every suggestion, an abort counts as the pause
    outcomes: dict[str, int] = field(default_factory=dict)
    chats: list[str] = field(default_factory=list)
    chats_complete: int = 0
    chat_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    turns: list[tuple[float, int]] = field(default_factory=list)  # (server CPU-s, generations) per round
    scheduling: dict[str, Any] = field(default_factory=dict)  # powergate's status at the end


async def suggest(c: httpx.AsyncClient, side: Side, prompt: str) -> str:
    budget = READ_S - DEBOUNCE_S
    side.asked += 1
    t0 = time.perf_counter()
    try:
        text, outcome = await complete(c, side.url, side.direct, prompt, NUM_PREDICT, timeout=budget)
    except httpx.TimeoutException:
        side.waits_ms.append(budget * 1000)
        side.outcomes["aborted"] = side.outcomes.get("aborted", 0) + 1
        return ""
    ms = (time.perf_counter() - t0) * 1000
    side.waits_ms.append(ms)
    side.outcomes[outcome] = side.outcomes.get(outcome, 0) + 1
    if text:
        side.shown += 1
        side.shown_ms.append(ms)
    return text


async def type_region(side: Side, text: str, start: int, seed: int) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        cursor = start
        for p in keystrokes(text, start, REGION_CHARS, seed):
            if p <= cursor:
                continue
            await asyncio.sleep((p - cursor) / TYPE_CPS)
            cursor = p
            await asyncio.sleep(DEBOUNCE_S)
            t0 = time.monotonic()
            cursor += accepted(await suggest(c, side, window(text[:cursor])), text, cursor)  # Tab
            await asyncio.sleep(max(0.0, READ_S - DEBOUNCE_S - (time.monotonic() - t0)))


async def chat(side: Side, question: str) -> None:
    prompt = chat_prompt(question)
    parts: list[str] = []
    done = False
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        if side.direct:
            body = {
                "model": MODEL_ALIAS,
                "prompt": prompt,
                "max_tokens": CHAT_TOKENS,
                "temperature": 0,
                "repeat_penalty": 1,
                "stream": True,
            }
            async with c.stream("POST", side.url + "/v1/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        doc = json.loads(line[6:])
                        parts.append(doc["choices"][0].get("text") or "")
                        done = done or doc["choices"][0].get("finish_reason") is not None
        else:
            body = {
                "model": "chat",
                "prompt": prompt,
                "raw": True,
                "stream": True,
                "options": {"num_predict": CHAT_TOKENS, "temperature": 0, "repeat_penalty": 1},
            }
            async with c.stream("POST", side.url + "/lane/chat/api/generate", json=body, headers=NO_CACHE) as r:
                async for line in r.aiter_lines():
                    if line:
                        doc = json.loads(line)
                        parts.append(doc.get("response", ""))
                        done = done or bool(doc.get("done"))
    side.chats.append("".join(parts))
    side.chats_complete += done
    side.chat_s.append(time.perf_counter() - t0)


async def session(side: Side, text: str, start: int, seed: int, with_chat: bool) -> None:
    typing = asyncio.ensure_future(type_region(side, text, start, seed))
    if with_chat:
        rng = random.Random(seed)
        while not typing.done():
            asked = asyncio.ensure_future(chat(side, rng.choice(QUESTIONS)))
            await asyncio.wait({typing}, timeout=CHAT_EVERY_S)
            await asked
    await typing


def summary(side: Side) -> dict[str, Any]:
    return {
        "asked": side.asked,
        "shown": side.shown,
        "shown_p50_ms": round(harness.pct(side.shown_ms, 50), 1) if side.shown_ms else None,
        "wait_p95_ms": round(harness.pct(side.waits_ms, 95), 1) if side.waits_ms else None,
        "chats": len(side.chats),
        "chats_complete": side.chats_complete,
        "chat_p50_s": round(harness.pct(side.chat_s, 50), 2) if side.chat_s else None,
        "upstream_generations": side.proxy.counts.generations,
        "server_cpu_s": round(side.cpu_s, 2),
        "server_cpu_s_per_shown": round(side.cpu_s / side.shown, 2) if side.shown else None,
        "per_round": [{"server_cpu_s": round(c, 2), "generations": g} for c, g in side.turns],
        "outcomes": side.outcomes,
        "preemption": side.scheduling.get("preemption"),
        "speculation": side.scheduling.get("speculation"),
        "prefetch": side.scheduling.get("prefetch"),
    }


def _turn(server: RealLlamaServer, side: Side, text: str, start: int, seed: int, with_chat: bool) -> None:
    wait_idle(server)
    before = server.cpu_seconds()
    generations = side.proxy.counts.generations
    asyncio.run(session(side, text, start, seed, with_chat))
    wait_idle(server)
    side.cpu_s += server.cpu_seconds() - before
    side.turns.append((server.cpu_seconds() - before, side.proxy.counts.generations - generations))
    if not side.direct:
        side.scheduling = httpx.get(side.url + "/agent/status", timeout=30, trust_env=False).json()["scheduling"]


def repeatability(server: RealLlamaServer) -> str:
    """The server's own reproducibility at temperature 0: each question asked twice in a row.
    llama.cpp evaluates a prompt it has just seen from its KV cache (only the last token
    again), and the different batch shapes change the floating-point sums enough to change
    a greedy answer now and then, with no powergate involved."""
    same = 0
    with httpx.Client(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        for q in QUESTIONS:
            body = {
                "model": MODEL_ALIAS,
                "prompt": chat_prompt(q),
                "max_tokens": CHAT_TOKENS,
                "temperature": 0,
                "repeat_penalty": 1,
            }
            a, b = (c.post(server.url + "/v1/completions", json=body).json()["choices"][0]["text"] for _ in range(2))
            same += a == b
    return f"{same}/{len(QUESTIONS)}"


@contextmanager
def inprocess_powergate(upstream: str, config: str, profile: str, always_guess: bool) -> Iterator[str]:
    """powergate in this process, so the always-on contender can lift the speculation gate."""
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as d:
        cfg = Path(d) / "config.toml"
        cfg.write_text(config)
        settings = load_settings(config_file=cfg, data_dir=Path(d) / "data", port=free_port(), profile=profile)
        server = AgentServer(settings)
        server.start()
        try:
            if always_guess and server.runtime is not None:
                server.runtime.prefetcher.gate.fixed_threshold = 0.0
            yield f"http://127.0.0.1:{settings.server.port}"
        finally:
            server.stop()


def overhead(base: Side, other: Side) -> dict[str, Any]:
    """Model CPU and generations `other` spent beyond `base` on the same keystrokes: over the
    whole run, and after the first round (once the gate has learned)."""

    def share(a: float, b: float) -> float | None:
        return round(b / a - 1, 3) if a else None

    later_base = base.turns[1:]
    later = other.turns[1:]
    return {
        "cpu": share(base.cpu_s, other.cpu_s),
        "generations": share(sum(g for _, g in base.turns), sum(g for _, g in other.turns)),
        "cpu_after_round_1": share(sum(c for c, _ in later_base), sum(c for c, _ in later)) if later else None,
        "generations_after_round_1": share(sum(g for _, g in later_base), sum(g for _, g in later)) if later else None,
    }


def resume_from_clean_state(cuts: tuple[int, ...] = (20, 60, 120)) -> str:
    """What preemption's resume does, checked directly on the server: each chat answer cut
    after k tokens and asked again as prompt + text so far equals the whole answer, when
    both start from the same server state (a one-token request in between empties the
    server's reusable prefix). Returns "equal/cuts"."""
    server = RealLlamaServer(model_file())
    equal = total = 0

    def ask(c: httpx.Client, prompt: str, n: int) -> list[str]:
        c.post(server.url + "/v1/completions", json={"model": MODEL_ALIAS, "prompt": "x = 1\n", "max_tokens": 1})
        body = {"model": MODEL_ALIAS, "prompt": prompt, "max_tokens": n, "temperature": 0, "repeat_penalty": 1}
        pieces = []
        with c.stream("POST", server.url + "/v1/completions", json=dict(body, stream=True)) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    pieces.append(json.loads(line[6:])["choices"][0]["text"])
        return pieces

    try:
        with httpx.Client(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
            for q in QUESTIONS:
                whole = ask(c, chat_prompt(q), CHAT_TOKENS)
                for k in cuts:
                    so_far = "".join(whole[:k])
                    rest = "".join(ask(c, chat_prompt(q) + so_far, CHAT_TOKENS - k))
                    equal += so_far + rest == "".join(whole)
                    total += 1
    finally:
        server.stop()
    return f"{equal}/{total}"


def run(quick: bool, parts: tuple[str, ...] = ("chat", "speculation")) -> dict[str, Any]:
    source = Path(SOURCE_MODULE.__file__ or "")
    text = source.read_text(encoding="utf-8")
    rounds = 1 if quick else ROUNDS
    rng = random.Random(11)
    starts = [rng.randrange(WINDOW, len(text) - REGION_CHARS) for _ in range(rounds)]
    stack: list[Any] = []
    server = RealLlamaServer(model_file(), extra_args=SERVER_ARGS)
    try:

        def side(name: str, profile: str | None, extra: str = "", always_guess: bool | None = None) -> Side:
            proxy = CountingProxy(server.url)
            cm = proxy.running()
            cm.__enter__()
            stack.append(cm)
            if profile is None:
                return Side(name, proxy.url, True, proxy)
            if always_guess is not None:
                ip = inprocess_powergate(proxy.url, real_config(proxy.url) + extra, profile, always_guess)
                url = ip.__enter__()
                stack.append(ip)
                return Side(name, url, False, proxy)
            pg = harness.powergate(proxy.url, config=real_config(proxy.url) + extra, profile=profile)
            proc = pg.__enter__()
            stack.append(pg)
            return Side(name, proc.url, False, proxy)

        chat_sides = (
            [
                side("direct", None),
                side("powergate, preemption", "balanced", '[profiles.balanced]\nprefetch = "off"\n'),
                side(
                    "powergate, no preemption", "balanced", '[profiles.balanced]\nprefetch = "off"\npreempt = false\n'
                ),
            ]
            if "chat" in parts
            else []
        )
        spec_sides = (
            [
                side("balanced (no speculation)", "balanced", '[profiles.balanced]\nprefetch = "off"\n'),
                side("performance, adaptive speculation", "performance", always_guess=False),
                side("performance, always-on speculation", "performance", always_guess=True),
            ]
            if "speculation" in parts
            else []
        )
        for i, start in enumerate(starts):
            for group, with_chat in ((chat_sides, True), (spec_sides, False)):
                order = group[i % len(group) :] + group[: i % len(group)] if group else []
                for s in order:
                    _turn(server, s, text, start, seed=i, with_chat=with_chat)
        out: dict[str, Any] = {
            "source": f"{SOURCE_MODULE.__name__} ({source.name})",
            "rounds": rounds,
            "server_args": list(SERVER_ARGS),
        }
        if chat_sides:
            pairs = list(zip(chat_sides[0].chats, chat_sides[1].chats, chat_sides[2].chats, strict=False))
            out["chat_while_typing"] = {s.name: summary(s) for s in chat_sides}
            out["chat_answers_identical"] = f"{sum(1 for a, b, c in pairs if a == b == c)}/{len(pairs)}"
            out["chat_answers_preempted_equal_direct"] = f"{sum(1 for a, b, _ in pairs if a == b)}/{len(pairs)}"
            out["chat_answers_unpreempted_equal_direct"] = f"{sum(1 for a, _, c in pairs if a == c)}/{len(pairs)}"
            out["server_repeatable_same_question_twice"] = repeatability(server)
        if spec_sides:
            out["speculation"] = {s.name: summary(s) for s in spec_sides}
            out["speculation_overhead"] = {s.name: overhead(spec_sides[0], s) for s in spec_sides[1:]}
    finally:
        for cm in reversed(stack):
            cm.__exit__(None, None, None)
        server.stop()
    if "chat" in parts:
        out["resumed_equal_whole_from_clean_state"] = resume_from_clean_state()
    return out


def table(res: dict[str, Any]) -> str:
    rows = [
        "| contender | suggestions shown / asked | shown p50 ms | chats complete | chat p50 s | paused / resumed "
        "| server generations | server CPU-s per shown |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for part in ("chat_while_typing", "speculation"):
        for name, r in res.get(part, {}).items():
            pre = r.get("preemption") or {}
            rows.append(
                f"| {name} | {r['shown']} / {r['asked']} | {r['shown_p50_ms']} | {r['chats_complete']} / {r['chats']} "
                f"| {r['chat_p50_s']} | {pre.get('paused', '-')} / {pre.get('resumed', '-')} "
                f"| {r['upstream_generations']} | {r['server_cpu_s_per_shown']} |"
            )
    for k in (
        "chat_answers_identical",
        "chat_answers_preempted_equal_direct",
        "chat_answers_unpreempted_equal_direct",
        "server_repeatable_same_question_twice",
        "resumed_equal_whole_from_clean_state",
        "speculation_overhead",
    ):
        if k in res:
            rows.append(f"{k}: {res[k]}")
    for name, r in res.get("speculation", {}).items():
        spec = (r.get("speculation") or {}).get("models") or {}
        pf = r.get("prefetch") or {}
        for model, m in spec.items():
            rows.append(
                f"{name} / {model}: used share {m.get('used_share')}, threshold {m.get('threshold')} "
                f"(measured {m.get('measured')}: guess {m.get('guess_s')} s, suggestion {m.get('request_s')} s), "
                f"decision {m.get('decision')}; used {pf.get('prefetch_used')}, wasted {pf.get('prefetch_wasted')}, "
                f"skipped {pf.get('prefetch_skipped')}"
            )
    return "\n".join(rows)


def _old_rule_lookup(index: list[tuple[str, str]], prompt: str) -> str | None:
    """Typeahead before the moving-window matching: the new prompt had to extend a stored one."""
    for p, c in reversed(index):
        typed = prompt[len(p) :]
        if prompt.startswith(p) and len(c) > len(typed) and c.startswith(typed):
            return c[len(typed) :]
    return None


def typeahead_share(rounds: int = ROUNDS) -> dict[str, Any]:
    """The typing trace with the trimmed window, answered by the real model, replayed through
    typeahead as it was (exact extension) and as it is (the window may move): the share of
    suggestions typeahead answers without the model. The typist never accepts with Tab: it
    types on (through the suggestion where it was right), as many users do."""
    from agent.cache.typeahead import Probe, TypeaheadIndex

    source = Path(SOURCE_MODULE.__file__ or "")
    text = source.read_text(encoding="utf-8")
    rng = random.Random(11)
    starts = [rng.randrange(WINDOW, len(text) - REGION_CHARS) for _ in range(rounds)]
    server = RealLlamaServer(model_file())
    old: list[tuple[str, str]] = []
    new = TypeaheadIndex()
    asked = old_hits = new_hits = 0
    try:
        with httpx.Client(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
            for i, start in enumerate(starts):
                cursor = start
                for p in keystrokes(text, start, REGION_CHARS, seed=i):
                    if p <= cursor:
                        continue
                    cursor = p
                    prompt = window(text[:cursor])
                    asked += 1
                    was = _old_rule_lookup(old, prompt)
                    found = new.lookup(Probe("trace", prompt))
                    old_hits += was is not None
                    new_hits += found is not None
                    if found is not None:
                        got = found[0]
                    else:
                        r = c.post(
                            server.url + "/v1/completions",
                            json={"model": MODEL_ALIAS, "prompt": prompt, "max_tokens": NUM_PREDICT, "temperature": 0},
                        )
                        got = str(r.json()["choices"][0]["text"])
                        old.append((prompt, got))
                        new.add(Probe("trace", prompt), got, f"k{asked}")
                    # this typist never presses Tab: it types on, into the suggestion when it
                    # was right (typeahead's case), and the editor asks again at each pause
    finally:
        server.stop()
    return {
        "asked": asked,
        "typeahead_share_before": round(old_hits / asked, 3) if asked else None,
        "typeahead_share_after": round(new_hits / asked, 3) if asked else None,
        "window_chars": WINDOW,
    }


if __name__ == "__main__":
    # python -m bench.interactive [typeahead | chat | speculation ...]: one part, printed
    import sys

    wanted = tuple(sys.argv[1:]) or ("typeahead",)
    if "typeahead" in wanted:
        print(json.dumps(typeahead_share(), indent=2))
    if {"chat", "speculation"} & set(wanted):
        result = run(False, parts=tuple(p for p in wanted if p != "typeahead"))
        print(json.dumps(result, indent=2))
        print(table(result))
