#!/usr/bin/env python3
"""Writes a random-weight Strand model at the 1.3B reference shape (docs/model.md, "The reference
shape") in the engine's safetensors layout, for GPU benchmarks. Throughput does not depend on weight
values, so random weights serve for speed; the file is GENERATED where it is used (2.6 GB in bf16:
too big to carry to a device machine).

Shape (Wan 2.1 T2V 1.3B): d 1536, 30 layers, 12 heads x 128, MLP 8960, patch 2x2, latent 16
channels at 60 x 104 (832 x 480 video through 3 autoencoder stages), 3 latent frames per block
(4680 tokens), text 512 tokens of width 4096 projected to 1536, 4 denoising passes + 1 clean pass.
Parts that the DiT benchmark does not measure are as small as the engine allows: the text encoder
has 0 BERT layers (embeddings only: text is encoded once per prompt, not per pass) and the
autoencoder has 4 channels per stage (decode is timed apart from the DiT passes).

Layer kinds: --layers mixed (ARL2's public command: the first 22 hybrid, the last 8 softmax_kv
with a full cache), hybrid (all 30 hybrid: fixed memory), softmax_kv (all 30: the baseline), or a
comma-separated list of 30 kinds.

The names and shapes are those of core/src/model.cpp's expected_tensors(); the engine checks every
one when it loads the file, so a layout slip is an error there, not a silent difference.
Initialisation follows training/strand_ref/init.py's rules (not its numpy stream, which would take
minutes at this size): std 0.02 linear weights, zero biases, unit norm weights, modulation
N(0, 1/d), mem_A_log = log U(1, 16), mem_dt_bias for dt log-uniform in [1e-3, 1e-1], He-normal
convolutions. Tensors are drawn on the GPU when there is one and streamed to the file one by one.

    python3 tools/gpu/make_large_model.py --out /tmp/m.safetensors --layers mixed [--scale tiny]
        [--dtype bf16|f32] [--device cuda|cpu] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
from strand_ref.init import default_vocab  # noqa: E402

LAYERS = 30
SIGMAS = [1.0, 0.9375, 0.8333, 0.625]

# The 1.3B reference shape, and a tiny one with the same structure (for dry runs on a CPU).
SCALES = {
    "ref": {"width": 832, "height": 480, "fps": 16, "latent_channels": 16,
            "ae_channels": [4, 4, 4, 4], "dim": 1536, "heads": 12, "mlp_dim": 8960, "patch": 2,
            "frames_per_block": 3, "freq_dim": 256, "text_dim": 4096, "text_heads": 32,
            "text_max_positions": 512, "layers": LAYERS, "softmax_layers": 8},
    "tiny": {"width": 96, "height": 64, "fps": 16, "latent_channels": 4,
             "ae_channels": [4, 4, 4, 4], "dim": 64, "heads": 2, "mlp_dim": 128, "patch": 2,
             "frames_per_block": 3, "freq_dim": 32, "text_dim": 48, "text_heads": 4,
             "text_max_positions": 40, "layers": 4, "softmax_layers": 1},
}


def layer_kinds(spec: str, count: int, softmax_layers: int) -> list[str]:
    if spec == "mixed":  # the first (count - softmax_layers) hybrid, then softmax_kv
        return ["hybrid"] * (count - softmax_layers) + ["softmax_kv"] * softmax_layers
    if spec in ("hybrid", "softmax_kv"):
        return [spec] * count
    kinds = spec.split(",")
    if len(kinds) != count or any(k not in ("hybrid", "softmax_kv") for k in kinds):
        raise SystemExit(f"--layers: expected mixed, hybrid, softmax_kv or {count} kinds")
    return kinds


def make_config(scale: dict, kinds: list[str], name: str) -> dict:
    return {
        "format": "strand-model", "version": 1, "name": name,
        "video": {"width": scale["width"], "height": scale["height"], "fps": scale["fps"]},
        "latent_channels": scale["latent_channels"],
        "autoencoder": {"channels": scale["ae_channels"]},
        "dit": {"dim": scale["dim"], "heads": scale["heads"], "mlp_dim": scale["mlp_dim"],
                "patch": scale["patch"], "frames_per_block": scale["frames_per_block"],
                "freq_dim": scale["freq_dim"], "rope_theta": 10000.0, "layers": kinds,
                "softmax_kv_window": 0, "softmax_kv_sink": 0},
        # 0 BERT layers: the engine allows it (core/src/model.cpp); heads/intermediate unused.
        "text": {"dim": scale["text_dim"], "layers": 0, "heads": scale["text_heads"],
                 "intermediate": 4 * scale["text_dim"],
                 "max_positions": scale["text_max_positions"], "lowercase": True},
        "sampler": {"sigmas": SIGMAS},
    }


def expected_tensors(cfg: dict, vocab_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Port of core/src/model.cpp expected_tensors() (names and shapes)."""
    t: list[tuple[str, tuple[int, ...]]] = []
    text, dit, ae = cfg["text"], cfg["dit"], cfg["autoencoder"]["channels"]
    d, dt, h = dit["dim"], text["dim"], dit["heads"]
    cpp = cfg["latent_channels"] * dit["patch"] ** 2

    def lin(name, out, inp, bias=True):
        t.append((name + ".weight", (out, inp)))
        if bias:
            t.append((name + ".bias", (out,)))

    def conv(name, out, inp):
        t.append((name + ".weight", (out, inp, 3, 3)))
        t.append((name + ".bias", (out,)))

    te = "text_encoder."
    t.append((te + "embeddings.word_embeddings.weight", (vocab_size, dt)))
    t.append((te + "embeddings.position_embeddings.weight", (text["max_positions"], dt)))
    t.append((te + "embeddings.token_type_embeddings.weight", (2, dt)))
    t.append((te + "embeddings.LayerNorm.weight", (dt,)))
    t.append((te + "embeddings.LayerNorm.bias", (dt,)))
    for i in range(text["layers"]):
        p = f"{te}encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            lin(p + n, dt, dt)
        t += [(p + "attention.output.LayerNorm.weight", (dt,)),
              (p + "attention.output.LayerNorm.bias", (dt,))]
        lin(p + "intermediate.dense", text["intermediate"], dt)
        lin(p + "output.dense", dt, text["intermediate"])
        t += [(p + "output.LayerNorm.weight", (dt,)), (p + "output.LayerNorm.bias", (dt,))]
    lin("text_embedding.0", d, dt)
    lin("text_embedding.2", d, d)
    lin("patch_embedding", d, cpp)
    lin("time_embedding.0", d, dit["freq_dim"])
    lin("time_embedding.2", d, d)
    lin("time_projection.1", 6 * d, d)
    for i, kind in enumerate(dit["layers"]):
        p = f"blocks.{i}."
        t += [(p + "modulation", (6, d)), (p + "norm3.weight", (d,)), (p + "norm3.bias", (d,))]
        for m in ("self_attn", "cross_attn"):
            a = p + m + "."
            for n in "qkvo":
                lin(a + n, d, d)
            t += [(a + "norm_q.weight", (d,)), (a + "norm_k.weight", (d,))]
        if kind == "hybrid":
            a = p + "self_attn."
            for n in ("mem_q", "mem_k", "mem_v"):
                lin(a + n, d, d, bias=False)
            for n in ("mem_a", "mem_b", "mem_g"):
                lin(a + n, h, d, bias=False)
            t += [(a + "mem_dt_bias", (h,)), (a + "mem_A_log", (h,))]
        lin(p + "ffn.0", dit["mlp_dim"], d)
        lin(p + "ffn.2", d, dit["mlp_dim"])
    t.append(("head.modulation", (2, d)))
    lin("head.head", cpp, d)
    s = len(ae) - 1
    conv("encoder.conv_in", ae[0], 3)
    for i in range(s):
        conv(f"encoder.down.{i}.conv", ae[i + 1], ae[i])
    conv("encoder.conv_out", cfg["latent_channels"], ae[s])
    conv("decoder.conv_in", ae[s], cfg["latent_channels"])
    for i in range(s):
        conv(f"decoder.up.{i}.conv", ae[s - i - 1], ae[s - i])
    conv("decoder.conv_out", 3, ae[0])
    return t


