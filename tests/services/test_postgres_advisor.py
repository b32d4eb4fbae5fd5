"""`powergate db check|apply` against a real Postgres 16 + pgvector 0.8, as the app's own
non-superuser role: each finding is detected with the right SQL, apply fixes it (the
plan then uses the index), and nothing changes without consent.

LightRAG's tables are made with LightRAG's own DDL, index statements and query
(copied from lightrag/kg/postgres_impl.py: TABLES, _create_vector_index, SQL_TEMPLATES
"chunks"); LightRAG itself is not run here.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from agent.cli import main
from agent.services.postgres import consent_path
from tests.conftest import free_port
from tests.services.conftest import VectorDb, fill

pytestmark = pytest.mark.slow

# LightRAG's DDL (TABLES["LIGHTRAG_VDB_CHUNKS"] / ["LIGHTRAG_VDB_ENTITY"]), dimension 128 here
LIGHTRAG_CHUNKS_DDL = """CREATE TABLE LIGHTRAG_VDB_CHUNKS (
    id VARCHAR(255), workspace VARCHAR(255), full_doc_id VARCHAR(256), chunk_order_index INTEGER,
    tokens INTEGER, content TEXT, content_vector VECTOR(128), file_path TEXT NULL,
    create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP, update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_VDB_CHUNKS_PK PRIMARY KEY (workspace, id))"""
LIGHTRAG_ENTITY_DDL = """CREATE TABLE LIGHTRAG_VDB_ENTITY (
    id VARCHAR(255), workspace VARCHAR(255), entity_name VARCHAR(512), content TEXT,
    content_vector VECTOR(128), create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP, chunk_ids VARCHAR(255)[] NULL, file_path TEXT NULL,
    CONSTRAINT LIGHTRAG_VDB_ENTITY_PK PRIMARY KEY (workspace, id))"""
# _create_vector_index, POSTGRES_VECTOR_INDEX_TYPE=HNSW (m 16, ef_construction 64) and IVFFLAT
LIGHTRAG_HNSW = (
    "CREATE INDEX idx_lightrag_vdb_chunks_hnsw_cosine ON LIGHTRAG_VDB_CHUNKS "
    "USING hnsw (content_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
)
LIGHTRAG_IVFFLAT = (
    "CREATE INDEX idx_lightrag_vdb_entity_ivfflat_cosine ON LIGHTRAG_VDB_ENTITY "
    "USING ivfflat (content_vector vector_cosine_ops) WITH (lists = 40)"
)
# SQL_TEMPLATES["chunks"] with asyncpg's $1..$4 as psycopg parameters (workspace, distance, top_k, vector)
LIGHTRAG_CHUNKS_QUERY = """SELECT id, content, file_path, EXTRACT(EPOCH FROM create_time)::BIGINT AS created_at
    FROM LIGHTRAG_VDB_CHUNKS WHERE workspace = %(p1)s AND content_vector <=> %(p4)s::vector < %(p2)s
    ORDER BY content_vector <=> %(p4)s::vector LIMIT %(p3)s"""


EMPTY_BUILD_ATTEMPTS = 4  # random IVFFlat centres: one build in six is balanced by chance


def db(*args: str) -> int:
    return main(["db", *args])


def check(vdb: VectorDb, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    rc = db("check", "--json", "--dsn", vdb.dsn, *extra)
    return rc, json.loads(capsys.readouterr().out)


def finding(doc: dict[str, object], fid: str) -> dict[str, object]:
    found = [f for f in doc["findings"] if f["id"] == fid]  # type: ignore[attr-defined,index]
    assert found, f"no {fid} in {[f['id'] for f in doc['findings']]}"  # type: ignore[attr-defined,index]
    return found[0]  # type: ignore[no-any-return]


def plan(vdb: VectorDb, query: str) -> str:
    return "\n".join(str(r[0]) for r in vdb.execute(f"EXPLAIN {query}"))


def test_missing_index_found_with_exact_sql_and_apply_builds_it(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vdb.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(64))")
    fill(vdb, "items", "embedding", 64, 2000)
    vdb.execute("ANALYZE items")
    query = "SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM items WHERE id = 7) LIMIT 10"
    assert "items_embedding_hnsw" not in plan(vdb, query)

    rc, doc = check(vdb, capsys)
    assert rc == 1
    f = finding(doc, "missing-ann-index")
    assert f["subject"] == "public.items.embedding"
    assert f["evidence"]["rows"] == 2000 and f["evidence"]["dims"] == 64  # type: ignore[index]
    assert f["sql"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_embedding_hnsw ON public.items "
        "USING hnsw (embedding vector_cosine_ops)"
    ]

    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path / "data")) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "items_embedding_hnsw" in out
    assert "items_embedding_hnsw" in plan(vdb, query)  # the planner now uses the new index
    assert consent_path(tmp_path / "data").exists()
    rc, doc = check(vdb, capsys)
    assert rc == 0 and doc["findings"] == []


def test_wide_vectors_get_a_halfvec_index_that_cast_queries_use(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a 2,560-dimension embedding model: HNSW on vector stops at 2,000 (LightRAG only logs the failure)
    vdb.execute("CREATE TABLE wide (id bigserial PRIMARY KEY, emb vector(2560))")
    fill(vdb, "wide", "emb", 2560, 1000)
    rc, doc = check(vdb, capsys, "--no-probe")
    f = finding(doc, "missing-ann-index")
    assert f["sql"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS wide_emb_hnsw ON public.wide "
        "USING hnsw ((emb::halfvec(2560)) halfvec_cosine_ops)"
    ]
    assert "halfvec(2560)" in str(f["message"])
    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    vdb.execute("ANALYZE wide")
    q = "SELECT id FROM wide ORDER BY emb::halfvec(2560) <=> (SELECT emb FROM wide WHERE id = 3)::halfvec(2560) LIMIT 5"
    assert "wide_emb_hnsw" in plan(vdb, q)


def _lightrag_chunks(vdb: VectorDb, rows: int = 8000) -> None:
    vdb.execute(LIGHTRAG_CHUNKS_DDL)
    vdb.execute(LIGHTRAG_HNSW)  # LightRAG builds it at start, on the empty table
    # two workspaces interleaved, as when two LightRAG instances share the database
    fill(
        vdb,
        "LIGHTRAG_VDB_CHUNKS",
        "content_vector",
        128,
        rows,
        {"id": lambda g: f"chunk-{g}", "workspace": lambda g: "alpha" if g % 2 == 0 else "beta", "content": str},
    )
    vdb.execute("ANALYZE LIGHTRAG_VDB_CHUNKS")


def _lightrag_query_rows(vdb: VectorDb) -> int:
    vec = vdb.execute("SELECT content_vector::text FROM LIGHTRAG_VDB_CHUNKS WHERE id = 'chunk-100'")[0][0]
    rows = vdb.execute(LIGHTRAG_CHUNKS_QUERY, {"p1": "alpha", "p2": 0.8, "p3": 40, "p4": vec})  # type: ignore[arg-type]
    return len(rows)


def test_lightrag_short_results_found_and_fixed_for_new_connections(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _lightrag_chunks(vdb)
    before = _lightrag_query_rows(vdb)
    assert before < 40  # ef_search 40, LIMIT 40 and a workspace filter: LightRAG gets short results

    rc, doc = check(vdb, capsys)
    assert rc == 1
    col = next(c for c in doc["columns"] if c["column"].endswith("lightrag_vdb_chunks.content_vector"))  # type: ignore[attr-defined]
    assert col["lightrag"] is True
    f = finding(doc, "ef-search-below-limit")
    ev = f["evidence"]
    assert ev["hnsw.ef_search"] == 40 and ev["query_limit"] == 40  # type: ignore[index]
    assert "LIMIT 40 returned" in str(ev["measured"])  # type: ignore[index]
    assert f["sql"] == [
        "ALTER ROLE app SET hnsw.ef_search = 100",
        "ALTER ROLE app SET hnsw.iterative_scan = relaxed_order",
    ]
    assert any(
        line.startswith("POSTGRES_SERVER_SETTINGS=hnsw.ef_search=100&hnsw.iterative_scan=relaxed_order")
        for line in f["env"]
    )  # type: ignore[attr-defined]

    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    # a NEW connection of the (non-superuser) role sees the settings, and LightRAG's query is whole again
    assert vdb.new_session_setting("hnsw.ef_search") == "100"
    assert vdb.new_session_setting("hnsw.iterative_scan") == "relaxed_order"
    assert _lightrag_query_rows(vdb) == 40


def test_ivfflat_built_on_the_empty_table_is_found_and_rebuilt(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # pgvector gives an IVFFlat index built on an empty table random centres: its lists are
    # usually badly unbalanced, but about one build in six (measured here) happens to come out
    # balanced enough, and then there is nothing to find. So build it the LightRAG way again.
    for _ in range(EMPTY_BUILD_ATTEMPTS):
        vdb.execute("DROP TABLE IF EXISTS LIGHTRAG_VDB_ENTITY")
        vdb.execute(LIGHTRAG_ENTITY_DDL)
        vdb.execute(LIGHTRAG_IVFFLAT)  # POSTGRES_VECTOR_INDEX_TYPE=IVFFLAT: built before any row exists
        fill(
            vdb,
            "LIGHTRAG_VDB_ENTITY",
            "content_vector",
            128,
            4000,
            {"id": lambda g: f"e{g}", "workspace": lambda g: "w"},
        )
        vdb.execute("ANALYZE LIGHTRAG_VDB_ENTITY")
        rc, doc = check(vdb, capsys)
        if any(f["id"] == "ivfflat-built-empty" for f in doc["findings"]):  # type: ignore[attr-defined]
            break
    assert rc == 1
    f = finding(doc, "ivfflat-built-empty")
    assert f["subject"] == "idx_lightrag_vdb_entity_ivfflat_cosine"
    share = float(str(f["evidence"]["index_read_per_search"]).rstrip("%"))  # type: ignore[index]
    assert share > 50  # nearly the whole index per search: lists from an empty table
    # LightRAG's own index name and build parameters: LightRAG keeps it at its next start
    assert f["sql"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_lightrag_vdb_entity_hnsw_cosine ON public.lightrag_vdb_entity "
        "USING hnsw (content_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        "DROP INDEX CONCURRENTLY IF EXISTS public.idx_lightrag_vdb_entity_ivfflat_cosine",
    ]
    assert "POSTGRES_VECTOR_INDEX_TYPE=HNSW" in f["env"]  # type: ignore[operator]
    probes = finding(doc, "ivfflat-probes-1")
    assert probes["sql"][0] == "ALTER ROLE app SET ivfflat.probes = 6"  # type: ignore[index]

    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    idx = vdb.indexes()
    assert "idx_lightrag_vdb_entity_hnsw_cosine" in idx and "idx_lightrag_vdb_entity_ivfflat_cosine" not in idx
    q = "SELECT id FROM LIGHTRAG_VDB_ENTITY ORDER BY content_vector <=> (SELECT content_vector FROM LIGHTRAG_VDB_ENTITY WHERE id = 'e5') LIMIT 10"
    assert "idx_lightrag_vdb_entity_hnsw_cosine" in plan(vdb, q)
    assert vdb.new_session_setting("ivfflat.probes") == "6"


def test_a_well_built_ivfflat_is_not_called_unbalanced(vdb: VectorDb, capsys: pytest.CaptureFixture[str]) -> None:
    vdb.execute("CREATE TABLE late (id serial, emb vector(128))")
    fill(vdb, "late", "emb", 128, 4000)
    vdb.execute("CREATE INDEX late_ivf ON late USING ivfflat (emb vector_cosine_ops) WITH (lists = 40)")
    vdb.execute("ALTER ROLE app SET ivfflat.probes = 6", admin=True)
    rc, doc = check(vdb, capsys)
    assert [f["id"] for f in doc["findings"]] == []  # type: ignore[attr-defined]
    assert rc == 0


def test_low_hnsw_recall_is_measured_and_ef_search_raised(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vdb.execute("CREATE TABLE docs (id bigserial PRIMARY KEY, emb vector(64))")
    fill(vdb, "docs", "emb", 64, 6000)
    vdb.execute("CREATE INDEX docs_hnsw ON docs USING hnsw (emb vector_cosine_ops)")
    vdb.execute("ANALYZE docs")
    vdb.execute("ALTER ROLE app SET hnsw.ef_search = 4", admin=True)  # someone "saved battery" too far
    rc, doc = check(vdb, capsys)
    f = finding(doc, "low-recall")
    ev = f["evidence"]
    assert ev["recall_at_10"] <= 0.4  # type: ignore[index]  # a scan of ef_search 4 returns at most 4 of 10
    measured = ev["recall_at_ef_search"]  # type: ignore[index]
    assert measured and max(measured.values()) >= 0.9
    first_good = min(int(e) for e, r in measured.items() if r >= 0.9)
    assert f["sql"] == [f"ALTER ROLE app SET hnsw.ef_search = {first_good}"]
    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    assert int(vdb.new_session_setting("hnsw.ef_search")) >= first_good
    rc, doc = check(vdb, capsys)
    assert rc == 0, doc["findings"]


def test_small_maintenance_work_mem_is_raised_for_the_build(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vdb.execute("ALTER ROLE app SET maintenance_work_mem = '1MB'", admin=True)
    vdb.execute("CREATE TABLE notes (id serial, emb vector(64))")
    fill(vdb, "notes", "emb", 64, 3000)
    rc, doc = check(vdb, capsys, "--no-probe")
    f = finding(doc, "maintenance-work-mem-small")
    assert f["evidence"]["maintenance_work_mem"] == "1.0 MB"  # type: ignore[index]
    assert f["sql"] == ["SET maintenance_work_mem = '64MB'"]
    assert any("--shm-size" in a for a in f["advice"])  # type: ignore[attr-defined]
    capsys.readouterr()
    assert db("apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    planned = capsys.readouterr().out.split("planned, in this order:")[1]
    # the session setting comes first, so pgvector never has to say the graph outgrew it
    assert planned.index("SET maintenance_work_mem") < planned.index("CREATE INDEX")
    assert "NOTICE" not in planned
    assert "notes_emb_hnsw" in vdb.indexes()
    # the premise, shown: the same build at the role's 1 MB spills, and says so only in a NOTICE
    with psycopg.connect(vdb.dsn, autocommit=True) as c:
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        c.execute("CREATE INDEX control_hnsw ON notes USING hnsw (emb vector_cosine_ops)")
    assert any("no longer fits into maintenance_work_mem" in n for n in notices)


def test_pooler_and_client_pool_from_lightrag_env(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = tmp_path / "lightrag.env"
    env.write_text("POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT=6543\nPOSTGRES_MAX_CONNECTIONS=100\nTOP_K=40\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[postgres]\ndsn = "{vdb.dsn}"\nlightrag_env = "{env.as_posix()}"\n')
    capsys.readouterr()
    assert main(["db", "check", "--json", "--config", str(cfg)]) == 1
    doc = json.loads(capsys.readouterr().out)
    pooler = finding(doc, "transaction-pooler-prepared-statements")
    assert pooler["env"] == ["POSTGRES_STATEMENT_CACHE_SIZE=0"]
    pool = finding(doc, "client-pool-too-big")
    assert pool["evidence"]["POSTGRES_MAX_CONNECTIONS"] == 100  # type: ignore[index]
    assert pool["evidence"]["max_connections"] == 40  # type: ignore[index]
    assert str(pool["env"][0]).startswith("POSTGRES_MAX_CONNECTIONS=")  # type: ignore[index]
    assert int(str(pool["env"][0]).split("=")[1]) < 40  # type: ignore[index]
    # the fixed .env is clean
    env.write_text("POSTGRES_PORT=5432\nPOSTGRES_STATEMENT_CACHE_SIZE=0\nPOSTGRES_MAX_CONNECTIONS=12\n")
    assert main(["db", "check", "--config", str(cfg)]) == 0


def test_nothing_changes_without_consent(vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _lightrag_chunks(vdb, rows=1500)
    vdb.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(64))")
    fill(vdb, "items", "embedding", 64, 1500)
    indexes, settings = vdb.indexes(), vdb.role_settings()

    assert check(vdb, capsys)[0] == 1  # check only reads
    # apply without --yes and without a terminal to answer on: refuses
    assert db("apply", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 1
    assert "nothing changed" in capsys.readouterr().err
    assert vdb.indexes() == indexes and vdb.role_settings() == settings
    assert not consent_path(tmp_path).exists()


def test_apply_asks_and_a_no_changes_nothing(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vdb.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(64))")
    fill(vdb, "items", "embedding", 64, 1500)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert db("apply", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 1
    assert "items_embedding_hnsw" not in vdb.indexes()
    assert db("apply", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)) == 0
    assert "items_embedding_hnsw" in vdb.indexes()


def test_unreachable_and_unconfigured_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert db("check") == 2
    assert "54322" in capsys.readouterr().err  # the Supabase local default is shown
    assert db("check", "--dsn", f"postgresql://app@127.0.0.1:{free_port()}/postgres") == 2
    err = capsys.readouterr().err
    assert "cannot reach Postgres at app@127.0.0.1:" in err and "Traceback" not in err
    assert db("check", "--dsn", "postgresql://app@127.0.0.1:notaport/x") == 2
    assert "Traceback" not in capsys.readouterr().err
