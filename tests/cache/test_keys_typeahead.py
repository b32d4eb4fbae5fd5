"""Cache keys and typeahead matching."""

from __future__ import annotations

import pytest

from agent.cache.keys import cacheable, request_key
from agent.cache.typeahead import Probe, TypeaheadIndex, probe_for, split_fim
from tests.editor import editor_window

BASE = {"model": "m", "prompt": "def f(", "suffix": ")", "options": {"temperature": 0.2, "num_predict": 64}}


def key(**changes: object) -> str:
    body = dict(BASE)
    body.update(changes)
    return request_key("generate", "m", body)


def test_key_covers_what_changes_the_answer() -> None:
    k = key()
    assert key(prompt="def g(") != k
    assert key(suffix="]") != k
    assert key(system="be terse") != k
    assert key(raw=True) != k
    assert key(format="json") != k
    assert key(images=["aGk="]) != k
    assert key(options={"temperature": 0.3, "num_predict": 64}) != k
    assert key(options={"temperature": 0.2, "num_predict": 64, "stop": ["\n"]}) != k
    assert key(options={"temperature": 0.2, "num_predict": 64, "seed": 1}) != k
    assert request_key("generate", "other-model", BASE) != k
    assert request_key("v1completion", "m", BASE) != k


def test_key_ignores_runner_options_and_transport() -> None:
    k = key()
    assert key(stream=False) == k and key(stream=True) == k
    assert key(keep_alive="5m") == k
    assert key(options={"temperature": 0.2, "num_predict": 64, "num_thread": 4, "num_gpu": 1, "num_batch": 8}) == k


@pytest.mark.parametrize(
    ("api", "body", "mode", "expected"),
    [
        ("generate", {"prompt": "x"}, "never", True),
        ("generate", {"prompt": ""}, "always", False),
        ("chat", {"messages": []}, "deterministic", False),
        ("chat", {"messages": [], "options": {"temperature": 0}}, "deterministic", True),
        ("chat", {"messages": [], "options": {"seed": 3}}, "deterministic", True),
        ("chat", {"messages": []}, "always", True),
        ("chat", {"messages": [], "options": {"temperature": 0}}, "never", False),
        ("v1chat", {"messages": [], "temperature": 0}, "deterministic", True),
        ("v1chat", {"messages": [], "temperature": 0.7}, "deterministic", False),
    ],
)
def test_cacheable(api: str, body: dict, mode: str, expected: bool) -> None:
    assert cacheable(api, body, mode) is expected


@pytest.mark.parametrize(
    ("prompt", "prefix"),
    [
        ("<|fim_prefix|>def f(<|fim_suffix|>)\n<|fim_middle|>", "def f("),
        ("<|repo_name|>r\n<|file_sep|>a.py\n<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>", "x = "),
        ("<fim_prefix>def f(<fim_suffix>)<fim_middle>", "def f("),
        ("<PRE> def f( <SUF>) <MID>", "def f("),
        ("<｜fim▁begin｜>def f(<｜fim▁hole｜>)<｜fim▁end｜>", "def f("),
        ("[SUFFIX])[PREFIX]def f(", "def f("),
    ],
)
def test_fim_formats(prompt: str, prefix: str) -> None:
    got = split_fim(prompt)
    assert got is not None and got[0] == prefix


def test_typeahead_extends_only_matching_typing() -> None:
    idx = TypeaheadIndex()
    idx.add(Probe("f", "def add(a, b):\n    "), "return a + b\n", "k")
    assert idx.lookup(Probe("f", "def add(a, b):\n    re"))[0] == "turn a + b\n"  # type: ignore[index]
    assert idx.lookup(Probe("f", "def add(a, b):\n    return a + b"))[0] == "\n"  # type: ignore[index]
    assert idx.lookup(Probe("f", "def add(a, b):\n    rx")) is None  # typed something else
    assert idx.lookup(Probe("f", "def add(a, b):\n    return a + b\n")) is None  # accepted all of it
    assert idx.lookup(Probe("g", "def add(a, b):\n    re")) is None  # another family (suffix, model...)
    assert idx.lookup(Probe("f", "def sub(a, b):\n    re")) is None  # same length class, other prompt


