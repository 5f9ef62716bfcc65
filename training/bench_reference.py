#!/usr/bin/env python3
"""Times the PyTorch reference generating blocks of a model on the CPU (or a GPU).

Prints JSON: per-block milliseconds by stage (denoise = all denoising DiT passes, clean = the
clean pass with the memory update, decode = autoencoder decode of the block's frames) and their
medians, for the "C++ engine vs PyTorch" comparison. The reference uses the chunked (WY) delta
rule by default, the fastest honest PyTorch formulation; --delta sequential times the spec's
token-by-token loop instead.

    python training/bench_reference.py --blocks 8 --threads 2 [--model PATH] [--warmup 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strand_ref.export import load_model  # noqa: E402
from strand_ref.session import Session  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "tests", "data", "strand-tiny-random.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the PyTorch reference.")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--blocks", type=int, default=8, help="timed blocks")
    parser.add_argument("--warmup", type=int, default=1, help="untimed blocks first")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--delta", choices=("chunked", "sequential"), default="chunked")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prompt", default="a red balloon over snowy mountains at dusk")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, config, vocab = load_model(args.model, device=device)
    session = Session(model, vocab, seed=args.seed, delta_impl=args.delta)
    t0 = time.perf_counter()
    session.set_prompt(args.prompt)
    text_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(args.warmup):
        session.generate_next_block()
    blocks = []
    for _ in range(args.blocks):
        result = session.generate_next_block()
        blocks.append({"block": result.block_index,
                       **{k: round(v, 3) for k, v in result.timings.items()}})
    stages = ("denoise_ms", "clean_ms", "decode_ms", "total_ms")
    report = {
        "engine": "pytorch-reference",
        "torch": torch.__version__,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "model": config.name,
        "tokens_per_block": config.tokens_per_block,
        "frames_per_block": config.frames_per_block,
        "denoise_passes": len(config.sigmas),
        "delta_impl": args.delta,
        "text_ms": round(text_ms, 3),
        "blocks": blocks,
        "median": {s: round(statistics.median(b[s] for b in blocks), 3) for s in stages}
        if blocks else {},
    }
    if blocks:
        per_frame = report["median"]["total_ms"] / config.frames_per_block
        report["frames_per_second"] = round(1000.0 / per_frame, 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
