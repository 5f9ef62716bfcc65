"""PyTorch reference of the Strand model (docs/model-spec.md sections 2-4).

Module attribute names mirror the safetensors tensor names of the spec, so `state_dict()` keys are
exactly the names in the file. Everything is float32; quantities the spec leaves to "exact" math
(time-embedding and RoPE angles) are computed in float64 and cast to float32 once, because float32
angles of size ~1e3..1e6 would lose several digits and break parity with the C++ engine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import StrandConfig

# --------------------------------------------------------------------------------------------
# Elementwise helpers (exact formulas of the spec)
# --------------------------------------------------------------------------------------------


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    # log(1 + exp(x)), and x itself above 20 (torch's threshold semantics).
    return F.softplus(x, beta=1.0, threshold=20.0)


def layer_norm_plain(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dim without affine parameters (the DiT's `LN`)."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim (one head vector)."""
    return x * torch.rsqrt(x.pow(2).sum(dim=-1, keepdim=True) + eps)


class GELUTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_tanh(x)


class SiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return silu(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight)


# --------------------------------------------------------------------------------------------
# RoPE (3D: temporal, row, column) and positions
# --------------------------------------------------------------------------------------------


def rope_split(head_dim: int) -> Tuple[int, int, int]:
    """(c_t, c_r, c_c): pairs for the temporal, row and column parts of a head vector."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def block_positions(cfg: StrandConfig, temporal_offset: int = 0):
    """Positions (t, r, c) of the T tokens of one block in raster order (frame, row, col).

    temporal_offset shifts the frame index: 0 for the current block, -m*F for a block m back.
    Python ints / int64, so offsets of any size are exact.
    """
    f, r, c = np.meshgrid(np.arange(cfg.frames_per_block, dtype=np.int64),
                          np.arange(cfg.grid_height, dtype=np.int64),
                          np.arange(cfg.grid_width, dtype=np.int64), indexing="ij")
    return f.reshape(-1) + np.int64(temporal_offset), r.reshape(-1), c.reshape(-1)


def rope_cos_sin(pos_t, pos_r, pos_c, head_dim: int, theta: float, device) -> Tuple[torch.Tensor,
                                                                                      torch.Tensor]:
    """cos/sin tables [T, head_dim/2] (float32) for the given positions.

    Angle of pair j: pos * theta^(-j_local / n) for its part with n pairs; computed in float64.
    """
    c_t, c_r, c_c = rope_split(head_dim)
    theta = float(theta)
    parts = []
    for pos, n in ((pos_t, c_t), (pos_r, c_r), (pos_c, c_c)):
        if n == 0:
            continue
        freqs = theta ** (-np.arange(n, dtype=np.float64) / n)
        parts.append(np.asarray(pos, dtype=np.float64)[:, None] * freqs[None, :])
    angles = np.concatenate(parts, axis=1)
    cos = torch.from_numpy(np.cos(angles).astype(np.float32)).to(device)
    sin = torch.from_numpy(np.sin(angles).astype(np.float32)).to(device)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, H, dh]; rotates pairs (x[2j], x[2j+1]) by the per-token angles [T, dh/2]."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    return out.flatten(-2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) v per head. q [Tq, H, dh], k/v [Tk, H, dh] -> [Tq, H, dh]."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    qh, kh, vh = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    p = torch.softmax(torch.matmul(qh, kh.transpose(1, 2)) * scale, dim=-1)
    return torch.matmul(p, vh).transpose(0, 1)


# --------------------------------------------------------------------------------------------
# Gated delta rule (the hybrid layers' memory update)
# --------------------------------------------------------------------------------------------


def gated_delta_sequential(state: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The spec's reference: for t in raster order, per head
    S <- alpha_t S;  u = beta_t (v_t - S^T k_t);  S <- S + k_t u^T.

    state [H, dk, dv]; k [T, H, dk]; v [T, H, dv]; alpha, beta [T, H]. Returns the new state.
    """
    s = state.clone()
    for t in range(k.shape[0]):
        s = alpha[t][:, None, None] * s
        pred = torch.einsum("hij,hi->hj", s, k[t])
        u = beta[t][:, None] * (v[t] - pred)
        s = s + k[t][:, :, None] * u[:, None, :]
    return s


