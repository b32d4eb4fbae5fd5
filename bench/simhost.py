"""python -m bench.simhost --port P [--token-delay S] [--load-time S] [--preload MODEL]...:
one simulated Ollama host of the multi-host scenario, in its own process.

The bench's hosts keep a loaded model whatever runner options a client sends
(Ollama would reload on a different num_ctx): powergate sends its profile's
options, LiteLLM sends none, and neither should pay a reload the other does not.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from tests.simollama import SimOllama, SimServer
from tests.simollama.app import RUNNER_OPTIONS, Loaded, LogEntry, SimModel

NO_RUNNER = tuple(None for _ in RUNNER_OPTIONS)  # the runner every request gets here


class BenchSim(SimOllama):
    """Runner options are ignored (see the module's docstring)."""

    async def _acquire(self, model: SimModel, options: dict[str, Any], keep_alive: float, entry: LogEntry) -> Loaded:
        return await super()._acquire(model, {}, keep_alive, entry)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    ap.add_argument("--prompt-delay", type=float, default=0.0, help="seconds of prompt evaluation")
    ap.add_argument("--load-time", type=float, default=0.0, help="seconds a model load takes")
    ap.add_argument("--preload", action="append", default=[], help="a model already in memory")
    ap.add_argument("--parallel", type=int, default=1, help="OLLAMA_NUM_PARALLEL")
    args = ap.parse_args()
    sim = BenchSim(
        load_time_s=args.load_time,
        token_delay_s=args.token_delay,
        prompt_delay_s=args.prompt_delay,
        num_parallel=args.parallel,
        one_slot=True,  # one runner at a time fits, as on a laptop or a single GPU
    )
    for name in args.preload:
        sim.loaded[name] = Loaded(sim.models[name], NO_RUNNER, math.inf)
    with SimServer(sim, port=args.port):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
