"""`clover export RUN --out DIR`: a Hugging Face LlamaForCausalLM directory that transformers and vLLM load."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.inference.export import ExportConfig

COMMAND = Command(
    description="Export a run's newest checkpoint as a Hugging Face Llama directory: config.json, safetensors, the "
                "tokenizer with its special tokens and chat template, generation_config.json.",
    config=ExportConfig,
    options=(
        Option("run", help="a `clover train` or `clover dpo` run directory", kwargs={"metavar": "RUN"}),
        Option("--out", help="directory to write", kwargs={"required": True}),
        Option("--dtype", "dtype", kwargs={"choices": ("bfloat16", "float16", "float32")}),
        Option("--tokenizer", help="tokenizer directory; without it, the one the run was trained with"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover export") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    from training.inference.export import export

    out = export(args.run, args.out, cfg.dtype, args.tokenizer)
    print(f"export: {args.run} -> {out} ({cfg.dtype}); serve with: vllm serve {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
