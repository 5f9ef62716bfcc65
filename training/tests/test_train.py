"""The training pipeline on tiny configs (CPU): batched passes equal the reference, every stage
runs, the autoencoder learns, runs resume from exported weights, exports load in the engine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import train  # noqa: E402
from strand_ref.export import read_tensors, write_tensors  # noqa: E402
from strand_ref.init import init_model  # noqa: E402
from strand_ref.model import StrandModel, TextEncoder  # noqa: E402
from train_lib import batched, data, modelio  # noqa: E402

REPO = TRAINING.parent

TINY = ["--device", "cpu", "--width", "32", "--height", "16", "--ae-channels", "8,8,8,8",
        "--latent-channels", "4", "--patch", "1", "--dim", "32", "--heads", "2", "--depth", "2",
        "--batch", "2", "--clip-blocks", "3", "--selfforce-blocks", "3", "--pool", "2",
        "--refresh", "1", "--ae-clips", "2", "--ae-batch", "6", "--log-every", "1",
        "--minutes", "5", "--warmup", "1", "--checkpoint-minutes", "0"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def small_text():
    """The model's own small encoder (no converted MiniLM needed) at the tiniest size."""
    return ["--text-encoder", "/nonexistent/encoder.safetensors"]


def run(tmp_path, *extra, out="run"):
    folder = tmp_path / out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-encoder fallback and stand-in world warn
        assert train.main(TINY + small_text() + ["--out", str(folder)] + list(extra)) == 0
    return folder


def records(folder):
    return json.loads((folder / "losses.json").read_text())["records"]


def tiny_model(layers, window=0, sink=0):
    text = modelio.TextSource(
        None, {"dim": 16, "layers": 1, "heads": 2, "intermediate": 32, "max_positions": 16,
               "lowercase": True}, modelio.fallback_vocab(), None)
    cfg = modelio.make_config({"video.width": 32, "video.height": 16, "latent_channels": 4,
                               "autoencoder.channels": [8, 8, 8, 8], "dit.patch": 1,
                               "dit.dim": 32, "dit.heads": 2, "dit.mlp_dim": 64,
                               "dit.layers": layers, "dit.softmax_kv_window": window,
                               "dit.softmax_kv_sink": sink}, text.config)
    model = StrandModel(cfg, len(text.vocab))
    init_model(model, 5, strong=True)
    return model, text


@pytest.mark.parametrize("layers,window", [(["hybrid", "softmax_kv"], 0),
                                           (["softmax_kv", "hybrid"], 1)])
def test_batched_pass_matches_reference(layers, window):
    """Noisy reads and clean writes over 3 blocks, batch of 2 prompts of different lengths (the
    padding masked): row 0 equals StrandModel.dit on the unpadded prompt."""
    torch.manual_seed(0)
    model, _ = tiny_model(layers, window)
    cfg = model.config
    ids_short, ids_long = [2, 40, 3], [2, 41, 42, 43, 44, 3]
    with torch.no_grad():
        ctx_s, ctx_l = model.text_context(ids_short), model.text_context(ids_long)
        ctx = torch.zeros(2, len(ids_long), cfg.dim)
        mask = torch.zeros(2, len(ids_long), dtype=torch.bool)
        ctx[0, :3], ctx[1] = ctx_s, ctx_l
        mask[0, :3], mask[1] = True, True
        ref_mem = model.empty_memory()
        mem = batched.empty_memory(model, 2, "cpu")
        rope = batched.RopeCache(model, "cpu")
        kv_ref = model.context_kv(ctx_s)
        for n in range(3):
            clean = torch.randn(2, *cfg.latent_shape)
            noisy = torch.randn(2, *cfg.latent_shape)
            sigma = torch.tensor([0.75, 0.5])
            v, mem = batched.dit(model, torch.cat([noisy, clean]),
                                 torch.cat([sigma, torch.zeros(2)]), ctx, mask, mem, n, rope,
                                 update_group=1)
            v_ref = model.dit(noisy[0], 0.75, kv_ref, ref_mem, n)
            torch.testing.assert_close(v[0], v_ref, rtol=1e-4, atol=1e-4)
            model.dit(clean[0], 0.0, kv_ref, ref_mem, n, update=True, delta_impl="sequential")
        for got, want in zip(mem, ref_mem):
            if want.state is not None:
                torch.testing.assert_close(got.state[0], want.state, rtol=1e-4, atol=1e-5)
            else:
                assert [b[0] for b in got.kv] == [b.block_index for b in want.kv_blocks]


