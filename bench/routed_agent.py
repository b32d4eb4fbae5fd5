"""python -m bench.routed_agent --config FILE --port P --strategy NAME: powergate with a
baseline routing strategy, for the multi-host comparison only.

`score` is powergate's own routing; `round-robin` and `weight` (the highest-weight
reachable host, powergate's behaviour before several hosts were scored) are the
baselines it is measured against. They are not user settings, so they are chosen
here, in the bench, and not in the config file.
"""

from __future__ import annotations

import argparse
import signal
import threading

from agent.config import load_settings
from agent.server import AgentServer
from agent.upstreams.pool import STRATEGIES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--profile", default="balanced")
    ap.add_argument("--strategy", choices=STRATEGIES, default="score")
    args = ap.parse_args()
    settings = load_settings(config_file=args.config, data_dir=args.data_dir, port=args.port, profile=args.profile)
    server = AgentServer(settings)
    server.start()
    assert server.runtime is not None
    server.runtime.upstreams.strategy = args.strategy  # read on the loop thread per request; set before any
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
