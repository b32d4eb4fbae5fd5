"""Files only their user can read: the data dir, the cache, the logs and the state
hold prompts, and prompts contain proprietary code.

POSIX: directories 0700, files 0600 (set explicitly: umask decides otherwise, and
SQLite gives its -wal/-shm files the mode of the database file). Windows: the
per-user profile directories (AppData) are private by their inherited ACL; we verify
that no ACE grants read access to a broad group (Everyone, Authenticated Users, Users,
Guests, Anonymous) and, if one does, stop inheriting and remove those grants.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
# Well-known SIDs of groups broader than the user (language-independent, unlike names).
BROAD_SIDS = {
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-32-545": "Users",
    "S-1-5-32-546": "Guests",
    "S-1-5-7": "Anonymous Logon",
}
# Access-mask bits that let a holder read a file or list a directory.
FILE_READ_DATA = 0x0001
GENERIC_READ = 0x80000000
GENERIC_ALL = 0x10000000
MAXIMUM_ALLOWED = 0x02000000
READ_BITS = FILE_READ_DATA | GENERIC_READ | GENERIC_ALL | MAXIMUM_ALLOWED
ACCESS_ALLOWED_ACE_TYPE = 0
ACCESS_DENIED_ACE_TYPE = 1
ICACLS_TIMEOUT = 30.0  # seconds


@dataclass(frozen=True)
class Ace:
    sid: str
    mask: int
    allow: bool


AceReader = Callable[[Path], list[Ace]]
Runner = Callable[[Sequence[str]], int]


def private_dir(path: Path) -> Path:
    """Create `path` (with parents) if needed and make it the user's alone."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if sys.platform == "win32":
        WindowsAcl().ensure_private(path)
    else:
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by umask and ignored for existing dirs
    return path


def private_tree(path: Path) -> None:
    """Make `path` and everything below it the user's alone (files written by older
    versions, or by libraries that do not ask for a mode)."""
    private_dir(path)
    if sys.platform == "win32":
        return  # the directory's ACL is inherited by what it holds
    for root, dirs, files in os.walk(path):
        for d in dirs:
            _chmod(Path(root) / d, DIR_MODE)
        for f in files:
            _chmod(Path(root) / f, FILE_MODE)


def private_file(path: Path) -> None:
    if sys.platform != "win32":
        _chmod(path, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if not path.is_symlink():
            os.chmod(path, mode)
    except OSError as exc:  # vanished meanwhile (SQLite's -shm), or not ours
        log.debug("cannot restrict %s: %s", path, exc)


# ---------------------------------------------------------------- Windows


class WindowsAcl:
    """Checks (and repairs) the DACL of a directory. The two system calls are injectable:
    tests on any platform give fakes; on Windows the defaults call advapi32 and icacls."""

    def __init__(self, read_aces: AceReader | None = None, run: Runner | None = None) -> None:
        self.read_aces = read_aces or read_aces_win32
        self.run = run or run_icacls

    def broad_grants(self, path: Path) -> list[str]:
        """SIDs of broad groups that an ACE allows to read `path`."""
        out = []
        for ace in self.read_aces(path):
            if ace.allow and ace.sid in BROAD_SIDS and ace.mask & READ_BITS and ace.sid not in out:
                out.append(ace.sid)
        return out

    def ensure_private(self, path: Path) -> list[str]:
        """Remove read grants to broad groups; return the SIDs that had them."""
        try:
            broad = self.broad_grants(path)
        except OSError as exc:
            log.warning("cannot read the access list of %s (%s); leaving it as it is", path, exc)
            return []
        if not broad:
            return []
        names = ", ".join(BROAD_SIDS[s] for s in broad)
        log.warning("%s was readable by %s: making it private to this user", path, names)
        # Inherited grants cannot be removed: turn them into explicit ones first.
        self.run(["icacls", str(path), "/inheritance:d", "/Q"])
        self.run(["icacls", str(path), "/remove:g", *[f"*{sid}" for sid in broad], "/T", "/C", "/Q"])
        left = self.broad_grants(path)
        if left:
            log.warning("%s is still readable by %s", path, ", ".join(BROAD_SIDS[s] for s in left))
        return broad


def run_icacls(argv: Sequence[str]) -> int:
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=ICACLS_TIMEOUT, creationflags=flags).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", argv[0], exc)
        return -1


def read_aces_win32(path: Path) -> list[Ace]:  # pragma: no cover - Windows only
    """The ACEs of a file's DACL, via GetNamedSecurityInfoW (ctypes)."""
    import ctypes
    from ctypes import wintypes

    windll = getattr(ctypes, "WinDLL")  # noqa: B009
    last_error = getattr(ctypes, "get_last_error")  # noqa: B009 - both absent off Windows, which mypy would flag
    advapi32 = windll("advapi32", use_last_error=True)
    kernel32 = windll("kernel32", use_last_error=True)
    se_file_object, dacl_security_information = 1, 4

    class AclHeader(ctypes.Structure):
        _fields_ = [
            ("AclRevision", ctypes.c_ubyte),
            ("Sbz1", ctypes.c_ubyte),
            ("AclSize", wintypes.WORD),
            ("AceCount", wintypes.WORD),
            ("Sbz2", wintypes.WORD),
        ]

    class AceHeader(ctypes.Structure):
        _fields_ = [("AceType", ctypes.c_ubyte), ("AceFlags", ctypes.c_ubyte), ("AceSize", wintypes.WORD)]

    dacl = ctypes.c_void_p()
    descriptor = ctypes.c_void_p()
    rc = advapi32.GetNamedSecurityInfoW(
        ctypes.c_wchar_p(str(path)),
        se_file_object,
        dacl_security_information,
        None,
        None,
        ctypes.byref(dacl),
        None,
        ctypes.byref(descriptor),
    )
    if rc != 0:
        raise OSError(rc, f"GetNamedSecurityInfoW failed for {path}")
    try:
        if not dacl.value:
            return [Ace("S-1-1-0", GENERIC_ALL, True)]  # a NULL DACL grants everyone everything
        out = []
        for i in range(AclHeader.from_address(dacl.value).AceCount):
            ace = ctypes.c_void_p()
            if not advapi32.GetAce(dacl, i, ctypes.byref(ace)) or not ace.value:
                raise OSError(last_error(), "GetAce failed")
            header = AceHeader.from_address(ace.value)
            if header.AceType not in (ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE):
                continue  # object and callback ACEs: not used on files
            mask = ctypes.c_uint32.from_address(ace.value + 4).value  # after the 4-byte header
            text = ctypes.c_wchar_p()
            if not advapi32.ConvertSidToStringSidW(ctypes.c_void_p(ace.value + 8), ctypes.byref(text)):
                raise OSError(last_error(), "ConvertSidToStringSidW failed")
            try:
                out.append(Ace(text.value or "", mask, header.AceType == ACCESS_ALLOWED_ACE_TYPE))
            finally:
                kernel32.LocalFree(text)
        return out
    finally:
        kernel32.LocalFree(descriptor)