def draw(name: str, shape: tuple[int, ...], d: int, gen: torch.Generator,
         device: torch.device) -> torch.Tensor:
    """One tensor by strand_ref/init.py's rules (non-strong), as float32 on `device`."""
    leaf = name.rsplit(".", 1)[-1]
    parent = name.split(".")[-2] if "." in name else ""

    def normal(std):
        return torch.randn(shape, generator=gen, device=device) * std

    def uniform(lo, hi):
        return torch.rand(shape, generator=gen, device=device) * (hi - lo) + lo

    if leaf == "modulation":
        return normal(1.0 / math.sqrt(d))
    if leaf == "mem_A_log":
        return torch.log(uniform(1.0, 16.0))
    if leaf == "mem_dt_bias":
        dt = torch.exp(uniform(math.log(1e-3), math.log(1e-1)))
        return dt + torch.log(-torch.expm1(-dt))  # inverse softplus
    if leaf == "bias":
        return torch.zeros(shape, device=device)
    if "LayerNorm" in name or "norm" in parent:
        return torch.ones(shape, device=device)
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return normal(math.sqrt((1.0 if name.endswith("conv_out.weight") else 2.0) / fan_in))
    if name == "patch_embedding.weight":
        return normal(1.0 / math.sqrt(shape[1]))
    return normal(0.02)