def gated_delta_chunked(state: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                        beta: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The same final state as gated_delta_sequential (alpha = exp(g)) in the WY / UT form.

    Within a chunk with cumulative log-decay b_s = g_1 + ... + g_s and Gamma_s = exp(b_s):
      S_s = Gamma_s S_0 + sum_{r<=s} exp(b_s - b_r) k_r u_r^T, and the pseudo-values u solve the
      unit lower-triangular system (I + diag(beta) A) U = diag(beta) (V - diag(Gamma) K S_0),
      A[s, r] = exp(b_s - b_r) (k_s . k_r) for r < s. Then
      S_n = Gamma_n S_0 + K^T diag(exp(b_n - b)) U.
    """
    s = state.clone()
    tokens = k.shape[0]
    for start in range(0, tokens, chunk):
        end = min(start + chunk, tokens)
        kc = k[start:end].transpose(0, 1)   # [H, n, dk]
        vc = v[start:end].transpose(0, 1)   # [H, n, dv]
        gc = g[start:end].transpose(0, 1)   # [H, n]
        bc = beta[start:end].transpose(0, 1)
        n = end - start
        b = torch.cumsum(gc, dim=-1)
        lower = torch.ones(n, n, dtype=torch.bool, device=k.device).tril(-1)
        diff = (b[:, :, None] - b[:, None, :]).masked_fill(~lower, float("-inf"))
        a = torch.exp(diff) * torch.matmul(kc, kc.transpose(1, 2))
        m = torch.eye(n, dtype=k.dtype, device=k.device) + bc[:, :, None] * a
        rhs = bc[:, :, None] * (vc - torch.exp(b)[:, :, None] * torch.matmul(kc, s))
        u = torch.linalg.solve_triangular(m, rhs, upper=False, unitriangular=True)
        decay_to_end = torch.exp(b[:, -1:] - b)  # [H, n]
        s = torch.exp(b[:, -1])[:, None, None] * s + torch.matmul(
            kc.transpose(1, 2), decay_to_end[:, :, None] * u)
    return s


# --------------------------------------------------------------------------------------------
# Memory layout (spec section 6)
# --------------------------------------------------------------------------------------------


@dataclass
class KvBlock:
    block_index: int
    k: torch.Tensor  # [T, d], RMS-normalised, not rotated
    v: torch.Tensor  # [T, d]

    def clone(self) -> "KvBlock":
        return KvBlock(int(self.block_index), self.k.clone(), self.v.clone())


@dataclass
class LayerMemory:
    kind: str
    state: Optional[torch.Tensor] = None          # hybrid: [H, dh, dh] (key-dim rows)
    kv_blocks: List[KvBlock] = field(default_factory=list)  # softmax_kv: oldest first

    def clone(self) -> "LayerMemory":
        return LayerMemory(self.kind, None if self.state is None else self.state.clone(),
                           [b.clone() for b in self.kv_blocks])

    def size_bytes(self) -> int:
        n = 0 if self.state is None else self.state.numel() * 4
        return n + sum((b.k.numel() + b.v.numel()) * 4 for b in self.kv_blocks)


def select_kv_blocks(blocks: Sequence[KvBlock], window: int, sink: int) -> List[KvBlock]:
    """The cached blocks a new block attends to (and what survives the drop after an append):
    all when window == 0, else the first `sink` blocks plus the last `window` blocks."""
    blocks = list(blocks)
    if window <= 0 or len(blocks) <= sink + window:
        return blocks
    return blocks[:sink] + blocks[len(blocks) - window:]


# --------------------------------------------------------------------------------------------
# Text encoder (BERT, names as in HF BertModel)
# --------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, dim: int, max_positions: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.token_type_embeddings = nn.Embedding(2, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[0]
        h = (self.word_embeddings.weight[ids] + self.position_embeddings.weight[:length]
             + self.token_type_embeddings.weight[0])
        return self.LayerNorm(h)


class BertSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        length, dim = h.shape
        split = (length, self.heads, dim // self.heads)
        q = self.query(h).view(split)
        k = self.key(h).view(split)
        v = self.value(h).view(split)
        return attention(q, k, v).reshape(length, dim)


class BertSelfOutput(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)


class BertAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self = BertSelfAttention(dim, heads)
        self.output = BertSelfOutput(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.output.dense(self.self(h))
        return self.output.LayerNorm(h + a)


class BertIntermediate(nn.Module):
    def __init__(self, dim: int, inter: int):
        super().__init__()
        self.dense = nn.Linear(dim, inter)


class BertOutput(nn.Module):
    def __init__(self, dim: int, inter: int):
        super().__init__()
        self.dense = nn.Linear(inter, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)


class BertLayer(nn.Module):
    def __init__(self, dim: int, heads: int, inter: int):
        super().__init__()
        self.attention = BertAttention(dim, heads)
        self.intermediate = BertIntermediate(dim, inter)
        self.output = BertOutput(dim, inter)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.attention(h)
        m = self.output.dense(gelu_erf(self.intermediate.dense(h)))
        return self.output.LayerNorm(h + m)


class BertEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, inter: int, layers: int):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(dim, heads, inter) for _ in range(layers))


class TextEncoder(nn.Module):
    def __init__(self, cfg: StrandConfig, vocab_size: int):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, cfg.text_dim, cfg.text_max_positions)
        self.encoder = BertEncoder(cfg.text_dim, cfg.text_heads, cfg.text_intermediate,
                                   cfg.text_layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [L] (int64) -> last hidden state [L, dt]."""
        h = self.embeddings(ids)
        for layer in self.encoder.layer:
            h = layer(h)
        return h


# --------------------------------------------------------------------------------------------
# DiT
# --------------------------------------------------------------------------------------------


class _QKVO(nn.Module):
    """q, k, v, o projections and the RMSNorms of q and k (shared by all attention kinds)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim)
        self.norm_k = RMSNorm(dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.heads, x.shape[1] // self.heads)


@dataclass
class Rope:
    """cos/sin [T, dh/2] of the current block's positions (frame in block, row, column)."""
    cos: torch.Tensor
    sin: torch.Tensor


class HybridSelfAttention(_QKVO):
    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads)
        self.mem_q = nn.Linear(dim, dim, bias=False)
        self.mem_k = nn.Linear(dim, dim, bias=False)
        self.mem_v = nn.Linear(dim, dim, bias=False)
        self.mem_a = nn.Linear(dim, heads, bias=False)
        self.mem_b = nn.Linear(dim, heads, bias=False)
        self.mem_g = nn.Linear(dim, heads, bias=False)
        self.mem_dt_bias = nn.Parameter(torch.zeros(heads))
        self.mem_A_log = nn.Parameter(torch.zeros(heads))

    def forward(self, a: torch.Tensor, rope: Rope, memory: LayerMemory, update: bool,
                delta_impl: str = "sequential") -> torch.Tensor:
        tokens, dim = a.shape
        dh = dim // self.heads
        # 1. intra-block softmax branch
        q = apply_rope(self.split(self.norm_q(self.q(a))), rope.cos, rope.sin)
        k = apply_rope(self.split(self.norm_k(self.k(a))), rope.cos, rope.sin)
        v = self.split(self.v(a))
        o_s = attention(q, k, v)
        # 2. memory branch: block-level read of the pre-update state
        qm = l2_normalize(self.split(self.mem_q(a)))
        state = memory.state
        if state is None:
            state = torch.zeros(self.heads, dh, dh, dtype=a.dtype, device=a.device)
        o_m = torch.einsum("hij,thi->thj", state, qm) * (dh ** -0.5)
        gamma = torch.sigmoid(self.mem_g(a))  # [T, H]
        o = (o_s + gamma[:, :, None] * o_m).reshape(tokens, dim)
        out = self.o(o)
        # 4. clean pass: fold the block into the state, after the output used the old one
        if update:
            km = l2_normalize(self.split(self.mem_k(a)))
            vm = self.split(self.mem_v(a))
            g = -torch.exp(self.mem_A_log) * softplus(self.mem_a(a) + self.mem_dt_bias)  # [T, H]
            beta = 2.0 * torch.sigmoid(self.mem_b(a))
            if delta_impl == "sequential":
                memory.state = gated_delta_sequential(state, km, vm, torch.exp(g), beta)
            elif delta_impl == "chunked":
                memory.state = gated_delta_chunked(state, km, vm, g, beta)
            else:
                raise ValueError(f"unknown delta_impl {delta_impl!r}")
        return out


