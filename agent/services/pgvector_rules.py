"""What makes pgvector search slow or wrong: pure rules over facts read from a database.

`agent.services.postgres` reads the facts (catalog, settings, statistics, a recall
probe); this module only reasons about them, so each rule is easy to read and test.
Every finding carries its evidence and, where SQL can fix it, the exact statements
that `powergate db apply` runs after the user consents; LightRAG's own settings are
given as the `.env` lines to change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# pgvector's limits and defaults (pgvector 0.8 README)
HNSW_MAX_DIMS = {"vector": 2000, "halfvec": 4000}  # sparsevec: up to 1000 non-zero elements
DEFAULT_EF_SEARCH = 40
DEFAULT_HNSW_M = 16
ITERATIVE_SCAN_VERSION = (0, 8, 0)  # hnsw.iterative_scan / ivfflat.iterative_scan
HALFVEC_VERSION = (0, 7, 0)

MIN_ROWS_FOR_INDEX = 1000  # below this an exact scan is as fast as an index
UNBALANCED_READ_FACTOR = 3.0  # an IVFFlat search reading 3x its probes' share of the index...
UNBALANCED_READ_SHARE = 0.5  # ...and over half of it: its lists were made from too few rows
LOW_RECALL = 0.9  # recall@10 of the index against exact search below which results are wrong
ADVISED_EF_SEARCH_MIN = 100  # what we advise when ef_search is too small for the LIMIT
IVFFLAT_DEFAULT_LISTS = 100  # pgvector's default lists
IVFFLAT_ROWS_PER_LIST = 1000  # pgvector's advice: lists = rows / 1000 (up to 1M rows)
CONNECTIONS_BUSY_SHARE = 0.8  # connections in use / max_connections that is a finding
MB = 1024 * 1024
MAINTENANCE_WORK_MEM_CAP = 2048 * MB  # never advise more than this for one session
MAINTENANCE_WORK_MEM_FLOOR = 64 * MB
TRANSACTION_POOLER_PORT = 6543  # Supabase's Supavisor in transaction mode; PgBouncer is often 6432

# LightRAG's PostgreSQL storage (lightrag/kg/postgres_impl.py): vector tables, their
# column and the query it runs (`WHERE workspace=$1 AND content_vector <=> $4 < $2
# ORDER BY content_vector <=> $4 LIMIT $3`, cosine, top_k from TOP_K).
LIGHTRAG_VECTOR_TABLES = ("lightrag_vdb_chunks", "lightrag_vdb_entity", "lightrag_vdb_relation")
LIGHTRAG_VECTOR_COLUMN = "content_vector"
LIGHTRAG_DEFAULT_TOP_K = 40
LIGHTRAG_DEFAULT_MAX_CONNECTIONS = 50  # its pool size when POSTGRES_MAX_CONNECTIONS is unset
GENERIC_TOP_K = 10  # the LIMIT we assume for other applications
LIGHTRAG_DEFAULT_HNSW_M = 16  # POSTGRES_HNSW_M
LIGHTRAG_DEFAULT_HNSW_EF = 64  # POSTGRES_HNSW_EF (its ef_construction)
PG_MAX_IDENTIFIER_BYTES = 63

OPERATOR_FAMILY = {"<=>": "cosine", "<->": "l2", "<#>": "ip", "<+>": "l1"}
FAMILY_OPERATOR = {v: k for k, v in OPERATOR_FAMILY.items()}


@dataclass
class IndexFacts:
    name: str
    method: str  # hnsw, ivfflat, btree, ...
    opclass: str
    expression: str  # the indexed column or expression, as Postgres prints it
    valid: bool
    size_bytes: int
    options: dict[str, str] = field(default_factory=dict)  # m, ef_construction, lists

    @property
    def is_ann(self) -> bool:
        return self.method in ("hnsw", "ivfflat")

    @property
    def operator(self) -> str:
        for fam, op in FAMILY_OPERATOR.items():
            if self.opclass.endswith(f"_{fam}_ops"):
                return op
        return "<=>"


@dataclass
class ProbeFacts:
    """A measured comparison of the index against exact search on the table's own rows."""

    index: str
    queries: int
    recall_at_10: float
    top_k: int
    returned_at_top_k: float  # mean rows the index returned for LIMIT top_k (with the app's filter)
    expected_at_top_k: float  # mean rows exact search returned for the same query
    conditions: str = ""  # settings the probe ran with
    index_read_share: float | None = None  # IVFFlat: share of the index one search reads
    recall_by_ef_search: dict[int, float] = field(default_factory=dict)  # HNSW, measured when recall is low