def test_every_stage_runs_and_logs(tmp_path):
    folder = run(tmp_path, "--stage", "all", "--max-steps", "2")
    rows = records(folder)
    assert {r["stage"] for r in rows} == {"ae", "dit", "selfforce"}
    assert all(np.isfinite(r["loss"]) for r in rows)
    for stage in ("ae", "dit", "selfforce"):
        assert (folder / f"train-{stage}.png").stat().st_size > 1000
    held = json.loads((folder / "held_out.json").read_text())["combinations"]
    assert held and all(data.is_held_out(dict(kv.split("=") for kv in c.split(";")))
                        for c in held[:20])


def test_softmax_kv_baselines_run(tmp_path):
    run(tmp_path, "--stage", "dit", "--max-steps", "2", "--layers", "softmax_kv", out="full")
    folder = run(tmp_path, "--stage", "selfforce", "--max-steps", "2", "--layers", "softmax_kv",
                 "--window", "1", out="win")
    model, _ = modelio.load(str(folder / "model.safetensors"))
    assert model.config.layers == ["softmax_kv", "softmax_kv"]
    assert model.config.softmax_kv_window == 1


def test_autoencoder_loss_decreases(tmp_path):
    folder = run(tmp_path, "--stage", "ae", "--max-steps", "20", "--no-plots",
                 "--pool", "1", "--ae-clips", "1", "--ae-clip-blocks", "1", "--lr-ae", "3e-3")
    losses = [r["loss"] for r in records(folder)]
    assert len(losses) == 20
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_resume_reloads_weights_and_continues(tmp_path):
    first = run(tmp_path, "--stage", "ae", "--max-steps", "2", "--no-plots", out="a")
    a_tensors, _ = read_tensors(str(first / "model.safetensors"))
    second = run(tmp_path, "--stage", "dit", "--max-steps", "2", "--no-plots", "--ema", "0",
                 "--resume", str(first / "model.safetensors"), out="b")
    b_tensors, _ = read_tensors(str(second / "model.safetensors"))
    assert set(a_tensors) == set(b_tensors)
    # The autoencoder is frozen in the DiT stage: it comes back bit for bit from the resume file.
    for name in a_tensors:
        if name.startswith(("encoder.", "decoder.", "text_encoder.")):
            np.testing.assert_array_equal(a_tensors[name], b_tensors[name], err_msg=name)
    # ... and the DiT went on training from the reloaded weights.
    assert not np.array_equal(a_tensors["head.head.weight"], b_tensors["head.head.weight"])
    # Stage records of both runs are kept in each folder's own log.
    assert {r["stage"] for r in records(second)} == {"dit"}


def test_external_text_encoder_is_referenced_not_copied(tmp_path):
    """With a converted encoder file the model file holds no text_encoder.* tensors and names the
    file; resuming finds it next to the model."""
    text_cfg = {"format": "strand-text-encoder", "version": 1, "name": "fake", "dim": 16,
                "layers": 1, "heads": 2, "intermediate": 32, "max_positions": 24,
                "lowercase": True}
    vocab = modelio.fallback_vocab()
    encoder = TextEncoder(modelio.make_config({}, text_cfg), len(vocab))
    tensors = {"text_encoder." + k: v for k, v in encoder.state_dict().items()}
    enc_path = tmp_path / "out" / "fake-encoder.safetensors"
    write_tensors(str(enc_path), tensors, {"strand.text_config": json.dumps(text_cfg),
                                           "strand.vocab": "\n".join(vocab)})
    folder = tmp_path / "out"
    assert train.main(TINY + ["--text-encoder", str(enc_path), "--out", str(folder),
                              "--stage", "dit", "--max-steps", "1", "--no-plots"]) == 0
    saved, meta = read_tensors(str(folder / "model.safetensors"))
    assert not any(k.startswith("text_encoder.") for k in saved)
    assert json.loads(meta["strand.config"])["text"]["encoder_file"] == enc_path.name
    model, text = modelio.load(str(folder / "model.safetensors"))
    torch.testing.assert_close(model.text_encoder.state_dict()["embeddings.word_embeddings.weight"],
                               encoder.state_dict()["embeddings.word_embeddings.weight"])


def _cli():
    build = Path(os.environ.get("STRAND_BUILD_DIR", REPO / "build"))
    exe = build / "bin" / "strand-cli"
    return exe if exe.is_file() else None


