"""LiteLLM proxy in front of the same simulated Ollama: the proxy a user would
otherwise pick for caching and routing. Installed by the bench into its own
virtualenv (bench/.litellm-venv) on first use; no network calls at run time
(LITELLM_LOCAL_MODEL_COST_MAP=True); its local in-memory cache enabled."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.harness import Proc, free_port

VENV = Path(__file__).resolve().parent / ".litellm-venv"
MASTER_KEY = "sk-powergate-bench"
MODELS = ("qwen2.5-coder:1.5b",)
EMBED = "nomic-embed-text"


def executable() -> Path:
    return VENV / ("Scripts/litellm.exe" if sys.platform == "win32" else "bin/litellm")


def ensure_installed() -> Path:
    exe = executable()
    if not exe.exists():
        print("installing litellm[proxy] into bench/.litellm-venv (first use only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = VENV / ("Scripts/pip.exe" if sys.platform == "win32" else "bin/pip")
        subprocess.run([str(pip), "install", "--quiet", "--disable-pip-version-check", "litellm[proxy]"], check=True)
    return exe


def config(upstream: str) -> str:
    lines = ["model_list:"]
    for m in MODELS:
        lines += [
            f"  - model_name: {m}",
            "    litellm_params:",
            f"      model: ollama_chat/{m}",
            f"      api_base: {upstream}",
        ]
    lines += [
        f"  - model_name: {EMBED}",
        "    litellm_params:",
        f"      model: ollama/{EMBED}",
        f"      api_base: {upstream}",
    ]
    lines += [
        "litellm_settings:",
        "  cache: true",
        "  cache_params:",
        "    type: local",
        "  telemetry: false",
        "  drop_params: true",
        "general_settings:",
        f"  master_key: {MASTER_KEY}",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def litellm_proxy(upstream: str) -> Iterator[Proc]:
    exe = ensure_installed()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="litellm-bench-") as d:
        cfg = Path(d) / "config.yaml"
        cfg.write_text(config(upstream))
        env = dict(
            os.environ,
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            NO_DOCS="True",
            DISABLE_ADMIN_UI="True",
            LITELLM_TELEMETRY="False",
        )
        p = subprocess.Popen(
            [str(exe), "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=d,
        )
        proc = Proc(f"http://127.0.0.1:{port}", p)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(proc.url + "/health/liveliness", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if p.poll() is not None:
                    raise RuntimeError("litellm proxy exited at start")
                time.sleep(0.5)
            else:
                raise RuntimeError("litellm proxy did not come up")
            yield proc
        finally:
            proc.stop()


AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
