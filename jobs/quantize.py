"""`clover quantize DIR --out DIR4`: 4-bit GPTQ (W4A16, compressed-tensors) of an exported model, for vLLM."""

from __future__ import annotations

import json
import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.inference.quantize import QuantizeConfig

COMMAND = Command(
    description="GPTQ 4-bit weights (W4A16) of a `clover export` directory through llm-compressor "
                "(pip install 'clover[quantize]'); writes quantize_report.json with size and perplexity before/after.",
    config=QuantizeConfig,
    options=(
        Option("source", help="a `clover export` directory", kwargs={"metavar": "DIR"}),
        Option("--out", help="directory for the quantized model", kwargs={"required": True, "metavar": "DIR4"}),
        Option("--calibration-samples", "calibration_samples"),
        Option("--calibration-length", "calibration_length"),
        Option("--eval-samples", "eval_samples"),
        Option("--eval-data", "eval_data"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover quantize") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    from training.inference.quantize import quantize

    try:
        report = quantize(args.source, args.out, cfg.calibration_samples, cfg.calibration_length, cfg.eval_samples,
                          cfg.eval_data)
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
