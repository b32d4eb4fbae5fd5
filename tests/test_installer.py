"""The Windows installer builds here (NSIS on Linux) and holds a complete, offline
wheel set for Python 3.11 and 3.12 on win_amd64."""

from __future__ import annotations

import subprocess

import pytest

from tests import system
from tests.conftest import ROOT

NSI = (ROOT / "installer" / "powergate.nsi").read_text()


def test_installer_script_keeps_its_promises() -> None:
    assert "RequestExecutionLevel user" in NSI  # no admin rights
    assert 'InstallDir "$LOCALAPPDATA\\Programs\\${APP}"' in NSI
    assert "pythonw.exe" in NSI and "-m agent run" in NSI  # no console window
    assert "-m agent autostart enable" in NSI  # the same Run value as the CLI writes
    assert 'DeleteRegValue HKCU "${RUN_KEY}" "${APP}"' in NSI
    assert "MB_YESNO" in NSI and "$LOCALAPPDATA\\${APP}" in NSI  # asks before deleting data
    assert "stop_agent.py" in NSI and "--no-index --find-links" in NSI  # offline from the bundle


@pytest.mark.slow
def test_build_and_inspect_the_installer() -> None:
    for tool, package in (("makensis", "nsis"), ("7z", "p7zip-full"), ("file", "file")):
        system.need(tool, package)
    build = subprocess.run(["bash", "installer/build.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    check = subprocess.run(["bash", "installer/check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    assert "wheel set complete for Python 3.11" in check.stdout and "wheel set complete for Python 3.12" in check.stdout
    exe = sorted((ROOT / "dist").glob("powergate-setup-*.exe"))[-1]
    assert exe.read_bytes()[:2] == b"MZ"
