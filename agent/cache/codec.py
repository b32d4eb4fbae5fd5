"""How entries are stored outside the process: compressed, and optionally encrypted
with a key kept in a user-only file (prompts contain proprietary code)."""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from agent.errors import CacheError
from agent.platform.private import private_dir

COMPRESS_LEVEL = 3  # fast; answers are small text
# The largest entry a tier stores or reads back (decoded). A model answer is at most a
# few hundred KB; the bound is what keeps a hostile 200 KB value from inflating to 200 MB.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
KEY_FILE_NAME = "cache.key"


class Codec:
    def __init__(self, fernet: Fernet | None = None) -> None:
        self.fernet = fernet

    @property
    def encrypted(self) -> bool:
        return self.fernet is not None

    def pack(self, raw: bytes) -> bytes:
        data = zlib.compress(raw, COMPRESS_LEVEL)
        if self.fernet is not None:
            data = self.fernet.encrypt(data)
        return data

    def unpack(self, data: bytes, limit: int = MAX_ENTRY_BYTES) -> bytes:
        """The entry's bytes; CacheError if undecodable or larger than `limit` decoded
        (decompression stops there instead of allocating whatever the data claims)."""
        try:
            if self.fernet is not None:
                data = self.fernet.decrypt(data)
            inflater = zlib.decompressobj()
            raw = inflater.decompress(data, limit + 1)
        except (InvalidToken, zlib.error) as exc:
            raise CacheError(f"cannot decode a stored entry ({type(exc).__name__})") from exc
        if len(raw) > limit or inflater.unconsumed_tail:
            raise CacheError(f"a stored entry decodes to more than {limit} bytes")
        if not inflater.eof:
            raise CacheError("a stored entry is truncated")
        return raw


def load_or_create_key(path: Path) -> bytes:
    """The encryption key, created on first use with permissions for the user only."""
    if path.exists():
        return path.read_bytes().strip()
    private_dir(path.parent)
    key = Fernet.generate_key()
    # Create with 0600 from the start so the key is never readable by others, even briefly.
    # On Windows the file inherits the user profile's ACL, which is already user-only.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    if sys.platform != "win32":
        os.chmod(path, 0o600)
    return key


def make_codec(encrypt: bool, key_path: Path) -> Codec:
    return Codec(Fernet(load_or_create_key(key_path)) if encrypt else None)
