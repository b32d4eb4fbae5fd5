"""The official `ollama` npm client, directly and through powergate (when node and npm are here).

The package is installed once into a cache directory outside the checkout
($POWERGATE_NPM_DIR, or the user cache dir), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from tests.clients.conftest import Pair

NPM_PACKAGE = "ollama@^0.5"
NPM_TIMEOUT_S = 300.0  # seconds for a first install on a slow network
NODE_TIMEOUT_S = 120.0

SCRIPT = r"""
const { createRequire } = require("node:module");
const req = createRequire(process.argv[2] + "/");
const { Ollama } = req("ollama");
const host = process.argv[3];
const det = { temperature: 0, seed: 7 };

(async () => {
  const o = new Ollama({ host });
  const out = {};
  const root = await fetch(host + "/");
  out.root = [await root.text(), root.headers.get("content-type")];
  out.names = (await o.list()).models.map((m) => m.model).sort();
  out.gen = (await o.generate({ model: "qwen2.5-coder:1.5b", prompt: "def f(", options: det })).response;
  let streamed = "";
  for await (const part of await o.generate({ model: "qwen2.5-coder:1.5b", prompt: "js stream", options: det, stream: true })) {
    streamed += part.response;
  }
  out.streamed = streamed;
  // the same stream again: through powergate it is replayed from the cache
  let again = "";
  for await (const part of await o.chat({ model: "qwen2.5-coder:1.5b", messages: [{ role: "user", content: "js" }], options: det, stream: true })) {
    again += part.message.content;
  }
  out.chat = again;
  out.embed = (await o.embed({ model: "nomic-embed-text", input: ["a", "b"] })).embeddings.length;
  out.emptyEmbed = (await o.embed({ model: "nomic-embed-text", input: "" })).embeddings;
  try {
    await o.generate({ model: "qwen2.5-coder:1.5b", prompt: "x", keep_alive: "banana" });
    out.banana = 200;
  } catch (e) {
    out.banana = e.status_code;
  }
  try {
    out.showChat = (await o.show({ model: "chat" })).details.family;
  } catch (e) {
    out.showChat = e.status_code;
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def npm_dir() -> Path:
    env = os.environ.get("POWERGATE_NPM_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("powergate-tests")) / "npm-ollama"


@pytest.fixture(scope="module")
def ollama_js() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm are not installed: the ollama npm client is not tested here")
    where = npm_dir()
    if not (where / "node_modules" / "ollama" / "package.json").exists():
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(where), NPM_PACKAGE],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install {NPM_PACKAGE} took longer than {NPM_TIMEOUT_S:.0f} s")
        if done.returncode != 0:
            pytest.skip(f"npm could not install {NPM_PACKAGE}: {done.stderr.strip()[-300:]}")
    return where


def run_js(ollama_js: Path, tmp_path: Path, host: str) -> dict[str, Any]:
    script = tmp_path / "client.cjs"
    script.write_text(SCRIPT)
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(script), str(ollama_js / "node_modules"), host],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_ollama_npm_client_same_results(pair: Pair, ollama_js: Path, tmp_path: Path) -> None:
    direct = run_js(ollama_js, tmp_path, pair.direct)
    through = run_js(ollama_js, tmp_path, pair.gateway)
    replayed = run_js(ollama_js, tmp_path, pair.gateway)  # answers from powergate's cache
    assert direct["root"] == through["root"] == ["Ollama is running", "text/plain; charset=utf-8"]
    for key in ("gen", "streamed", "chat", "embed", "emptyEmbed", "banana"):
        assert through[key] == direct[key] == replayed[key], key
    assert through["emptyEmbed"] == [] and through["banana"] == 400
    assert {"autocomplete", "chat", "embed", "auto"} <= set(through["names"]) - set(direct["names"])
    assert direct["showChat"] == 404 and through["showChat"] == "qwen2"  # an alias is a model through powergate
