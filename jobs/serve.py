"""`clover serve RUN_OR_DIR [--port 8000]`: an OpenAI-compatible chat-completions endpoint (for local judging)."""

from __future__ import annotations

import argparse
import contextlib
import sys


def main(argv: list[str] | None = None, prog: str = "clover serve") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Serve a run or an exported model at http://HOST:PORT/v1/chat/completions (OpenAI-compatible, with "
        "vLLM's guided_choice). For production serving use `vllm serve` on a `clover export` directory."))
    parser.add_argument("model", metavar="RUN_OR_DIR")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    from training.serve import ChatModel, make_server

    server = make_server(ChatModel(args.model, args.device), args.host, args.port)
    print(f"serving {args.model} at http://{args.host}:{server.server_port}/v1/chat/completions", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
