"""Checks of request bodies, with messages in the words of the API that was called."""

from __future__ import annotations

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
    if msgs is None:
        if required:
            raise BadRequest("'messages' is required", param="messages")
        return
    if not isinstance(msgs, list):
        raise BadRequest("invalid value for 'messages': expected an array of messages", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"invalid message at index {i}: expected an object", param=f"messages[{i}]")
        if not isinstance(m.get("role"), str):
            raise BadRequest(f"message at index {i} needs a 'role' string", param=f"messages[{i}].role")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise BadRequest(f"invalid 'content' in message {i}: expected a string", param=f"messages[{i}].content")


def validate(path: str, body: dict[str, Any]) -> str:
    """Validate an inference body; return the requested model name."""
    model = body.get("model")
    if model is None or model == "":
        raise BadRequest("model is required", param="model")
    if not isinstance(model, str):
        raise BadRequest(f"invalid value for 'model': expected a string, got {type(model).__name__}", param="model")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in model):  # CR/LF/NUL: no model has them
        raise BadRequest(f"invalid model name {model!r}", param="model")
    _check(body, "stream", (bool,))
    _check(body, "options", (dict,))
    _check(body, "keep_alive", (str, int, float))
    kind = INFERENCE_KINDS[path]
    openai = path.startswith("/v1/")
    if kind == "generate":
        for k in ("suffix", "system", "template"):
            _check(body, k, (str,))
        _check(body, "raw", (bool,))
        _check(body, "images", (list,))
        _check(body, "context", (list,))
        if openai:
            _check_str_list(body, "prompt")
            if "prompt" not in body:
                raise BadRequest("'prompt' is required", param="prompt")
        else:
            _check(body, "prompt", (str,))
    elif kind == "chat":
        _check_messages(body, required=openai)
        _check(body, "tools", (list,))
    elif kind == "embed":
        if "input" not in body and openai:
            raise BadRequest("'input' is required", param="input")
        _check_str_list(body, "input")
        _check(body, "truncate", (bool,))
        _check(body, "dimensions", (int,))
    elif kind == "embeddings":
        _check(body, "prompt", (str,))
    if openai:
        for k in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            _check(body, k, (int, float))
        for k in ("max_tokens", "seed", "n"):
            _check(body, k, (int,))
        _check(body, "stream_options", (dict,))
    else:
        _check(body, "format", (str, dict))
    return model
