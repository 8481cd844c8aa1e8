"""Generation tokens/s with the KV cache against the uncached reference (every step re-runs the sequence).

    python benchmarks/generate.py --model clover-125m --prompts 4 --new-tokens 256

Random-init weights and no stop tokens, so every row produces exactly --new-tokens tokens; the prompts
have mixed lengths (left padding). Greedy, so both paths must produce the same tokens (checked).
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import time

import torch

from training.generate import generate_batch
from training.model import Transformer, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clover-125m")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=32, help="the longest prompt; the others are shorter")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model = Transformer(model_config(args.model))
    model.init_weights(0)
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = [args.prompt_tokens - (3 * args.prompt_tokens // 4) * i // max(1, args.prompts - 1) for i in range(args.prompts)]
    prompts = [torch.randint(4, model.cfg.vocab_size, (n,), generator=generator).tolist() for n in lengths]
    generate_batch(model, prompts, 4)  # warm-up
    results, seconds = {}, {}
    for use_cache in (True, False):
        started = time.perf_counter()
        results[use_cache] = generate_batch(model, prompts, args.new_tokens, use_cache=use_cache)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds[use_cache] = time.perf_counter() - started
    produced = sum(len(tokens) for rows in results[True] for tokens, _ in rows)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    print(f"{device}; {args.model} random init, {args.dtype}; {args.prompts} prompts of {lengths} tokens; "
          f"{args.new_tokens} new tokens each; greedy outputs identical: {results[True] == results[False]}\n")
    print("| path | seconds | new tokens | tokens/s | speed-up |")
    print("|---|---|---|---|---|")
    for use_cache, name in ((False, "uncached (re-runs the sequence)"), (True, "KV cache")):
        print(f"| {name} | {seconds[use_cache]:.2f} | {produced} | {produced / seconds[use_cache]:.1f} | "
              f"{seconds[False] / seconds[use_cache]:.1f}x |")


if __name__ == "__main__":
    main()
