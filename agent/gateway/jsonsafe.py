"""Client JSON, parsed so that no body can crash a handler later on.

Python's json module accepts what later code cannot digest: nesting deep enough that
`json.dumps` (cache keys, forwarding) hits the recursion limit, and lone UTF-16
surrogates (`"\\ud83d"`, which editors produce when cutting text mid-emoji) that cannot
be encoded as UTF-8 for a cache key or for Ollama. Integers past Python's 4,300-digit
conversion limit raise a ValueError that is not a JSONDecodeError. Here each becomes
either a clear BadRequest or, for surrogates, what Ollama itself does: Go's JSON
decoder replaces each lone surrogate with U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.errors import BadRequest

MAX_JSON_DEPTH = 64  # nesting levels; real Ollama/OpenAI bodies use fewer than 10
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _clean_str(s: str) -> str:
    if s.isascii():
        return s
    return _LONE_SURROGATE.sub(REPLACEMENT, s)


def _leaf(v: Any, stack: list[tuple[Any, Any, int]], depth: int) -> Any:
    """v itself, cleaned; a container comes back empty and is filled from the stack."""
    if isinstance(v, dict):
        new: Any = {}
    elif isinstance(v, list):
        new = []
    elif isinstance(v, str):
        return _clean_str(v)
    else:
        return v
    stack.append((v, new, depth + 1))
    return new


def _clean(doc: Any) -> Any:
    """Depth-checked copy with lone surrogates replaced (iterative: no recursion to blow)."""
    if isinstance(doc, str):
        return _clean_str(doc)
    if not isinstance(doc, (dict, list)):
        return doc
    root: Any = {} if isinstance(doc, dict) else []
    stack: list[tuple[Any, Any, int]] = [(doc, root, 1)]
    while stack:
        src, dst, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(src, dict):
            for k, v in src.items():
                dst[_clean_str(k)] = _leaf(v, stack, depth)
        else:
            dst.extend(_leaf(v, stack, depth) for v in src)
    return root


def loads(raw: bytes | str) -> Any:
    """json.loads for bodies from clients: BadRequest for what cannot be served."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc.msg}") from None
    except UnicodeDecodeError:
        raise BadRequest("invalid JSON in request body: not UTF-8 text") from None
    except RecursionError:
        raise BadRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer longer than 4,300 digits
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    return _clean(doc)
