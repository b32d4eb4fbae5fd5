"""A real Postgres 16 + pgvector 0.8 for the advisor tests: one server per session, one
fresh database per test, and a non-superuser role `app` that owns it (as an
application's role would)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.pgvector_server import PgVectorServer, copy_rows, embedding_like

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgVectorServer]:
    with PgVectorServer() as server:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("CREATE ROLE app LOGIN")
        yield server


@dataclass
class VectorDb:
    server: PgVectorServer
    name: str

    @property
    def dsn(self) -> str:
        """The application's own (non-superuser) role."""
        return self.server.dsn("app", self.name)

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn("postgres", self.name)

    def execute(self, sql: str, params: Any = None, *, admin: bool = False) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.admin_dsn if admin else self.dsn, autocommit=True) as c:
            # bytes without parameters: a literal '%' (modulo) is not a placeholder
            cur = c.execute(sql.encode()) if params is None else c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def new_session_setting(self, name: str) -> str:
        """What a NEW connection of the app role sees (pgvector's library loaded first)."""
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("SELECT NULL::vector")
            row = c.execute("SELECT current_setting(%s)", (name,)).fetchone()
            return str(row[0]) if row else ""

    def indexes(self) -> dict[str, str]:
        rows = self.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        return {str(n): str(d) for n, d in rows}

    def role_settings(self) -> list[str]:
        rows = self.execute(
            "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = 'app'",
            admin=True,
        )
        return sorted(str(r[0]) for r in rows)


@pytest.fixture
def vdb(pg_server: PgVectorServer) -> Iterator[VectorDb]:
    name = f"t{next(_names)}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} OWNER app".encode())
        # the role's own settings from an earlier test must not leak into this one
        c.execute(b"ALTER ROLE app RESET ALL")
    db = VectorDb(pg_server, name)
    db.execute("CREATE EXTENSION vector", admin=True)
    yield db
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


def fill(
    db: VectorDb,
    table: str,
    column: str,
    dims: int,
    rows: int,
    extra: dict[str, Callable[[int], object]] | None = None,
) -> None:
    """`rows` deterministic embedding-like vectors (plus `extra` columns computed from the
    row number), copied in as the app role."""
    extra = extra or {}
    with psycopg.connect(db.dsn, autocommit=True) as c:
        copy_rows(
            c,
            table,
            [column, *extra],
            ([vec, *(f(g) for f in extra.values())] for g, vec in enumerate(embedding_like(rows, dims), 1)),
        )