class SoftmaxKVSelfAttention(_QKVO):
    def forward(self, a: torch.Tensor, rope: Rope, memory: LayerMemory, update: bool,
                cfg: StrandConfig, block_index: int) -> torch.Tensor:
        tokens, dim = a.shape
        q = apply_rope(self.split(self.norm_q(self.q(a))), rope.cos, rope.sin)
        k_plain = self.norm_k(self.k(a))  # what the cache stores: normalised, not rotated
        v = self.v(a)
        keys = [apply_rope(self.split(k_plain), rope.cos, rope.sin)]
        values = [self.split(v)]
        window, sink = cfg.softmax_kv_window, cfg.softmax_kv_sink
        frames = cfg.frames_per_block
        for cached in select_kv_blocks(memory.kv_blocks, window, sink):
            back = block_index - cached.block_index  # m blocks earlier: temporal pos f - m F
            cos, sin = rope_cos_sin(*block_positions(cfg, -back * frames), dim // self.heads,
                                    cfg.rope_theta, a.device)
            keys.append(apply_rope(self.split(cached.k), cos, sin))
            values.append(self.split(cached.v))
        # Cached blocks first (oldest first), the block itself last: one softmax over all.
        keys = keys[1:] + keys[:1]
        values = values[1:] + values[:1]
        o = attention(q, torch.cat(keys, 0), torch.cat(values, 0)).reshape(tokens, dim)
        out = self.o(o)
        if update:
            memory.kv_blocks.append(KvBlock(int(block_index), k_plain.detach().clone(),
                                            v.detach().clone()))
            memory.kv_blocks = select_kv_blocks(memory.kv_blocks, window, sink)
        return out


