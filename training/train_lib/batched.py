"""Batched, differentiable passes of the Strand DiT for training.

strand_ref.model.StrandModel is the spec's reference: one block, one prompt, float32, with inference
shortcuts. Training needs batches of clips, per-sample noise levels, prompts of different lengths,
autocast and gradients through the memory. This module computes the same function (checked by
tests/test_train.py against StrandModel.dit) on the same parameters, so what is trained here is
exported unchanged by strand_ref.export.save_model.

Shapes: B clips, N = groups * B rows in one pass (the noisy and the clean copy of a block share
one pass), T tokens per block, d model width, H heads, dh head width, L text tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from strand_ref.model import (StrandModel, block_positions, gelu_tanh, rope_cos_sin, softplus)

_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------------------------------------
# Training memory: like strand_ref.model.LayerMemory, with a batch dimension and autograd history.
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainMemory:
    kind: str
    state: Optional[torch.Tensor] = None  # hybrid: [B, H, dh, dh] (rows = key dim), float32
    kv: Optional[List[Tuple[int, torch.Tensor, torch.Tensor]]] = None  # (block, k [B,T,d], v)

    def detached(self) -> "TrainMemory":
        """The same memory cut from the autograd graph (truncated backpropagation)."""
        state = None if self.state is None else self.state.detach()
        kv = None if self.kv is None else [(i, k.detach(), v.detach()) for i, k, v in self.kv]
        return TrainMemory(self.kind, state, kv)


def empty_memory(model: StrandModel, batch: int, device) -> List[TrainMemory]:
    cfg = model.config
    out = []
    for kind in cfg.layers:
        if kind == "hybrid":
            out.append(TrainMemory(kind, state=torch.zeros(batch, cfg.heads, cfg.head_dim,
                                                           cfg.head_dim, device=device)))
        else:
            out.append(TrainMemory(kind, kv=[]))
    return out


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) v. q [N, Tq, H, dh], k/v [N, Tk, H, dh], key_mask [N, Tk] (True =
    attend) -> [N, Tq, H, dh]. Uses the fused kernel where torch has it (>= 2.0)."""
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    if _HAS_SDPA:
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    else:
        scores = torch.matmul(qh, kh.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), vh)
    return out.transpose(1, 2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, T, H, dh]; cos/sin [T, dh/2]: rotates the pairs (x[2j], x[2j+1])."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)


def apply_rope_tables(x: torch.Tensor, tables: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """apply_rope with RopeCache.tables: x * cos + swap_pairs(x) * signed_sin, 4 kernels instead of
    about 10 (the training step is bound by kernel launches). Same products and sums as
    apply_rope (x0 c - x1 s == x0 c + x1 (-s)), so the result is the same."""
    cos2, sin2 = tables
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * cos2 + swapped * sin2


def l2n(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(dim=-1, keepdim=True) + eps)


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class RopeCache:
    """cos/sin tables per temporal offset (0 for the block itself, -m F for a block m back)."""

    def __init__(self, model: StrandModel, device):
        self.cfg = model.config
        self.device = device
        self._tables = {}

    def get(self, offset: int):
        if offset not in self._tables:
            cfg = self.cfg
            self._tables[offset] = rope_cos_sin(*block_positions(cfg, offset), cfg.head_dim,
                                                cfg.rope_theta, self.device)
        return self._tables[offset]

    def tables(self, offset: int, dtype: torch.dtype):
        """(cos, signed sin) [1, T, 1, dh] in `dtype`, pairs interleaved, for apply_rope_tables."""
        key = (offset, dtype)
        if key not in self._tables:
            cos, sin = self.get(offset)
            cos2 = cos.repeat_interleave(2, dim=-1)
            sin2 = torch.stack([-sin, sin], dim=-1).flatten(-2)
            self._tables[key] = (cos2[None, :, None, :].to(dtype).contiguous(),
                                 sin2[None, :, None, :].to(dtype).contiguous())
        return self._tables[key]


# Tokens per WY chunk of the memory write. 144 splits a 432-token block into 3 chunks (64 made 7):
# fewer sequential steps, hence fewer kernel launches, for [B, H, 144, 144] float32 temporaries.
# Exact in arithmetic for any chunk size (tests/test_train.py checks against the recurrence).
DELTA_CHUNK = 144
_TRI_CACHE = {}


def _tri(n: int, device, dtype):
    """(strictly-lower mask as an additive 0 / -inf matrix, identity) of size n, cached."""
    key = (n, str(device), dtype)
    if key not in _TRI_CACHE:
        lower = torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)
        neg = torch.zeros(n, n, dtype=dtype, device=device).masked_fill(~lower, float("-inf"))
        _TRI_CACHE[key] = (neg, torch.eye(n, dtype=dtype, device=device))
    return _TRI_CACHE[key]


