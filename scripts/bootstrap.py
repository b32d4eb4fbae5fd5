#!/usr/bin/env python3
"""This checkout's own virtualenv, made with the standard library alone.

`python3 scripts/bootstrap.py [--extras test,tray-gtk]` creates `.venv` in the
checkout (or $POWERGATE_VENV), installs powergate into it (editable, with the
extras asked for) and prints the venv's Python. It works where a system Python
refuses `pip install` (PEP 668: Debian 12, Ubuntu 23.04+) and where pip and
ensurepip are missing altogether (stock Debian has no python3-pip and no
python3-venv): the venv is then made without pip, and pip's own wheel is fetched
from PyPI, checked against the SHA-256 PyPI publishes, and installs itself.
Windows: `py scripts\\bootstrap.py`.

Nothing is installed again while pyproject.toml, the extras and the Python stay
the same (a stamp file in the venv), so starting through it costs nothing.
Standard library only, Python 3.10+: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = "powergate-install.json"
PYPI_PIP = "https://pypi.org/pypi/pip/json"
DOWNLOAD_TIMEOUT = 60.0  # seconds
MIN_PYTHON = (3, 10)


class BootstrapError(Exception):
    """A step that needs the user: the message says what to do."""


def venv_dir() -> Path:
    env = os.environ.get("POWERGATE_VENV")
    return Path(env).resolve() if env else ROOT / ".venv"


def venv_python(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def _quiet(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


def _has_pip(python: Path) -> bool:
    return _quiet([str(python), "-m", "pip", "--version"]).returncode == 0


def _fetch_pip_wheel(dest: Path) -> Path:
    """pip's newest universal wheel from PyPI, verified against PyPI's SHA-256."""
    try:
        with urllib.request.urlopen(PYPI_PIP, timeout=DOWNLOAD_TIMEOUT) as r:
            release = json.load(r)
        wheel = next(u for u in release["urls"] if u["filename"].endswith("-py3-none-any.whl"))
        url = urllib.parse.urljoin(PYPI_PIP, wheel["url"])  # mirrors answer with relative links
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
            data = r.read()
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise BootstrapError(
            f"this Python has no pip and no ensurepip, and pip could not be fetched from PyPI ({exc}); "
            "check the network, or install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)"
        ) from exc
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        raise BootstrapError(f"pip wheel from PyPI does not match its published SHA-256: {wheel['url']}")
    path = dest / wheel["filename"]
    path.write_bytes(data)
    return path


def _add_pip(python: Path) -> None:
    # ensurepip when this Python ships it (python.org, Windows, Homebrew, python3-venv);
    # otherwise pip's wheel runs itself: a wheel is a zip, and pip/ inside it is runnable.
    if _quiet([str(python), "-m", "ensurepip", "--default-pip"]).returncode == 0 and _has_pip(python):
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _fetch_pip_wheel(Path(tmp))
        r = _quiet([str(python), f"{wheel}/pip", "install", "-q", "--no-index", str(wheel)])
        if r.returncode != 0 or not _has_pip(python):
            raise BootstrapError(f"pip did not install itself into {python.parent.parent}: {r.stderr.strip()[-500:]}")


def ensure_venv(env_dir: Path) -> Path:
    python = venv_python(env_dir)
    if not python.exists():
        # without pip: that part of venv needs ensurepip, which Debian moves to python3-venv
        venv.EnvBuilder(with_pip=False, symlinks=sys.platform != "win32").create(env_dir)
    if not _has_pip(python):
        _add_pip(python)
    return python


def _wanted(extras: list[str]) -> dict[str, object]:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return {"pyproject": digest, "extras": sorted(set(extras)), "root": str(ROOT)}


def _installed(env_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((env_dir / STAMP).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def ensure_installed(extras: list[str], env_dir: Path | None = None) -> Path:
    """The venv's Python, with powergate (editable) and `extras` installed in it."""
    if sys.version_info < MIN_PYTHON:
        raise BootstrapError(f"powergate needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    env_dir = env_dir or venv_dir()
    python = ensure_venv(env_dir)
    want = _wanted(extras)
    have = _installed(env_dir)
    have_extras = have.get("extras") if isinstance(have.get("extras"), list) else []
    if (
        have.get("pyproject") == want["pyproject"]
        and have.get("root") == want["root"]
        and set(want["extras"]) <= set(have_extras)  # type: ignore[arg-type]
    ):
        return python
    spec = f".[{','.join(want['extras'])}]" if want["extras"] else "."  # type: ignore[arg-type]
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", spec],
        cwd=ROOT,
    )
    if r.returncode != 0:
        raise BootstrapError(f"installing powergate{spec[1:]} into {env_dir} failed (pip's output is above)")
    (env_dir / STAMP).write_text(json.dumps(want))
    return python


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="make this checkout's venv and install powergate into it")
    p.add_argument("--extras", default="", help="comma-separated extras, e.g. test,tray-gtk")
    args = p.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    try:
        print(ensure_installed(extras))
    except BootstrapError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
