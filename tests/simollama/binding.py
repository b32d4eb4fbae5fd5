"""Request decoding as Ollama does it: Go's encoding/json into the request structs.

Ollama answers 400 with the decoder's message when a field has the wrong JSON type
(gin's ShouldBindJSON), and keep_alive goes through api.Duration.UnmarshalJSON, which
takes a number of seconds or a Go duration string (time.ParseDuration). The field
types below are those of api/types.go and openai/openai.go (Ollama 0.12).
"""

from __future__ import annotations

import re
from typing import Any

STR, BOOL, INT, NUM, OBJ, LIST, ANY, DURATION, MESSAGES = (
    "string",
    "bool",
    "int",
    "float64",
    "map[string]interface {}",
    "[]",
    "any",
    "duration",
    "messages",
)

GENERATE = {
    "model": STR,
    "prompt": STR,
    "suffix": STR,
    "system": STR,
    "template": STR,
    "context": LIST,
    "stream": BOOL,
    "raw": BOOL,
    "format": ANY,
    "keep_alive": DURATION,
    "images": LIST,
    "options": OBJ,
    "think": ANY,
    "logprobs": BOOL,
    "top_logprobs": INT,
}
CHAT = {
    "model": STR,
    "messages": MESSAGES,
    "stream": BOOL,
    "format": ANY,
    "keep_alive": DURATION,
    "tools": LIST,
    "options": OBJ,
    "think": ANY,
    "logprobs": BOOL,
    "top_logprobs": INT,
}
EMBED = {"model": STR, "input": ANY, "keep_alive": DURATION, "truncate": BOOL, "dimensions": INT, "options": OBJ}
EMBEDDINGS = {"model": STR, "prompt": STR, "keep_alive": DURATION, "options": OBJ}
OAI_CHAT = {
    "model": STR,
    "messages": LIST,
    "stream": BOOL,
    "stream_options": OBJ,
    "max_tokens": INT,
    "seed": INT,
    "stop": ANY,
    "temperature": NUM,
    "frequency_penalty": NUM,
    "presence_penalty": NUM,
    "top_p": NUM,
    "response_format": OBJ,
    "tools": LIST,
    "logprobs": BOOL,
    "top_logprobs": INT,
}
OAI_COMPLETION = {
    "model": STR,
    "prompt": STR,
    "frequency_penalty": NUM,
    "max_tokens": INT,
    "presence_penalty": NUM,
    "seed": INT,
    "stop": ANY,
    "stream": BOOL,
    "stream_options": OBJ,
    "temperature": NUM,
    "top_p": NUM,
    "suffix": STR,
    "logprobs": INT,
}
OAI_EMBED = {"input": ANY, "model": STR, "dimensions": INT, "encoding_format": STR}
MESSAGE = {"role": STR, "content": STR, "thinking": STR, "images": LIST, "tool_calls": LIST, "tool_name": STR}
OAI_MESSAGE = {"role": STR, "content": ANY, "tool_calls": LIST, "tool_call_id": STR}

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIT = "ns|us|\u00b5s|\u03bcs|ms|s|m|h"
_NUMBER = r"(?:\d+\.?\d*|\.\d+)"


class BindError(ValueError):
    """What Ollama's JSON binding answers with 400."""


def go_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    s = text
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise BindError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    part = re.compile(rf"({_NUMBER})({_UNIT})?")
    while pos < len(s):
        m = part.match(s, pos)
        if m is None:
            raise BindError(f'time: invalid duration "{text}"')
        if m.group(2) is None:
            rest = s[m.end() :]
            if rest and not rest[0].isdigit():
                unit = re.match(r"[^\d.]+", rest)
                raise BindError(f'time: unknown unit "{unit.group(0) if unit else rest}" in duration "{text}"')
            raise BindError(f'time: missing unit in duration "{text}"')
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def keep_alive_seconds(v: Any, default: float) -> float:
    """api.Duration.UnmarshalJSON: seconds; negative = forever (inf); 0 = unload now."""
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BindError(f"Unsupported type: '{_go_type(v)}'")
    seconds = float(v) if not isinstance(v, str) else go_duration(v)
    return float("inf") if seconds < 0 else seconds


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "float64"
    if isinstance(v, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "array"
    return "object"


def _fits(v: Any, want: str) -> bool:
    if v is None or want == ANY:
        return True  # Go leaves a field at its zero value for null
    if want == STR:
        return isinstance(v, str)
    if want == BOOL:
        return isinstance(v, bool)
    if want == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if want == NUM:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if want == OBJ:
        return isinstance(v, dict)
    return isinstance(v, list)  # LIST, MESSAGES


def bind(body: dict[str, Any], fields: dict[str, str], struct: str) -> None:
    """Raise BindError where Go's decoder (or Duration's) would refuse the body."""
    for key, want in fields.items():
        v = body.get(key)
        if want == DURATION:
            if v is not None:
                keep_alive_seconds(v, 0.0)
            continue
        if not _fits(v, want):
            go = "[]api.Message" if want == MESSAGES else want
            raise BindError(f"json: cannot unmarshal {_json_kind(v)} into Go struct field {struct}.{key} of type {go}")
        if want == MESSAGES and isinstance(v, list):
            for m in v:
                if not isinstance(m, dict):
                    raise BindError(f"json: cannot unmarshal {_json_kind(m)} into Go value of type api.Message")
                bind(m, MESSAGE, "Message")
    if struct == "ChatCompletionRequest":
        for m in body.get("messages") or []:
            if not isinstance(m, dict):
                raise BindError(f"json: cannot unmarshal {_json_kind(m)} into Go value of type openai.Message")
            bind(m, OAI_MESSAGE, "Message")