def gated_delta_chunked_batched(state: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                g: torch.Tensor, beta: torch.Tensor,
                                chunk: int = DELTA_CHUNK) -> torch.Tensor:
    """Batched WY form of the gated delta rule (strand_ref.model.gated_delta_chunked), float32.

    state [B, H, dk, dv]; k [B, T, H, dk]; v [B, T, H, dv]; g, beta [B, T, H] -> new state.
    Differentiable (torch.linalg.solve_triangular has a backward).
    """
    s = state.float()
    k, v, g, beta = k.float(), v.float(), g.float(), beta.float()
    tokens = k.shape[1]
    for start in range(0, tokens, chunk):
        end = min(start + chunk, tokens)
        n = end - start
        kc = k[:, start:end].transpose(1, 2)      # [B, H, n, dk]
        vc = v[:, start:end].transpose(1, 2)      # [B, H, n, dv]
        bc = beta[:, start:end].transpose(1, 2)   # [B, H, n]
        cum = torch.cumsum(g[:, start:end].transpose(1, 2), dim=-1)  # [B, H, n]
        neg_upper, eye = _tri(n, k.device, k.dtype)
        diff = (cum[..., :, None] - cum[..., None, :]) + neg_upper
        a = torch.exp(diff) * torch.matmul(kc, kc.transpose(-1, -2))
        m = eye + bc[..., None] * a
        rhs = bc[..., None] * (vc - torch.exp(cum)[..., None] * torch.matmul(kc, s))
        u = torch.linalg.solve_triangular(m, rhs, upper=False, unitriangular=True)
        decay_to_end = torch.exp(cum[..., -1:] - cum)  # [B, H, n]
        s = torch.exp(cum[..., -1])[..., None, None] * s + torch.matmul(
            kc.transpose(-1, -2), decay_to_end[..., None] * u)
    return s


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], x.shape[1], heads, x.shape[2] // heads)