def write_model(path: str, cfg: dict, vocab: list[str], dtype: str, seed: int,
                device: torch.device) -> dict:
    tensors = sorted(expected_tensors(cfg, len(vocab)))
    itemsize = 2 if dtype == "BF16" else 4
    header: dict = {"__metadata__": {"strand.config": json.dumps(cfg),
                                     "strand.vocab": "\n".join(vocab)}}
    offset = 0
    for name, shape in tensors:
        size = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    d = cfg["dit"]["dim"]
    params = 0
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in tensors:
            value = draw(name, shape, d, gen, device)
            params += value.numel()
            if dtype == "BF16":
                raw = value.to(torch.bfloat16).view(torch.int16).cpu().numpy()
            else:
                raw = value.to(torch.float32).cpu().numpy()
            f.write(raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path)
    return {"path": path, "bytes": os.path.getsize(path), "parameters": params,
            "tensors": len(tensors)}


def write_text_encoder_like(model_path: str, out: str, seed: int, device: torch.device) -> dict:
    """A random-weight text-encoder file with the shapes and vocabulary that `model_path`'s config
    names (text.encoder_file), so that a trained model whose real encoder is not at hand can still
    be timed: the encoder runs once per prompt and its weights do not change the DiT's speed."""
    with open(model_path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n).decode("utf-8"))["__metadata__"]
    text = json.loads(meta["strand.config"])["text"]
    vocab = meta["strand.vocab"].split("\n")
    cfg = {"text": dict(text, intermediate=text.get("intermediate", 4 * text["dim"]))}
    tensors = [(name, shape) for name, shape in expected_tensors(
        {"text": cfg["text"], "dit": {"dim": 2, "heads": 1, "patch": 1, "mlp_dim": 1,
                                      "freq_dim": 2, "layers": []},
         "latent_channels": 1, "autoencoder": {"channels": [1, 1]}}, len(vocab))
        if name.startswith("text_encoder.")]
    text_config = {"format": "strand-text-encoder", "version": 1,
                   "name": "random stand-in for " + os.path.basename(model_path),
                   **{k: text[k] for k in ("dim", "layers", "heads", "intermediate",
                                           "max_positions", "lowercase")}}
    header: dict = {"__metadata__": {"strand.text_config": json.dumps(text_config),
                                     "strand.vocab": "\n".join(vocab)}}
    offset = 0
    for name, shape in sorted(tensors):
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((-len(blob)) % 8)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with open(out + ".part", "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in sorted(tensors):
            value = draw(name, shape, text["dim"], gen, device)
            f.write(value.to(torch.bfloat16).view(torch.int16).cpu().numpy().astype("<i2").tobytes())
    os.replace(out + ".part", out)
    return {"path": out, "bytes": os.path.getsize(out), "tensors": len(tensors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-encoder-like", metavar="MODEL",
                        help="instead: write to --out a random text encoder for MODEL's config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", default="mixed",
                        help="mixed | hybrid | softmax_kv | comma-separated kinds")
    parser.add_argument("--scale", choices=sorted(SCALES), default="ref")
    parser.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", help="model name (default: strand-1.3b-shape-<layers>)")
    args = parser.parse_args()
    if args.text_encoder_like:
        print(json.dumps(write_text_encoder_like(args.text_encoder_like, args.out, args.seed,
                                                 torch.device(args.device))))
        return
    scale = SCALES[args.scale]
    kinds = layer_kinds(args.layers, scale["layers"], scale["softmax_layers"])
    tag = args.layers if "," not in args.layers else "custom"
    name = args.name or f"strand-{'1.3b-shape' if args.scale == 'ref' else 'tiny-shape'}-{tag}"
    cfg = make_config(scale, kinds, name)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    start = time.perf_counter()
    info = write_model(args.out, cfg, default_vocab(), "BF16" if args.dtype == "bf16" else "F32",
                       args.seed, torch.device(args.device))
    info.update({"seconds": round(time.perf_counter() - start, 2), "name": name,
                 "hybrid_layers": kinds.count("hybrid"),
                 "softmax_kv_layers": kinds.count("softmax_kv"), "dtype": args.dtype})
    print(json.dumps(info))


if __name__ == "__main__":
    main()
