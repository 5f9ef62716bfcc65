#!/usr/bin/env python3
"""Builds the random-weight test model tests/data/strand-tiny-random.safetensors.

Deterministic: the same bytes on every run (numpy RandomState init, our own sorted writer).
After writing, it reloads the file and generates a few blocks to check that activations stay O(1)
(hidden states, memory states, latents, pixels) and prints the statistics as JSON.

    python training/make_default_model.py [--out PATH] [--check-blocks 12]
        [--layers hybrid,hybrid,hybrid,hybrid --name strand-tiny-all-hybrid]   # benchmark variants
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strand_ref.config import StrandConfig  # noqa: E402
from strand_ref.export import load_model, save_model  # noqa: E402
from strand_ref.init import default_vocab, init_model  # noqa: E402
from strand_ref.model import DiTTrace, StrandModel  # noqa: E402
from strand_ref.session import Session  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "strand-tiny-random.safetensors")
SEED = 20250101

CONFIG = {
    "format": "strand-model", "version": 1, "name": "strand-tiny-random",
    "video": {"width": 128, "height": 72, "fps": 12},
    "latent_channels": 4,
    "autoencoder": {"channels": [64, 32, 16, 16]},
    "dit": {"dim": 128, "heads": 4, "mlp_dim": 512, "patch": 1, "frames_per_block": 3,
            "freq_dim": 64, "rope_theta": 10000.0,
            "layers": ["hybrid", "hybrid", "hybrid", "hybrid"],
            "softmax_kv_window": 0, "softmax_kv_sink": 0},
    "text": {"dim": 64, "layers": 2, "heads": 4, "intermediate": 128, "max_positions": 64,
             "lowercase": True},
    "sampler": {"sigmas": [1.0, 0.9375, 0.8333, 0.625]},
}


def build(seed: int = SEED, layers: list[str] | None = None, name: str | None = None):
    raw = json.loads(json.dumps(CONFIG))
    if layers:
        raw["dit"]["layers"] = layers
    if name:
        raw["name"] = name
    config = StrandConfig.from_dict(raw)
    vocab = default_vocab()
    model = StrandModel(config, len(vocab))
    init_model(model, seed)
    model.eval()
    return model, config, vocab


@torch.no_grad()
def activation_report(model, vocab, blocks: int, seed: int = 7) -> dict:
    """Generates `blocks` blocks (prompt switch halfway) and collects magnitudes per block."""
    session = Session(model, vocab, seed=seed, delta_impl="chunked")
    session.set_prompt("a red balloon over snowy mountains at dusk")
    rows = []
    for n in range(blocks):
        if n == blocks // 2:
            session.set_prompt("birds flying over a green forest at dawn", recache_blocks=2)
        result = session.generate_next_block()
        state = session.snapshot()
        trace = DiTTrace()
        model.dit(result.latents, 0.9375, session._ctx_kv, state.layers, state.next_block,
                  trace=trace)
        rows.append({
            "block": n,
            "latent_std": round(float(result.latents.std()), 4),
            "latent_absmax": round(float(result.latents.abs().max()), 4),
            "frames_min": round(float(result.frames.min()), 4),
            "frames_max": round(float(result.frames.max()), 4),
            "frames_std": round(float(result.frames.std()), 4),
            "hidden_rms_max": round(max(float(h.pow(2).mean().sqrt())
                                        for h in trace.layer_outputs), 4),
            "state_fro_max": round(max(float(m.state.norm()) for m in state.layers
                                       if m.state is not None), 4),
        })
    return {"blocks": rows}


def check_report(report: dict) -> None:
    for row in report["blocks"]:
        for key, value in row.items():
            if not math.isfinite(value):
                raise SystemExit(f"non-finite {key} in block {row['block']}")
        if not (0.1 < row["latent_std"] < 10 and row["hidden_rms_max"] < 20
                and row["state_fro_max"] < 50 and -8 < row["frames_min"] and row["frames_max"] < 8):
            raise SystemExit(f"activations out of the O(1) range: {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--check-blocks", type=int, default=12)
    parser.add_argument("--layers", help="comma-separated layer kinds, for benchmark variants "
                        "(e.g. hybrid,hybrid,hybrid,hybrid); default: the bundled model's")
    parser.add_argument("--name", help="model name for a variant")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, config, vocab = build(layers=args.layers.split(",") if args.layers else None,
                                 name=args.name)
    save_model(args.out, model, config, vocab)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, "
          f"{sum(p.numel() for p in model.parameters())} parameters, vocab {len(vocab)})")
    if args.check_blocks > 0:
        loaded, _, loaded_vocab = load_model(args.out)
        report = activation_report(loaded, loaded_vocab, args.check_blocks)
        print(json.dumps(report, indent=1))
        check_report(report)


if __name__ == "__main__":
    main()