@pytest.mark.skipif(_cli() is None, reason="strand-cli not built")
def test_export_loads_in_engine(tmp_path):
    folder = run(tmp_path, "--stage", "dit", "--max-steps", "1", "--no-plots",
                 "--layers", "hybrid,softmax_kv", "--name", "tiny-trained")
    out = subprocess.run([str(_cli()), "info", "--model", str(folder / "model.safetensors")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "tiny-trained" in out.stdout and "1 hybrid, 1 softmax_kv" in out.stdout


def test_memory_write_chunk_size_does_not_change_the_state():
    """The chunked WY memory write equals the token-by-token gated delta recurrence for the
    training chunk size (a 432-token block in 3 chunks) and for one chunk of the whole block."""
    torch.manual_seed(1)
    b, t, h, d = 2, 432, 2, 8
    k = torch.nn.functional.normalize(torch.randn(b, t, h, d), dim=-1)
    v = torch.randn(b, t, h, d)
    g = -torch.rand(b, t, h) * 0.2
    beta = 2.0 * torch.rand(b, t, h)
    s0 = torch.randn(b, h, d, d) * 0.1
    s = s0.clone()
    for i in range(t):  # S <- exp(g) S + k beta (v - exp(g) S^T k)^T, rows = key dim
        s = torch.exp(g[:, i])[..., None, None] * s
        err = v[:, i] - torch.einsum("bhij,bhi->bhj", s, k[:, i])
        s = s + beta[:, i][..., None, None] * k[:, i][..., :, None] * err[..., None, :]
    for chunk in (batched.DELTA_CHUNK, 64, t):
        got = batched.gated_delta_chunked_batched(s0, k, v, g, beta, chunk=chunk)
        torch.testing.assert_close(got, s, rtol=1e-4, atol=1e-4)


def test_fast_rope_equals_reference_rope():
    model, _ = tiny_model(["hybrid", "hybrid"])
    rope = batched.RopeCache(model, "cpu")
    x = torch.randn(3, model.config.frames_per_block * model.config.grid_height *
                    model.config.grid_width, model.config.heads, model.config.head_dim)
    for offset in (0, -6):
        want = batched.apply_rope(x, *rope.get(offset))
        got = batched.apply_rope_tables(x, rope.tables(offset, x.dtype))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_baseline_init_from_takes_the_autoencoder_and_sizes(tmp_path):
    """--init-from: a softmax_kv baseline of the source model's size starting from its trained
    autoencoder; --stage takes a comma list and --stage-minutes per-stage budgets."""
    src = run(tmp_path, "--stage", "ae", "--max-steps", "2", "--dim", "48", out="src")
    out = run(tmp_path, "--stage", "dit,selfforce", "--stage-minutes", "dit=1,selfforce=1",
              "--max-steps", "1", "--init-from", str(src / "model.safetensors"),
              "--layers", "softmax_kv", "--window", "1", "--name", "kv", out="kv")
    want, _ = read_tensors(str(src / "model.safetensors"))
    got, meta = read_tensors(str(out / "model.safetensors"))
    cfg = json.loads(meta["strand.config"])
    assert cfg["dit"]["layers"] == ["softmax_kv"] * 2 and cfg["dit"]["softmax_kv_window"] == 1
    assert cfg["dit"]["dim"] == 48 and cfg["name"] == "kv"
    decoder = [k for k in want if k.startswith(("encoder.", "decoder."))]
    assert decoder and all(np.array_equal(want[k], got[k]) for k in decoder)
    assert {r["stage"] for r in records(out)} == {"dit", "selfforce"}
    assert all("samples_per_s" in r for r in records(out))


def test_decgen_trains_the_decoder_alone_on_dit_predictions(tmp_path):
    # A short dit run first (so the DiT predicts something), then decgen from its export: only
    # decoder tensors may change, and the loss is the pixel loss of real frames.
    first = run(tmp_path, "--stage", "dit", "--max-steps", "2", "--no-plots", out="dit")
    folder = run(tmp_path, "--stage", "decgen", "--max-steps", "3", "--no-plots", "--lr-dec", "1e-2",
                 "--resume", str(first / "model.safetensors"), out="decgen")
    rows = records(folder)
    assert [r["stage"] for r in rows] == ["decgen"] * 3
    assert all(np.isfinite(r["loss"]) and r["l1"] > 0 for r in rows)
    before, _ = read_tensors(str(first / "model.safetensors"))
    after, _ = read_tensors(str(folder / "model.safetensors"))
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith("decoder.") for k in changed), sorted(changed)[:5]
