"""python -m tests.simollama [--port 11434] [--realistic]: a simulated Ollama for demos."""

from __future__ import annotations

import argparse
import time

from tests.simollama import SimOllama, SimServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=11434)
    ap.add_argument("--realistic", action="store_true", help="~30 ms per token, ~2 s model load")
    ap.add_argument("--token-delay", type=float, default=None, help="seconds per generated token")
    ap.add_argument("--tokens", type=int, default=None, help="tokens per answer unless num_predict says")
    args = ap.parse_args()
    sim = SimOllama.realistic() if args.realistic else SimOllama()
    if args.token_delay is not None:
        sim.token_delay_s = args.token_delay
    if args.tokens is not None:
        sim.default_tokens = args.tokens
    with SimServer(sim, port=args.port) as srv:
        print(f"simulated Ollama on {srv.url}; Ctrl+C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
