"""The README's two set-up commands on a really fresh Debian 12, as an ordinary user.

A minimal Debian root is built with debootstrap (Debian's own tool, from the
mirror this machine's apt uses), with only what a stock Debian install has for
Python: `python3` and `ca-certificates`, no pip, no python3-venv. The checkout is
copied in and a non-root user runs exactly the README's commands there, in a
chroot: `python3 scripts/powergate.py run` must answer `GET /`, and
`bash scripts/test.sh` must pass (without root it names the missing Debian
packages in one line and skips the tests that need them).

The finished root is cached as a tarball in /var/cache/powergate-ci (outside the
checkout, kept between CI runs), so only the first run pays for debootstrap.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import system
from tests.conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.slow

CACHE_DIR = Path(os.environ.get("POWERGATE_CI_CACHE", "/var/cache/powergate-ci"))
SUITE = "bookworm"
INCLUDE = "python3,ca-certificates"  # a stock Debian's Python: no pip, no venv
USER = "newcomer"
STOCK_HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
DEBOOTSTRAP_TIMEOUT = 1200  # seconds; the first build downloads ~60 MB of packages
SETUP_TIMEOUT = 600  # seconds for the run command's first start (venv + pip install)
TEST_TIMEOUT = 1200  # seconds for the test command inside
# The test command inside runs the fast tests only (see README, Tests): the slow ones
# either need root and Debian programs (skipped there anyway) or are benchmarks, and CI's
# 30-minute budget already runs them all once on the host.
INSIDE_PYTEST_ADDOPTS = "-m 'not slow'"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def fresh_root_tarball() -> Path:
    arch = platform.machine()
    tarball = CACHE_DIR / f"debian-{SUITE}-{arch}-python3-rootfs.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    build = CACHE_DIR / f"build-{os.getpid()}"
    try:
        r = subprocess.run(
            [
                system.need("debootstrap", "debootstrap"),
                "--variant=minbase",
                f"--include={INCLUDE}",
                SUITE,
                str(build),
                debian_mirror(),
            ],
            capture_output=True,
            text=True,
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        shutil.rmtree(build / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tmp = tarball.with_suffix(".partial")
        with tarfile.open(tmp, "w") as tar:
            tar.add(build, arcname=".")
        tmp.replace(tarball)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return tarball


def sh(root: Path, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A command inside the chroot, as root (set-up only)."""
    return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, timeout=timeout)


def as_user(root: Path, script: str, env: dict[str, str]) -> list[str]:
    """argv that runs `script` inside the chroot as the ordinary user, with a clean environment."""
    base = {"HOME": f"/home/{USER}", "USER": USER, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    base.update(env)
    return [
        "chroot",
        f"--userspec={USER}:{USER}",
        str(root),
        "env",
        "-i",
        *(f"{k}={v}" for k, v in base.items()),
        "bash",
        "-c",
        f"cd /home/{USER}/powergate && exec {script}",  # exec: a signal reaches the command itself
    ]


def proxy_trust(root: Path) -> dict[str, str]:
    """This machine reaches PyPI through a TLS-inspecting proxy: the fresh root must trust its CA.

    Stock Debian's bundle does not have it; the host's extra CAs are added the way an
    administrator would (update-ca-certificates), and pip is pointed at the system bundle
    (pip's own certifi copy would not know them). Without such CAs nothing is changed."""
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not extra:
        return {}
    dest = root / "usr" / "local" / "share" / "ca-certificates"
    dest.mkdir(parents=True, exist_ok=True)
    for crt in extra:
        shutil.copy(crt, dest / crt.name)
    r = sh(root, "update-ca-certificates")
    assert r.returncode == 0, r.stderr
    return {"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"}


def collect_earlier_garbage() -> None:
    """Collect what earlier tests left behind before this test allocates a lot (the tar
    extraction triggers a full collection): an unclosed socket of another test is reported
    here, as that test's leak, instead of failing this one."""
    found: list[str] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: found.append(f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})")
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
    for leak in found:
        print(f"left behind by an earlier test: {leak}")