class CrossAttention(_QKVO):
    def context_kv(self, ctx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """k, v [L, H, dh] of the text context: computed once per prompt and layer."""
        return self.split(self.norm_k(self.k(ctx))), self.split(self.v(ctx))

    def forward(self, y: torch.Tensor, kv: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q = self.split(self.norm_q(self.q(y)))
        o = attention(q, kv[0], kv[1]).reshape(y.shape)
        return self.o(o)


class DiTBlock(nn.Module):
    def __init__(self, cfg: StrandConfig, kind: str):
        super().__init__()
        d = cfg.dim
        self.kind = kind
        self.modulation = nn.Parameter(torch.zeros(6, d))
        if kind == "hybrid":
            self.self_attn = HybridSelfAttention(d, cfg.heads)
        else:
            self.self_attn = SoftmaxKVSelfAttention(d, cfg.heads)
        self.norm3 = nn.LayerNorm(d, eps=1e-6, elementwise_affine=True)
        self.cross_attn = CrossAttention(d, cfg.heads)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.mlp_dim), GELUTanh(), nn.Linear(cfg.mlp_dim, d))

    def forward(self, x: torch.Tensor, e0: torch.Tensor, rope: Rope, ctx_kv, memory: LayerMemory,
                update: bool, cfg: StrandConfig, block_index: int, delta_impl: str) -> torch.Tensor:
        m = self.modulation + e0  # [6, d]; all frames of a block share sigma
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = m.unbind(0)
        a = layer_norm_plain(x) * (1.0 + scale_a) + shift_a
        if self.kind == "hybrid":
            sa = self.self_attn(a, rope, memory, update, delta_impl)
        else:
            sa = self.self_attn(a, rope, memory, update, cfg, block_index)
        x = x + gate_a * sa
        x = x + self.cross_attn(self.norm3(x), ctx_kv)
        f = layer_norm_plain(x) * (1.0 + scale_f) + shift_f
        return x + gate_f * self.ffn(f)


