"""python -m bench [--quick] [--only NAME ...]: powergate against direct Ollama, side by side.

Scenarios: overhead (miss and first byte), memory, disk, typeahead, reindex, litellm, load, session, idle,
lightrag (the real LightRAG server directly on Ollama vs through powergate),
hosts (three simulated model hosts: powergate's routing vs round-robin, highest-weight failover
and LiteLLM's least-busy router on one mixed workload).
On the real model (`--real`): real (an editing session per profile), interactive (suggestions
while a chat answer streams, with and without preemption; adaptive vs always-on speculation),
threads (the model server's tokens/s with all or half the cores, quiet or beside a busy core)."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cache, chart, compare, harness, idle, overhead, scheduling

RESULTS = Path(__file__).resolve().parent / "results"
ALL = (
    "overhead",
    "memory",
    "disk",
    "typeahead",
    "reindex",
    "litellm",
    "load",
    "session",
    "idle",
    "lightrag",
    "real",
    "hosts",
    "interactive",
    "threads",
)


def _row(name: str, d: dict[str, Any], g: dict[str, Any], key: str = "p50_ms") -> str:
    return f"{name:<34} direct {d[key]:>8.3f} ms   powergate {g[key]:>8.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small samples, for a smoke check (< 1 minute)")
    ap.add_argument("--only", nargs="*", default=None, choices=ALL, help="scenarios to run (default: all)")
    ap.add_argument("-n", type=int, default=None, help="requests per contender per scenario")
    ap.add_argument(
        "--real",
        action="store_true",
        help="only the real-model scenarios (llama-cpp-python + Gemma 3 270M): real, interactive, threads",
    )
    args = ap.parse_args()
    if args.real:
        args.only = ["real", "interactive", "threads"]
    n = args.n or (60 if args.quick else 400)
    want = set(args.only or ALL)
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "n": n,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python -m bench" + (" --quick" if args.quick else "") + (" --real" if args.real else ""),
    }
    with harness.sim_ollama() as sim:
        with harness.powergate(sim.url) as pg:
            if "overhead" in want:
                o = out["overhead"] = overhead.run(sim.url, pg.url, n)
                print(
                    _row("miss p50", o["miss"]["direct"], o["miss"]["powergate"])
                    + f"   added {o['miss']['added_p50_ms']:+.3f} ms"
                )
                print(
                    _row("miss p99", o["miss"]["direct"], o["miss"]["powergate"], "p99_ms")
                    + f"   added {o['miss']['added_p99_ms']:+.3f} ms"
                )
                print(
                    _row("first streamed byte p50", o["ttfb"]["direct"], o["ttfb"]["powergate"])
                    + f"   added {o['ttfb']['added_p50_ms']:+.3f} ms"
                )
            if "memory" in want:
                m = out["memory"] = cache.memory_hits(sim.url, pg.url, n)
                print(_row("memory hit p50", m["direct"], m["powergate"]) + f"   x{m['speedup_p50']}")
                print(_row("memory hit p99", m["direct"], m["powergate"], "p99_ms"))
            if "typeahead" in want:
                t = out["typeahead"] = cache.typeahead(pg.url, 40 if args.quick else 300)
                print(
                    f"{'typeahead trace':<34} {t['requests']} requests, hit rate {t['typeahead_hit_rate']:.1%}, outcomes {t['outcomes']}"
                )
        if "disk" in want:
            with tempfile.TemporaryDirectory(prefix="pg-bench-disk-") as d:
                k = out["disk"] = cache.disk_hits(sim.url, max(50, n // 2), Path(d))
            print(_row("disk hit p50", k["direct"], k["powergate"]) + f"   x{k['speedup_p50']}")
            print(_row("disk hit p99", k["direct"], k["powergate"], "p99_ms"))
    if "reindex" in want:
        with harness.sim_ollama(realistic=True) as real, harness.powergate(real.url) as pg:
            r = out["reindex"] = cache.reindex(real.url, pg.url, 100 if args.quick else 2000)
        print(
            f"{'embedding re-index, 2nd pass':<34} direct {r['direct_s']:.2f} s   powergate {r['powergate_second_pass_s']:.3f} s   x{r['speedup_second_pass']} ({r['chunks']} chunks, realistic sim)"
        )
    if "litellm" in want:
        from bench.litellm import litellm_proxy

        with harness.sim_ollama() as sim, harness.powergate(sim.url) as pg, litellm_proxy(sim.url) as ll:
            cm = out["compare"] = compare.latency(sim.url, pg.url, ll.url, n)
            cm["throughput"] = compare.throughput(pg.url, ll.url, 3 if args.quick else 10)
            if args.quick:  # the smoke check re-indexes against the instant simulated Ollama
                cm["reindex"] = compare.reindex(sim.url, pg.url, ll.url, 100)
        if not args.quick:
            with (
                harness.sim_ollama(realistic=True) as real,
                harness.powergate(real.url) as pg,
                litellm_proxy(real.url) as ll,
            ):
                cm["reindex"] = compare.reindex(real.url, pg.url, ll.url, 2000)
        for key, label in (("hit", "cache hit"), ("miss", "miss"), ("ttfb", "first streamed byte")):
            r = cm[key]
            print(
                f"{'/v1 ' + label + ' p50':<34} direct {r['direct']['p50_ms']:>8.3f}   powergate {r['powergate']['p50_ms']:>8.3f}   "
                f"litellm {r['litellm']['p50_ms']:>8.3f} ms   litellm/powergate x{r['litellm_over_powergate_p50']}"
            )
            print(
                f"{'/v1 ' + label + ' p99':<34} direct {r['direct']['p99_ms']:>8.3f}   powergate {r['powergate']['p99_ms']:>8.3f}   litellm {r['litellm']['p99_ms']:>8.3f} ms"
            )
        t = cm["throughput"]
        print(
            f"{'cached answers/s, 16 clients':<34} powergate {t['powergate']}   litellm {t['litellm']}   ({t['tool']})"
        )
        r = cm["reindex"]
        print(
            f"{'embedding re-index, 2nd pass':<34} direct {r['direct_s']} s   powergate {r['powergate_second_pass_s']} s   litellm {r['litellm_second_pass_s']} s"
        )
    if "load" in want:
        with harness.sim_ollama(realistic=True) as real, harness.powergate(real.url, profile="balanced") as pg:
            ld = out["load"] = scheduling.under_load(
                real.url, pg.url, 5 if args.quick else 60, rounds=1 if args.quick else 2
            )
        print(
            f"{'autocomplete under load p50':<34} direct {ld['direct']['p50_ms']:>8.1f} ms   powergate {ld['powergate']['p50_ms']:>8.1f} ms"
        )
        print(
            f"{'autocomplete under load p95':<34} direct {ld['direct']['p95_ms']:>8.1f} ms   powergate {ld['powergate']['p95_ms']:>8.1f} ms"
            f"   x{ld['p95_ratio_direct_over_powergate']} (answered {ld['direct']['answered']} vs {ld['powergate']['answered']} suggestions)"
        )
        print(f"{'upstream work avoided':<34} {ld['avoided']}")
    if "session" in want:
        with (
            harness.sim_ollama(realistic=True) as real,
            harness.powergate(real.url, profile="performance") as spec,
            harness.powergate(real.url, profile="balanced") as warm,
        ):
            se = out["session"] = scheduling.editing_session(
                spec.url, warm.url, 4 if args.quick else 40, quick=args.quick
            )
        for k in ("with_prefetch", "without_prefetch"):
            v = se[k]
            print(
                f"{'editing session ' + k.replace('_', ' '):<34} {v['under_100ms']:.0%} under 100 ms   p50 {v['p50_ms']} ms   p95 {v['p95_ms']} ms   {v['outcomes']}"
            )
    if "idle" in want:
        with harness.sim_ollama() as sim:
            rows = out["idle"] = idle.run(sim.url, 5 if args.quick else 60)
        for r in rows:
            print(
                f"{'idle ' + r['profile']:<34} CPU {r['cpu_percent_of_one_core']:.3f}% of a core   "
                f"{r['wakeups_per_minute']:.0f} wake-ups/min   RSS {r['rss_mb']:.1f} MB   over {r['seconds']:.0f} s"
            )
    if "hosts" in want:
        from bench import hosts

        out["hosts"] = hosts.run(quick=args.quick)
        hosts.print_rows(out["hosts"])
    if "lightrag" in want:
        from bench import lightrag
        from tests.simollama import SimOllama, SimServer

        with tempfile.TemporaryDirectory(prefix="pg-bench-lightrag-") as d, SimServer(SimOllama.realistic()) as sim:
            lr = out["lightrag"] = lightrag.run(sim, Path(d), repeats=2 if args.quick else 4)
        for side in ("direct", "powergate"):
            v = lr[side]
            print(
                f"{'lightrag ' + side:<34} index {v['index_s']} s ({v['index_model_calls']} model calls)   "
                f"query miss p50 {v['query_miss']['p50_ms']:.0f} ms   repeat p50 {v['query_repeat']['p50_ms']:.1f} ms   "
                f"re-index {v['reindex_s']} s ({v['reindex_model_calls']} calls)   "
                f"suggestion p95 while indexing {v['suggestions_while_indexing']['p95_ms']:.0f} ms"
            )
        print(
            f"{'lightrag saved':<34} {lr['reindex_calls_saved']} model calls and {lr['reindex_time_saved_s']} s on re-index;"
            f" suggestion p95 x{lr['suggestion_p95_ratio_direct_over_powergate']}"
        )
    if "real" in want:
        from bench import real
        from tests.real.server import RealServerError

        try:
            out["real"] = real.run(args.quick)
        except RealServerError as exc:
            print(f"real model scenario not run: {exc}")
    if "interactive" in want:
        from bench import interactive
        from tests.real.server import RealServerError

        try:
            out["interactive"] = interactive.run(args.quick)
            print(interactive.table(out["interactive"]))
        except RealServerError as exc:
            print(f"interactive scenario not run: {exc}")
    if "threads" in want:
        from bench import threads
        from tests.real.server import RealServerError

        try:
            out["threads"] = threads.run()
            threads.print_rows(out["threads"])
        except RealServerError as exc:
            print(f"threads scenario not run: {exc}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("quick.json" if args.quick else "latest.json")
    # A partial run (--only) updates its own sections and keeps the others.
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() and args.only else {}
    merged.update(out)
    path.write_text(json.dumps(merged, indent=2))
    png = chart.draw(merged, path.with_suffix(".png"))
    if png:
        print(f"chart: {png}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
