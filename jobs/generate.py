"""`clover generate RUN_OR_DIR --prompt TEXT`: print a completion from a run or an exported directory."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None, prog: str = "clover generate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Sample a completion (printed alone) from a run's newest checkpoint or a `clover export` directory. "
        "The prompt goes through the chat template unless --raw."))
    parser.add_argument("model", metavar="RUN_OR_DIR")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 is greedy decoding")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="continue the prompt text as is (a base model)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    print(complete(args.model, args.prompt, args.max_new_tokens, args.temperature, args.top_p, args.seed, args.raw,
                   args.device))
    return 0


def complete(model_path: str, prompt: str, max_new_tokens: int, temperature: float, top_p: float = 1.0,
             seed: int = 0, raw: bool = False, device: str | None = None) -> str:
    from training.inference.generate import ChatModel

    chat = ChatModel(model_path, device)
    context = [chat.ids["bos"], *chat.processor.encode(prompt)] if raw else \
        chat.context([{"role": "user", "content": prompt}])
    [(tokens, _)] = chat.sample(context, max_new_tokens, temperature, top_p, seed=seed)
    return chat.processor.decode(tokens)


if __name__ == "__main__":
    sys.exit(main())
