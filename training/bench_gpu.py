#!/usr/bin/env python3
"""The PyTorch reference of the Strand DiT timed on a GPU: per-block milliseconds of the 4 denoising
passes + the clean pass (decode excluded), for the "C++ engine vs PyTorch on the same card"
comparison of issue 6 (tools/gpu/bench_all.sh runs both in one job).

What runs is training/strand_ref's model (its modules and weights, loaded from the same safetensors
file the engine reads) through a pass written for speed in plain eager PyTorch, the usual way such
a model is served:
- weights and activations in --dtype (bf16 by default; fp32 for checks), norms' statistics in fp32;
- softmax attention through torch.nn.functional.scaled_dot_product_attention (flash / cuDNN /
  efficient, PyTorch's choice), self-attention and cross-attention alike;
- the hybrid layers' memory: the block-level read S^T q with the state in fp32 cast to --dtype, and
  the gated delta rule in float32 in a batched chunked (WY) form: every chunk's triangular solve at
  once, then one short recurrence over the chunks (64 tokens each, as docs/model.md);
- softmax_kv layers cache clean K (normalised, not rotated) and V in --dtype and rotate cached keys
  to their relative positions each pass, as strand_ref does;
- the text encoder is not run: a random context of --text-tokens tokens is projected once per run
  (the engine also encodes a prompt once, not per pass).
--self-check compares this pass with strand_ref's own StrandModel.dit (float32, a tiny model, three
blocks with clean passes) and the batched delta rule with the sequential rule, and fails loudly.

    python3 training/bench_gpu.py --model M.safetensors [--blocks 10] [--warmup 1] [--dtype bf16]
        [--device cuda] [--text-tokens 512] [--max-seconds 60] [--json OUT.json]
    python3 training/bench_gpu.py --self-check [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import struct
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strand_ref.config import StrandConfig  # noqa: E402
from strand_ref.model import (  # noqa: E402
    KvBlock, LayerMemory, StrandModel, apply_rope, attention as reference_attention,
    block_positions, gated_delta_sequential, rope_cos_sin, select_kv_blocks, use_strict_float32)

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


# --------------------------------------------------------------------------------------------
# Loading: the engine's safetensors file, memory-mapped, into strand_ref's StrandModel
# --------------------------------------------------------------------------------------------


def read_header(path: str) -> Tuple[int, dict]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n).decode("utf-8"))


def config_of(header: dict) -> StrandConfig:
    raw = json.loads(header["__metadata__"]["strand.config"])
    text_layers = raw["text"]["layers"]
    # strand_ref asks for at least one BERT layer; the engine (and this benchmark, which does not
    # run the text encoder) accept 0.
    raw["text"]["layers"] = max(1, text_layers)
    return dataclasses.replace(StrandConfig.from_dict(raw), text_layers=text_layers)


def load_model(path: str, device: torch.device, dtype: torch.dtype) -> Tuple[StrandModel,
                                                                             StrandConfig]:
    n, header = read_header(path)
    cfg = config_of(header)
    vocab_size = len(header["__metadata__"]["strand.vocab"].split("\n"))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    state: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.array(data[begin:end])  # one copy per tensor, off the memory map
        if info["dtype"] == "BF16":
            t = torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
        elif info["dtype"] == "F16":
            t = torch.from_numpy(raw.view(np.float16))
        elif info["dtype"] == "F32":
            t = torch.from_numpy(raw.view(np.float32))
        else:
            raise SystemExit(f"{path}: unsupported dtype {info['dtype']} for {name}")
        state[name] = t.reshape(info["shape"]).to(device=device, dtype=dtype)
    if hasattr(torch, "get_default_device"):  # torch >= 2.3: build on meta, adopt the tensors
        with torch.device("meta"):
            model = StrandModel(cfg, vocab_size)
        model.load_state_dict(state, assign=True)
    else:
        model = StrandModel(cfg, vocab_size)
        model.load_state_dict(state)
        model.to(device=device, dtype=dtype)
    model.eval()
    return model, cfg


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------


def gated_delta_chunked_batched(state: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                g: torch.Tensor, beta: torch.Tensor, chunk: int = 64
                                ) -> torch.Tensor:
    """strand_ref.gated_delta_chunked with every chunk's solve batched (same final state).

    state [H, dk, dv]; k [T, H, dk]; v [T, H, dv]; g (log decay), beta [T, H]. Within chunk c,
    U = M^-1 (beta V) and W = M^-1 (beta Gamma K) do not depend on the state entering the chunk,
    so they are computed for all chunks at once; the pseudo-values are then u = U - W S and
    S <- Gamma_end S + (diag(decay to end) K)^T u, one short step per chunk.
    """
    tokens, heads, dk = k.shape
    dv = v.shape[-1]
    pad = (-tokens) % chunk
    if pad:  # padded tokens: no decay (g = 0) and no write (beta = 0) leave the state unchanged
        k = F.pad(k, (0, 0, 0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, 0, 0, pad))
        g = F.pad(g, (0, 0, 0, pad))
        beta = F.pad(beta, (0, 0, 0, pad))
    n = (tokens + pad) // chunk
    kc = k.reshape(n, chunk, heads, dk).permute(2, 0, 1, 3)   # [H, n, C, dk]
    vc = v.reshape(n, chunk, heads, dv).permute(2, 0, 1, 3)   # [H, n, C, dv]
    gc = g.reshape(n, chunk, heads).permute(2, 0, 1)          # [H, n, C]
    bc = beta.reshape(n, chunk, heads).permute(2, 0, 1)
    b = torch.cumsum(gc, dim=-1)
    lower = torch.ones(chunk, chunk, dtype=torch.bool, device=k.device).tril(-1)
    diff = (b[..., :, None] - b[..., None, :]).masked_fill(~lower, float("-inf"))
    a = torch.exp(diff) * torch.matmul(kc, kc.transpose(-1, -2))
    m = torch.eye(chunk, dtype=k.dtype, device=k.device) + bc[..., None] * a
    w = torch.linalg.solve_triangular(m, (bc * torch.exp(b))[..., None] * kc, upper=False,
                                      unitriangular=True)
    u_free = torch.linalg.solve_triangular(m, bc[..., None] * vc, upper=False, unitriangular=True)
    k_to_end = (kc * torch.exp(b[..., -1:] - b)[..., None]).transpose(-1, -2)  # [H, n, dk, C]
    decay_end = torch.exp(b[..., -1])[..., None, None]                          # [H, n, 1, 1]
    s = state
    for c in range(n):
        u = u_free[:, c] - torch.matmul(w[:, c], s)
        s = decay_end[:, c] * s + torch.matmul(k_to_end[:, c], u)
    return s


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def l2n(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


def ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return apply_rope(x.float(), cos, sin).to(x.dtype)


class ReferenceRunner:
    """The DiT passes of one StrandModel (see the module docstring for what is done how)."""

    def __init__(self, model: StrandModel, cfg: StrandConfig, dtype: torch.dtype,
                 use_sdpa: bool = True, chunk: int = 64):
        self.model, self.cfg, self.dtype = model, cfg, dtype
        self.device = model.patch_embedding.weight.device
        self.use_sdpa = use_sdpa and HAVE_SDPA
        self.chunk = chunk
        self.heads, self.dh = cfg.heads, cfg.dim // cfg.heads
        self._rope: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._time: Dict[float, Tuple[torch.Tensor, torch.Tensor]] = {}

    def rope_at(self, back: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of a block `back` blocks earlier (0: the current block), cached."""
        if back not in self._rope:
            self._rope[back] = rope_cos_sin(
                *block_positions(self.cfg, -back * self.cfg.frames_per_block), self.dh,
                self.cfg.rope_theta, self.device)
        return self._rope[back]

    def time_embed(self, sigma: float) -> Tuple[torch.Tensor, torch.Tensor]:
        if sigma not in self._time:
            cfg, m = self.cfg, self.model
            t = float(np.float32(sigma)) * 1000.0
            half = cfg.freq_dim // 2
            freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
            emb = np.concatenate([np.cos(t * freqs), np.sin(t * freqs)]).astype(np.float32)
            emb_t = torch.from_numpy(emb).to(self.device, self.dtype)
            e = m.time_embedding(emb_t)
            e0 = m.time_projection(e).view(6, cfg.dim)
            self._time[sigma] = (e, e0)
        return self._time[sigma]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.heads, self.dh)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(dh)) v per head; [T, H, dh] in and out."""
        if not self.use_sdpa:
            return reference_attention(q, k, v)
        o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                           v.transpose(0, 1)[None])
        return o[0].transpose(0, 1)

    def context_kv(self, ctx: torch.Tensor):
        out = []
        for blk in self.model.blocks:
            ca = blk.cross_attn
            out.append((self.split(rms(ca.k(ctx), ca.norm_k.weight)), self.split(ca.v(ctx))))
        return out

    def hybrid(self, sa, a, memory: LayerMemory, update: bool) -> torch.Tensor:
        tokens, dim = a.shape
        cos, sin = self.rope_at(0)
        q = rope(self.split(rms(sa.q(a), sa.norm_q.weight)), cos, sin)
        k = rope(self.split(rms(sa.k(a), sa.norm_k.weight)), cos, sin)
        o_s = self.attend(q, k, self.split(sa.v(a)))
        qm = l2n(self.split(sa.mem_q(a)))
        state = memory.state  # float32 [H, dk, dv]
        o_m = torch.matmul(qm.transpose(0, 1), state.to(self.dtype)).transpose(0, 1) * (
            self.dh ** -0.5)
        gamma = torch.sigmoid(sa.mem_g(a))
        out = sa.o((o_s + gamma[:, :, None] * o_m).reshape(tokens, dim))
        if update:
            km = l2n(self.split(sa.mem_k(a))).float()
            vm = self.split(sa.mem_v(a)).float()
            g = -torch.exp(sa.mem_A_log.float()) * F.softplus(
                sa.mem_a(a).float() + sa.mem_dt_bias.float(), beta=1.0, threshold=20.0)
            beta = 2.0 * torch.sigmoid(sa.mem_b(a).float())
            memory.state = gated_delta_chunked_batched(state, km, vm, g, beta, self.chunk)
        return out

    def softmax_kv(self, sa, a, memory: LayerMemory, update: bool, block: int) -> torch.Tensor:
        tokens, dim = a.shape
        cos, sin = self.rope_at(0)
        q = rope(self.split(rms(sa.q(a), sa.norm_q.weight)), cos, sin)
        k_plain = rms(sa.k(a), sa.norm_k.weight)
        v = sa.v(a)
        keys, values = [], []
        cfg = self.cfg
        for cached in select_kv_blocks(memory.kv_blocks, cfg.softmax_kv_window,
                                       cfg.softmax_kv_sink):
            c_cos, c_sin = self.rope_at(block - cached.block_index)
            keys.append(rope(self.split(cached.k), c_cos, c_sin))
            values.append(self.split(cached.v))
        keys.append(rope(self.split(k_plain), cos, sin))
        values.append(self.split(v))
        o = self.attend(q, torch.cat(keys, 0), torch.cat(values, 0)).reshape(tokens, dim)
        out = sa.o(o)
        if update:
            memory.kv_blocks.append(KvBlock(int(block), k_plain, v))
            memory.kv_blocks = select_kv_blocks(memory.kv_blocks, cfg.softmax_kv_window,
                                                cfg.softmax_kv_sink)
        return out

    @torch.no_grad()
    def dit(self, x: torch.Tensor, sigma: float, ctx_kv, memory: List[LayerMemory], block: int,
            update: bool = False) -> Optional[torch.Tensor]:
        """One pass over a block x [F, C, h, w] (float32); the velocity (float32) unless update."""
        model = self.model
        e, e0 = self.time_embed(sigma)
        h = model.patch_embedding(model.patchify(x.to(self.dtype)))
        for i, blk in enumerate(model.blocks):
            mod = blk.modulation + e0
            shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = mod.unbind(0)
            a = ln(h) * (1.0 + scale_a) + shift_a
            if blk.kind == "hybrid":
                sa = self.hybrid(blk.self_attn, a, memory[i], update)
            else:
                sa = self.softmax_kv(blk.self_attn, a, memory[i], update, block)
            h = h + gate_a * sa
            ca = blk.cross_attn
            y = blk.norm3(h)
            qc = self.split(rms(ca.q(y), ca.norm_q.weight))
            h = h + ca.o(self.attend(qc, *ctx_kv[i]).reshape(y.shape))
            f = ln(h) * (1.0 + scale_f) + shift_f
            h = h + gate_f * blk.ffn[2](F.gelu(blk.ffn[0](f), approximate="tanh"))
        if update:
            return None
        hm = model.head.modulation + e
        out = model.head.head(ln(h) * (1.0 + hm[1]) + hm[0])
        return model.unpatchify(out).float()

    def empty_memory(self) -> List[LayerMemory]:
        mems = []
        for kind in self.cfg.layers:
            if kind == "hybrid":
                mems.append(LayerMemory(kind, state=torch.zeros(
                    self.heads, self.dh, self.dh, dtype=torch.float32, device=self.device)))
            else:
                mems.append(LayerMemory(kind))
        return mems


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------


def denoise_block(runner: "ReferenceRunner", ctx_kv, memory, block: int, sigmas: List[float],
                  x: torch.Tensor, noise_at) -> torch.Tensor:
    """The engine's sampler over one block: each denoising pass predicts v, x0 = x - sigma v, and
    the next input re-noises x0 with noise_at(step) (1-based). Returns the clean latents x0 (the
    clean pass that folds them into memory is the caller's)."""
    x0 = x
    for i, sigma in enumerate(sigmas):
        v = runner.dit(x, sigma, ctx_kv, memory, block)
        x0 = x - sigma * v
        if i + 1 < len(sigmas):
            nxt = sigmas[i + 1]
            x = float(np.float32(1.0 - nxt)) * x0 + nxt * noise_at(i + 1)
    return x0


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench(args) -> dict:
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model, cfg = load_model(args.model, device, dtype)
    load_s = time.perf_counter() - t0
    runner = ReferenceRunner(model, cfg, dtype, use_sdpa=not args.no_sdpa, chunk=args.chunk)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    latent = (cfg.frames_per_block, cfg.latent_channels, cfg.latent_height, cfg.latent_width)
    with torch.no_grad():
        ctx = torch.randn(args.text_tokens, cfg.dim, generator=gen, device=device).to(dtype)
        ctx_kv = runner.context_kv(ctx)
    memory = runner.empty_memory()
    sigmas = [float(np.float32(s)) for s in cfg.sigmas]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    stopped = None
    start = time.perf_counter()
    for n in range(args.warmup + args.blocks):
        if args.max_seconds and time.perf_counter() - start > args.max_seconds:
            stopped = f"time budget of {args.max_seconds} s reached"
            break
        try:
            sync()
            t_begin = time.perf_counter()
            x = torch.randn(latent, generator=gen, device=device)
            x0 = denoise_block(runner, ctx_kv, memory, n, sigmas, x,
                               lambda _step: torch.randn(latent, generator=gen, device=device))
            sync()
            t_denoised = time.perf_counter()
            runner.dit(x0, 0.0, ctx_kv, memory, n, update=True)
            sync()
            t_end = time.perf_counter()
        except torch.cuda.OutOfMemoryError if hasattr(torch.cuda, "OutOfMemoryError") else \
                RuntimeError as exc:
            stopped = f"out of memory at block {n}: {str(exc).splitlines()[0]}"
            break
        if n < args.warmup:
            continue
        row = {"block": n, "denoise_ms": (t_denoised - t_begin) * 1e3,
               "clean_ms": (t_end - t_denoised) * 1e3, "dit_ms": (t_end - t_begin) * 1e3}
        if device.type == "cuda":
            row["memory_allocated_bytes"] = torch.cuda.memory_allocated(device)
            row["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        rows.append(row)
        print(f"block {n}: dit {row['dit_ms']:.1f} ms (denoise {row['denoise_ms']:.1f}, "
              f"clean {row['clean_ms']:.1f})", file=sys.stderr, flush=True)
    report = {
        "engine": "pytorch-reference (training/bench_gpu.py)",
        "torch": torch.__version__, "device": device_name(device), "dtype": args.dtype,
        "attention": "sdpa" if runner.use_sdpa else "matmul-softmax",
        "delta_rule": f"chunked, batched solve, chunk {args.chunk}, float32 state",
        "model": cfg.name, "layers": cfg.layers, "tokens_per_block": cfg.tokens_per_block,
        "text_tokens": args.text_tokens, "denoise_passes": len(sigmas),
        "load_seconds": round(load_s, 2), "warmup_blocks": args.warmup,
        "blocks_requested": args.blocks, "blocks_timed": len(rows), "stopped": stopped,
        "blocks": rows,
    }
    if rows:
        report["median_ms"] = {k: statistics.median(r[k] for r in rows)
                               for k in ("denoise_ms", "clean_ms", "dit_ms")}
    if device.type == "cuda":
        report["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return report


# --------------------------------------------------------------------------------------------
# Self-check against strand_ref
# --------------------------------------------------------------------------------------------


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@torch.no_grad()
def self_check(device: torch.device) -> dict:
    """This file's pass vs strand_ref's StrandModel.dit, float32, a tiny mixed model."""
    from strand_ref.init import default_vocab, init_model
    use_strict_float32()
    torch.manual_seed(0)
    results = {}
    # 1. The batched chunked delta rule vs the sequential rule (float64, T not a chunk multiple).
    t, h, d = 150, 3, 16
    k = l2n(torch.randn(t, h, d, dtype=torch.float64))
    v = torch.randn(t, h, d, dtype=torch.float64)
    g = -torch.rand(t, h, dtype=torch.float64) * 0.5
    beta = 2.0 * torch.rand(t, h, dtype=torch.float64)
    s0 = torch.randn(h, d, d, dtype=torch.float64)
    ref = gated_delta_sequential(s0, k, v, torch.exp(g), beta)
    got = gated_delta_chunked_batched(s0, k, v, g, beta, chunk=64)
    results["delta_rule_rel_error"] = rel(got, ref)
    # 2. Whole passes, with memory, vs strand_ref (3 blocks: denoising pass + clean pass each).
    raw = {
        "format": "strand-model", "version": 1, "name": "bench-gpu-check",
        "video": {"width": 64, "height": 48, "fps": 12}, "latent_channels": 4,
        "autoencoder": {"channels": [4, 4, 4]},
        "dit": {"dim": 64, "heads": 2, "mlp_dim": 96, "patch": 2, "frames_per_block": 3,
                "freq_dim": 32, "rope_theta": 10000.0,
                "layers": ["hybrid", "softmax_kv", "hybrid"], "softmax_kv_window": 0,
                "softmax_kv_sink": 0},
        "text": {"dim": 32, "layers": 1, "heads": 2, "intermediate": 64, "max_positions": 16,
                 "lowercase": True},
        "sampler": {"sigmas": [1.0, 0.625]},
    }
    cfg = StrandConfig.from_dict(raw)
    model = StrandModel(cfg, len(default_vocab()))
    init_model(model, 3, strong=True)  # every path matters, so a slip shows
    model.to(device).eval()
    runner = ReferenceRunner(model, cfg, torch.float32, use_sdpa=True, chunk=8)
    ctx = torch.randn(7, cfg.dim, device=device)
    ctx_ref = model.context_kv(ctx)
    ctx_ours = runner.context_kv(ctx)
    mem_ref, mem_ours = model.empty_memory(), runner.empty_memory()
    worst_out, worst_state = 0.0, 0.0
    for n in range(3):
        x = torch.randn(cfg.frames_per_block, cfg.latent_channels, cfg.latent_height,
                        cfg.latent_width, device=device)
        out_ref = model.dit(x, 0.9375, ctx_ref, mem_ref, n, delta_impl="sequential")
        out_ours = runner.dit(x, 0.9375, ctx_ours, mem_ours, n)
        worst_out = max(worst_out, rel(out_ours, out_ref))
        model.dit(x, 0.0, ctx_ref, mem_ref, n, update=True, delta_impl="sequential")
        runner.dit(x, 0.0, ctx_ours, mem_ours, n, update=True)
        for a, b in zip(mem_ours, mem_ref):
            if a.state is not None:
                worst_state = max(worst_state, rel(a.state, b.state))
            for ca, cb in zip(a.kv_blocks, b.kv_blocks):
                worst_state = max(worst_state, rel(ca.k, cb.k), rel(ca.v, cb.v))
    results.update({"dit_output_rel_error": worst_out, "memory_rel_error": worst_state,
                    "device": device_name(device), "sdpa": runner.use_sdpa})
    results["ok"] = (results["delta_rule_rel_error"] < 1e-10 and worst_out < 1e-4
                     and worst_state < 1e-4)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the PyTorch reference DiT on a GPU.")
    parser.add_argument("--model", help="an engine safetensors file (e.g. from "
                        "tools/gpu/make_large_model.py)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64, help="delta-rule chunk length")
    parser.add_argument("--max-seconds", type=float, default=0, help="stop starting blocks after")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-sdpa", action="store_true", help="matmul + softmax attention")
    parser.add_argument("--json", help="write the report here too")
    parser.add_argument("--self-check", action="store_true")
    args = parser.parse_args()
    if args.self_check:
        report = self_check(torch.device(args.device))
    else:
        if not args.model:
            parser.error("--model is required (or --self-check)")
        if args.dtype == "fp32":
            use_strict_float32()
        report = bench(args)
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    if args.self_check and not report["ok"]:
        raise SystemExit("self-check FAILED")


if __name__ == "__main__":
    main()
