"""Size and perplexity of an exported model before and after 4-bit GPTQ (W4A16) with `clover quantize`.

    clover demo --out clover-demo && python benchmarks/quantize.py --export clover-demo/export
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import tempfile

import torch

from training.inference.quantize import quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="a `clover export` directory")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--eval-data", default="", help="token shards (default: the run's held-out shards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = quantize(args.export, os.path.join(tmp, "q4"), args.calibration_samples, 512, args.eval_samples,
                          args.eval_data)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    print(f"{device}; {args.export}; {report['scheme']}; calibration {report['calibration_samples']} sample pairs, "
          f"perplexity on {report['eval_samples']} held-out sequences ({report['eval_tokens']} tokens) of "
          f"{report['eval_data']} {report['held_out_shards'] or ''}\n")
    print("| safetensors before | after | ratio | perplexity before | after | change |")
    print("|---|---|---|---|---|---|")
    change = report["perplexity_after"] / report["perplexity_before"] - 1
    print(f"| {report['bytes_before']:,} B | {report['bytes_after']:,} B | {report['size_ratio']:.3f} | "
          f"{report['perplexity_before']:.3f} | {report['perplexity_after']:.3f} | {change:+.2%} |")


if __name__ == "__main__":
    main()