@dataclass
class ColumnFacts:
    schema: str
    table: str
    column: str
    type: str  # vector, halfvec, sparsevec
    dims: int | None  # None: declared without dimensions
    rows: int
    table_bytes: int
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    indexes: list[IndexFacts] = field(default_factory=list)
    operators: dict[str, int] = field(default_factory=dict)  # distance operator -> calls seen
    probe: ProbeFacts | None = None
    has_workspace: bool = False

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"

    @property
    def is_lightrag(self) -> bool:
        base = self.table.lower()
        return self.column == LIGHTRAG_VECTOR_COLUMN and any(
            base == t or base.startswith(t + "_") for t in LIGHTRAG_VECTOR_TABLES
        )

    @property
    def ann_indexes(self) -> list[IndexFacts]:
        return [i for i in self.indexes if i.is_ann and i.valid]

    @property
    def operator(self) -> tuple[str, str]:
        """The distance operator the application uses, and how we know."""
        if self.operators:
            op = max(self.operators, key=lambda o: self.operators[o])
            return op, f"seen in pg_stat_statements ({self.operators[op]} calls)"
        if self.ann_indexes:
            return self.ann_indexes[0].operator, "from the existing index"
        if self.is_lightrag:
            return "<=>", "LightRAG queries with <=> (cosine)"
        return "<=>", "assumed cosine (<=>): no query statistics; check your queries"


@dataclass
class StatementFacts:
    query: str
    calls: int
    mean_ms: float
    total_ms: float


@dataclass
class DatabaseFacts:
    target: str  # user@host:port/db, never the password
    host: str
    port: int
    role: str
    is_superuser: bool
    server_version: str
    pgvector: tuple[int, int, int] | None
    max_connections: int
    reserved_connections: int
    connections: int
    connections_by_app: dict[str, int]
    maintenance_work_mem: int  # bytes
    settings: dict[str, str]  # hnsw.ef_search, hnsw.iterative_scan, ivfflat.probes, ... as a new session sees them
    role_settings: list[str]  # ALTER ROLE/DATABASE ... SET lines in force for this role
    columns: list[ColumnFacts]
    stat_statements: str  # "installed", "not installed", or why it could not be read
    slowest: list[StatementFacts]
    lightrag_env: dict[str, str]
    lightrag_env_path: str


@dataclass
class Finding:
    id: str
    severity: str  # "warning" (slow or wrong results) | "info"
    subject: str  # the column, index or setting concerned
    message: str
    evidence: dict[str, Any]
    sql: list[str] = field(default_factory=list)  # what `db apply` runs, in order
    env: list[str] = field(default_factory=list)  # LightRAG .env lines to change
    advice: list[str] = field(default_factory=list)  # steps outside SQL (Docker, restart)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "evidence": self.evidence,
            "sql": list(self.sql),
            "env": list(self.env),
            "advice": list(self.advice),
        }


# ---------------------------------------------------------------- helpers


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted only when Postgres would need it."""
    if name and name == name.lower() and name.replace("_", "a").isalnum() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def version_tuple(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def pg_memory(n: int) -> str:
    """A size as Postgres settings spell it ('256MB')."""
    return f"{max(1, n // MB)}MB"


def hnsw_build_bytes(rows: int, dims: int, element_bytes: int, m: int = DEFAULT_HNSW_M) -> int:
    """Roughly what pgvector's in-memory HNSW build needs: every vector plus its neighbour
    lists (2*m on layer 0, about m more above) and a per-element header."""
    return rows * (dims * element_bytes + 3 * m * 8 + 96)


def advised_probes(lists: int) -> int:
    """pgvector's advice for ivfflat.probes: about sqrt(lists)."""
    return max(2, round(max(1, lists) ** 0.5))


