"""`clover export RUN --out DIR`: a Hugging Face LlamaForCausalLM directory that transformers and vLLM load."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None, prog: str = "clover export") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Export a run's newest checkpoint as a Hugging Face Llama directory: config.json, safetensors, the "
        "tokenizer with its special tokens and chat template, generation_config.json."))
    parser.add_argument("run", metavar="RUN", help="a `clover train` or `clover dpo` run directory")
    parser.add_argument("--out", required=True, help="directory to write")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the one the run was trained with)")
    args = parser.parse_args(argv)
    from training.inference.export import export

    out = export(args.run, args.out, args.dtype, args.tokenizer)
    print(f"export: {args.run} -> {out} ({args.dtype}); serve with: vllm serve {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
