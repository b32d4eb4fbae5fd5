"""The advisor's rules on facts (no database): the opclass follows the distance operator
the application uses, limits by type, LightRAG's names, config validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.config import load_settings, settings_as_dict
from agent.errors import ConfigError
from agent.services.pgvector_rules import (
    ColumnFacts,
    DatabaseFacts,
    IndexFacts,
    ProbeFacts,
    StatementFacts,
    find_problems,
    quote_ident,
)
from agent.services.postgres import _operators_by_column


def facts(*columns: ColumnFacts, **kw: object) -> DatabaseFacts:
    base: dict[str, object] = {
        "target": "app@db:5432/app",
        "host": "db",
        "port": 5432,
        "role": "app",
        "is_superuser": False,
        "server_version": "16.4",
        "pgvector": (0, 8, 0),
        "max_connections": 100,
        "reserved_connections": 3,
        "connections": 5,
        "connections_by_app": {"psql": 5},
        "maintenance_work_mem": 1024 * 1024 * 1024,
        "settings": {"hnsw.ef_search": "40", "hnsw.iterative_scan": "off", "ivfflat.probes": "1"},
        "role_settings": [],
        "columns": list(columns),
        "stat_statements": "installed",
        "slowest": [],
        "lightrag_env": {},
        "lightrag_env_path": "",
    }
    base.update(kw)
    return DatabaseFacts(**base)  # type: ignore[arg-type]


def column(
    table: str = "docs", col: str = "embedding", type_: str = "vector", dims: int | None = 768, rows: int = 50_000
) -> ColumnFacts:
    return ColumnFacts("public", table, col, type_, dims, rows, rows * 4000, 12, 600_000, 0)


@pytest.mark.parametrize(
    ("query", "opclass"),
    [
        ("SELECT id FROM docs ORDER BY embedding <-> $1 LIMIT $2", "vector_l2_ops"),
        ("SELECT id FROM docs ORDER BY embedding <#> $1 LIMIT $2", "vector_ip_ops"),
        ("SELECT id FROM docs ORDER BY embedding <=> $1 LIMIT $2", "vector_cosine_ops"),
        ("SELECT id FROM docs ORDER BY embedding <+> $1 LIMIT $2", "vector_l1_ops"),
    ],
)
def test_index_opclass_matches_the_operator_the_queries_use(query: str, opclass: str) -> None:
    col = column()
    _operators_by_column([col], [StatementFacts(query, 120, 48.0, 5760.0)])
    (f,) = [f for f in find_problems(facts(col)) if f.id == "missing-ann-index"]
    assert f.sql == [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_embedding_hnsw ON public.docs USING hnsw (embedding {opclass})"
    ]
    assert f.evidence["operator_source"] == "seen in pg_stat_statements (120 calls)"


def test_types_and_dimension_limits() -> None:
    half = column("h", "e", "halfvec", 3000)
    (f,) = [f for f in find_problems(facts(half)) if f.id == "missing-ann-index"]
    assert "USING hnsw (e halfvec_cosine_ops)" in f.sql[0]
    sparse = column("s", "e", "sparsevec", 30000)
    (f,) = [f for f in find_problems(facts(sparse)) if f.id == "missing-ann-index"]
    assert "USING hnsw (e sparsevec_cosine_ops)" in f.sql[0]
    huge = column("x", "e", "vector", 4096)
    assert [f.id for f in find_problems(facts(huge)) if f.severity == "warning"] == ["too-many-dimensions"]
    untyped = column("u", "e", "vector", None)
    assert [f.id for f in find_problems(facts(untyped))] == ["vector-without-dimensions"]
    small = column(rows=200)
    assert find_problems(facts(small)) == []  # an exact scan of 200 rows is fine


def test_lightrag_tables_are_known_and_get_its_own_index_or_env_lines() -> None:
    col = column("lightrag_vdb_chunks", "content_vector", "vector", 1024)
    assert col.is_lightrag
    (f,) = [f for f in find_problems(facts(col)) if f.id == "missing-ann-index"]
    assert f.sql == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_lightrag_vdb_chunks_hnsw_cosine ON public.lightrag_vdb_chunks "
        "USING hnsw (content_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    ]
    assert f.env == ["POSTGRES_VECTOR_INDEX_TYPE=HNSW"]
    assert f.evidence["operator_source"] == "LightRAG queries with <=> (cosine)"
    # a model-suffixed table whose name is too long: LightRAG's hashed index name
    long = column("lightrag_vdb_relation_qwen3_embedding_0_6b_1024d", "content_vector", "vector", 1024)
    (f,) = [f for f in find_problems(facts(long)) if f.id == "missing-ann-index"]
    hashed = "idx_" + hashlib.md5(long.table.encode()).hexdigest()[:12] + "_hnsw_cosine"  # as LightRAG names it
    assert f" {hashed} ON " in f.sql[0]
    # above 2,000 dims LightRAG queries with ::vector: its own HNSW_HALFVEC mode is the fix, not our SQL
    wide = column("lightrag_vdb_chunks_qwen3_embedding_2560d", "content_vector", "vector", 2560)
    (f,) = [f for f in find_problems(facts(wide)) if f.id == "missing-ann-index"]
    assert f.sql == [] and f.env == ["POSTGRES_VECTOR_INDEX_TYPE=HNSW_HALFVEC"]
    assert quote_ident("LightRAG") == '"LightRAG"' and quote_ident("lightrag_vdb_chunks") == "lightrag_vdb_chunks"


def test_low_hnsw_recall_advises_a_larger_ef_search_for_the_role() -> None:
    col = column()
    col.indexes = [IndexFacts("docs_hnsw", "hnsw", "vector_cosine_ops", "embedding", True, 10**8)]
    col.probe = ProbeFacts("docs_hnsw", 5, 0.62, 10, 10.0, 10.0)
    fs = find_problems(facts(col, settings={"hnsw.ef_search": "64", "hnsw.iterative_scan": "relaxed_order"}))
    (f,) = [f for f in fs if f.id == "low-recall"]
    assert f.sql == ["ALTER ROLE app SET hnsw.ef_search = 128"]
    assert f.evidence["recall_at_10"] == 0.62
    assert not [f for f in fs if f.id == "ef-search-below-limit"]  # iterative scan on: the LIMIT is met


def test_postgres_config_is_validated_and_the_password_never_shown(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[postgres]\ndsn = "postgresql://app:s3cret@127.0.0.1:54322/postgres"\n[profiles.balanced]\nef_search = 80\n'
    )
    s = load_settings(config_file=cfg)
    assert s.postgres.dsn.endswith(":54322/postgres") and s.profile("balanced").ef_search == 80
    assert settings_as_dict(s)["postgres"]["dsn"] == "postgresql://app:***@127.0.0.1:54322/postgres"
    for bad, key in (
        ('[postgres]\ndsn = "postgresql://a@h:99999/d"\n', "postgres.dsn"),
        ('[postgres]\nhost = "x"\n', "postgres.host"),
        ("[profiles.balanced]\nef_search = 5000\n", "profiles.balanced.ef_search"),
    ):
        cfg.write_text(bad)
        with pytest.raises(ConfigError) as e:
            load_settings(config_file=cfg)
        assert e.value.key == key