def _repeat(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t if groups == 1 else t.repeat(groups, *([1] * (t.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# The pass
# ---------------------------------------------------------------------------------------------


def time_embed(model: StrandModel, sigma: torch.Tensor):
    """sigma [N] -> e [N, d], e0 [N, 6, d] (spec 4, batched; float32 sinusoid)."""
    cfg = model.config
    half = cfg.freq_dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device,
                                                         dtype=torch.float64) / half)
    ang = (sigma.double() * 1000.0)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1).float()
    e = model.time_embedding(emb)
    e0 = model.time_projection(e).view(-1, 6, cfg.dim)
    return e, e0


def patchify(model: StrandModel, x: torch.Tensor) -> torch.Tensor:
    """[N, F, C, h, w] -> [N, T, C p p] in the spec's raster order."""
    cfg = model.config
    p = cfg.patch
    n, fr, c, h, w = x.shape
    x = x.reshape(n, fr, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(n, fr * (h // p) * (w // p), c * p * p)


def unpatchify(model: StrandModel, tokens: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    p, gh, gw, c = cfg.patch, cfg.grid_height, cfg.grid_width, cfg.latent_channels
    n = tokens.shape[0]
    fr = tokens.shape[1] // (gh * gw)
    x = tokens.reshape(n, fr, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(n, fr, c, gh * p, gw * p)


def dit(model: StrandModel, x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor,
        ctx_mask: Optional[torch.Tensor], memory: Sequence[TrainMemory], block_index: int,
        rope: RopeCache, update_group: Optional[int] = None, need_output: bool = True):
    """One DiT pass over N = G * B rows, G groups of the B clips the memory holds.

    x [N, F, C, h, w]; sigma [N]; ctx [B, L, d] (after text_embedding; shared by the groups);
    ctx_mask [B, L] (True = real token) or None. Every row reads its clip's pre-update memory.
    update_group g: rows g*B..(g+1)*B-1 are the clean blocks whose pass writes the memory (the
    clean pass); the others are only read. Returns (velocity [N, F, C, h, w] or None,
    the new memory list).
    """
    cfg = model.config
    heads, dh = cfg.heads, cfg.head_dim
    n = x.shape[0]
    b = ctx.shape[0]
    groups = n // b
    assert groups * b == n, "rows must be whole groups of the batch"
    e, e0 = time_embed(model, sigma)
    h = model.patch_embedding(patchify(model, x))
    tokens = h.shape[1]
    ctx_rep = _repeat(ctx, groups)
    mask_rep = None if ctx_mask is None else _repeat(ctx_mask, groups)
    new_memory: List[TrainMemory] = []
    sel = None if update_group is None else slice(update_group * b, (update_group + 1) * b)
    for blk, mem in zip(model.blocks, memory):
        mod = blk.modulation[None] + e0  # [N, 6, d]
        sh_a, sc_a, g_a, sh_f, sc_f, g_f = (mod[:, i, None, :] for i in range(6))
        a = ln(h) * (1.0 + sc_a) + sh_a
        sa = blk.self_attn
        q_lin = rms(sa.q(a), sa.norm_q.weight)
        own = rope.tables(0, q_lin.dtype)
        q = apply_rope_tables(_split(q_lin, heads), own)
        k_plain = rms(sa.k(a), sa.norm_k.weight)
        k = apply_rope_tables(_split(k_plain, heads), rope.tables(0, k_plain.dtype))
        v_plain = sa.v(a)
        v = _split(v_plain, heads)
        if blk.kind == "hybrid":
            o = attention(q, k, v)
            qm = l2n(_split(sa.mem_q(a), heads)).float()
            state = _repeat(mem.state, groups)
            o_m = torch.einsum("nhij,nthi->nthj", state, qm) * (dh ** -0.5)
            gamma = torch.sigmoid(sa.mem_g(a))
            o = (o + gamma[..., None] * o_m.to(o.dtype)).reshape(n, tokens, cfg.dim)
            if sel is not None:
                with torch.autocast(device_type=a.device.type, enabled=False):
                    ac = a[sel].float()
                    km = l2n(_split(F.linear(ac, sa.mem_k.weight.float()), heads))
                    vm = _split(F.linear(ac, sa.mem_v.weight.float()), heads)
                    gl = -torch.exp(sa.mem_A_log.float()) * softplus(
                        F.linear(ac, sa.mem_a.weight.float()) + sa.mem_dt_bias.float())
                    beta = 2.0 * torch.sigmoid(F.linear(ac, sa.mem_b.weight.float()))
                    new_state = gated_delta_chunked_batched(mem.state, km, vm, gl, beta)
                new_memory.append(TrainMemory("hybrid", state=new_state))
            else:
                new_memory.append(mem)
        else:
            keys, values = [], []
            kv = mem.kv or []
            if cfg.softmax_kv_window > 0 and len(kv) > cfg.softmax_kv_sink + cfg.softmax_kv_window:
                kv = kv[:cfg.softmax_kv_sink] + kv[len(kv) - cfg.softmax_kv_window:]
            for idx, ck, cv in kv:
                past = rope.tables(-(block_index - idx) * cfg.frames_per_block, q.dtype)
                keys.append(apply_rope_tables(_split(_repeat(ck, groups).to(q.dtype), heads), past))
                values.append(_split(_repeat(cv, groups).to(q.dtype), heads))
            keys.append(k)
            values.append(v)
            o = attention(q, torch.cat(keys, 1), torch.cat(values, 1)).reshape(n, tokens, cfg.dim)
            if sel is not None:
                kept = kv + [(int(block_index), k_plain[sel], v_plain[sel])]
                if cfg.softmax_kv_window > 0:
                    w, s = cfg.softmax_kv_window, cfg.softmax_kv_sink
                    if len(kept) > s + w:
                        kept = kept[:s] + kept[len(kept) - w:]
                new_memory.append(TrainMemory("softmax_kv", kv=kept))
            else:
                new_memory.append(mem)
        h = h + g_a * sa.o(o)
        ca = blk.cross_attn
        y = blk.norm3(h)
        cq = _split(rms(ca.q(y), ca.norm_q.weight), heads)
        ck = _split(rms(ca.k(ctx_rep), ca.norm_k.weight), heads)
        cv = _split(ca.v(ctx_rep), heads)
        h = h + ca.o(attention(cq, ck, cv, mask_rep).reshape(n, tokens, cfg.dim))
        f = ln(h) * (1.0 + sc_f) + sh_f
        h = h + g_f * blk.ffn[2](gelu_tanh(blk.ffn[0](f)))
    if not need_output:
        return None, new_memory
    hm = model.head.modulation[None] + e[:, None, :]  # [N, 2, d]
    out = model.head.head(ln(h) * (1.0 + hm[:, 1:2]) + hm[:, 0:1])
    return unpatchify(model, out), new_memory


def sample_block(model: StrandModel, ctx, ctx_mask, memory, block_index: int, rope: RopeCache,
                 sigmas: Sequence[float], generator: Optional[torch.Generator] = None,
                 start: Optional[torch.Tensor] = None, start_step: int = 0) -> torch.Tensor:
    """The few-step sampler of spec 5 on a batch (memory read only) -> clean x0 [B, F, C, h, w].

    start/start_step: begin at step `start_step` from the clean latents `start` noised to
    sigmas[start_step] (a partial, "SDEdit" rollout); by default from pure noise.
    """
    cfg = model.config
    b = ctx.shape[0]
    shape = (b,) + tuple(cfg.latent_shape)
    dev = ctx.device

    def randn():
        return torch.randn(shape, generator=generator, device="cpu" if generator is not None
                           and generator.device.type == "cpu" else dev).to(dev)

    if start is None or start_step == 0:
        x = randn()
        start_step = 0
    else:
        s0 = sigmas[start_step]
        x = (1.0 - s0) * start + s0 * randn()
    x0 = x
    for i in range(start_step, len(sigmas)):
        sig = torch.full((b,), float(sigmas[i]), device=dev)
        v, _ = dit(model, x, sig, ctx, ctx_mask, memory, block_index, rope)
        x0 = x - sigmas[i] * v.float()
        if i + 1 < len(sigmas):
            x = (1.0 - sigmas[i + 1]) * x0 + sigmas[i + 1] * randn()
    return x0
