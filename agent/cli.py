"""The `powergate` command line.

Exit codes: 0 ok, 1 the agent is not running / a check failed, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from agent import __version__
from agent.cli_support import agent_url_for
from agent.config import Settings, load_settings, settings_as_dict
from agent.errors import ConfigError, PowergateError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
CLIENT_TIMEOUT = 5.0  # seconds for CLI calls to the running agent
MAIN_WAIT_WINDOWS = 5.0  # seconds; how often the idle main thread looks for Ctrl+C on Windows

log = logging.getLogger("powergate")


def _out(text: str) -> None:
    # pythonw has no console: stdout may be None.
    if sys.stdout is not None:
        print(text, flush=True)


def _err(text: str) -> None:
    if sys.stderr is not None:
        print(text, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="powergate",
        description=(
            "powergate: a fast, battery-aware local endpoint for AI coding tools. Point your editor "
            "(Continue, Twinny, CodeGPT, any Ollama client) at http://127.0.0.1:11435 instead of "
            "Ollama's 11434."
        ),
    )
    p.add_argument("--version", action="version", version=f"powergate {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: the user config dir; env POWERGATE_CONFIG)"
    )
    common.add_argument("--data-dir", metavar="DIR", help="where caches and state live (env POWERGATE_DATA_DIR)")
    common.add_argument("--host", help="address the agent listens on (default 127.0.0.1; env POWERGATE_HOST)")
    common.add_argument("--port", type=int, help="port (default 11435; env POWERGATE_PORT)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="start the agent (gateway, power monitor, tray)")
    run.add_argument("--no-tray", action="store_true", help="no tray icon (servers, terminals, CI)")
    run.add_argument(
        "--upstream",
        action="append",
        metavar="URL",
        help="Ollama URL, repeatable (default http://127.0.0.1:11434; env POWERGATE_UPSTREAM)",
    )
    run.add_argument("--profile", metavar="NAME|auto", help="start in this profile, or auto (default)")
    run.add_argument("--debug", action="store_true", help="verbose logs (may include request bodies)")

    st = sub.add_parser("status", parents=[common], help="ask the running agent how it is doing")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    pr = sub.add_parser("profile", parents=[common], help="show or set the running agent's profile")
    pr.add_argument(
        "name", nargs="?", metavar="NAME|auto", help="performance, balanced, battery-saver, a custom one, or auto"
    )

    au = sub.add_parser("autostart", parents=[common], help="start powergate at login")
    au.add_argument("action", choices=["enable", "disable", "status"])

    ca = sub.add_parser("cache", parents=[common], help="cache figures, or empty every tier")
    ca.add_argument("action", choices=["stats", "clear"])
    ca.add_argument("--json", action="store_true")

    sub.add_parser("doctor", parents=[common], help="check Ollama, models, port and config; print editor config")

    be = sub.add_parser("bench", parents=[common], help="measure what powergate gains against your own Ollama")
    be.add_argument("--model", help="the completion model (default: the profile's autocomplete model)")
    be.add_argument("--steps", type=int, default=30, help="suggestions in the editing session (default 30)")
    be.add_argument(
        "--no-pause", action="store_true", help="no reading pauses between suggestions (faster, less realistic)"
    )
    be.add_argument(
        "--upstream", action="append", metavar="URL", help="the Ollama to compare against (default: the configured one)"
    )

    db = sub.add_parser("db", parents=[common], help="Postgres + pgvector: find slow or wrong vector search; fix it")
    db.add_argument("action", choices=["check", "apply"])
    db.add_argument("--dsn", help="the database (default: [postgres] dsn in the config)")
    db.add_argument("--yes", action="store_true", help="apply without asking (scripts)")
    db.add_argument("--json", action="store_true", help="check: machine-readable report")
    db.add_argument(
        "--no-probe", action="store_true", help="check: skip the recall probe (it runs a few exact searches)"
    )

    co = sub.add_parser("config", parents=[common], help="where the config lives, or the effective config")
    co.add_argument("action", choices=["path", "show"])
    return p


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        config_file=args.config,
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        **extra,
    )


agent_url = agent_url_for


class AgentNotRunning(PowergateError):
    pass


def call_agent(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    headers = {}
    if settings.server.control_token:
        headers["X-Powergate-Token"] = settings.server.control_token
    url = agent_url(settings)
    try:
        with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT, trust_env=False) as c:
            r = c.request(method, path, json=body, headers=headers)
    except httpx.HTTPError:
        raise AgentNotRunning(f"powergate is not running on {url} (start it with `powergate run`)") from None
    try:
        data = r.json()
    except ValueError:
        raise PowergateError(f"unexpected answer from {url}{path}: HTTP {r.status_code}") from None
    if r.status_code >= 400:
        err = data.get("error") if isinstance(data, dict) else data
        raise PowergateError(str(err.get("message") if isinstance(err, dict) else err))
    return data


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from agent.logs import setup_logging
    from agent.server import AgentServer

    settings = _settings(args, upstreams=args.upstream, profile=args.profile)
    logfile = setup_logging(settings.log_dir, logging.DEBUG if args.debug else logging.INFO)
    log.info(
        "powergate %s starting; config %s%s; data %s; log %s",
        __version__,
        settings.config_file,
        "" if settings.config_file_exists else " (not present: defaults)",
        settings.data_dir,
        logfile,
    )
    from agent.platform.single_instance import AlreadyRunning, SingleInstance

    url = agent_url(settings)
    instance = SingleInstance()
    try:
        instance.acquire(url)
    except AlreadyRunning as exc:
        _err(str(exc))
        return EXIT_FAIL
    server = AgentServer(settings)
    try:
        server.start()
    except PowergateError as exc:
        instance.release()
        _err(f"powergate: {exc}")
        return EXIT_FAIL
    log.info(
        "listening on %s -> %s; point your editor's Ollama URL at %s",
        url,
        ", ".join(u.url for u in settings.upstreams),
        url,
    )

    def _stop(*_: object) -> None:
        server.request_stop()
        if tray is not None:
            tray.quit()

    from agent.desktop import start_tray, wire_notifications
    from agent.tray.notify import Notifier

    tray = None if args.no_tray else start_tray(server, url, settings.server.control_token)
    notifier = Notifier(settings.notifications.enabled and not args.no_tray, icon=lambda: tray.icon if tray else None)
    wire_notifications(server, notifier, url)

    for sig in ("SIGTERM", "SIGBREAK", "SIGHUP"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), _stop)
    try:
        if tray is not None:
            tray.run()  # the main thread belongs to the tray until Quit
        else:
            # POSIX: the wait is interrupted by signals, so it can block until the server
            # stops (no wake-ups at all). Windows: a blocking wait cannot see Ctrl+C.
            wait_s = MAIN_WAIT_WINDOWS if sys.platform == "win32" else None
            while not server.stopped.wait(wait_s):
                pass
    except KeyboardInterrupt:
        pass
    notifier.close()
    log.info("stopping")
    server.stop()
    instance.release()
    log.info("stopped")
    return EXIT_OK


KIND_LABELS = {"ollama": "Ollama", "llamacpp": "llama.cpp", "openai": "OpenAI-compatible"}


def _fmt_status(s: dict[str, Any]) -> str:
    lines = [
        f"powergate {s['version']} on {s['listen']} (up {s['uptime_s']:.0f} s)",
        f"profile: {s['profile']} ({s['mode']}{', pinned' if s.get('pinned') and s['mode'] == 'manual' else ''})",
    ]
    for u in s.get("upstreams", []):
        state = {True: "reachable", False: "NOT reachable", None: "not checked yet"}[u["reachable"]]
        kind = u.get("kind") or "ollama"
        ver = f", {KIND_LABELS.get(kind, kind)} {u['version']}" if u.get("version") else ""
        lines.append(f"upstream {u['url']} (kind {kind}): {state}{ver}")
    cache = s.get("cache")
    if cache:
        for t in cache.get("tiers", []):
            lines.append(
                f"cache {t['name']}: {t.get('entries', '?')} entries, {t.get('bytes', 0) / 1e6:.1f} MB, hits {t.get('hits', 0)}"
                + ("" if t.get("available", True) else f" (unavailable: {t.get('error', '')})")
            )
    rag = s.get("lightrag")
    if rag:
        state = {True: "reachable", False: "NOT reachable", None: "not checked yet"}[rag.get("reachable")]
        busy = ", indexing" if rag.get("pipeline_busy") else ""
        q = rag.get("query_cache", {})
        lines.append(
            f"lightrag {rag['url']}: {state}{busy}, LightRAG {rag.get('core_version') or '?'}, corpus version "
            f"{rag.get('corpus_version')}, {rag.get('status_counts', {}).get('processed', 0)} documents, "
            f"queries: {q.get('hits', 0)} hits, {q.get('misses', 0)} misses, {q.get('coalesced', 0)} coalesced"
        )
    power = s.get("power")
    if power:
        batt = f"battery {power['percent']:.0f}%" if power.get("percent") is not None else "no battery"
        src = "on AC" if power.get("plugged") else "on battery"
        saver = ", OS battery saver on" if power.get("battery_saver") else ""
        lines.append(
            f"power: {src}, {batt}{saver}, CPU {power['cpu_percent']:.0f}%, RAM available {power['ram_available_mb']:.0f} MB"
        )
    routing = s.get("routing")
    if routing:
        lines.append(
            f"model reloads avoided {routing['reloads_avoided']}, requests capped {routing['capped']}, models unloaded {routing['unloads']}"
        )
    hist = [h for h in s.get("history", []) if h.get("previous") != h.get("profile")]
    if hist:
        h = hist[-1]
        lines.append(f"last switch: {h.get('previous') or '-'} -> {h['profile']} ({h['reason']})")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    data = call_agent(settings, "GET", "/agent/status")
    _out(json.dumps(data, indent=2) if args.json else _fmt_status(data))
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.name:
        body = {"mode": "auto"} if args.name == "auto" else {"profile": args.name, "source": "cli"}
        data = call_agent(settings, "PUT", "/agent/profile", body)
    else:
        data = call_agent(settings, "GET", "/agent/profile")
    _out(f"{data['profile']} ({data['mode']})")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.action == "clear":
        data = call_agent(settings, "POST", "/agent/cache/clear")
        _out("cache cleared" + (f": {data.get('cleared')}" if isinstance(data, dict) and data.get("cleared") else ""))
        return EXIT_OK
    data = call_agent(settings, "GET", "/agent/status")
    cache = data.get("cache") or {}
    if args.json:
        _out(json.dumps(cache, indent=2))
    else:
        for t in cache.get("tiers", []):
            _out(
                f"{t['name']:<7} entries {t.get('entries', 0):>7}  bytes {t.get('bytes', 0):>12}  hits {t.get('hits', 0):>7}  misses {t.get('misses', 0):>7}"
            )
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.action == "path":
        _out(str(settings.config_file))
        return EXIT_OK
    import tomli_w

    _out(f"# effective config; file: {settings.config_file}{'' if settings.config_file_exists else ' (not present)'}")
    _out(tomli_w.dumps(settings_as_dict(settings)))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from agent.userbench import BenchError, run_bench

    settings = _settings(args, upstreams=args.upstream)
    try:
        run_bench(settings, agent_url(settings), _out, model=args.model, steps=args.steps, pause=not args.no_pause)
    except BenchError as exc:
        _err(f"powergate bench: {exc}")
        return EXIT_FAIL
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import run_doctor

    return run_doctor(_settings(args), _out)


def cmd_db(args: argparse.Namespace) -> int:
    from agent.services import dbcli

    settings = _settings(args)
    return dbcli.run(settings, args, _out, _err)


def cmd_autostart(args: argparse.Namespace) -> int:
    from agent.autostart import autostart_for_platform
    from agent.autostart.base import DISABLED_BY_USER

    entry = autostart_for_platform()
    if args.action == "enable":
        st = entry.enable()
    elif args.action == "disable":
        st = entry.disable()
    else:
        st = entry.status()
    _out(f"start at login: {st.state} ({st.detail})")
    if args.action == "enable" and st.state == DISABLED_BY_USER:
        return EXIT_FAIL  # the user's own switch in the OS wins; we say so instead of overriding it
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "status": cmd_status,
    "profile": cmd_profile,
    "cache": cmd_cache,
    "config": cmd_config,
    "doctor": cmd_doctor,
    "bench": cmd_bench,
    "autostart": cmd_autostart,
    "db": cmd_db,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _err(f"powergate: config error: {exc}")
        return EXIT_USAGE
    except AgentNotRunning as exc:
        _err(str(exc))
        return EXIT_FAIL
    except PowergateError as exc:
        _err(f"powergate: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
