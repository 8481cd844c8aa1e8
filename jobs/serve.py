"""`clover serve RUN_OR_DIR [--port 8000]`: OpenAI-compatible chat and text completions (local judging, candidates)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys


def main(argv: list[str] | None = None, prog: str = "clover serve") -> int:
    from training.inference.serve import ServeOptions

    defaults = ServeOptions()
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Serve a run or an exported model at http://HOST:PORT/v1/chat/completions and /v1/completions "
        "(OpenAI-compatible, with vLLM's guided_choice); concurrent requests decode together in KV-cached batches. "
        "For production serving use `vllm serve` on a `clover export` directory."))
    parser.add_argument("model", metavar="RUN_OR_DIR")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--api-key", default=os.environ.get("CLOVER_API_KEY", ""),
                        help="require 'Authorization: Bearer KEY' (default: $CLOVER_API_KEY; none when empty)")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="larger bodies get 413")
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout,
                        help="seconds to receive a request; slower clients get 408 or are dropped")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="connections served at once; more get 503")
    parser.add_argument("--batch-window-ms", type=float, default=defaults.batch_window * 1000,
                        help="how long a batch waits for more requests")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch_rows,
                        help="sequences (prompts x n) decoded together")
    args = parser.parse_args(argv)
    from training.inference.generate import ChatModel
    from training.inference.serve import make_server

    options = ServeOptions(api_key=args.api_key, max_body_bytes=args.max_body_bytes, read_timeout=args.read_timeout,
                           max_connections=args.max_connections, batch_window=args.batch_window_ms / 1000,
                           max_batch_rows=args.max_batch)
    server = make_server(ChatModel(args.model, args.device), args.host, args.port, options)
    print(f"serving {args.model} at http://{args.host}:{server.server_port}/v1 (chat/completions, completions)"
          f"{' with a bearer token' if options.api_key else ''}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