def advised_maintenance_work_mem(need: int) -> int:
    return int(min(max(need * 1.25, MAINTENANCE_WORK_MEM_FLOOR), MAINTENANCE_WORK_MEM_CAP))


def index_name(col: ColumnFacts, method: str = "hnsw") -> str:
    if col.is_lightrag:
        return lightrag_index_name(col.table, f"{method}_cosine")
    base = f"{col.table}_{col.column}_{method}".lower()
    return base[:63]


def lightrag_index_name(table: str, suffix: str) -> str:
    """The name LightRAG gives its own vector index (postgres_impl._safe_index_name): with it,
    LightRAG finds the index we built at its next start instead of building another."""
    full = f"idx_{table.lower()}_{suffix}"
    if len(full.encode()) <= PG_MAX_IDENTIFIER_BYTES:
        return full
    return f"idx_{hashlib.md5(table.lower().encode()).hexdigest()[:12]}_{suffix}"  # noqa: S324 - a name, not security


def create_index_sql(col: ColumnFacts, op: str, lightrag_env: dict[str, str] | None = None) -> tuple[str, str]:
    """The CREATE INDEX CONCURRENTLY statement for an HNSW index matching `op`, and a note."""
    family = OPERATOR_FAMILY.get(op, "cosine")
    name = quote_ident(index_name(col))
    if col.is_lightrag:
        # LightRAG's own index, as it would build it: same name, same build parameters
        env = lightrag_env or {}
        m = env.get("POSTGRES_HNSW_M", str(LIGHTRAG_DEFAULT_HNSW_M))
        ef = env.get("POSTGRES_HNSW_EF", str(LIGHTRAG_DEFAULT_HNSW_EF))
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {col.qualified} "
            f"USING hnsw ({quote_ident(col.column)} {col.type}_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef)})",
            "",
        )
    if col.type == "vector" and col.dims and col.dims > HNSW_MAX_DIMS["vector"]:
        expr = f"({quote_ident(col.column)}::halfvec({col.dims}))"
        note = (
            f"{col.dims} dimensions exceed HNSW's {HNSW_MAX_DIMS['vector']} for vector: the index is built on a "
            f"halfvec cast (up to {HNSW_MAX_DIMS['halfvec']}), and queries must use the same cast to use it: "
            f"ORDER BY {quote_ident(col.column)}::halfvec({col.dims}) {op} $1::halfvec({col.dims})"
        )
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {col.qualified} USING hnsw ({expr} halfvec_{family}_ops)",
            note,
        )
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {col.qualified} "
        f"USING hnsw ({quote_ident(col.column)} {col.type}_{family}_ops)",
        "",
    )


def _lightrag_top_k(facts: DatabaseFacts) -> int:
    try:
        return int(facts.lightrag_env.get("TOP_K", LIGHTRAG_DEFAULT_TOP_K))
    except ValueError:
        return LIGHTRAG_DEFAULT_TOP_K


def _int_setting(facts: DatabaseFacts, name: str, default: int) -> int:
    try:
        return int(facts.settings.get(name, default))
    except ValueError:
        return default


# ---------------------------------------------------------------- the rules


def find_problems(facts: DatabaseFacts) -> list[Finding]:
    """Every finding, most harmful first."""
    out: list[Finding] = []
    planned_hnsw: set[str] = set()
    for col in facts.columns:
        found = _column_findings(facts, col)
        if any("USING hnsw" in s for f in found for s in f.sql):
            planned_hnsw.add(col.label)
        out.extend(found)
    out.extend(_ef_search_findings(facts, planned_hnsw))
    out.extend(_ivfflat_probe_findings(facts))
    out.extend(_maintenance_findings(facts))
    out.extend(_connection_findings(facts))
    out.extend(_version_findings(facts))
    order = {"warning": 0, "info": 1}
    out.sort(key=lambda f: order.get(f.severity, 2))
    return out


