"""Programs from Debian packages that some tests drive for real (redis-server,
Xvfb, chromium, makensis, debootstrap ...).

`bash scripts/test.sh` installs them when it runs as root (or with passwordless
sudo) and then sets POWERGATE_TEST_SYSTEM=required: a missing program is a
failure. Without root it names the missing packages once and sets
POWERGATE_TEST_SYSTEM=optional: the tests that need them are skipped with the
reason. Plain pytest (no variable) skips too.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "bash scripts/test.sh installs it when run as root"


def system_required() -> bool:
    return os.environ.get("POWERGATE_TEST_SYSTEM") == "required"


def missing(what: str) -> None:
    """Skip (or, when the test command installed everything, fail) for lack of `what`."""
    if system_required():
        pytest.fail(f"{what} is missing although scripts/test.sh installed the Debian packages")
    pytest.skip(what)


def need(tool: str, package: str) -> str:
    """The path of `tool` from Debian package `package`."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not installed (Debian package {package}; {INSTALL_HINT})")
        raise AssertionError("unreachable")  # pytest.skip/fail raised
    return path
