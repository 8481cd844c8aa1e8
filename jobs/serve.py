"""`clover serve RUN_OR_DIR [--port 8000]`: OpenAI-compatible chat and text completions (local judging, candidates)."""

from __future__ import annotations

import contextlib
import os
import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.inference.serve import ServeOptions

COMMAND = Command(
    description="Serve a run or an exported model at http://HOST:PORT/v1/chat/completions and /v1/completions "
                "(OpenAI-compatible, with vLLM's guided_choice); concurrent requests decode together in KV-cached "
                "batches. For production serving use `vllm serve` on a `clover export` directory.",
    config=ServeOptions,
    options=(
        Option("model", help="a run directory or a `clover export` directory", kwargs={"metavar": "RUN_OR_DIR"}),
        Option("--host", "host"),
        Option("--port", "port"),
        Option("--device", help="cpu or cuda; without it, cuda when available"),
        Option("--api-key", "api_key", "require 'Authorization: Bearer KEY'; without it (or api_key in the config), "
                                       "$CLOVER_API_KEY; no key when that is empty too"),
        Option("--max-body-bytes", "max_body_bytes"),
        Option("--read-timeout", "read_timeout"),
        Option("--max-connections", "max_connections"),
        Option("--batch-window-ms", "batch_window_ms"),
        Option("--max-batch", "max_batch_rows"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover serve") -> int:
    args, options = COMMAND.parse(argv, prog)
    if args.api_key is None:  # an explicit --api-key "" serves without a key
        options.api_key = options.api_key or os.environ.get("CLOVER_API_KEY", "")
    from training.inference.generate import ChatModel
    from training.inference.serve import make_server

    server = make_server(ChatModel(args.model, args.device), options.host, options.port, options)
    print(f"serving {args.model} at http://{options.host}:{server.server_port}/v1 (chat/completions, completions)"
          f"{' with a bearer token' if options.api_key else ''}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
