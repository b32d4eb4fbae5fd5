"""The Postgres + pgvector advisor: `powergate db check|apply` and per-profile ef_search.

Read-only by default: `check` runs every query inside a READ ONLY transaction with a
short statement timeout. Nothing is written before the user consents (`db apply`
with a prompt or --yes); that consent is recorded in the data dir and only then
does a profile switch set `hnsw.ef_search` for the configured role.

psycopg is blocking: the agent calls into this module only from its own worker
thread (`DatabaseService`), never from the event loop.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from agent.errors import DatabaseError, DatabaseUnavailable
from agent.services.pgvector_rules import (
    IVFFLAT_DEFAULT_LISTS,
    LIGHTRAG_DEFAULT_TOP_K,
    LOW_RECALL,
    MIN_ROWS_FOR_INDEX,
    OPERATOR_FAMILY,
    ColumnFacts,
    DatabaseFacts,
    Finding,
    IndexFacts,
    ProbeFacts,
    StatementFacts,
    advised_probes,
    find_problems,
    human_bytes,
    quote_ident,
    version_tuple,
)

log = logging.getLogger(__name__)

SUPABASE_LOCAL_DSN = "postgresql://postgres:postgres@127.0.0.1:54322/postgres"  # `supabase start`
DEFAULT_PORT = 5432
CONNECT_TIMEOUT_S = 3  # seconds; libpq counts whole seconds
STATEMENT_TIMEOUT_MS = 5000  # per query during a check
PROBE_STATEMENT_TIMEOUT_MS = 20000  # the exact searches of the recall probe read whole tables
PROBE_QUERIES = 5
PROBE_K = 10
PROBE_EF_SEARCH = (64, 100, 200, 400)  # tried in turn when recall is low, until it is good
EXACT_COUNT_MAX_BYTES = 512 * 1024 * 1024  # count(*) below this size, the planner's estimate above
SLOWEST_STATEMENTS = 5
PROGRESS_INTERVAL_S = 1.0  # how often apply reports an index build's progress
CONSENT_FILE = "postgres-consent.json"
HEALTH_INTERVAL_S = 60.0  # the agent looks at the database at most this often
FINDINGS_INTERVAL_S = 600.0  # and re-runs the (probe-free) check at most this often
POOL_IDLE_S = 2.5 * HEALTH_INTERVAL_S  # the agent's one pooled connection survives between looks
POOL_CLOSE_TIMEOUT_S = 2.0
APPLICATION_NAME = "powergate"
PAGE_BYTES = 8192  # Postgres block size


# ---------------------------------------------------------------- connecting


def describe_target(dsn: str) -> tuple[str, str, int, str]:
    """(user@host:port/db without the password, host, port, user) of a DSN."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(f"[postgres] dsn is not a valid connection string: {exc}") from None
    host = str(d.get("host") or d.get("hostaddr") or "localhost").split(",")[0]
    port_text = str(d.get("port") or DEFAULT_PORT).split(",")[0]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DatabaseError(f"[postgres] dsn: port must be a number from 1 to 65535, got {port_text!r}")
    port = int(port_text)
    user = str(d.get("user") or "")
    db = str(d.get("dbname") or user)
    return f"{user}@{host}:{port}/{db}", host, port, user


@contextmanager
def connect(dsn: str, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """One short-lived connection; failures become DatabaseUnavailable with libpq's reason."""
    target = describe_target(dsn)[0]
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=APPLICATION_NAME,
            prepare_threshold=None,  # no server-side prepared statements: transaction poolers lose them
        )
    except psycopg.OperationalError as exc:
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        raise DatabaseUnavailable(f"cannot reach Postgres at {target}: {reason}") from None
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def read_only(conn: psycopg.Connection[Any], timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Iterator[psycopg.Cursor[Any]]:
    """A READ ONLY transaction with a statement timeout; always rolled back."""
    with conn.transaction(force_rollback=True):
        cur = conn.cursor()
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout_ms)))
        yield cur


def _translate(exc: psycopg.Error, what: str) -> DatabaseError:
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(f"{what}: {exc}")
    return DatabaseError(f"{what}: {exc}")


