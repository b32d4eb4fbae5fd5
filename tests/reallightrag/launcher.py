"""Run the real LightRAG API server offline: a tokenizer that needs no download.

LightRAG counts tokens with tiktoken, which fetches its encoding files from the
internet on first use (`lightrag-server` fails on a machine without network, or
in CI where only package indexes are reachable). LightRAG's own Tokenizer
abstraction (lightrag.utils.Tokenizer: encode/decode, thread-safe, deep-copyable)
lets another tokenizer in; this launcher installs one before the server starts and
then runs LightRAG's own `main()` unchanged, with the same arguments and
environment as `lightrag-server`:

    <lightrag venv>/bin/python tests/reallightrag/launcher.py [lightrag-server options]

The tokenizer splits text into words, single punctuation marks and runs of
whitespace (about one token per word, close to tiktoken's count for English) and
maps each piece, 7 UTF-8 bytes at a time, to an integer that holds its bytes, so
decode(encode(s)) == s with no vocabulary and no state. Only chunk boundaries and
token budgets differ from tiktoken's; the server, its storage, its pipeline and
its model calls are LightRAG's own.
"""

from __future__ import annotations

import re
import sys

PIECE = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
PART_BYTES = 7  # bytes per id: 0x01 marker + 7 bytes fits in 64 bits


class OfflineEncoding:
    """encode/decode without a vocabulary (stateless, so safe from any thread)."""

    def encode(self, text: str, **_: object) -> list[int]:
        ids: list[int] = []
        for piece in PIECE.findall(text):
            raw = piece.encode("utf-8")
            for i in range(0, len(raw), PART_BYTES):
                ids.append(int.from_bytes(b"\x01" + raw[i : i + PART_BYTES], "big"))
        return ids

    def decode(self, tokens: list[int]) -> str:
        out = bytearray()
        for t in tokens:
            b = int(t).to_bytes(8, "big").lstrip(b"\x00")
            out += b[1:]  # drop the 0x01 marker
        return out.decode("utf-8", errors="replace")

    def __deepcopy__(self, memo: dict[int, object]) -> OfflineEncoding:
        return self


def install() -> None:
    """Make every TiktokenTokenizer LightRAG creates use OfflineEncoding."""
    import lightrag.lightrag as core
    import lightrag.utils as utils

    class OfflineTokenizer(utils.Tokenizer):
        def __init__(self, model_name: str = "offline-words") -> None:
            super().__init__(model_name="offline-words", tokenizer=OfflineEncoding())

        def __deepcopy__(self, memo: dict[int, object]) -> OfflineTokenizer:
            return self

    utils.TiktokenTokenizer = OfflineTokenizer  # type: ignore[misc]
    core.TiktokenTokenizer = OfflineTokenizer  # type: ignore[attr-defined]


def main() -> None:
    install()
    from lightrag.api.lightrag_server import main as server_main

    sys.argv[0] = "lightrag-server"
    server_main()


if __name__ == "__main__":
    main()
