"""LightRAG's own PostgreSQL vector storage (PGVectorStorage from lightrag-hku, in its own
venv: tests/reallightrag) against the real Postgres + pgvector, as the app's non-superuser
role: LightRAG builds its IVFFlat index on the empty table (POSTGRES_VECTOR_INDEX_TYPE=
IVFFLAT) and fills it; `powergate db check` finds that, `db apply` replaces it with
LightRAG's own HNSW index, and LightRAG, restarted with the advised .env, keeps that
index, answers its queries through it and sees the role's new hnsw.ef_search."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.services.conftest import VectorDb

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("lightrag_pgstore.py")
RUN_TIMEOUT_S = 600  # importing LightRAG on a busy 2-core machine is slow
CHUNKS = 4000


def lightrag_python() -> Path:
    from tests.reallightrag import ensure_venv

    python = ensure_venv()
    # LightRAG's PostgreSQL storage needs asyncpg and pgvector (it would pip-install them
    # itself at import time); install them once, explicitly.
    if subprocess.run([str(python), "-c", "import asyncpg, pgvector"], capture_output=True).returncode:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "asyncpg", "pgvector"],
            check=True,
        )
    return python


EMPTY_BUILD_ATTEMPTS = 3  # LightRAG runs (each fills the table anew)


def run_lightrag(python: Path, vdb: VectorDb, index_type: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    env.update(
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=str(vdb.server.port),
        POSTGRES_USER="app",
        POSTGRES_PASSWORD="unused",  # the test cluster trusts loopback; LightRAG insists on one
        POSTGRES_DATABASE=vdb.name,
        POSTGRES_VECTOR_INDEX_TYPE=index_type,
        POSTGRES_IVFFLAT_LISTS="40",
        POSTGRES_MAX_CONNECTIONS="4",
        LOG_LEVEL="WARNING",
    )
    r = subprocess.run(
        [str(python), str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=vdb.server.root,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def test_lightrags_own_ivfflat_is_found_replaced_and_kept(
    vdb: VectorDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    python = lightrag_python()
    # pgvector gives an IVFFlat index built on an empty table random centres: about one build
    # in six comes out balanced by chance (nothing to find), so LightRAG builds it again then.
    for _ in range(EMPTY_BUILD_ATTEMPTS):
        table = run_lightrag(python, vdb, "IVFFLAT", "fill", str(CHUNKS))["table"].lower()
        ivf, hnsw = f"idx_{table}_ivfflat_cosine", f"idx_{table}_hnsw_cosine"
        assert ivf in vdb.indexes()  # LightRAG built it when the table was empty
        capsys.readouterr()
        assert main(["db", "check", "--json", "--dsn", vdb.dsn]) == 1
        doc = json.loads(capsys.readouterr().out)
        if any(f["id"] == "ivfflat-built-empty" for f in doc["findings"]):
            break
        vdb.execute(f"DROP TABLE {table}")
    col = next(c for c in doc["columns"] if c["column"] == f"public.{table}.content_vector")
    assert col["lightrag"] is True and col["rows"] == CHUNKS
    found = {f["id"]: f for f in doc["findings"]}
    assert found["ivfflat-built-empty"]["subject"] == ivf
    assert found["ivfflat-built-empty"]["env"] == ["POSTGRES_VECTOR_INDEX_TYPE=HNSW"]
    assert "ivfflat-probes-1" in found and "ef-search-below-limit" in found

    assert main(["db", "apply", "--yes", "--dsn", vdb.dsn, "--data-dir", str(tmp_path)]) == 0
    indexes = vdb.indexes()
    assert hnsw in indexes and ivf not in indexes

    # LightRAG restarted with the advised .env line: it finds its HNSW index (no rebuild, no
    # second index), its query is answered, and its new connections carry the role's ef_search
    before = set(vdb.indexes())
    answer = run_lightrag(python, vdb, "HNSW", "query", "40")
    assert set(vdb.indexes()) == before
    assert answer == {"returned": 40, "ef_search": "100"}
