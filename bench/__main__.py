"""python -m bench [--quick] [--only NAME ...]: powergate against direct Ollama, side by side."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench import harness, overhead

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small samples, for a smoke check (< 1 minute)")
    ap.add_argument("--only", nargs="*", default=None, help="scenarios to run (default: all)")
    ap.add_argument("-n", type=int, default=None, help="requests per contender per scenario")
    args = ap.parse_args()
    n = args.n or (100 if args.quick else 400)
    want = set(args.only or ["overhead"])
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "n": n,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with harness.sim_ollama() as sim, harness.powergate(sim.url) as pg:
        if "overhead" in want:
            out["overhead"] = overhead.run(sim.url, pg.url, n)
            o = out["overhead"]
            print(
                f"miss  p50 direct {o['miss']['direct']['p50_ms']:.3f} ms  powergate {o['miss']['powergate']['p50_ms']:.3f} ms  added {o['miss']['added_p50_ms']:+.3f} ms"
            )
            print(
                f"miss  p99 direct {o['miss']['direct']['p99_ms']:.3f} ms  powergate {o['miss']['powergate']['p99_ms']:.3f} ms  added {o['miss']['added_p99_ms']:+.3f} ms"
            )
            print(
                f"ttfb  p50 direct {o['ttfb']['direct']['p50_ms']:.3f} ms  powergate {o['ttfb']['powergate']['p50_ms']:.3f} ms  added {o['ttfb']['added_p50_ms']:+.3f} ms"
            )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
