#!/usr/bin/env python3
"""Sizes and costs of autoencoder configs, for choosing the next autoencoder (docs/model-card.md,
"Autoencoder ceiling study (CPU)"): latent shape, numbers per frame, the DiT's tokens for a patch
size, and the decoder's convolution work per frame (what the CPU engine pays for every frame).

    python3 training/ae_study.py MODEL.safetensors [...]          # the configs of exported models
    python3 training/ae_study.py --ae-channels 16,32,64 --latent-channels 8 --patch 4

Prints one JSON line per config. The decoder is the spec's (strand_ref.model.Decoder): conv_in,
per stage a nearest 2x upsample and a 3x3 conv, conv_out; every conv is 3x3, so its work is
2 x 9 x c_in x c_out x h x w FLOPs at its output size (biases and SiLU left out).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))


def ae_costs(width: int, height: int, ae_channels: Sequence[int], latent_channels: int,
             patch: int, frames_per_block: int = 3) -> Dict[str, object]:
    """Derived sizes of one config (the same rules as strand_ref.config / core model.cpp)."""
    ch: List[int] = [int(c) for c in ae_channels]
    stages = len(ch) - 1
    factor = 1 << stages
    if width % factor or height % factor:
        raise ValueError(f"{width}x{height} is not divisible by the autoencoder's {factor}x")
    h, w = height // factor, width // factor
    if h % patch or w % patch:
        raise ValueError(f"latent {w}x{h} is not divisible by patch {patch}")
    convs = [(latent_channels, ch[-1], h, w)]  # decoder.conv_in at the latent size
    ch_h, ch_w = h, w
    for s in range(stages):
        ch_h, ch_w = ch_h * 2, ch_w * 2
        convs.append((ch[stages - s], ch[stages - s - 1], ch_h, ch_w))
    convs.append((ch[0], 3, ch_h, ch_w))  # decoder.conv_out at full size
    flops = sum(2 * 9 * cin * cout * hh * ww for cin, cout, hh, ww in convs)
    params = sum(9 * cin * cout + cout for cin, cout, _, _ in convs)
    tokens = (h // patch) * (w // patch)
    return {
        "ae_channels": ch, "latent_channels": latent_channels, "downsampling": factor,
        "latent": [latent_channels, h, w], "latent_numbers": latent_channels * h * w,
        "compression": round(3 * width * height / (latent_channels * h * w), 2),
        "patch": patch, "patch_dim": latent_channels * patch * patch,
        "tokens_per_frame": tokens, "tokens_per_block": tokens * frames_per_block,
        "decoder_gflop_per_frame": round(flops / 1e9, 3), "decoder_params": params,
    }


def model_costs(path: str) -> Dict[str, object]:
    from strand_ref.config import StrandConfig
    from strand_ref.export import CONFIG_KEY, read_tensors

    raw = json.loads(read_tensors(path)[1][CONFIG_KEY])
    raw["text"].pop("encoder_file", None)
    c = StrandConfig.from_dict(raw)
    return {"model": path, **ae_costs(c.width, c.height, c.ae_channels, c.latent_channels,
                                      c.patch, c.frames_per_block)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--ae-channels", default="16,32,64,128")
    p.add_argument("--latent-channels", type=int, default=8)
    p.add_argument("--patch", type=int, default=2)
    args = p.parse_args(argv)
    if args.models:
        for path in args.models:
            print(json.dumps(model_costs(path)))
    else:
        print(json.dumps(ae_costs(args.width, args.height,
                                  [int(c) for c in args.ae_channels.split(",")],
                                  args.latent_channels, args.patch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
