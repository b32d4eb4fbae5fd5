"""The real LightRAG API server (lightrag-hku from PyPI) for tests and the bench.

LightRAG brings ~800 MB of dependencies (spaCy, pandas, langchain...) that must not
meet ours, so it lives in its own virtualenv outside the checkout, created on first
use and reused afterwards:

    $POWERGATE_LIGHTRAG_VENV, or ~/.cache/powergate-tests/lightrag-venv

It runs offline through launcher.py (a tokenizer that needs no download); its model
calls go wherever LLM_BINDING_HOST / EMBEDDING_BINDING_HOST point (in the tests:
powergate's bulk lane in front of the simulated Ollama).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

LIGHTRAG_VERSION = "1.5.7"
# LightRAG installs the ollama client itself on first import when it is missing (pipmaster,
# at run time): we install it with the rest, so the server never reaches for the network.
REQUIREMENTS = (f"lightrag-hku[api]=={LIGHTRAG_VERSION}", "ollama>=0.5.4,<1")
LAUNCHER = Path(__file__).with_name("launcher.py")
ROOT = Path(__file__).resolve().parent.parent.parent
START_TIMEOUT_S = 180.0  # importing LightRAG (spaCy, pandas) on a busy 2-core machine
LLM_MODEL = "qwen2.5-coder:1.5b"
EMBED_MODEL = "nomic-embed-text"
EMBED_DIM = 768  # the simulated nomic-embed-text's dimension


def venv_dir() -> Path:
    env = os.environ.get("POWERGATE_LIGHTRAG_VENV")
    return Path(env) if env else Path.home() / ".cache" / "powergate-tests" / "lightrag-venv"


def _bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("powergate_bootstrap", ROOT / "scripts" / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


@contextlib.contextmanager
def _install_lock(venv: Path) -> Iterator[None]:
    # Several test processes (pytest-xdist, two checkouts) may ask at once: one installs.
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = venv.parent / (venv.name + ".lock")
    with lock.open("w") as fh:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def ensure_venv() -> Path:
    """The LightRAG venv's python, installing it the first time (a few minutes, once)."""
    venv = venv_dir()
    ready = venv / f"powergate-ready-{LIGHTRAG_VERSION}"
    if ready.exists():
        return venv_python(venv)
    with _install_lock(venv):
        if ready.exists():
            return venv_python(venv)
        if venv.exists():
            shutil.rmtree(venv)  # a half-finished install
        # the checkout's own venv maker: works where Debian ships no ensurepip (no python3-venv)
        python = _bootstrap().ensure_venv(venv)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
        )
        ready.write_text(" ".join(REQUIREMENTS) + "\n")
    return venv_python(venv)


class LightRAGServer:
    """`lightrag-server` (through the offline launcher) on a free port, storage in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        llm_host: str,
        embed_host: str | None = None,
        api_key: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.api_key = api_key
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "inputs").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "EMBEDDING_", "LIGHTRAG_"))}
        env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "WORKING_DIR": str(workdir / "rag_storage"),
                "INPUT_DIR": str(workdir / "inputs"),
                "LLM_BINDING": "ollama",
                "LLM_MODEL": LLM_MODEL,
                "LLM_BINDING_HOST": llm_host,
                "EMBEDDING_BINDING": "ollama",
                "EMBEDDING_MODEL": EMBED_MODEL,
                "EMBEDDING_DIM": str(EMBED_DIM),
                "EMBEDDING_BINDING_HOST": embed_host or llm_host,
                "OLLAMA_LLM_NUM_CTX": "4096",
                "MAX_ASYNC": "4",
                "LOG_LEVEL": "WARNING",
                "NO_PROXY": "127.0.0.1,localhost",
                "TIKTOKEN_CACHE_DIR": str(workdir / "no-tiktoken"),  # never used: the launcher's tokenizer
            }
        )
        if api_key:
            env["LIGHTRAG_API_KEY"] = api_key
        env.update(extra_env or {})
        self.env = env
        self.log_path = workdir / "lightrag.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LightRAGServer:
        python = ensure_venv()
        with self.log_path.open("ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [str(python), str(LAUNCHER)],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"LightRAG exited at start:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"LightRAG did not start in {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def healthy(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/health", headers=self.headers(), timeout=2, trust_env=False)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> LightRAGServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_pipeline_idle(client: httpx.Client, base: str, timeout: float = 120.0, processed: int | None = None) -> dict:
    """Poll `base`/documents/pipeline_status until LightRAG is idle (and has `processed` documents)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = client.get(f"{base}/documents/pipeline_status").json()
        if not last.get("busy"):
            if processed is None:
                return last
            counts = client.get(f"{base}/documents/status_counts").json().get("status_counts", {})
            if counts.get("processed", 0) >= processed and not counts.get("processing") and not counts.get("pending"):
                return last
        time.sleep(0.3)
    raise AssertionError(f"LightRAG's pipeline did not finish in {timeout} s: {last}")
