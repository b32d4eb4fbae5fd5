"""Logging: a rotating file in the user log dir, and stderr when there is one.

Prompt text is never logged at INFO or above; request bodies appear only at DEBUG.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path

from agent.platform.private import private_file, private_tree

LOG_FILE_BYTES = 2 * 1024 * 1024  # per file
LOG_BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Control characters and line separators in logged values (a profile reason, a model
# name, an upstream's message) are shown escaped, so that no value can forge a log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`...)."""
    return _CONTROL.sub(_escape_one, text)


def _escape_one(m: re.Match[str]) -> str:
    # formatted by hand: the unicode_escape codec is imported lazily, and logging must
    # work when no file can be opened (out of descriptors is a time to log)
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files readable by their user only (logs name models, paths and errors)."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own signature
        stream = super()._open()
        private_file(Path(self.baseFilename))
        return stream


class SafeFormatter(logging.Formatter):
    """One record, one line: the message is escaped; a traceback (added after the
    message by the base class) keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def setup_logging(log_dir: Path, level: int = logging.INFO) -> Path | None:
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = SafeFormatter(FORMAT)
    target = log_dir / "powergate.log"
    path: Path | None = target
    try:
        private_tree(log_dir)  # our own folder: logs of older versions too
        fh = PrivateRotatingFileHandler(target, maxBytes=LOG_FILE_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError as exc:
        path = None
        print(f"powergate: cannot write logs to {log_dir}: {exc}", file=sys.stderr) if sys.stderr else None
    # Under pythonw (start at login on Windows) there is no console: stderr is None.
    if sys.stderr is not None:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