@pytest.fixture
def fresh_root(tmp_path: Path) -> Iterator[Path]:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("building and entering a fresh Debian root (debootstrap, chroot, mount) needs root")
    collect_earlier_garbage()
    tarball = fresh_root_tarball()
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="fully_trusted")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # debootstrap writes no /etc/hosts; Debian's installer does, with these lines
    (root / "etc" / "hosts").write_text(STOCK_HOSTS)
    mounts = [root / "proc", root / "dev", root / "dev" / "pts"]
    subprocess.run(["mount", "-t", "proc", "proc", str(mounts[0])], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(mounts[1])], check=True)
    subprocess.run(["mount", "--bind", "/dev/pts", str(mounts[2])], check=True)
    try:
        r = sh(root, "useradd", "--create-home", "--shell", "/bin/bash", USER)
        assert r.returncode == 0, r.stderr
        home = root / "home" / USER / "powergate"
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, (f.decode() for f in files)):
            src = ROOT / name
            if src.is_file():
                (home / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, home / name)
        uid_gid = sh(root, "id", "-u", USER).stdout.strip(), sh(root, "id", "-g", USER).stdout.strip()
        for dirpath, _, filenames in os.walk(root / "home" / USER):
            os.chown(dirpath, int(uid_gid[0]), int(uid_gid[1]))
            for f in filenames:
                os.chown(os.path.join(dirpath, f), int(uid_gid[0]), int(uid_gid[1]))
        yield root
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def readme_commands() -> tuple[str, str]:
    """The two commands of the README's set-up block, as written there."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Set-up: two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for ln in block.strip().splitlines()]
    assert len(lines) == 2, lines
    return lines[0], lines[1]


def test_readme_commands_on_a_fresh_debian(fresh_root: Path) -> None:
    run_cmd, test_cmd = readme_commands()
    assert run_cmd == "python3 scripts/powergate.py run" and test_cmd == "bash scripts/test.sh"
    trust = proxy_trust(fresh_root)
    # a stock Debian Python: PEP 668 marker, no pip, no ensurepip
    probe = sh(
        fresh_root,
        "python3",
        "-c",
        "import sysconfig,os,importlib.util as u; print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'),'EXTERNALLY-MANAGED')), u.find_spec('pip') is None, u.find_spec('ensurepip') is None)",
    )
    assert probe.stdout.split() == ["True", "True", "True"], probe.stdout + probe.stderr

    port = free_port()
    run_log = fresh_root.parent / "run.log"
    with open(run_log, "w") as log:
        agent = subprocess.Popen(
            as_user(fresh_root, run_cmd, {"POWERGATE_PORT": str(port), **trust}),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:

            def answers() -> bool:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False)
                    return r.status_code == 200 and r.text.startswith("Ollama is running")
                except httpx.HTTPError:
                    return False

            up = wait_for(lambda: answers() or agent.poll() is not None, timeout=SETUP_TIMEOUT, interval=1)
            assert up and agent.poll() is None, run_log.read_text()[-3000:]
        finally:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    started = run_log.read_text()
    assert "Traceback" not in started and "Warning" not in started, started[-3000:]
    # one line per fact: the unreachable Ollama is said once
    assert len([ln for ln in started.splitlines() if "not reachable" in ln]) == 1, started[-3000:]

    t0 = time.monotonic()
    r = subprocess.run(
        as_user(fresh_root, test_cmd, {"PYTEST_ADDOPTS": INSIDE_PYTEST_ADDOPTS, "POWERGATE_PYTEST_MARK": "not real and not slow", **trust}),
        capture_output=True,
        text=True,
        timeout=TEST_TIMEOUT,
    )
    out = r.stdout + r.stderr
    (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    (ROOT / "tests" / "artifacts" / "fresh-machine-test.log").write_text(f"{time.monotonic() - t0:.0f} s\n{out}")
    assert r.returncode == 0, out[-5000:]
    # one line names what is missing and how to install it, then the run goes on
    notes = [ln for ln in out.splitlines() if ln.startswith("test.sh: missing Debian packages:")]
    assert len(notes) == 1 and "sudo apt-get install -y" in notes[0] and "redis-server" in notes[0], out[:2000]
    assert " passed" in out and " failed" not in out and "error" not in out.splitlines()[-1]
