"""The benchmark harness runs and writes its results (a smoke check, not a timing test:
figures are reported, never asserted, because shared machines make timings noisy)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_quick_overhead_and_memory() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "overhead", "memory", "-n", "30"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "miss p50" in r.stdout and "memory hit p50" in r.stdout
    res = json.loads((ROOT / "bench" / "results" / "quick.json").read_text())
    assert res["overhead"]["miss"]["powergate"]["n"] == 30
    assert set(res["memory"]) >= {"direct", "powergate", "speedup_p50"}
