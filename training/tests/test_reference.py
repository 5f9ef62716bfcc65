"""Tests of the PyTorch reference (training/strand_ref) and of the golden files it produces.

Where possible each check compares against an independent formulation (published Philox test
vectors, a complex-number RoPE, the sequential delta rule, the safetensors library's reader)
rather than against values the code under test produced.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch

TRAINING = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TRAINING)
sys.path.insert(0, TRAINING)

from strand_ref.config import ConfigError, StrandConfig  # noqa: E402
from strand_ref.export import load_model, read_tensors, save_model  # noqa: E402
from strand_ref.model import (DiTTrace, KvBlock, apply_rope,  # noqa: E402
                              gated_delta_chunked, gated_delta_sequential, l2_normalize,
                              rope_cos_sin, rope_split, select_kv_blocks, to_rgb8)
from strand_ref.rng import COUNTER_TAG, noise, philox4x32_10  # noqa: E402
from strand_ref.session import Session  # noqa: E402

import make_golden  # noqa: E402

GOLDEN_DIR = os.path.join(ROOT, "tests", "data")

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def golden():
    return make_golden.build_golden_model()


# ------------------------------------------------------------------------------------- RNG ----

@pytest.mark.parametrize("ctr,key,expected", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(ctr, key, expected):
    # Random123 kat_vectors for philox4x32 with 10 rounds.
    out = philox4x32_10(np.array([ctr], dtype=np.uint64), key)[0]
    assert tuple(int(x) for x in out) == expected


def test_noise_layout_follows_counter_and_box_muller():
    seed = 0x0123456789ABCDEF
    shape = (3, 4, 5, 7)  # 420 elements
    z = noise(seed, 70000, 2, shape).reshape(-1)
    for j in (0, 1, 2, 3, 5, 418, 419):
        r = philox4x32_10(np.array([[j // 4, 70000, 2, COUNTER_TAG]], dtype=np.uint64),
                          (seed & 0xFFFFFFFF, seed >> 32))[0]
        u = [(int(x) + 0.5) / 2.0 ** 32 for x in r]
        pair = (j % 4) // 2
        rad = math.sqrt(-2.0 * math.log(u[2 * pair]))
        ang = 2.0 * math.pi * u[2 * pair + 1]
        expect = rad * (math.cos(ang) if j % 2 == 0 else math.sin(ang))
        assert z[j] == np.float32(expect)
    # Different blocks / steps / seeds give different noise; the same arguments the same noise.
    assert np.array_equal(z, noise(seed, 70000, 2, shape).reshape(-1))
    assert not np.array_equal(z, noise(seed, 70000, 1, shape).reshape(-1))
    assert not np.array_equal(z, noise(seed + 1, 70000, 2, shape).reshape(-1))
    big = noise(1, 0, 0, (100000,))
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1.0) < 0.02


# ---------------------------------------------------------------------------------- config ----

def test_config_round_trip_and_validation():
    cfg = StrandConfig.from_dict(make_golden.CONFIG)
    assert StrandConfig.from_json(cfg.to_json()) == cfg
    assert (cfg.latent_height, cfg.latent_width, cfg.tokens_per_block, cfg.head_dim) == (4, 8, 96,
                                                                                           16)
    bad_cases = [
        ("video", {"width": 60, "height": 32, "fps": 12}),            # not divisible by 8
        ("sampler", {"sigmas": [1.0, 1.0]}),                          # not strictly decreasing
        ("sampler", {"sigmas": [1.5]}),                               # out of (0, 1]
        ("format", "other"),
        ("version", 2),
    ]
    for key, value in bad_cases:
        obj = json.loads(cfg.to_json())
        obj[key] = value
        with pytest.raises(ConfigError):
            StrandConfig.from_dict(obj)
    obj = json.loads(cfg.to_json())
    obj["dit"]["layers"] = ["hybrid", "mamba"]
    with pytest.raises(ConfigError):
        StrandConfig.from_dict(obj)
    obj = json.loads(cfg.to_json())
    obj["dit"]["heads"] = 3
    with pytest.raises(ConfigError):
        StrandConfig.from_dict(obj)


# ------------------------------------------------------------------------------ primitives ----

def test_rope_matches_complex_rotation():
    head_dim, theta = 32, 10000.0
    c_t, c_r, c_c = rope_split(head_dim)
    assert (c_t, c_r, c_c) == (6, 5, 5)
    pos = np.array([[0, 0, 0], [-7, 2, 3], [1000000, 8, 15]])
    rng = np.random.RandomState(0)
    x = rng.standard_normal((3, 2, head_dim)).astype(np.float32)
    cos, sin = rope_cos_sin(pos[:, 0], pos[:, 1], pos[:, 2], head_dim, theta, "cpu")
    got = apply_rope(torch.from_numpy(x), cos, sin).numpy()
    # Independent: complex multiplication by e^{i angle}, pair j of its part with n pairs.
    for t in range(3):
        angles = []
        for part, n in enumerate((c_t, c_r, c_c)):
            angles += [pos[t, part] * theta ** (-j / n) for j in range(n)]
        z = x[t, :, 0::2].astype(np.complex128) + 1j * x[t, :, 1::2]
        z = z * np.exp(1j * np.array(angles))[None, :]
        ref = np.stack([z.real, z.imag], axis=-1).reshape(2, head_dim)
        np.testing.assert_allclose(got[t], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_chunked_delta_rule_equals_sequential(dtype, tol):
    gen = torch.Generator().manual_seed(3)
    tokens, heads, dk, dv = 150, 3, 16, 12  # 150 = 2 full chunks of 64 + a partial one
    k = l2_normalize(torch.randn(tokens, heads, dk, generator=gen, dtype=dtype))
    v = torch.randn(tokens, heads, dv, generator=gen, dtype=dtype)
    g = -torch.rand(tokens, heads, generator=gen, dtype=dtype) * 0.3
    beta = 2 * torch.rand(tokens, heads, generator=gen, dtype=dtype)
    s0 = 0.1 * torch.randn(heads, dk, dv, generator=gen, dtype=dtype)
    seq = gated_delta_sequential(s0, k, v, torch.exp(g), beta)
    for chunk in (64, 7, 1):
        chk = gated_delta_chunked(s0, k, v, g, beta, chunk=chunk)
        assert torch.allclose(chk, seq, rtol=tol, atol=tol), chunk
    # The closed form of one step: S1 = alpha (I - beta k k^T) S0 + beta k v^T.
    a1, b1, k1, v1 = torch.exp(g[0]), beta[0], k[0], v[0]
    eye = torch.eye(dk, dtype=dtype)
    one = torch.stack([a1[h] * (eye - b1[h] * torch.outer(k1[h], k1[h])) @ s0[h]
                       + b1[h] * torch.outer(k1[h], v1[h]) for h in range(heads)])
    assert torch.allclose(gated_delta_sequential(s0, k[:1], v[:1], torch.exp(g[:1]), beta[:1]),
                          one, rtol=tol, atol=tol)


def test_window_and_sink_selection():
    blocks = [KvBlock(i, torch.zeros(1), torch.zeros(1)) for i in range(6)]
    idx = lambda bs: [b.block_index for b in bs]  # noqa: E731
    assert idx(select_kv_blocks(blocks, 0, 0)) == [0, 1, 2, 3, 4, 5]   # unlimited
    assert idx(select_kv_blocks(blocks, 0, 2)) == [0, 1, 2, 3, 4, 5]   # sink alone keeps all
    assert idx(select_kv_blocks(blocks, 2, 0)) == [4, 5]
    assert idx(select_kv_blocks(blocks, 1, 1)) == [0, 5]
    assert idx(select_kv_blocks(blocks, 2, 3)) == [0, 1, 2, 4, 5]
    assert idx(select_kv_blocks(blocks[:3], 2, 1)) == [0, 1, 2]


def test_to_rgb8_rounds_half_away_from_zero():
    # Find float32 pixels whose (x + 1) * 127.5 (in float32) is exactly k + 0.5.
    xs, expected = [], []
    for k in range(130, 250):
        x = np.float32((k + 0.5) / 127.5 - 1.0)
        for _ in range(64):
            v = (x + np.float32(1)) * np.float32(127.5)
            if v == k + 0.5:
                xs.append(x)
                expected.append(k + 1)  # half away from zero (half-to-even would give k for even k)
                break
            x = np.nextafter(x, np.float32(2) if v < k + 0.5 else np.float32(-2))
    assert len(xs) >= 10
    xs += [np.float32(-3.0), np.float32(300.0), np.float32(0.0)]
    expected += [0, 255, 128]
    assert to_rgb8(torch.tensor(np.array(xs, dtype=np.float32))).tolist() == expected


def test_patchify_index_formula(golden):
    model, cfg, _ = golden
    # patch 2 on a [2, 3, 4, 6] latent: token (f, r, c), index (ci p + pr) p + pc.
    cfg2 = StrandConfig.from_dict({**make_golden.CONFIG,
                                   "dit": {**make_golden.CONFIG["dit"], "patch": 2}})
    model.config, saved = cfg2, model.config
    try:
        lat = torch.arange(3 * 4 * 4 * 8, dtype=torch.float32).reshape(3, 4, 4, 8)
        tok = model.patchify(lat)
        assert tok.shape == (3 * 2 * 4, 16)
        f, r, c, ci, pr, pc = 2, 1, 3, 2, 1, 0
        t = (f * 2 + r) * 4 + c
        assert tok[t, (ci * 2 + pr) * 2 + pc] == lat[f, ci, r * 2 + pr, c * 2 + pc]
        assert torch.equal(model.unpatchify(tok), lat)
    finally:
        model.config = saved


# ------------------------------------------------------------------------------------- DiT ----

def _random_memory(model, cfg, rng, kv_blocks):
    mem = model.empty_memory()
    for i, kind in enumerate(cfg.layers):
        if kind == "hybrid":
            mem[i].state = torch.from_numpy(
                (rng.standard_normal((cfg.heads, cfg.head_dim, cfg.head_dim)) * 0.1)
                .astype(np.float32))
        else:
            mem[i].kv_blocks = [
                KvBlock(b, torch.from_numpy(rng.standard_normal((cfg.tokens_per_block, cfg.dim))
                                            .astype(np.float32)),
                        torch.from_numpy(rng.standard_normal((cfg.tokens_per_block, cfg.dim))
                                         .astype(np.float32)))
                for b in kv_blocks]
    return mem


@torch.no_grad()
def test_clean_pass_reads_pre_update_memory_and_temporal_positions_are_relative(golden):
    model, cfg, vocab = golden
    rng = np.random.RandomState(5)
    ctx_kv = model.context_kv(model.text_context([2, 50, 3]))
    x = torch.from_numpy(rng.standard_normal(cfg.latent_shape).astype(np.float32))
    base = 10 ** 6
    mem_a = _random_memory(model, cfg, np.random.RandomState(9), [0, 1])
    mem_b = _random_memory(model, cfg, np.random.RandomState(9), [base, base + 1])

    read_only, clean = DiTTrace(), DiTTrace()
    model.dit(x, 0.0, ctx_kv, mem_a, 2, update=False, trace=read_only)
    model.dit(x, 0.0, ctx_kv, mem_a, 2, update=True, trace=clean)
    for a, b in zip(read_only.layer_outputs, clean.layer_outputs):
        assert torch.equal(a, b)  # the update comes after the layer's output
    # A block at index 10^6 + 2 with cache 10^6, 10^6 + 1 sees the same relative positions.
    far = DiTTrace()
    model.dit(x, 0.0, ctx_kv, mem_b, base + 2, update=True, trace=far)
    for a, b in zip(clean.layer_outputs, far.layer_outputs):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    # The memory changed, window 1 + sink 1 kept the sink and the new block.
    soft = cfg.softmax_layer_indices[0]
    assert [b.block_index for b in mem_a[soft].kv_blocks] == [0, 2]
    assert [b.block_index for b in mem_b[soft].kv_blocks] == [base, base + 2]
    hyb = cfg.hybrid_layer_indices[0]
    assert not torch.equal(mem_a[hyb].state, _random_memory(
        model, cfg, np.random.RandomState(9), [0, 1])[hyb].state)


@torch.no_grad()
def test_memory_changes_the_output(golden):
    model, cfg, _ = golden
    rng = np.random.RandomState(6)
    ctx_kv = model.context_kv(model.text_context([2, 60, 3]))
    x = torch.from_numpy(rng.standard_normal(cfg.latent_shape).astype(np.float32))
    v0 = model.dit(x, 0.5, ctx_kv, model.empty_memory(), 2)
    v1 = model.dit(x, 0.5, ctx_kv, _random_memory(model, cfg, rng, [0, 1]), 2)
    assert (v0 - v1).abs().max() > 1e-3


# --------------------------------------------------------------------------------- session ----

@torch.no_grad()
def test_snapshot_restore_reproduces_blocks(golden):
    model, cfg, vocab = golden
    s = Session(model, vocab, seed=99)
    s.set_prompt("a red balloon over snowy mountains at dusk")
    s.generate_next_block()
    snap = s.snapshot()
    first = [s.generate_next_block().latents for _ in range(2)]
    # The session's own state was not aliased by the snapshot.
    assert snap.next_block == 1
    s.restore(snap)
    again = [s.generate_next_block().latents for _ in range(2)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    # A fresh session restored from the snapshot continues identically too.
    other = Session(model, vocab, seed=0)
    other.restore(snap)
    assert other.prompt == "a red balloon over snowy mountains at dusk"
    assert torch.equal(other.generate_next_block().latents, first[0])
    soft = cfg.softmax_layer_indices[0]
    assert [b.block_index for b in s.snapshot().layers[soft].kv_blocks] == [0, 2]


@torch.no_grad()
def test_recache_replays_clean_passes(golden):
    model, cfg, vocab = golden
    a, b = "a red balloon over snowy mountains at dusk", "birds flying over a green forest at dawn"
    s = Session(model, vocab, seed=5)
    s.set_prompt(a)
    blocks = [s.generate_next_block().latents for _ in range(3)]
    s.set_prompt(b, recache_blocks=2)
    # Independent replay: blocks 0 under a, then clean passes of blocks 1 and 2 under b.
    ref = Session(model, vocab, seed=5)
    ref.set_prompt(a)
    ref.generate_next_block()
    ctx_b = model.context_kv(model.text_context(ref.tokenizer.encode(b)))
    state = ref.snapshot()
    for n in (1, 2):
        model.dit(blocks[n], 0.0, ctx_b, state.layers, n, update=True)
    got = s.snapshot()
    assert got.next_block == 3 and got.prompt == b
    for m_got, m_ref in zip(got.layers, state.layers):
        if m_got.state is not None:
            assert torch.equal(m_got.state, m_ref.state)
        assert [x.block_index for x in m_got.kv_blocks] == [x.block_index for x in m_ref.kv_blocks]
    # Asking for more blocks than exist goes back to the start of the video.
    s2 = Session(model, vocab, seed=5)
    s2.set_prompt(a)
    s2.generate_next_block()
    s2.set_prompt(b, recache_blocks=10)
    st = s2.snapshot()
    ref2 = Session(model, vocab, seed=5).snapshot()
    ref2.layers = model.empty_memory()
    model.dit(blocks[0], 0.0, ctx_b, ref2.layers, 0, update=True)
    for m_got, m_ref in zip(st.layers, ref2.layers):
        if m_got.state is not None:
            assert torch.equal(m_got.state, m_ref.state)


@torch.no_grad()
def test_block_far_in_the_video_runs(golden):
    model, cfg, vocab = golden
    s = Session(model, vocab, seed=1)
    s.set_prompt("snow")
    state = s.snapshot()
    state.next_block = 10 ** 6
    s.restore(state)
    r1 = s.generate_next_block()
    r2 = s.generate_next_block()
    assert r2.block_index == 10 ** 6 + 1
    assert torch.isfinite(r1.frames).all() and torch.isfinite(r2.frames).all()


def test_prompt_validation(golden):
    model, cfg, vocab = golden
    s = Session(model, vocab)
    for bad in ("", "   \t\n", "x" * 4097, "a\ud800b"):
        with pytest.raises(ValueError):
            s.set_prompt(bad)
    with pytest.raises(RuntimeError):
        s.generate_next_block()


# ---------------------------------------------------------------------------------- export ----

def test_export_round_trip(tmp_path, golden):
    model, cfg, vocab = golden
    path = str(tmp_path / "m.safetensors")
    save_model(path, model, cfg, vocab)
    loaded, cfg2, vocab2 = load_model(path)
    assert cfg2 == cfg and vocab2 == vocab
    ref = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    # The safetensors library (an independent reader) agrees, and the layout is engine-friendly.
    from safetensors.numpy import load_file
    lib = load_file(path)
    assert set(lib) == set(ref)
    assert np.array_equal(lib["head.head.weight"], ref["head.head.weight"].numpy())
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    assert header_len % 8 == 0
    # Saving twice gives identical bytes.
    path2 = str(tmp_path / "m2.safetensors")
    save_model(path2, model, cfg, vocab)
    assert open(path, "rb").read() == open(path2, "rb").read()
    # Half precision: the reader widens to float32 (values rounded to the nearest half/bfloat).
    for dt, tol in (("F16", 1e-3), ("BF16", 8e-3)):
        p = str(tmp_path / f"m-{dt}.safetensors")
        save_model(p, model, cfg, vocab, float_dtype=dt)
        tensors, meta = read_tensors(p)
        w = ref["blocks.0.ffn.0.weight"].numpy()
        assert tensors["blocks.0.ffn.0.weight"].dtype == np.float32
        assert np.allclose(tensors["blocks.0.ffn.0.weight"], w, rtol=tol, atol=1e-6)


# ---------------------------------------------------------------------------------- golden ----

def test_golden_files_regenerate_identically(tmp_path):
    make_golden.generate(str(tmp_path))
    with open(os.path.join(GOLDEN_DIR, "golden-model.safetensors"), "rb") as f:
        committed_model = f.read()
    assert (tmp_path / "golden-model.safetensors").read_bytes() == committed_model
    total = len(committed_model)
    for name in ("golden-modules", "golden-rollout"):
        committed_path = os.path.join(GOLDEN_DIR, name + ".safetensors")
        total += os.path.getsize(committed_path)
        fresh, fresh_meta = read_tensors(str(tmp_path / (name + ".safetensors")))
        committed, committed_meta = read_tensors(committed_path)
        assert fresh_meta == committed_meta
        assert set(fresh) == set(committed)
        for key in committed:
            # Bit-identical on one machine; other torch/BLAS builds differ in the last bits, so
            # compare norm-wise (max abs difference relative to the tensor's max abs value).
            a, b = fresh[key], committed[key]
            assert a.shape == b.shape and a.dtype == b.dtype, key
            if b.dtype.kind in "iu":
                assert np.array_equal(a, b), f"{name}:{key}"
            else:
                scale = max(float(np.abs(b).max()), 1e-30)
                assert float(np.abs(a - b).max()) / scale <= 1e-5, f"{name}:{key}"
    assert total < 2 * 1024 * 1024


def test_golden_contents_are_consistent():
    tensors, meta = read_tensors(os.path.join(GOLDEN_DIR, "golden-modules.safetensors"))
    assert meta["dit.block"] == "2" and json.loads(meta["dit.clean.kv_out_blocks"]) == [0, 2]
    seed = int(meta["noise.seed"])
    assert seed == 0x0123456789ABCDEF
    shape = tensors["noise.b0.s0"].shape
    assert np.array_equal(tensors["noise.b70000.s1"], noise(seed, 70000, 1, shape))
    # Window 1 + sink 1: the kept blocks are the sink (block 0 of the input) and the new block.
    assert np.array_equal(tensors["dit.clean.kv_out.1.k"][0], tensors["dit.kv_in.1.k"][0])
    rollout, rmeta = read_tensors(os.path.join(GOLDEN_DIR, "golden-rollout.safetensors"))
    assert rmeta["seed"] == "1234"
    # Re-cache changed the memory, so run 1's block 2 differs from run 2's (hard switch).
    assert not np.array_equal(rollout["run1.b2.latents"], rollout["run2.b2.latents"])


@torch.no_grad()
def test_text_encoder_matches_torch_transformer_layers(golden):
    # Independent formulation: torch.nn.TransformerEncoderLayer is the same post-LN BERT layer
    # (fused in_proj, erf GELU); copy the weights over and compare the hidden states.
    model, cfg, vocab = golden
    ids = [2, 47, 325, 292, 118, 241, 3]
    te = model.text_encoder
    emb = te.embeddings
    h = (emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[:len(ids)]
         + emb.token_type_embeddings.weight[0])
    h = torch.nn.functional.layer_norm(h, (cfg.text_dim,), emb.LayerNorm.weight,
                                       emb.LayerNorm.bias, eps=1e-12)[None]
    for layer in te.encoder.layer:
        ref = torch.nn.TransformerEncoderLayer(cfg.text_dim, cfg.text_heads,
                                               cfg.text_intermediate, dropout=0.0,
                                               activation="gelu", layer_norm_eps=1e-12,
                                               batch_first=True).eval()
        sa = layer.attention.self
        ref.self_attn.in_proj_weight.copy_(torch.cat([sa.query.weight, sa.key.weight,
                                                      sa.value.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([sa.query.bias, sa.key.bias, sa.value.bias]))
        ref.self_attn.out_proj.load_state_dict(layer.attention.output.dense.state_dict())
        ref.norm1.load_state_dict(layer.attention.output.LayerNorm.state_dict())
        ref.linear1.load_state_dict(layer.intermediate.dense.state_dict())
        ref.linear2.load_state_dict(layer.output.dense.state_dict())
        ref.norm2.load_state_dict(layer.output.LayerNorm.state_dict())
        h = ref(h)
    got = model.encode_text(ids)
    assert torch.allclose(got, h[0], rtol=1e-5, atol=1e-5)
