#!/usr/bin/env python3
"""Golden tensors for the C++ engine's parity tests (float32 relative error <= 1e-4).

Writes into --out-dir (default tests/data):
  golden-model.safetensors    a small model (64x32 video, dim 64, layers hybrid/softmax_kv/hybrid,
                              softmax_kv window 1 + sink 1) with "strong" random weights so every
                              path of the network visibly affects the outputs; stored as F16;
  golden-modules.safetensors  per-module inputs/outputs: tokenizer ids, text encoder, time
                              embedding, autoencoder, noise, RoPE, delta rule, one DiT pass with
                              non-zero memory and its clean pass;
  golden-rollout.safetensors  whole-session runs: prompt switch with re-cache, snapshot/restore
                              with a hard switch.
Each file's __metadata__ records the inputs (prompts, seeds, sigmas, block indices).
Deterministic: inputs come from numpy RandomState; the model file is byte-identical on every run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strand_ref.config import StrandConfig  # noqa: E402
from strand_ref.export import load_model, save_model, write_tensors  # noqa: E402
from strand_ref.init import default_vocab, init_model  # noqa: E402
from strand_ref.model import (DiTTrace, KvBlock, StrandModel, apply_rope,  # noqa: E402
                              gated_delta_sequential, l2_normalize, rope_cos_sin)
from strand_ref.rng import noise  # noqa: E402
from strand_ref.session import Session  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(ROOT, "tests", "data")

MODEL_SEED = 424242
INPUT_SEED = 31337
NOISE_SEED = 0x0123456789ABCDEF
ROLLOUT_SEED = 1234
PROMPT_A = "a red balloon over snowy mountains at dusk"
PROMPT_B = "birds flying over a green forest at dawn"
SIGMA = 0.9375

CONFIG = {
    "format": "strand-model", "version": 1, "name": "strand-golden",
    "video": {"width": 64, "height": 32, "fps": 12},
    "latent_channels": 4,
    "autoencoder": {"channels": [16, 16, 8, 8]},
    "dit": {"dim": 64, "heads": 4, "mlp_dim": 128, "patch": 1, "frames_per_block": 3,
            "freq_dim": 32, "rope_theta": 10000.0,
            "layers": ["hybrid", "softmax_kv", "hybrid"],
            "softmax_kv_window": 1, "softmax_kv_sink": 1},
    "text": {"dim": 32, "layers": 2, "heads": 2, "intermediate": 64, "max_positions": 32,
             "lowercase": True},
    "sampler": {"sigmas": [1.0, 0.9375, 0.8333, 0.625]},
}


def build_golden_model():
    config = StrandConfig.from_dict(CONFIG)
    vocab = default_vocab()
    model = StrandModel(config, len(vocab))
    init_model(model, MODEL_SEED, strong=True)
    model.eval()
    return model, config, vocab


def f32(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=np.float32)


@torch.no_grad()
def module_goldens(model: StrandModel, config: StrandConfig, vocab):
    rng = np.random.RandomState(INPUT_SEED)
    out, meta = {}, {"prompt": PROMPT_A}
    session = Session(model, vocab)
    ids = session.tokenizer.encode(PROMPT_A)
    out["prompt.ids"] = np.asarray(ids, dtype=np.int32)
    hidden = model.encode_text(ids)
    ctx = model.text_embedding(hidden)
    out["text.hidden"], out["text.ctx"] = f32(hidden), f32(ctx)

    e, e0 = model.time_embed(SIGMA)
    out["time.e"], out["time.e0"] = f32(e), f32(e0)
    meta["time.sigma"] = repr(SIGMA)

    c, h, w = config.latent_channels, config.latent_height, config.latent_width
    dec_in = rng.standard_normal((c, h, w)).astype(np.float32)
    enc_in = rng.uniform(-1.0, 1.0, (3, config.height, config.width)).astype(np.float32)
    out["ae.decode.in"] = dec_in
    out["ae.decode.out"] = f32(model.decode(torch.from_numpy(dec_in)))
    out["ae.encode.in"] = enc_in
    out["ae.encode.out"] = f32(model.encode(torch.from_numpy(enc_in)))

    for block, step in ((0, 0), (3, 2), (70000, 1)):
        out[f"noise.b{block}.s{step}"] = noise(NOISE_SEED, block, step, config.latent_shape)
    meta["noise.seed"] = str(NOISE_SEED)

    # RoPE on its own: negative, zero and very large temporal positions.
    heads, dh = config.heads, config.head_dim
    pos = np.array([[0, 0, 0], [2, 3, 7], [-1, 1, 2], [-6, 3, 0], [1000003, 2, 5],
                    [-123457, 0, 6]], dtype=np.int64)
    rope_in = rng.standard_normal((len(pos), heads, dh)).astype(np.float32)
    cos, sin = rope_cos_sin(pos[:, 0], pos[:, 1], pos[:, 2], dh, config.rope_theta, "cpu")
    meta["rope"] = "rope.pos rows are (t, r, c) per token; theta = dit.rope_theta; in/out [N, H, dh]"
    out["rope.pos"] = pos.astype(np.int32)
    out["rope.in"] = rope_in
    out["rope.out"] = f32(apply_rope(torch.from_numpy(rope_in), cos, sin))

    # Gated delta rule on its own: 100 tokens (more than one 64-token chunk).
    tokens = 100
    s_in = (rng.standard_normal((heads, dh, dh)) * 0.1).astype(np.float32)
    k = l2_normalize(torch.from_numpy(rng.standard_normal((tokens, heads, dh)).astype(np.float32)))
    v = rng.standard_normal((tokens, heads, dh)).astype(np.float32)
    alpha = rng.uniform(0.8, 1.0, (tokens, heads)).astype(np.float32)
    beta = rng.uniform(0.0, 2.0, (tokens, heads)).astype(np.float32)
    s_out = gated_delta_sequential(torch.from_numpy(s_in), k, torch.from_numpy(v),
                                   torch.from_numpy(alpha), torch.from_numpy(beta))
    meta["delta"] = ("sequential gated delta rule: delta.s_in [H, dk, dv] -> delta.s_out over "
                     "delta.k (l2-normalised) / delta.v [T, H, dh], delta.alpha / delta.beta [T, H]")
    out.update({"delta.s_in": s_in, "delta.k": f32(k), "delta.v": v, "delta.alpha": alpha,
                "delta.beta": beta, "delta.s_out": f32(s_out)})

    # One DiT pass at block 2 with non-zero memory, then the clean pass from the same memory.
    block = 2
    T, d = config.tokens_per_block, config.dim
    x = rng.standard_normal(config.latent_shape).astype(np.float32)
    x0 = rng.standard_normal(config.latent_shape).astype(np.float32)
    memory = model.empty_memory()
    for i, kind in enumerate(config.layers):
        if kind == "hybrid":
            state = (rng.standard_normal((heads, dh, dh)) * 0.1).astype(np.float32)
            out[f"dit.state_in.{i}"] = state
            memory[i].state = torch.from_numpy(state)
        else:
            kin = rng.standard_normal((2, T, d)).astype(np.float32)
            vin = rng.standard_normal((2, T, d)).astype(np.float32)
            out[f"dit.kv_in.{i}.k"], out[f"dit.kv_in.{i}.v"] = kin, vin
            memory[i].kv_blocks = [KvBlock(b, torch.from_numpy(kin[b]), torch.from_numpy(vin[b]))
                                   for b in (0, 1)]
    meta.update({"dit.block": str(block), "dit.sigma": repr(SIGMA), "dit.kv_in_blocks": "[0, 1]",
                 "dit.ctx": "text.ctx",
                 "dit.clean": "clean pass (sigma 0, update) on dit.x0 from the same input memory"})
    ctx_kv = model.context_kv(ctx)
    out["dit.x"], out["dit.x0"] = x, x0
    trace = DiTTrace()
    v_pred = model.dit(torch.from_numpy(x), SIGMA, ctx_kv, memory, block, trace=trace)
    for i, layer_out in enumerate(trace.layer_outputs):
        out[f"dit.layer{i}.out"] = f32(layer_out)
    out["dit.v"] = f32(v_pred)

    clean_trace = DiTTrace()
    model.dit(torch.from_numpy(x0), 0.0, ctx_kv, memory, block, update=True, trace=clean_trace)
    for i, layer_out in enumerate(clean_trace.layer_outputs):
        out[f"dit.clean.layer{i}.out"] = f32(layer_out)
    for i, kind in enumerate(config.layers):
        if kind == "hybrid":
            out[f"dit.clean.state_out.{i}"] = f32(memory[i].state)
        else:
            out[f"dit.clean.kv_out.{i}.k"] = f32(torch.stack([b.k for b in memory[i].kv_blocks]))
            out[f"dit.clean.kv_out.{i}.v"] = f32(torch.stack([b.v for b in memory[i].kv_blocks]))
            meta["dit.clean.kv_out_blocks"] = json.dumps([b.block_index
                                                          for b in memory[i].kv_blocks])
    return out, meta


@torch.no_grad()
def rollout_goldens(model: StrandModel, config: StrandConfig, vocab):
    out = {}
    meta = {"seed": str(ROLLOUT_SEED), "prompt_a": PROMPT_A, "prompt_b": PROMPT_B,
            "delta_impl": "sequential",
            "run1": "set_prompt(A); blocks 0, 1; snapshot; set_prompt(B, recache_blocks=1); "
                    "blocks 2, 3",
            "run2": "restore(snapshot after block 1); set_prompt(B, 0); block 2",
            "frames": "decoded float pixels before 8-bit conversion"}
    session = Session(model, vocab, seed=ROLLOUT_SEED, recache_history=8)
    session.set_prompt(PROMPT_A)
    snap = None
    for n in range(4):
        if n == 2:
            snap = session.snapshot()
            session.set_prompt(PROMPT_B, recache_blocks=1)
        result = session.generate_next_block()
        assert result.block_index == n
        out[f"run1.b{n}.latents"] = f32(result.latents)
        out[f"run1.b{n}.frames"] = f32(result.frames)
    final = session.snapshot()
    for i, mem in enumerate(final.layers):
        if mem.kind == "hybrid":
            out[f"run1.final.state.{i}"] = f32(mem.state)
        else:
            out[f"run1.final.kv.{i}.k"] = f32(torch.stack([b.k for b in mem.kv_blocks]))
            out[f"run1.final.kv.{i}.v"] = f32(torch.stack([b.v for b in mem.kv_blocks]))
            meta[f"run1.final.kv.{i}.blocks"] = json.dumps([b.block_index for b in mem.kv_blocks])

    session.restore(snap)
    session.set_prompt(PROMPT_B, recache_blocks=0)
    result = session.generate_next_block()
    assert result.block_index == 2
    out["run2.b2.latents"] = f32(result.latents)
    out["run2.b2.frames"] = f32(result.frames)
    return out, meta


def generate(out_dir: str) -> None:
    torch.set_num_threads(1)  # one thread: the same float summation order on every machine
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "golden-model.safetensors")
    model, config, vocab = build_golden_model()
    # F16 keeps the golden files small (< 2 MB in all); the loader converts to float32 and the
    # goldens are computed from the file as the engine reads it, so no precision is lost.
    save_model(model_path, model, config, vocab, float_dtype="F16")
    model, config, vocab = load_model(model_path)
    common = {"format": "strand-golden", "model": "golden-model.safetensors",
              "sigmas": json.dumps(config.sigmas)}
    tensors, meta = module_goldens(model, config, vocab)
    write_tensors(os.path.join(out_dir, "golden-modules.safetensors"), tensors,
                  {**common, **meta})
    tensors, meta = rollout_goldens(model, config, vocab)
    write_tensors(os.path.join(out_dir, "golden-rollout.safetensors"), tensors,
                  {**common, **meta})


def main() -> None:
    parser = argparse.ArgumentParser(description="Writes the golden parity files.")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    generate(args.out_dir)
    for name in ("golden-model", "golden-modules", "golden-rollout"):
        path = os.path.join(args.out_dir, name + ".safetensors")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
