#!/usr/bin/env python3
"""The autoencoder's ceiling: world frames sent through a model's encoder and decoder, scored by
training/evaluate.py's per-frame measurements. Whatever the DiT learns, a model cannot score more
than its decoder can draw, so a run that changes the decoder (train.py --stage dec) is checked
here before it is shipped.

    python3 training/ae_ceiling.py MODEL.safetensors [MODEL2 ...] [--frames 96] [--seed 5]
                                   [--text-encoder FILE]

Prints, per model, the fraction of frames whose round trip is measured as the frame's own
time / biome / weather / subject / colour (colour over frames with a subject), per subject, and
the mean absolute pixel error (0-255). Frames: 3/4 with a subject (birds, balloons, cars in turn),
random other axes, scattered camera positions and clocks (world seed 12).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evaluate as ev  # noqa: E402
from world import World  # noqa: E402
from world_vocab import AXES  # noqa: E402

SCORED = ("time", "biome", "weather", "subject", "colour")


def test_frames(count: int, seed: int, width: int = 256, height: int = 144):
    rng = random.Random(seed)
    attrs: List[Dict[str, object]] = []
    for k in range(count):
        a: Dict[str, object] = {ax: rng.choice(v) for ax, v in AXES.items() if ax != "camera"}
        if k < count * 3 // 4:
            a["subject"] = ("birds", "balloons", "cars")[k % 3]
        a.update(camera_x=rng.uniform(-3000, 3000), frame=rng.randrange(0, 10000))
        attrs.append(a)
    return World(12, width, height).render_attributes(attrs), attrs


def score(frames: torch.Tensor, attrs: Sequence[Dict[str, object]],
          roundtrip: Callable[[torch.Tensor], torch.Tensor]) -> Dict[str, object]:
    rec = roundtrip(frames)
    measured = ev.measure(rec)
    out: Dict[str, object] = {}
    for axis in SCORED:
        idx = [i for i in range(len(attrs)) if axis != "colour" or attrs[i]["subject"] != "none"]
        out[axis] = sum(measured[axis][i] == attrs[i][axis] for i in idx) / len(idx)
    out["per_subject"] = {
        s: sum(measured["subject"][i] == s for i, a in enumerate(attrs) if a["subject"] == s)
        / max(1, sum(a["subject"] == s for a in attrs)) for s in AXES["subject"]}
    out["mean_abs_error"] = float((rec.float() - frames.float()).abs().mean())
    return out


def model_roundtrip(path: str, text_encoder: Optional[str] = None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    from train_lib import modelio

    model, _ = modelio.load(path, text_encoder)
    model.eval()

    def run(frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            outs = []
            for i in range(0, frames.shape[0], 32):
                z = model.encoder(frames[i:i + 32].float() / 127.5 - 1.0)
                outs.append(((model.decoder(z).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
        return torch.cat(outs)

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--text-encoder",
                   help="the converted text encoder to load the models with, where the file they "
                        "name is not next to them nor in .deps/models (e.g. the GPU machine's "
                        "pruned copy; the round trip does not use it)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    frames, attrs = test_frames(args.frames, args.seed)
    for path in args.models:
        result = score(frames, attrs, model_roundtrip(path, args.text_encoder))
        print(json.dumps({"model": path, **{k: (round(v, 3) if isinstance(v, float) else v)
                                            for k, v in result.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
