"""llama.cpp's llama-server: the OpenAI-compatible routes, plus what only llama.cpp offers.

- FIM (`suffix`) goes to `/infill` (`input_prefix`, `input_suffix`, `n_predict`...), where
  the server uses the model's own FIM tokens; a model without them gets Ollama's 400.
- Slots: `/props` `total_slots` (llama-server's `--parallel`) sets the scheduler's slots,
  unless `[[upstream]] max_concurrency` is set.
- Health: `/health` answers 503 while the model loads; that is reachable, not ready.
- `think` becomes `chat_template_kwargs.enable_thinking`.
"""

from __future__ import annotations

from typing import Any

import httpx

from agent.upstreams import translate as tr
from agent.upstreams.base import HEALTH_TIMEOUT, Reply, UpstreamHealth
from agent.upstreams.openai import ModelInfo, OpenAIUpstream, TranslatedReply

LOADING_STATUS = 503  # /health while the model loads
NOT_SUPPORTED_STATUS = 501  # llama-server's "Infill is not supported by this model"


class LlamaCppUpstream(OpenAIUpstream):
    kind = "llamacpp"
    label = "the llama.cpp server"
    start_hint = "Start llama-server (e.g. `llama-server -m model.gguf --port 8080`) or point powergate at it."

    async def _insert(
        self, body: dict[str, Any], name: str, model: ModelInfo, headers: dict[str, str], stream: bool
    ) -> Reply:
        req: dict[str, Any] = {
            "input_prefix": str(body.get("prompt") or ""),
            "input_suffix": str(body.get("suffix") or ""),
            "stream": bool(body.get("stream", True)),
        }
        req.update(tr.map_options(body.get("options"), max_tokens_key="n_predict"))
        reply = await self._translated("/infill", req, "generate", name, headers, stream, native=True)
        if reply.status_code == NOT_SUPPORTED_STATUS:
            if isinstance(reply, TranslatedReply):
                await reply.aclose()
            return TranslatedReply(400, tr.ollama_error(f'"{name}" does not support insert'))
        return reply

    def chat_extras(self, body: dict[str, Any], req: dict[str, Any]) -> None:
        if isinstance(body.get("think"), bool):
            req["chat_template_kwargs"] = {"enable_thinking": body["think"]}

    async def check(self) -> UpstreamHealth:
        """GET /health (503 while loading), then /props for the slots and the build."""
        self.lmstudio = False  # llama-server has no /api/v0
        try:
            r = await self.client.get("/health", timeout=HEALTH_TIMEOUT)
            if r.status_code == LOADING_STATUS:
                self._mark(True, "the llama.cpp server is loading its model")
                return self.health
            r.raise_for_status()
            props = await self.client.get("/props", timeout=HEALTH_TIMEOUT)
            if props.status_code == 200:
                self.apply_props(props.json())
            self._mark(True)
        except (httpx.HTTPError, ValueError) as exc:
            self._mark(False, self.unreachable_message(exc))
        return self.health

    def apply_props(self, props: dict[str, Any]) -> None:
        slots = props.get("total_slots")
        if isinstance(slots, int) and slots > 0 and not self.settings.max_concurrency_set:
            self.scheduler.slots = slots
        self.health.version = str(props.get("build_info") or "")