# ---------------------------------------------------------------- LightRAG's .env


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments, export and quotes handled)."""
    out: dict[str, str] = {}
    if not path:
        return out
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseError(f"[postgres] lightrag_env: cannot read {path}: {exc.strerror}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.split(" #", 1)[0].strip().strip("'\"")
        out[key.strip()] = value
    return out


# ---------------------------------------------------------------- reading the facts


def _settings_for_session(cur: psycopg.Cursor[Any]) -> dict[str, str]:
    # Loading pgvector's library registers its settings, so current_setting shows what
    # a new session of this role gets (role and database defaults included).
    cur.execute("SELECT NULL::vector")
    out = {}
    for name in ("hnsw.ef_search", "hnsw.iterative_scan", "ivfflat.probes", "ivfflat.iterative_scan"):
        cur.execute("SELECT current_setting(%s, true)", (name,))
        row = cur.fetchone()
        if row and row[0] is not None:
            out[name] = str(row[0])
    return out


def _columns(cur: psycopg.Cursor[Any]) -> list[ColumnFacts]:
    cur.execute(
        """
        SELECT n.nspname, c.relname, a.attname, t.typname, a.atttypmod, c.oid, a.attnum,
               greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
               coalesce(s.seq_scan, 0), coalesce(s.seq_tup_read, 0), coalesce(s.idx_scan, 0),
               EXISTS (SELECT 1 FROM pg_attribute w WHERE w.attrelid = c.oid AND w.attname = 'workspace'
                       AND NOT w.attisdropped)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE t.typname IN ('vector', 'halfvec', 'sparsevec') AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND has_table_privilege(c.oid, 'SELECT')
        ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname, a.attname
        """
    )
    rows = cur.fetchall()
    out = []
    for nsp, rel, att, typ, typmod, oid, attnum, est, total, heap, seq, seq_read, idx_scan, has_ws in rows:
        col = ColumnFacts(
            schema=nsp,
            table=rel,
            column=att,
            type=typ,
            dims=typmod if typmod and typmod > 0 else None,
            rows=int(est),
            table_bytes=int(total),
            seq_scan=int(seq),
            seq_tup_read=int(seq_read),
            idx_scan=int(idx_scan),
            has_workspace=bool(has_ws),
        )
        if heap <= EXACT_COUNT_MAX_BYTES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(nsp), sql.Identifier(rel)))
            col.rows = int(cur.fetchone()[0])  # type: ignore[index]
        col.indexes = _indexes(cur, oid, attnum, att)
        out.append(col)
    return out


def _indexes(cur: psycopg.Cursor[Any], table_oid: int, attnum: int, column: str) -> list[IndexFacts]:
    cur.execute(
        """
        SELECT ic.relname, am.amname, coalesce(opc.opcname, ''), pg_get_indexdef(i.indexrelid, 1, true),
               i.indisvalid, pg_relation_size(i.indexrelid), coalesce(ic.reloptions, '{}'), i.indkey[0]
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
        LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[0]
        WHERE i.indrelid = %s
        """,
        (table_oid,),
    )
    out = []
    for name, method, opclass, expr, valid, size, reloptions, key0 in cur.fetchall():
        on_column = key0 == attnum or (key0 == 0 and re.search(rf"\b{re.escape(column)}\b", expr or ""))
        if not on_column:
            continue
        options = dict(o.split("=", 1) for o in reloptions if "=" in o)
        out.append(IndexFacts(name, method, opclass, expr or column, bool(valid), int(size), options))
    return out


def _statements(cur: psycopg.Cursor[Any]) -> tuple[str, list[StatementFacts]]:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
    if cur.fetchone() is None:
        return "not installed", []
    try:
        with cur.connection.transaction():  # a savepoint: the view errors when the library is not preloaded
            cur.execute(
                """
                SELECT query, calls, mean_exec_time, total_exec_time FROM pg_stat_statements
                WHERE query ~ '(<=>|<->|<#>|<\\+>)' AND query !~* '^\\s*(CREATE|EXPLAIN)'
                ORDER BY mean_exec_time DESC LIMIT 50
                """
            )
            rows = cur.fetchall()
    except psycopg.Error as exc:
        return f"installed but not readable: {str(exc).strip().splitlines()[0]}", []
    return "installed", [StatementFacts(q, int(c), float(m), float(t)) for q, c, m, t in rows]


def _operators_by_column(columns: list[ColumnFacts], statements: list[StatementFacts]) -> None:
    for st in statements:
        for col in columns:
            if col.table.lower() not in st.query.lower():
                continue
            for op in OPERATOR_FAMILY:
                if re.search(rf"\b{re.escape(col.column)}\b[^,]*?{re.escape(op)}", st.query):
                    col.operators[op] = col.operators.get(op, 0) + st.calls


def _probe(cur: psycopg.Cursor[Any], col: ColumnFacts, top_k: int) -> ProbeFacts | None:
    """Recall@10 of the column's ANN index against exact search, on the table's own vectors;
    and how many rows a LIMIT top_k search returns (with the workspace filter LightRAG uses)."""
    idx = col.ann_indexes[0]
    kind = idx.opclass.split("_", 1)[0] if idx.opclass else col.type
    cast = f"::{kind}({col.dims})" if kind in ("vector", "halfvec") and col.dims else f"::{kind}"
    expr, op, table = f"({idx.expression})", idx.operator, col.qualified
    ws = ", workspace" if col.has_workspace else ""
    pick = f"SELECT {expr}::text{ws} FROM {table} WHERE {quote_ident(col.column)} IS NOT NULL OFFSET %s LIMIT 1"
    samples: list[tuple[Any, ...]] = []
    for i in range(PROBE_QUERIES):
        cur.execute(pick.encode(), ((col.rows * (2 * i + 1)) // (2 * PROBE_QUERIES),))
        row = cur.fetchone()
        if row:
            samples.append(tuple(row))
    if not samples:
        return None
    conditions = "the role's settings"
    if idx.method == "ivfflat":
        # Measured at the advised probes, so a poor result means poor lists (an index
        # built before its data), not the probes setting, which is its own finding.
        probes = advised_probes(int(idx.options.get("lists", IVFFLAT_DEFAULT_LISTS)))
        cur.execute(f"SET LOCAL ivfflat.probes = {probes}".encode())
        conditions = f"ivfflat.probes = {probes}"
    knn = f"SELECT ctid::text FROM {table} ORDER BY {expr} {op} %s{cast} LIMIT %s"
    cur.execute(f"EXPLAIN {knn}".encode(), (samples[0][0], PROBE_K))
    plan = "\n".join(r[0] for r in cur.fetchall())
    if idx.name not in plan:
        return None  # the planner prefers an exact scan here (small table): nothing to measure
    read_share = None
    if idx.method == "ivfflat" and idx.size_bytes:
        read_share = _index_read_share(cur, knn, idx, [smp[0] for smp in samples[:2]])
    where = "WHERE workspace = %s " if col.has_workspace else ""
    at_k = f"SELECT ctid::text FROM {table} {where}ORDER BY {expr} {op} %s{cast} LIMIT %s"
    hits = 0
    returned = expected = 0.0
    exact_sets: list[tuple[Any, set[str]]] = []
    for sample in samples:
        vec = sample[0]
        k_params = (*sample[1:], vec, top_k)
        results: list[tuple[set[str], int]] = []
        for index_scan in ("on", "off"):
            cur.execute(f"SET LOCAL enable_indexscan = {index_scan}".encode())
            cur.execute(knn.encode(), (vec, PROBE_K))
            nearest = {r[0] for r in cur.fetchall()}
            cur.execute(at_k.encode(), k_params)
            results.append((nearest, len(cur.fetchall())))
        cur.execute(b"SET LOCAL enable_indexscan = on")
        (ann, ann_k), (exact, exact_k) = results
        hits += len(ann & exact)
        returned += ann_k
        expected += exact_k
        exact_sets.append((vec, exact))
    n = len(samples)
    recall = hits / (n * PROBE_K)
    by_ef: dict[int, float] = {}
    if idx.method == "hnsw" and recall < LOW_RECALL:
        # what a larger ef_search would give, so the advice is a measured value, not a guess
        for ef in PROBE_EF_SEARCH:
            cur.execute(f"SET LOCAL hnsw.ef_search = {ef}".encode())
            found = 0
            for vec, exact in exact_sets:
                cur.execute(knn.encode(), (vec, PROBE_K))
                found += len({r[0] for r in cur.fetchall()} & exact)
            by_ef[ef] = found / (n * PROBE_K)
            if by_ef[ef] >= LOW_RECALL:
                break
        cur.execute(b"RESET hnsw.ef_search")
    return ProbeFacts(
        idx.name, n, recall, top_k, returned / n, expected / n, conditions, read_share, recall_by_ef_search=by_ef
    )


def _index_read_share(cur: psycopg.Cursor[Any], knn: str, idx: IndexFacts, vectors: list[Any]) -> float | None:
    """The share of the index's pages one search reads (EXPLAIN ANALYZE, BUFFERS): IVFFlat lists
    made from too few rows are so unbalanced that a search reads nearly the whole index."""
    pages = max(1, idx.size_bytes // PAGE_BYTES)
    shares = []
    for vec in vectors:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {knn}".encode(), (vec, PROBE_K))
        row = cur.fetchone()
        plan = row[0] if row else None
        if isinstance(plan, str):
            plan = json.loads(plan)
        if not plan:
            return None
        stack = [plan[0]["Plan"]]
        while stack:
            node = stack.pop()
            if node.get("Index Name") == idx.name:
                shares.append((node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)) / pages)
            stack.extend(node.get("Plans", []))
    return sum(shares) / len(shares) if shares else None


Connector = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


def gather_facts(
    dsn: str, *, lightrag_env: str = "", role: str = "", probe: bool = True, connector: Connector | None = None
) -> DatabaseFacts:
    """Everything the rules need, read in one READ ONLY transaction."""
    target, host, port, user = describe_target(dsn)
    env = read_env_file(lightrag_env)
    with connector() if connector else connect(dsn) as conn:
        try:
            with read_only(conn, PROBE_STATEMENT_TIMEOUT_MS if probe else STATEMENT_TIMEOUT_MS) as cur:
                cur.execute(
                    """
                    SELECT current_user, current_setting('server_version'),
                           current_setting('max_connections')::int,
                           current_setting('superuser_reserved_connections')::int,
                           pg_size_bytes(current_setting('maintenance_work_mem')),
                           (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                    """
                )
                me, version, max_conn, reserved, mwm, pgvector, superuser = cur.fetchone()  # type: ignore[misc]
                cur.execute(
                    "SELECT coalesce(nullif(application_name, ''), usename::text, '?'), count(*) "
                    "FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1"
                )
                by_app = {str(a): int(n) for a, n in cur.fetchall()}
                settings = _settings_for_session(cur) if pgvector else {}
                cur.execute(
                    """
                    SELECT coalesce(r.rolname, 'ALL'), coalesce(d.datname, 'ALL'), unnest(s.setconfig)
                    FROM pg_db_role_setting s
                    LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
                    WHERE (r.rolname = %s OR s.setrole = 0) AND (d.datname = current_database() OR s.setdatabase = 0)
                    """,
                    (role or me,),
                )
                role_settings = [f"role {r} database {d}: {c}" for r, d, c in cur.fetchall()]
                columns = _columns(cur) if pgvector else []
                status, statements = _statements(cur)
                _operators_by_column(columns, statements)
                if probe:
                    top_k = int(env.get("TOP_K", LIGHTRAG_DEFAULT_TOP_K) or LIGHTRAG_DEFAULT_TOP_K)
                    for col in columns:
                        if col.ann_indexes and col.rows >= MIN_ROWS_FOR_INDEX:
                            col.probe = _probe(cur, col, top_k if col.is_lightrag else PROBE_K)
        except psycopg.Error as exc:
            raise _translate(exc, f"reading {target}") from None
    return DatabaseFacts(
        target=target,
        host=host,
        port=port,
        role=role or str(me),
        is_superuser=bool(superuser),
        server_version=str(version),
        pgvector=version_tuple(pgvector),
        max_connections=int(max_conn),
        reserved_connections=int(reserved),
        connections=sum(by_app.values()),
        connections_by_app=by_app,
        maintenance_work_mem=int(mwm),
        settings=settings,
        role_settings=role_settings,
        columns=columns,
        stat_statements=status,
        slowest=statements[:SLOWEST_STATEMENTS],
        lightrag_env=env,
        lightrag_env_path=lightrag_env,
    )


# ---------------------------------------------------------------- the report


def report_document(facts: DatabaseFacts, findings: list[Finding]) -> dict[str, Any]:
    return {
        "target": facts.target,
        "server_version": facts.server_version,
        "pgvector": ".".join(map(str, facts.pgvector)) if facts.pgvector else None,
        "role": facts.role,
        "connections": {
            "in_use": facts.connections,
            "max": facts.max_connections,
            "by_application": facts.connections_by_app,
        },
        "settings": {**facts.settings, "maintenance_work_mem": human_bytes(facts.maintenance_work_mem)},
        "role_settings": facts.role_settings,
        "columns": [
            {
                "column": c.label,
                "type": c.type,
                "dims": c.dims,
                "rows": c.rows,
                "table_size": human_bytes(c.table_bytes),
                "seq_scan": c.seq_scan,
                "idx_scan": c.idx_scan,
                "lightrag": c.is_lightrag,
                "indexes": [
                    {
                        "name": i.name,
                        "method": i.method,
                        "opclass": i.opclass,
                        "valid": i.valid,
                        "size": human_bytes(i.size_bytes),
                        "options": i.options,
                    }
                    for i in c.indexes
                ],
                "recall_at_10": round(c.probe.recall_at_10, 3) if c.probe else None,
            }
            for c in facts.columns
        ],
        "pg_stat_statements": facts.stat_statements,
        "slowest_vector_queries": [
            {"query": s.query, "calls": s.calls, "mean_ms": round(s.mean_ms, 2)} for s in facts.slowest
        ],
        "findings": [f.as_dict() for f in findings],
    }


def format_report(doc: dict[str, Any]) -> str:
    lines = [
        f"database {doc['target']}: PostgreSQL {doc['server_version']}, pgvector {doc['pgvector'] or 'NOT installed'}",
        f"connections: {doc['connections']['in_use']} in use of {doc['connections']['max']}",
        "settings for role " + doc["role"] + ": " + ", ".join(f"{k}={v}" for k, v in doc["settings"].items()),
    ]
    for c in doc["columns"]:
        idx = (
            ", ".join(
                f"{i['name']} ({i['method']} {i['opclass']}{'' if i['valid'] else ', INVALID'}, {i['size']})"
                for i in c["indexes"]
            )
            or "no index"
        )
        recall = f", recall@10 {c['recall_at_10']:.2f}" if c["recall_at_10"] is not None else ""
        lines.append(
            f"  {c['column']}: {c['type']}({c['dims'] or '?'}), {c['rows']} rows, {c['table_size']}, "
            f"seq_scan {c['seq_scan']}, idx_scan {c['idx_scan']}; {idx}{recall}"
            + ("  [LightRAG]" if c["lightrag"] else "")
        )
    if not doc["columns"]:
        lines.append("  no vector, halfvec or sparsevec columns readable by this role")
    lines.append(f"pg_stat_statements: {doc['pg_stat_statements']}")
    for s in doc["slowest_vector_queries"]:
        q = " ".join(s["query"].split())
        lines.append(f"  {s['mean_ms']:.1f} ms mean x {s['calls']}: {q[:160]}")
    findings = doc["findings"]
    lines.append("")
    if not findings:
        lines.append("no findings: vector search is indexed and tuned")
    for n, f in enumerate(findings, 1):
        lines.append(f"[{n}] {f['severity'].upper()} {f['id']} ({f['subject']})")
        lines.append(f"    {f['message']}")
        lines.append("    evidence: " + ", ".join(f"{k}={v}" for k, v in f["evidence"].items()))
        for s in f["sql"]:
            lines.append(f"    fix (SQL): {s};")
        for e in f["env"]:
            lines.append(f"    LightRAG .env: {e}")
        for a in f["advice"]:
            lines.append(f"    also: {a}")
    if any(f["sql"] for f in findings):
        lines.append("\nrun `powergate db apply` to apply the SQL fixes (it asks first; --yes for scripts)")
    return "\n".join(lines)


# ---------------------------------------------------------------- applying with consent


@dataclass
class Change:
    statement: str
    ok: bool
    detail: str
    seconds: float


def planned_statements(findings: list[Finding]) -> list[str]:
    """The SQL `apply` runs: session settings first, then builds, then role settings."""
    sets = [s for f in findings for s in f.sql if s.upper().startswith("SET ")]
    builds = [s for f in findings for s in f.sql if not s.upper().startswith(("SET ", "ALTER ROLE"))]
    # Two findings may set the same setting (low recall, short scans): the larger value wins.
    by_setting: dict[str, str] = {}
    for s in (s for f in findings for s in f.sql if s.upper().startswith("ALTER ROLE")):
        head, _, value = s.rpartition(" = ")
        old = by_setting.get(head)
        if old is None or (value.isdigit() and old.isdigit() and int(value) > int(old)):
            by_setting[head] = value
    roles = [f"{head} = {value}" for head, value in by_setting.items()]
    seen: set[str] = set()
    out = []
    for s in sets + builds + roles:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _progress_line(cur: psycopg.Cursor[Any], pid: int) -> str | None:
    cur.execute(
        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
        "FROM pg_stat_progress_create_index WHERE pid = %s",
        (pid,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    phase, bd, bt, td, tt = row
    part = f"{phase}"
    if bt:
        part += f", blocks {bd}/{bt} ({100 * bd / bt:.0f}%)"
    if tt:
        part += f", tuples {td}/{tt} ({100 * td / tt:.0f}%)"
    return part


def _watch_progress(
    watch: psycopg.Connection[Any], pid: int, done: threading.Event, progress: Callable[[str], None]
) -> None:
    last = None
    while not done.wait(PROGRESS_INTERVAL_S):
        try:
            line = _progress_line(watch.cursor(), pid)
        except psycopg.Error:
            return
        if line and line != last:
            progress(f"  {line}")
            last = line


def apply_statements(dsn: str, statements: list[str], progress: Callable[[str], None]) -> list[Change]:
    """Run the fixes in order on one autocommit session (CREATE INDEX CONCURRENTLY cannot run
    in a transaction); index builds report pg_stat_progress_create_index from a second one."""
    changes: list[Change] = []
    with connect(dsn) as conn, connect(dsn) as watch:
        conn.execute("SET statement_timeout = 0")  # index builds take as long as they take
        notices: list[str] = []
        # pgvector reports a graph that outgrew maintenance_work_mem only as a NOTICE
        conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        pid = conn.info.backend_pid
        for stmt in statements:
            upper = stmt.upper()
            if upper.startswith("ALTER ROLE") and ("HNSW." in upper or "IVFFLAT." in upper):
                # A non-superuser may set pgvector's settings only once the library is loaded.
                conn.execute("SELECT NULL::vector")
            started = time.monotonic()
            builds = upper.startswith(("CREATE INDEX", "REINDEX"))
            done = threading.Event()
            watcher: threading.Thread | None = None
            if builds:
                watcher = threading.Thread(
                    target=_watch_progress, args=(watch, pid, done, progress), name="powergate-db-progress", daemon=True
                )
                watcher.start()
            notices.clear()
            try:
                conn.execute(stmt.encode())
                ok, detail = True, "done"
                for notice in notices:
                    detail += f" (NOTICE: {notice})"
            except psycopg.Error as exc:
                ok, detail = False, str(exc).strip().splitlines()[0]
                if builds and upper.startswith("CREATE INDEX"):
                    _drop_invalid_leftover(conn, stmt)
            finally:
                done.set()
                if watcher is not None:
                    watcher.join()
            changes.append(Change(stmt, ok, detail, time.monotonic() - started))
            progress(
                f"{'ok' if ok else 'FAILED'} ({time.monotonic() - started:.1f} s): {stmt}"
                + ("" if ok else f": {detail}")
            )
    return changes


def _drop_invalid_leftover(conn: psycopg.Connection[Any], stmt: str) -> None:
    # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind that slows every write.
    m = re.search(r"IF NOT EXISTS (\S+) ON (\S+?)\.", stmt)
    if not m:
        return
    name, schema = m.group(1), m.group(2)
    try:
        row = conn.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = %s",
            (name.strip('"'), schema.strip('"')),
        ).fetchone()
        if row and row[0]:
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema}.{name}".encode())
    except psycopg.Error:
        log.warning("could not drop the invalid index %s left by a failed build", name)


# ---------------------------------------------------------------- consent


def consent_path(data_dir: Path) -> Path:
    return Path(data_dir) / CONSENT_FILE


def record_consent(data_dir: Path, dsn: str, role: str, statements: list[str]) -> Path:
    path = consent_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "target": describe_target(dsn)[0],
        "role": role,
        "granted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "applied": statements,
        "allows": ["ALTER ROLE ... SET hnsw.ef_search on a profile switch"],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def has_consent(data_dir: Path, dsn: str) -> bool:
    """True when the user consented to changes on this very database (user, host, port, db)."""
    try:
        doc = json.loads(consent_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    try:
        return isinstance(doc, dict) and doc.get("target") == describe_target(dsn)[0]
    except DatabaseError:
        return False


def set_role_ef_search(dsn: str, role: str, ef_search: int, connector: Connector | None = None) -> None:
    """ALTER ROLE <role> SET hnsw.ef_search: seen by the role's NEW connections (also through a
    transaction pooler, where a session SET would be lost)."""
    with connector() if connector else connect(dsn) as conn:
        try:
            conn.execute("SELECT NULL::vector")  # loads pgvector, so a non-superuser may set its settings
            conn.execute(
                sql.SQL("ALTER ROLE {} SET hnsw.ef_search = {}").format(
                    sql.Identifier(role), sql.Literal(int(ef_search))
                )
            )
        except psycopg.Error as exc:
            raise _translate(exc, f"setting hnsw.ef_search for role {role}") from None


# ---------------------------------------------------------------- inside the agent


class DatabaseService:
    """The agent's view of the database: health for status/metrics, findings for the
    recommendations, and ef_search per profile once the user consented.

    Every database call runs on one worker thread, in order; the event loop only
    submits work and reads the last results, so a slow or absent database never
    delays a profile switch or a request.
    """

    def __init__(self, dsn: str, role: str, lightrag_env: str, data_dir: Path) -> None:
        self.dsn = dsn
        self.target, _, _, user = describe_target(dsn)
        self.role = role or user
        self.lightrag_env = lightrag_env
        self.data_dir = Path(data_dir)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="powergate-db")
        # At most one server connection, opened on first use, closed after POOL_IDLE_S unused
        # (min_size 0: nothing is held while the agent has nothing to ask).
        self._connections = ConnectionPool(
            dsn,
            min_size=0,
            max_size=1,
            open=False,
            timeout=CONNECT_TIMEOUT_S + 1,
            max_idle=POOL_IDLE_S,
            num_workers=1,
            check=ConnectionPool.check_connection,
            name="powergate-db",
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
                "prepare_threshold": None,
            },
        )
        self._opened = False
        self._closing = False
        # read on the worker thread (and once here), so describe() never reads a file on the loop
        self.consented = has_consent(self.data_dir, self.dsn)
        self._lock = threading.Lock()
        self._wanted_ef: int | None = None
        self.applied_ef: int | None = None
        self.tuning_error = ""
        self.reachable: bool | None = None
        self.error = ""
        self.connections: int | None = None
        self.max_connections: int | None = None
        self.findings: list[dict[str, Any]] = []
        self.checked_at = 0.0
        self._health_at = 0.0
        self._findings_at = 0.0
        self._busy = False

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (only ever used from the worker thread)."""
        if not self._opened:
            self._connections.open(wait=False)
            self._opened = True
        try:
            conn_cm = self._connections.connection()
            conn = conn_cm.__enter__()
        except PoolTimeout:
            # the pool hides libpq's reason: one direct attempt names it
            with connect(self.dsn):
                pass
            raise DatabaseUnavailable(f"cannot reach Postgres at {self.target}: no connection in time") from None
        try:
            yield conn
        except BaseException as exc:
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            conn_cm.__exit__(None, None, None)

    # profile switches -------------------------------------------------------
    def on_profile(self, ef_search: int | None) -> Future[None] | None:
        """Queue `ALTER ROLE ... SET hnsw.ef_search` for the new profile (consent required).
        Returns at once; the latest wanted value wins if switches come quickly."""
        if not ef_search:
            return None
        with self._lock:
            self._wanted_ef = int(ef_search)
        return self._pool.submit(self._apply_ef_search)

    def _apply_ef_search(self) -> None:
        if self._closing:
            return
        with self._lock:
            wanted = self._wanted_ef
        if wanted is None or wanted == self.applied_ef:
            return
        self.consented = has_consent(self.data_dir, self.dsn)
        if not self.consented:
            self.tuning_error = "not consented: run `powergate db apply` once to allow per-profile tuning"
            return
        try:
            set_role_ef_search(self.dsn, self.role, wanted, self._connection)
        except DatabaseError as exc:
            self.tuning_error = str(exc)
            log.warning("could not set hnsw.ef_search = %s for role %s: %s", wanted, self.role, exc)
            return
        self.applied_ef = wanted
        self.tuning_error = ""
        log.info("hnsw.ef_search = %s for role %s (new connections)", wanted, self.role)

    # health -------------------------------------------------------------------
    def maybe_refresh(self, now: float | None = None) -> Future[None] | None:
        now = time.monotonic() if now is None else now
        if self._busy or now - self._health_at < HEALTH_INTERVAL_S:
            return None
        self._busy = True
        self._health_at = now
        full = now - self._findings_at >= FINDINGS_INTERVAL_S or self._findings_at == 0.0
        if full:
            self._findings_at = now
        return self._pool.submit(self._refresh, full)

    def _refresh(self, full: bool) -> None:
        if self._closing:
            self._busy = False
            return
        try:
            if full:
                facts = gather_facts(
                    self.dsn, lightrag_env=self.lightrag_env, role=self.role, probe=False, connector=self._connection
                )
                self.findings = [f.as_dict() for f in find_problems(facts)]
                self.connections, self.max_connections = facts.connections, facts.max_connections
            else:
                with self._connection() as conn:
                    row = conn.execute(
                        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
                        "current_setting('max_connections')::int"
                    ).fetchone()
                    if row:
                        self.connections, self.max_connections = int(row[0]), int(row[1])
            self.reachable, self.error = True, ""
            self.consented = has_consent(self.data_dir, self.dsn)
        except DatabaseError as exc:
            self.reachable, self.error = False, str(exc)
            if full:
                self._findings_at = 0.0  # try the full check again next time
        finally:
            self.checked_at = time.time()
            self._busy = False

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "reachable": self.reachable,
            "error": self.error,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "findings": len(self.findings),
            "finding_ids": [f["id"] for f in self.findings],
            "checked_at": self.checked_at or None,
            "tuning": {
                "consented": self.consented,
                "role": self.role,
                "ef_search_applied": self.applied_ef,
                "error": self.tuning_error,
            },
        }

    def close(self) -> None:
        self._closing = True  # queued work still runs, but returns at once
        if self._opened:
            # closing joins the pool's worker: done on our own thread, not the caller's loop
            self._pool.submit(self._connections.close, POOL_CLOSE_TIMEOUT_S)
        self._pool.shutdown(wait=False)
