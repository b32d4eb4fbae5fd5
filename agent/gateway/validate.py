"""Checks of request bodies, with messages in the words of the API that was called."""

from __future__ import annotations

import re
from typing import Any

from agent.errors import BadRequest
from agent.gateway import jsonsafe

# kind of call per inference path
INFERENCE_KINDS = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/api/embed": "embed",
    "/api/embeddings": "embeddings",
    "/v1/chat/completions": "chat",
    "/v1/completions": "generate",
    "/v1/embeddings": "embed",
}

# Ollama answers a missing model with these statuses (server/routes.go: the generate and embed
# handlers fall back to 404 "model '' not found", chat and the legacy embeddings to 400).
MODEL_REQUIRED_STATUS = {"generate": 404, "chat": 400, "embed": 404, "embeddings": 400}
OPENAI_ENCODING_FORMATS = ("float", "base64")  # compared case-insensitively, as Ollama does

# Go's time.ParseDuration, which Ollama applies to a string keep_alive (api/types.go Duration):
# an optional sign, then one or more <number><unit>; "0" alone needs no unit.
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")

_TYPE_NAMES = {
    str: "a string",
    bool: "true or false",
    dict: "an object",
    list: "an array",
    int: "an integer",
    float: "a number",
}


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest("missing request body: expected a JSON object")
    data = jsonsafe.loads(raw)  # bounded depth, no lone surrogates, 400 for what json rejects
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string ("5m", "1h30m", "-1s", "0"); ValueError with Go's message."""
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.fullmatch(text):
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", text):
            raise ValueError(f'time: missing unit in duration "{text}"')
        raise ValueError(f'time: invalid duration "{text}"')
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(float(n) * _GO_UNIT_SECONDS[u] for n, u in _GO_PART.findall(text))


def _check_keep_alive(body: dict[str, Any]) -> None:
    v = body.get("keep_alive")
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise BadRequest(f"Unsupported type: '{type(v).__name__}' for 'keep_alive'", param="keep_alive")
    if isinstance(v, str):
        try:
            parse_go_duration(v)
        except ValueError as exc:
            raise BadRequest(f"invalid value for 'keep_alive': {exc}", param="keep_alive") from None


def _check(body: dict[str, Any], key: str, types: tuple[type, ...]) -> None:
    if key not in body or body[key] is None:
        return
    v = body[key]
    ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
    if not ok:
        want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise BadRequest(f"invalid value for '{key}': expected {want}, got {type(v).__name__}", param=key)


def _check_str_list(body: dict[str, Any], key: str) -> None:
    v = body.get(key)
    if v is None or isinstance(v, str):
        return
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return
    raise BadRequest(f"invalid value for '{key}': expected a string or an array of strings", param=key)


def _check_messages(body: dict[str, Any], required: bool) -> None:
    msgs = body.get("messages")
    if msgs is None or msgs == []:
        if required:  # middleware/openai.go ChatMiddleware
            raise BadRequest("[] is too short - 'messages'", param="messages")
        return
    if not isinstance(msgs, list):
        raise BadRequest("invalid value for 'messages': expected an array of messages", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"invalid message at index {i}: expected an object", param=f"messages[{i}]")
        # Ollama accepts a message without a role (it renders as an empty role), but not a
        # role of another type (a JSON decoding error).
        if m.get("role") is not None and not isinstance(m.get("role"), str):
            raise BadRequest(f"invalid 'role' in message {i}: expected a string", param=f"messages[{i}].role")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise BadRequest(f"invalid 'content' in message {i}: expected a string", param=f"messages[{i}].content")


def validate(path: str, body: dict[str, Any]) -> str:
    """Validate an inference body; return the requested model name."""
    kind = INFERENCE_KINDS[path]
    openai = path.startswith("/v1/")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"invalid value for 'model': expected a string, got {type(model).__name__}", param="model")
    if model and any(ord(c) < 0x20 or ord(c) == 0x7F for c in model):  # CR/LF/NUL: no model has them
        raise BadRequest(f"invalid model name {model!r}", param="model")
    _check(body, "stream", (bool,))
    if not openai:  # Ollama's OpenAI requests have neither field: it ignores them there
        _check(body, "options", (dict,))
        _check_keep_alive(body)
    if kind == "generate":
        _check(body, "suffix", (str,))
        if not openai:
            for k in ("system", "template"):
                _check(body, k, (str,))
            _check(body, "raw", (bool,))
            _check(body, "images", (list,))
            _check(body, "context", (list,))
        # Ollama's /v1/completions takes one string prompt; without one it only loads the
        # model (openai/openai.go CompletionRequest.Prompt is a string).
        _check(body, "prompt", (str,))
    elif kind == "chat":
        _check_messages(body, required=openai)
        _check(body, "tools", (list,))
    elif kind == "embed":
        if openai and (body.get("input") is None or body.get("input") == []):
            # middleware/openai.go EmbeddingsMiddleware: a missing or empty input list is a 400
            raise BadRequest("invalid input", param="input")
        _check_str_list(body, "input")
        if openai:
            fmt = body.get("encoding_format")
            if fmt is not None and (not isinstance(fmt, str) or fmt.lower() not in OPENAI_ENCODING_FORMATS + ("",)):
                raise BadRequest(
                    f"Invalid value for 'encoding_format' = {fmt}. Supported values: ['float', 'base64'].",
                    param="encoding_format",
                )
        _check(body, "truncate", (bool,))
        _check(body, "dimensions", (int,))
    elif kind == "embeddings":
        _check(body, "prompt", (str,))
    if openai:
        for k in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            _check(body, k, (int, float))
        for k in ("max_tokens", "seed"):
            _check(body, k, (int,))
        _check(body, "stream_options", (dict,))
    else:
        _check(body, "format", (str, dict))
    if not model or not model.strip():
        status = 400 if openai and kind == "chat" else MODEL_REQUIRED_STATUS[kind]
        message = "model is required" if status == 400 else "model '' not found: model is required"
        raise BadRequest(message, param="model", status_code=status)
    return model