def test_typeahead_inside_fim_markers() -> None:
    idx = TypeaheadIndex()
    body = {
        "model": "m",
        "raw": True,
        "prompt": "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(1)<|fim_middle|>",
    }
    p = probe_for("generate", "m", body, {k: v for k, v in body.items() if k != "model"})
    assert p is not None
    idx.add(p, "return a + b", "k")
    typed = dict(body, prompt="<|fim_prefix|>def add(a, b):\n    retu<|fim_suffix|>\n\nprint(1)<|fim_middle|>")
    p2 = probe_for("generate", "m", typed, {k: v for k, v in typed.items() if k != "model"})
    assert p2 is not None and idx.lookup(p2)[0] == "rn a + b"  # type: ignore[index]
    other_suffix = dict(body, prompt="<|fim_prefix|>def add(a, b):\n    retu<|fim_suffix|>\n\nprint(2)<|fim_middle|>")
    p3 = probe_for("generate", "m", other_suffix, {k: v for k, v in other_suffix.items() if k != "model"})
    assert p3 is not None and idx.lookup(p3) is None


# An editor's window: the last WINDOW characters before the cursor, cut at a line start.
WINDOW = 300


def window(text: str) -> str:
    return editor_window(text, WINDOW)


FILE = "".join(f"def f{i}(a, b):\n    return a * {i} + b\n\n" for i in range(40))


def test_typeahead_survives_a_moving_window() -> None:
    idx = TypeaheadIndex()
    before = FILE + "def add(a, b):\n    "
    completion = "return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    idx.add(Probe("f", window(before)), completion, "k")
    moved = 0
    for typed in range(1, len(completion) - 1):
        now = window(before + completion[:typed])
        moved += not now.startswith(window(before))
        got = idx.lookup(Probe("f", now))
        assert got is not None and got[0] == completion[typed:], typed
    assert moved > len(completion) // 2  # the window's start really moved for most of them
    assert idx.window_hits == moved


def test_moving_window_never_serves_another_context() -> None:
    idx = TypeaheadIndex()
    before = FILE + "def add(a, b):\n    "
    idx.add(Probe("f", window(before)), "return a + b\n", "k")
    # Same last lines, but a different line in the part both windows share: another context.
    changed = window(before + "re").replace("return a * 39 + b", "return a * 38 + b")
    assert idx.lookup(Probe("f", changed)) is None
    # A cut that is not at a line start of the old window is not a window the editor sends.
    assert idx.lookup(Probe("f", window(before + "re")[5:])) is None
    # More context at the top than we answered for: not the same prompt either.
    assert idx.lookup(Probe("f", "# header\n" + window(before) + "re")) is None
    # Typed something the completion does not start with.
    assert idx.lookup(Probe("f", window(before + "rx"))) is None


def test_the_accepted_suggestion_is_found_with_nothing_typed_after_a_trim() -> None:
    # A speculative prefetch is stored for prompt + completion; the editor then sends that
    # prompt trimmed at the top: it is the same position, nothing typed yet.
    idx = TypeaheadIndex()
    prompt = window(FILE + "def add(a, b):\n    ")
    completion = "return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    idx.add(Probe("f", prompt + completion), "\ndef sub(a, b):\n", "k2")
    trimmed = window(FILE + "def add(a, b):\n    " + completion)
    assert trimmed != prompt + completion
    got = idx.lookup(Probe("f", trimmed))
    assert got is not None and got[0] == "\ndef sub(a, b):\n"


def test_window_extends() -> None:
    from agent.cache.typeahead import window_extends

    old = window(FILE + "def add(a, b):\n    ")
    assert window_extends(old + "ret", old)
    assert window_extends(window(FILE + "def add(a, b):\n    return a + b\n    # more"), old)
    assert not window_extends(old[:-3], old)  # deleted: not typed further
    assert not window_extends(old.replace("a * 39", "a * 38") + "r", old)


def test_window_typed_is_the_text_after_the_old_position() -> None:
    from agent.cache.typeahead import window_typed

    old = window(FILE + "def add(a, b):\n    ")
    moved = window(FILE + "def add(a, b):\n    return a + b\n    # more")
    assert moved[: len(old)] != old  # the window's start really moved
    assert window_typed(moved, old) == "return a + b\n    # more"
    assert window_typed(old + "ret", old) == "ret"
    assert window_typed(old[:-3], old) is None


def test_same_position() -> None:
    from agent.cache.typeahead import same_position

    old = FILE[-400:]
    old = old[old.find("\n") + 1 :]
    trimmed = old[old.find("\n") + 1 :]
    assert same_position(old, old) and same_position(trimmed, old)
    assert not same_position(trimmed[3:], old)  # not cut at a line start
    assert not same_position(trimmed + "x", old)  # typed: not the same position
