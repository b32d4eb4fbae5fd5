"""`powergate db check|apply`: the advisor's command line.

Exit codes (like `doctor`): 0 no findings / everything applied; 1 findings, or apply
declined or partly failed; 2 no database configured, unreachable, or a bad DSN.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from agent.config import Settings
from agent.errors import DatabaseError
from agent.services import postgres
from agent.services.pgvector_rules import find_problems

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_UNAVAILABLE = 2

Out = Callable[[str], None]


def run(settings: Settings, args: argparse.Namespace, out: Out, err: Out) -> int:
    dsn = args.dsn or settings.postgres.dsn
    if not dsn:
        err(
            "powergate db: no database configured. Set [postgres] dsn in the config (or pass --dsn), e.g. "
            f'for Supabase\'s local stack: dsn = "{postgres.SUPABASE_LOCAL_DSN}"'
        )
        return EXIT_UNAVAILABLE
    role = settings.postgres.role
    try:
        if args.action == "check":
            return _check(dsn, role, settings, args, out)
        return _apply(dsn, role, settings, args, out, err)
    except DatabaseError as exc:
        err(f"powergate db: {exc}")
        return EXIT_UNAVAILABLE


def _check(dsn: str, role: str, settings: Settings, args: argparse.Namespace, out: Out) -> int:
    facts = postgres.gather_facts(dsn, lightrag_env=settings.postgres.lightrag_env, role=role, probe=not args.no_probe)
    findings = find_problems(facts)
    doc = postgres.report_document(facts, findings)
    out(json.dumps(doc, indent=2) if args.json else postgres.format_report(doc))
    return EXIT_FINDINGS if findings else EXIT_CLEAN


def _confirmed(target: str, statements: list[str], yes: bool, out: Out, err: Out) -> bool:
    if yes:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        err("powergate db apply: nothing changed. Confirm interactively, or pass --yes to apply without asking.")
        return False
    out(f"\nApply {len(statements)} statement(s) to {target}?" if statements else f"\nAllow tuning of {target}?")
    if not statements:
        out("(nothing to fix; this records your consent for per-profile hnsw.ef_search)")
    try:
        answer = input("[y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _apply(dsn: str, role: str, settings: Settings, args: argparse.Namespace, out: Out, err: Out) -> int:
    lightrag_env = settings.postgres.lightrag_env
    facts = postgres.gather_facts(dsn, lightrag_env=lightrag_env, role=role, probe=True)
    findings = find_problems(facts)
    statements = postgres.planned_statements(findings)
    out(postgres.format_report(postgres.report_document(facts, findings)))
    if statements:
        out("\nplanned, in this order:")
        for s in statements:
            out(f"  {s};")
    if not _confirmed(facts.target, statements, args.yes, out, err):
        return EXIT_FINDINGS
    changes = postgres.apply_statements(dsn, statements, out) if statements else []
    path = postgres.record_consent(settings.data_dir, dsn, facts.role, [c.statement for c in changes if c.ok])
    out(f"\nconsent recorded in {path}: profile switches now set hnsw.ef_search for role {facts.role}")
    failed = [c for c in changes if not c.ok]
    after = find_problems(postgres.gather_facts(dsn, lightrag_env=lightrag_env, role=role, probe=True))
    out("\nwhat changed:")
    for c in changes:
        out(
            f"  {'ok    ' if c.ok else 'FAILED'} {c.seconds:7.1f} s  {c.statement}"
            + ("" if c.ok else f"  ({c.detail})")
        )
        if c.ok and "NOTICE" in c.detail:
            out(f"         {c.detail}")
    if not changes:
        out("  nothing (no SQL fixes were needed)")
    left = [f for f in after if f.sql]
    outside = [f for f in after if not f.sql]
    out(f"\nafter: {len(left)} finding(s) SQL can fix, {len(outside)} that need changes outside the database")
    for f in after:
        out(f"  {f.id} ({f.subject})" + (f": LightRAG .env {', '.join(f.env)}" if f.env else ""))
    return EXIT_FINDINGS if failed or left else EXIT_CLEAN
