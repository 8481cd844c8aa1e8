"""`clover generate RUN_OR_DIR --prompt TEXT`: print a completion from a run or an exported directory."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.inference.generate import GenerateConfig

COMMAND = Command(
    description="Sample a completion (printed alone) from a run's newest checkpoint or a `clover export` directory. "
                "The prompt goes through the chat template unless --raw.",
    config=GenerateConfig,
    options=(
        Option("model", help="a run directory or a `clover export` directory", kwargs={"metavar": "RUN_OR_DIR"}),
        Option("--prompt", help="the prompt text", kwargs={"required": True}),
        Option("--max-new-tokens", "max_new_tokens"),
        Option("--temperature", "temperature"),
        Option("--top-p", "top_p"),
        Option("--seed", "seed"),
        Option("--raw", "raw"),
        Option("--device", help="cpu or cuda; without it, cuda when available"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover generate") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    from training.inference.generate import complete

    print(complete(args.model, args.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed, cfg.raw,
                   args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
