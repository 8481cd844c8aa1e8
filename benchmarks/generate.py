"""Generation tokens/s with the KV cache against the uncached reference (every step re-runs the sequence),
then `clover serve`'s batching: concurrent single-prompt requests decoded in shared batches against
one request at a time (what the server did before: one lock per decode).

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
import threading
import time

import torch

from training.inference.generate import generate_batch
from training.inference.serve import Batcher
from training.trainer.model import Transformer, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clover-125m")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=128,
                        help="the longest prompt; the others spread down to half of it (gpu_check uses 64-128)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the serving table (0: skip)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--serve-tokens", type=int, default=64, help="max_tokens per serving request")
    args = parser.parse_args()
    model = Transformer(model_config(args.model))
    model.init_weights(0)
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = [args.prompt_tokens - (args.prompt_tokens // 2) * i // max(1, args.prompts - 1) for i in range(args.prompts)]
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
    if args.clients:
        serving(model, prompts, args)


def serving(model: Transformer, prompts: list[list[int]], args: argparse.Namespace) -> None:
    """Clients each send `requests` one-prompt requests (temperature 0.7, own seed) through the server's Batcher."""
    def decode(contexts, max_tokens, temperature, top_p, n, seeds):
        return generate_batch(model, contexts, max_tokens, temperature, top_p, n, (), seeds)

    print(f"\n{args.clients} concurrent clients x {args.requests} requests, one prompt each, "
          f"max_tokens {args.serve_tokens}, temperature 0.7, KV cache\n")
    print("| server | seconds | requests | largest batch | tokens/s | mean latency (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, max_rows in (("one request at a time (a lock per decode)", 1), ("batched (20 ms window)", 64)):
        batcher = Batcher(decode, model.cfg.max_seq_len, 0.02, max_rows)
        seconds, latencies = clients_run(batcher, prompts, args)
        base = base or seconds
        print(f"| {name} | {seconds:.2f} | {len(latencies)} | {max(batcher.batches)} | "
              f"{len(latencies) * args.serve_tokens / seconds:.1f} | {sum(latencies) / len(latencies):.2f} | "
              f"{base / seconds:.1f}x |")


def clients_run(batcher: Batcher, prompts: list[list[int]], args: argparse.Namespace) -> tuple[float, list[float]]:
    """Wall seconds for all clients, and each request's latency."""
    latencies: list[float] = []

    def client(index: int) -> None:
        for k in range(args.requests):
            begin = time.perf_counter()
            batcher.submit([prompts[(index + k) % len(prompts)]], args.serve_tokens, 0.7, 1.0, 1, index * 100 + k)
            latencies.append(time.perf_counter() - begin)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


if __name__ == "__main__":
    main()