class Head(nn.Module):
    def __init__(self, cfg: StrandConfig):
        super().__init__()
        self.modulation = nn.Parameter(torch.zeros(2, cfg.dim))
        self.head = nn.Linear(cfg.dim, cfg.patch_dim)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        hm = self.modulation + e
        return self.head(layer_norm_plain(x) * (1.0 + hm[1]) + hm[0])


# --------------------------------------------------------------------------------------------
# Autoencoder (per frame, 2D)
# --------------------------------------------------------------------------------------------


class _ConvStage(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)


class Encoder(nn.Module):
    def __init__(self, cfg: StrandConfig):
        super().__init__()
        ch = cfg.ae_channels
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down = nn.ModuleList(_ConvStage(ch[s], ch[s + 1]) for s in range(cfg.stages))
        self.conv_out = nn.Conv2d(ch[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb [N, 3, H, W] in [-1, 1] -> latent [N, C, h, w] (the mean; no sampling)."""
        x = silu(self.conv_in(rgb))
        for stage in self.down:
            x = silu(F.conv2d(x, stage.conv.weight, stage.conv.bias, stride=2, padding=1))
        return self.conv_out(x)


class Decoder(nn.Module):
    def __init__(self, cfg: StrandConfig):
        super().__init__()
        ch = cfg.ae_channels
        s_count = cfg.stages
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1)
        self.up = nn.ModuleList(_ConvStage(ch[s_count - s], ch[s_count - s - 1])
                                for s in range(s_count))
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [N, C, h, w] -> rgb [N, 3, H, W] (float, before 8-bit)."""
        x = silu(self.conv_in(latent))
        for stage in self.up:
            x = silu(stage.conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.conv_out(x)


def to_rgb8(rgb: torch.Tensor) -> torch.Tensor:
    """round(clamp((rgb + 1) * 127.5, 0, 255)) with round half away from zero, as uint8.

    torch.round rounds half to even, so the value (non-negative after the clamp) is floored + 0.5.
    """
    v = torch.clamp((rgb + 1.0) * 127.5, 0.0, 255.0)
    return torch.floor(v + 0.5).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------


@dataclass
class DiTTrace:
    """Optional per-layer outputs of one DiT pass (for golden tensors and debugging)."""
    layer_outputs: List[torch.Tensor] = field(default_factory=list)


class StrandModel(nn.Module):
    def __init__(self, cfg: StrandConfig, vocab_size: int):
        super().__init__()
        self.config = cfg
        self.vocab_size = vocab_size
        d = cfg.dim
        self.text_encoder = TextEncoder(cfg, vocab_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), GELUTanh(), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(SiLU(), nn.Linear(d, 6 * d))
        self.patch_embedding = nn.Linear(cfg.patch_dim, d)
        self.blocks = nn.ModuleList(DiTBlock(cfg, kind) for kind in cfg.layers)
        self.head = Head(cfg)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    # ---- text ----
    def encode_text(self, ids: Sequence[int]) -> torch.Tensor:
        """Token ids -> BERT last hidden state [L, dt]."""
        t = torch.as_tensor(list(ids), dtype=torch.long, device=self.device)
        return self.text_encoder(t)

    def text_context(self, ids: Sequence[int]) -> torch.Tensor:
        """Token ids -> ctx [L, d] (text encoder + text_embedding)."""
        return self.text_embedding(self.encode_text(ids))

    def context_kv(self, ctx: torch.Tensor):
        """Per layer cross-attention (k, v) of a prompt's ctx."""
        return [blk.cross_attn.context_kv(ctx) for blk in self.blocks]

    # ---- time ----
    def time_embed(self, sigma: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """sigma -> (e [d], e0 [6, d]). The sinusoid is computed in float64 from float32 sigma."""
        cfg = self.config
        t = float(np.float32(sigma)) * 1000.0
        half = cfg.freq_dim // 2
        freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
        ang = t * freqs
        emb = np.concatenate([np.cos(ang), np.sin(ang)]).astype(np.float32)
        emb_t = torch.from_numpy(emb).to(self.device)
        e = self.time_embedding(emb_t)
        e0 = self.time_projection(e).view(6, cfg.dim)
        return e, e0

    # ---- patches ----
    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """[F, C, h, w] -> tokens [F * (h/p) * (w/p), C p p] in raster order (frame, row, col)."""
        cfg = self.config
        p = cfg.patch
        fr, c, h, w = latents.shape
        x = latents.reshape(fr, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(fr * (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        p = cfg.patch
        gh, gw = cfg.grid_height, cfg.grid_width
        fr = tokens.shape[0] // (gh * gw)
        x = tokens.reshape(fr, gh, gw, cfg.latent_channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(fr, cfg.latent_channels, gh * p, gw * p)

    # ---- DiT ----
    def dit(self, x: torch.Tensor, sigma: float, ctx_kv, memory: List[LayerMemory],
            block_index: int, update: bool = False, delta_impl: str = "sequential",
            trace: Optional[DiTTrace] = None, need_output: Optional[bool] = None):
        """One DiT pass on a block x [F, C, h, w] -> predicted velocity [F, C, h, w].

        memory: one LayerMemory per layer; read only unless update (the clean pass), which folds
        the block into it AFTER each layer's output is computed from the pre-update memory. The
        clean pass skips the head (its output is unused) unless need_output is True.
        """
        cfg = self.config
        if need_output is None:
            need_output = not update
        e, e0 = self.time_embed(sigma)
        h = self.patch_embedding(self.patchify(x))
        cos, sin = rope_cos_sin(*block_positions(cfg, 0), cfg.head_dim, cfg.rope_theta, h.device)
        rope = Rope(cos, sin)
        for i, blk in enumerate(self.blocks):
            h = blk(h, e0, rope, ctx_kv[i], memory[i], update, cfg, block_index, delta_impl)
            if trace is not None:
                trace.layer_outputs.append(h.detach().clone())
        if not need_output:
            return None
        return self.unpatchify(self.head(h, e))

    def empty_memory(self) -> List[LayerMemory]:
        cfg = self.config
        mems = []
        for kind in cfg.layers:
            if kind == "hybrid":
                state = torch.zeros(cfg.heads, cfg.head_dim, cfg.head_dim, device=self.device)
                mems.append(LayerMemory(kind, state=state))
            else:
                mems.append(LayerMemory(kind))
        return mems

    # ---- autoencoder ----
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[F, C, h, w] (or [C, h, w]) -> [F, 3, H, W] (or [3, H, W])."""
        single = latents.dim() == 3
        out = self.decoder(latents[None] if single else latents)
        return out[0] if single else out

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        single = rgb.dim() == 3
        out = self.encoder(rgb[None] if single else rgb)
        return out[0] if single else out


def use_strict_float32() -> None:
    """Disables TF32 on CUDA (cuDNN convolutions use it by default), so a GPU run of the reference
    stays within float32 rounding of the CPU one. Global torch setting: call it from scripts."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
