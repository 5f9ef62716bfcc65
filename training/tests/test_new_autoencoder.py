"""A new autoencoder under a trained DiT (run 9, training/gpu_run.sh AE_MIN > 0), on tiny CPU
configs: --init-dit-from copies the DiT into a model with another autoencoder and patch,
--keep-stage-exports keeps the ae stage's export, ae_ceiling.py loads a model whose text
encoder lies elsewhere (--text-encoder)."""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import ae_ceiling  # noqa: E402
import train  # noqa: E402
from strand_ref.export import read_tensors, write_tensors  # noqa: E402
from strand_ref.model import TextEncoder  # noqa: E402
from train_lib import modelio  # noqa: E402

# 8x autoencoder at patch 1 (the "shipped" source) and 4x at patch 2 (the new one): both give a
# 4 x 2 token grid per frame at 32x16, as 8x / patch 2 and 4x / patch 4 do at 256x144.
TINY = ["--device", "cpu", "--width", "32", "--height", "16", "--latent-channels", "4",
        "--dim", "32", "--heads", "2", "--depth", "2", "--batch", "2", "--clip-blocks", "2",
        "--selfforce-blocks", "2", "--pool", "2", "--refresh", "1", "--ae-clips", "2",
        "--ae-batch", "6", "--log-every", "1", "--minutes", "5", "--warmup", "1",
        "--checkpoint-minutes", "0", "--no-plots", "--threads", "1",
        "--text-encoder", "/nonexistent/encoder.safetensors"]
SOURCE = ["--ae-channels", "8,8,8,8", "--patch", "1"]
NEW_AE = ["--ae-channels", "8,8,8", "--patch", "2"]


def run(folder: Path, *extra) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-encoder fallback and stand-in world warn
        assert train.main(TINY + ["--out", str(folder)] + list(extra)) == 0
    return folder


def is_dit(name: str) -> bool:
    return not name.startswith(("encoder.", "decoder.", "text_encoder."))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny 8x model whose DiT has trained a step (so it differs from any fresh init)."""
    torch.set_num_threads(1)
    folder = run(tmp_path_factory.mktemp("src"), *SOURCE, "--stage", "dit", "--max-steps", "1",
                 "--ema", "0")
    return folder / "model.safetensors"


def test_init_dit_from_moves_the_dit_onto_a_new_autoencoder(tmp_path, source):
    out = run(tmp_path / "new", *NEW_AE, "--stage", "ae", "--max-steps", "2", "--seed", "3",
              "--init-dit-from", str(source), "--keep-stage-exports")
    want, _ = read_tensors(str(source))
    got, meta = read_tensors(str(out / "model.safetensors"))
    cfg = json.loads(meta["strand.config"])
    assert cfg["autoencoder"]["channels"] == [8, 8, 8] and cfg["dit"]["patch"] == 2
    fresh = sorted(k for k in got if is_dit(k) and got[k].shape != want[k].shape)
    assert fresh == ["head.head.bias", "head.head.weight", "patch_embedding.weight"]
    # The ae stage leaves the DiT alone: every DiT tensor of fitting shape is the source's.
    copied = [k for k in got if is_dit(k) and k not in fresh]
    assert len(copied) > 20
    for k in copied:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # The autoencoder is this run's own new one (4x: one stage fewer than the source's).
    assert "encoder.down.2.conv.weight" in want and "encoder.down.2.conv.weight" not in got
    # The ae stage's export is kept apart, as the stage left it.
    kept, _ = read_tensors(str(out / "model.ae.safetensors"))
    assert set(kept) == set(got)
    assert all(np.array_equal(kept[k], got[k]) for k in got)
    assert not list(out.glob("*.tmp"))


def test_init_dit_from_continues_into_the_dit_stage(tmp_path, source):
    """ae then dit in one process (gpu_run.sh's run-9 mode): the DiT trains on from the copy."""
    out = run(tmp_path / "new", *NEW_AE, "--stage", "ae,dit", "--max-steps", "1", "--ema", "0",
              "--init-dit-from", str(source), "--keep-stage-exports")
    assert (out / "model.ae.safetensors").is_file() and (out / "model.dit.safetensors").is_file()
    want, _ = read_tensors(str(source))
    after_ae, _ = read_tensors(str(out / "model.ae.safetensors"))
    after_dit, _ = read_tensors(str(out / "model.safetensors"))
    name = "blocks.0.self_attn.q.weight"
    np.testing.assert_array_equal(after_ae[name], want[name])
    assert not np.array_equal(after_dit[name], want[name])
    # The dit stage does not touch the autoencoder trained before it.
    for k in after_ae:
        if k.startswith(("encoder.", "decoder.")):
            np.testing.assert_array_equal(after_dit[k], after_ae[k], err_msg=k)


def test_init_dit_from_refuses_a_dit_of_another_size(tmp_path, source):
    with pytest.raises(SystemExit, match="does not fit"):
        run(tmp_path / "wide", *NEW_AE, "--dim", "48", "--stage", "ae", "--max-steps", "1",
            "--init-dit-from", str(source))
    assert not (tmp_path / "wide" / "model.safetensors").exists()


def test_ae_ceiling_loads_a_model_with_its_encoder_elsewhere(tmp_path, capsys):
    """The GPU machine has only the pruned encoder, not the file the model names."""
    text_cfg = {"format": "strand-text-encoder", "version": 1, "name": "fake", "dim": 16,
                "layers": 1, "heads": 2, "intermediate": 32, "max_positions": 24,
                "lowercase": True}
    vocab = modelio.fallback_vocab()
    encoder = TextEncoder(modelio.make_config({}, text_cfg), len(vocab))
    enc = tmp_path / "enc" / "fake-encoder.safetensors"
    write_tensors(str(enc), {"text_encoder." + k: v for k, v in encoder.state_dict().items()},
                  {"strand.text_config": json.dumps(text_cfg), "strand.vocab": "\n".join(vocab)})
    folder = run(tmp_path / "m", *NEW_AE, "--stage", "ae", "--max-steps", "1",
                 "--text-encoder", str(enc))
    model = tmp_path / "alone" / "model.safetensors"
    model.parent.mkdir()
    shutil.copyfile(folder / "model.safetensors", model)
    with pytest.raises(SystemExit, match="needs the text encoder"):
        ae_ceiling.main([str(model), "--frames", "4", "--threads", "1"])
    capsys.readouterr()
    assert ae_ceiling.main([str(model), "--frames", "4", "--threads", "1",
                            "--text-encoder", str(enc)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == str(model)
    assert 0.0 <= result["subject"] <= 1.0 and result["mean_abs_error"] > 0
