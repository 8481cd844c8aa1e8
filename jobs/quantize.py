"""`clover quantize DIR --out DIR4`: 4-bit GPTQ (W4A16, compressed-tensors) of an exported model, for vLLM."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None, prog: str = "clover quantize") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "GPTQ 4-bit weights (W4A16) of a `clover export` directory through llm-compressor "
        "(pip install 'clover[quantize]'); writes quantize_report.json with size and perplexity before/after."))
    parser.add_argument("source", metavar="DIR", help="a `clover export` directory")
    parser.add_argument("--out", required=True, metavar="DIR4")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--calibration-length", type=int, default=512)
    parser.add_argument("--eval-samples", type=int, default=32)
    args = parser.parse_args(argv)
    from training.inference.quantize import quantize

    try:
        report = quantize(args.source, args.out, args.calibration_samples, args.calibration_length, args.eval_samples)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