def _column_findings(facts: DatabaseFacts, col: ColumnFacts) -> list[Finding]:
    out: list[Finding] = []
    evidence: dict[str, Any] = {
        "rows": col.rows,
        "table_size": human_bytes(col.table_bytes),
        "dims": col.dims,
        "seq_scan": col.seq_scan,
        "seq_tup_read": col.seq_tup_read,
        "idx_scan": col.idx_scan,
        "indexes": [f"{i.name} ({i.method}{'' if i.valid else ', INVALID'})" for i in col.indexes],
    }
    for idx in col.indexes:
        if idx.is_ann and not idx.valid:
            out.append(
                Finding(
                    id="invalid-index",
                    severity="warning",
                    subject=idx.name,
                    message=f"{idx.name} on {col.label} is INVALID (a failed or interrupted concurrent build): "
                    "Postgres keeps updating it but never uses it.",
                    evidence={**evidence, "index": idx.name},
                    sql=[f"REINDEX INDEX CONCURRENTLY {quote_ident(col.schema)}.{quote_ident(idx.name)}"],
                )
            )
    if not col.ann_indexes:
        if col.rows < MIN_ROWS_FOR_INDEX:
            return out
        blocked = _unindexable(col)
        if blocked is not None:
            rule, message, advice = blocked
            out.append(
                Finding(
                    id=rule, severity="warning", subject=col.label, message=message, evidence=evidence, advice=[advice]
                )
            )
            return out
        op, how = col.operator
        message = (
            f"{col.label} has {col.rows} rows and no ANN index: every search reads the whole table "
            f"({col.seq_scan} sequential scans so far)."
        )
        wide = col.type == "vector" and col.dims is not None and col.dims > HNSW_MAX_DIMS["vector"]
        create: list[str] = []
        env: list[str] = []
        if col.is_lightrag and wide:
            # LightRAG queries with `content_vector <=> $1::vector`: an index on a halfvec cast
            # would never be used. Its own HNSW_HALFVEC mode converts the column to halfvec and
            # builds the index itself (and casts its queries), so the fix is its setting.
            message += (
                f" {col.dims} dimensions exceed HNSW's {HNSW_MAX_DIMS['vector']} for vector (LightRAG only logs "
                "the failed build). Set LightRAG's index type to HNSW_HALFVEC and restart it: it converts "
                f"content_vector to halfvec({col.dims}) (one table rewrite) and builds the index, up to "
                f"{HNSW_MAX_DIMS['halfvec']} dimensions."
            )
            env.append("POSTGRES_VECTOR_INDEX_TYPE=HNSW_HALFVEC")
        else:
            sql, note = create_index_sql(col, op, facts.lightrag_env)
            create.append(sql)
            if col.is_lightrag:
                env.append("POSTGRES_VECTOR_INDEX_TYPE=HNSW")
                message += (
                    " The index is built under LightRAG's own name, so with POSTGRES_VECTOR_INDEX_TYPE=HNSW "
                    "LightRAG keeps it at its next start."
                )
            if note:
                message += " " + note + "."
        out.append(
            Finding(
                id="missing-ann-index",
                severity="warning",
                subject=col.label,
                message=message,
                evidence={**evidence, "operator": op, "operator_source": how},
                sql=create,
                env=env,
            )
        )
        return out
    if col.probe is not None and (col.probe.recall_at_10 < LOW_RECALL or _unbalanced(col)):
        p = col.probe
        idx = next((i for i in col.ann_indexes if i.name == p.index), col.ann_indexes[0])
        fix: list[str] = []
        message = (
            f"{col.label}: the index {idx.name} finds only {p.recall_at_10:.0%} of the true 10 nearest "
            f"neighbours (measured on {p.queries} of the table's own vectors against exact search)."
        )
        ev = {
            **evidence,
            "recall_at_10": round(p.recall_at_10, 3),
            "index": idx.name,
            "probe_queries": p.queries,
            "probe_settings": p.conditions,
        }
        if idx.method == "ivfflat":
            lists = int(idx.options.get("lists", IVFFLAT_DEFAULT_LISTS))
            advised = max(1, min(col.rows // IVFFLAT_ROWS_PER_LIST, 4000)) if col.rows <= 1_000_000 else 4000
            ev["lists"] = lists
            if p.index_read_share is not None:
                ev["index_read_per_search"] = f"{p.index_read_share:.0%}"
                ev["balanced_read_per_search"] = f"{advised_probes(lists) / lists:.0%}"
            if _unbalanced(col):
                message = (
                    f"{col.label}: each search through {idx.name} reads {p.index_read_share:.0%} of the index at "
                    f"{p.conditions} (of {lists} lists; balanced lists would read about "
                    f"{advised_probes(lists) / lists:.0%}): the search is as slow as a full scan."
                )
            message += (
                " An IVFFlat index computes its lists from the rows present when it is built; built on an empty "
                "table (as LightRAG does at start) its lists are random, so they are unbalanced (slow) and can "
                "miss neighbours (wrong). Rebuild it now that the data is in (HNSW needs no training and keeps "
                "up with inserts)."
            )
            op = idx.operator
            sql, _ = create_index_sql(col, op, facts.lightrag_env)
            fix = [sql, f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(col.schema)}.{quote_ident(idx.name)}"]
            ev["advised_lists_if_kept"] = advised
            env = ["POSTGRES_VECTOR_INDEX_TYPE=HNSW"] if col.is_lightrag else []
            if col.is_lightrag:
                message += (
                    " Change LightRAG's .env before its next start: with IVFFLAT still set it would drop the new "
                    "index and build IVFFlat again."
                )
            out.append(
                Finding(
                    id="ivfflat-built-empty",
                    severity="warning",
                    subject=idx.name,
                    message=message,
                    evidence=ev,
                    sql=fix,
                    env=env,
                )
            )
        else:
            ef = _int_setting(facts, "hnsw.ef_search", DEFAULT_EF_SEARCH)
            good = [e for e, r in sorted(p.recall_by_ef_search.items()) if r >= LOW_RECALL and e > ef]
            advised_ef = good[0] if good else max([ADVISED_EF_SEARCH_MIN, ef * 2, *p.recall_by_ef_search])
            if p.recall_by_ef_search:
                ev["recall_at_ef_search"] = {e: round(r, 3) for e, r in sorted(p.recall_by_ef_search.items())}
            out.append(
                Finding(
                    id="low-recall",
                    severity="warning",
                    subject=idx.name,
                    message=message + f" Raise hnsw.ef_search (now {ef}) for this role.",
                    evidence={**ev, "ef_search": ef},
                    sql=_role_settings_sql(facts, {"hnsw.ef_search": str(advised_ef)}),
                )
            )
    return out


def _unindexable(col: ColumnFacts) -> tuple[str, str, str] | None:
    """Why no ANN index can serve this column (finding id, message, advice): the first rule that applies."""
    dims, vector_max, halfvec_max = col.dims or 0, HNSW_MAX_DIMS["vector"], HNSW_MAX_DIMS["halfvec"]
    fewer = f"use an embedding model (or a Matryoshka truncation) with at most {halfvec_max} dimensions"
    rules = (
        (
            col.dims is None and col.type != "sparsevec",
            "vector-without-dimensions",
            f"{col.label} is declared without dimensions, so no ANN index can be built: every query reads the "
            "whole table.",
            f"ALTER TABLE {col.qualified} ALTER COLUMN {quote_ident(col.column)} TYPE {col.type}(N) with N your "
            "embedding model's dimension, then run `powergate db check` again",
        ),
        (
            col.type == "halfvec" and dims > halfvec_max,
            "too-many-dimensions",
            f"{col.label} has {col.dims} dimensions: above HNSW's limit even for halfvec ({halfvec_max}); every "
            "query reads the whole table.",
            fewer,
        ),
        (
            col.type == "vector" and dims > halfvec_max,
            "too-many-dimensions",
            f"{col.label} has {col.dims} dimensions: no HNSW index exists for that many (vector up to "
            f"{vector_max}, halfvec up to {halfvec_max}).",
            fewer,
        ),
    )
    return next(((rule, message, advice) for applies, rule, message, advice in rules if applies), None)


def _unbalanced(col: ColumnFacts) -> bool:
    p = col.probe
    if p is None or p.index_read_share is None or not col.ann_indexes:
        return False
    idx = next((i for i in col.ann_indexes if i.name == p.index), col.ann_indexes[0])
    lists = int(idx.options.get("lists", IVFFLAT_DEFAULT_LISTS))
    expected = advised_probes(lists) / max(1, lists)
    return p.index_read_share > max(UNBALANCED_READ_FACTOR * expected, UNBALANCED_READ_SHARE)


def _role_settings_sql(facts: DatabaseFacts, values: dict[str, str]) -> list[str]:
    # ALTER ROLE, not a session SET: it reaches every new connection of the role, also
    # through a transaction pooler, where a session SET is lost after each transaction.
    return [f"ALTER ROLE {quote_ident(facts.role)} SET {k} = {v}" for k, v in values.items()]


def _ef_search_findings(facts: DatabaseFacts, planned_hnsw: set[str]) -> list[Finding]:
    """ef_search against the LIMIT, for HNSW indexes that exist or that our fixes build."""
    hnsw_cols = [c for c in facts.columns if c.label in planned_hnsw or any(i.method == "hnsw" for i in c.ann_indexes)]
    if not hnsw_cols:
        return []
    ef = _int_setting(facts, "hnsw.ef_search", DEFAULT_EF_SEARCH)
    lightrag = any(c.is_lightrag for c in hnsw_cols)
    top_k = _lightrag_top_k(facts) if lightrag else GENERIC_TOP_K
    iterative = facts.settings.get("hnsw.iterative_scan", "off")
    short = [
        c.probe
        for c in hnsw_cols
        if c.probe is not None and c.probe.returned_at_top_k + 0.5 < c.probe.expected_at_top_k
    ]
    # With an iterative scan (pgvector >= 0.8) the scan continues until the LIMIT is met, so a
    # small ef_search only trades recall for speed (what the profiles do); without it, a scan
    # returns at most ef_search rows.
    if (ef > top_k or iterative != "off") and not short:
        return []
    has_iterative = facts.pgvector is not None and facts.pgvector >= ITERATIVE_SCAN_VERSION
    values = {"hnsw.ef_search": str(max(ADVISED_EF_SEARCH_MIN, 2 * top_k))}
    if has_iterative and iterative == "off":
        values["hnsw.iterative_scan"] = "relaxed_order"
    evidence: dict[str, Any] = {
        "hnsw.ef_search": ef,
        "query_limit": top_k,
        "limit_source": "LightRAG TOP_K" if lightrag else f"assumed LIMIT {GENERIC_TOP_K}",
        "hnsw.iterative_scan": iterative if has_iterative else "not available before pgvector 0.8",
    }
    if short:
        p = short[0]
        evidence["measured"] = (
            f"{p.index}: LIMIT {p.top_k} returned {p.returned_at_top_k:.1f} rows on average, "
            f"exact search {p.expected_at_top_k:.1f}"
        )
    env = []
    if lightrag:
        env.append(
            "POSTGRES_SERVER_SETTINGS="
            + "&".join(f"{k}={v}" for k, v in values.items())
            + "   # or keep the ALTER ROLE above, which also survives a transaction pooler"
        )
    return [
        Finding(
            id="ef-search-below-limit",
            severity="warning",
            subject="hnsw.ef_search",
            message=(
                f"hnsw.ef_search is {ef}, not above the query LIMIT {top_k}: an HNSW scan returns at most "
                f"ef_search rows, fewer after a WHERE filter (LightRAG filters by workspace and distance), so "
                f"searches come back short."
                + (
                    " pgvector >= 0.8 can keep scanning until the LIMIT is met (hnsw.iterative_scan)."
                    if has_iterative
                    else ""
                )
            ),
            evidence=evidence,
            sql=_role_settings_sql(facts, values),
            env=env,
        )
    ]


def _ivfflat_probe_findings(facts: DatabaseFacts) -> list[Finding]:
    ivf = [(c, i) for c in facts.columns for i in c.ann_indexes if i.method == "ivfflat"]
    if not ivf:
        return []
    probes = _int_setting(facts, "ivfflat.probes", 1)
    if probes > 1:
        return []
    lists = max(int(i.options.get("lists", IVFFLAT_DEFAULT_LISTS)) for _, i in ivf)
    advised = advised_probes(lists)
    values = {"ivfflat.probes": str(advised)}
    has_iterative = facts.pgvector is not None and facts.pgvector >= ITERATIVE_SCAN_VERSION
    if has_iterative and facts.settings.get("ivfflat.iterative_scan", "off") == "off":
        values["ivfflat.iterative_scan"] = "relaxed_order"
    return [
        Finding(
            id="ivfflat-probes-1",
            severity="warning",
            subject="ivfflat.probes",
            message=(
                f"ivfflat.probes is {probes}: each search looks into 1 of {lists} lists, so most true neighbours "
                f"are never seen. pgvector advises about sqrt(lists) = {advised}."
            ),
            evidence={"ivfflat.probes": probes, "lists": lists, "indexes": [i.name for _, i in ivf]},
            sql=_role_settings_sql(facts, values),
        )
    ]


def _maintenance_findings(facts: DatabaseFacts) -> list[Finding]:
    """maintenance_work_mem too small for the HNSW graph of an index we advise building."""
    need = 0
    biggest = ""
    for col in facts.columns:
        builds = not col.ann_indexes and col.rows >= MIN_ROWS_FOR_INDEX and col.dims is not None
        rebuilds = col.probe is not None and (col.probe.recall_at_10 < LOW_RECALL or _unbalanced(col))
        if not builds and not rebuilds:
            continue
        if col.dims is None:
            continue
        wide = col.type == "vector" and col.dims > HNSW_MAX_DIMS["vector"]
        element = 2 if (col.type == "halfvec" or wide) else 4
        n = hnsw_build_bytes(col.rows, col.dims, element)
        if n > need:
            need, biggest = n, col.label
    if need <= facts.maintenance_work_mem:
        return []
    advised = advised_maintenance_work_mem(need)
    return [
        Finding(
            id="maintenance-work-mem-small",
            severity="info",
            subject="maintenance_work_mem",
            message=(
                f"maintenance_work_mem is {human_bytes(facts.maintenance_work_mem)} but the HNSW graph for "
                f"{biggest} needs about {human_bytes(need)}: the build spills to disk and takes much longer "
                "(Postgres only says so in a NOTICE). `powergate db apply` sets "
                f"{pg_memory(advised)} for its own session while it builds."
            ),
            evidence={
                "maintenance_work_mem": human_bytes(facts.maintenance_work_mem),
                "estimated_graph": human_bytes(need),
                "largest_column": biggest,
            },
            sql=[f"SET maintenance_work_mem = '{pg_memory(advised)}'"],
            advice=[
                "in Docker (Supabase's local stack included) parallel index builds use /dev/shm, 64 MB by "
                "default: give the database container --shm-size=1g (compose: shm_size: 1gb) or builds fail "
                'with "could not resize shared memory segment"',
            ],
        )
    ]


def _connection_findings(facts: DatabaseFacts) -> list[Finding]:
    out: list[Finding] = []
    env = facts.lightrag_env
    pooler_port = facts.port == TRANSACTION_POOLER_PORT or env.get("POSTGRES_PORT") == str(TRANSACTION_POOLER_PORT)
    pooler_host = "pooler" in facts.host.lower() or "pooler" in env.get("POSTGRES_HOST", "").lower()
    if (pooler_port or pooler_host) and env.get("POSTGRES_STATEMENT_CACHE_SIZE", "") != "0":
        out.append(
            Finding(
                id="transaction-pooler-prepared-statements",
                severity="warning",
                subject="connection",
                message=(
                    "The database is reached through a transaction pooler (Supavisor on port 6543, PgBouncer): a "
                    "prepared statement made on one server connection is missing on the next, so asyncpg clients "
                    'such as LightRAG fail with "prepared statement ... does not exist" unless their statement '
                    "cache is off. Session SETs are lost too: use ALTER ROLE ... SET for hnsw.ef_search."
                ),
                evidence={
                    "port": env.get("POSTGRES_PORT") or facts.port,
                    "host": env.get("POSTGRES_HOST") or facts.host,
                    "POSTGRES_STATEMENT_CACHE_SIZE": env.get("POSTGRES_STATEMENT_CACHE_SIZE", "(unset)"),
                },
                env=["POSTGRES_STATEMENT_CACHE_SIZE=0"],
                advice=["or connect to the session pooler / direct port (5432; Supabase local: 54322)"],
            )
        )
    usable = max(1, facts.max_connections - facts.reserved_connections)
    if facts.lightrag_env_path:
        try:
            pool = int(env.get("POSTGRES_MAX_CONNECTIONS", LIGHTRAG_DEFAULT_MAX_CONNECTIONS))
        except ValueError:
            pool = LIGHTRAG_DEFAULT_MAX_CONNECTIONS
        mine = sum(n for app, n in facts.connections_by_app.items() if "lightrag" in app.lower())
        others = max(0, facts.connections - mine)
        room = usable - others
        if pool > room:
            advised = max(1, room - 2)
            out.append(
                Finding(
                    id="client-pool-too-big",
                    severity="warning",
                    subject="POSTGRES_MAX_CONNECTIONS",
                    message=(
                        f"LightRAG may open {pool} connections but the server has room for {room} "
                        f"(max_connections {facts.max_connections}, {facts.reserved_connections} reserved, "
                        f"{others} used by others): under load it gets 'too many clients' errors."
                    ),
                    evidence={
                        "POSTGRES_MAX_CONNECTIONS": pool,
                        "max_connections": facts.max_connections,
                        "superuser_reserved_connections": facts.reserved_connections,
                        "connections_in_use": facts.connections,
                        "by_application": facts.connections_by_app,
                    },
                    env=[f"POSTGRES_MAX_CONNECTIONS={advised}"],
                    advice=["or raise max_connections on the server (ALTER SYSTEM SET max_connections; restart)"],
                )
            )
    if facts.connections >= CONNECTIONS_BUSY_SHARE * usable:
        out.append(
            Finding(
                id="connections-near-max",
                severity="warning",
                subject="max_connections",
                message=(
                    f"{facts.connections} of {usable} usable connections are in use: new clients will soon be refused."
                ),
                evidence={
                    "connections_in_use": facts.connections,
                    "max_connections": facts.max_connections,
                    "by_application": facts.connections_by_app,
                },
                advice=["lower the pool sizes of your applications, or use a pooler in session mode"],
            )
        )
    return out


def _version_findings(facts: DatabaseFacts) -> list[Finding]:
    if facts.pgvector is None or not facts.columns:
        return []
    if facts.pgvector >= ITERATIVE_SCAN_VERSION:
        return []
    missing = "iterative index scans (0.8)" + (
        ", halfvec and HNSW above 2000 dims (0.7)" if facts.pgvector < HALFVEC_VERSION else ""
    )
    return [
        Finding(
            id="pgvector-old",
            severity="info",
            subject="pgvector",
            message=f"pgvector {'.'.join(map(str, facts.pgvector))} lacks {missing}.",
            evidence={"pgvector": ".".join(map(str, facts.pgvector))},
            advice=[
                "install pgvector >= 0.8 on the server (Supabase: upgrade the project), then run "
                "ALTER EXTENSION vector UPDATE"
            ],
        )
    ]
