"""The autoencoder study's tools (CPU, seconds): training/ae_study.py's sizes and decoder cost
against the spec's decoder, and the ae stage's subject-weighted pixel loss (train.py
--subject-weight now also weights the ae stage, as it did the dec stage)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import ae_study  # noqa: E402
import train  # noqa: E402
from strand_ref.model import Decoder  # noqa: E402
from train_lib import modelio  # noqa: E402

from test_train import TINY, small_text  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _decoder(ae_channels, latent_channels):
    cfg = modelio.make_config({"autoencoder.channels": list(ae_channels),
                               "latent_channels": latent_channels},
                              dict(modelio.BASE_CONFIG["text"]))
    return Decoder(cfg)


@pytest.mark.parametrize("channels,latent,patch,tokens", [
    ([16, 32, 64, 128], 8, 2, 144),   # the shipped config: 32 x 18 latent, 16 x 9 tokens
    ([16, 32, 64, 128], 16, 2, 144),
    ([16, 32, 64], 8, 2, 576),        # 4x: 64 x 36 latent, 4x the tokens at patch 2 ...
    ([16, 32, 64], 8, 4, 144),        # ... and the shipped token count at patch 4
])
def test_sizes_and_decoder_cost_match_the_spec_decoder(channels, latent, patch, tokens):
    costs = ae_study.ae_costs(256, 144, channels, latent, patch)
    factor = 2 ** (len(channels) - 1)
    assert costs["downsampling"] == factor
    assert costs["latent"] == [latent, 144 // factor, 256 // factor]
    assert costs["tokens_per_frame"] == tokens and costs["tokens_per_block"] == 3 * tokens
    assert costs["patch_dim"] == latent * patch * patch
    decoder = _decoder(channels, latent)
    assert costs["decoder_params"] == sum(p.numel() for p in decoder.parameters())
    # FLOPs counted independently: hooks on the real decoder's convolutions at their output size.
    counted = []

    def hook(module, _inputs, output):
        counted.append(2 * module.weight.numel() * output.shape[-2] * output.shape[-1])

    for m in decoder.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        out = decoder(torch.zeros(1, *costs["latent"]))
    assert tuple(out.shape) == (1, 3, 144, 256)
    assert costs["decoder_gflop_per_frame"] == pytest.approx(sum(counted) / 1e9, abs=1e-3)


def test_shipped_decoder_cost_is_the_model_cards():
    # docs/model-card.md, "Size": "the thin decoder is 1.06 GFLOP per frame".
    assert ae_study.ae_costs(256, 144, [16, 32, 64, 128], 8, 2)["decoder_gflop_per_frame"] == \
        pytest.approx(1.06, abs=0.005)


def test_sizes_reject_what_the_engine_rejects():
    with pytest.raises(ValueError):
        ae_study.ae_costs(256, 144, [16, 32, 64, 128, 256, 512], 8, 2)  # 32x: 144 / 32
    with pytest.raises(ValueError):
        ae_study.ae_costs(256, 144, [16, 32, 64, 128], 8, 4)  # 18 rows / patch 4


def test_pixel_loss_unit_weights_equal_plain_and_weights_favour_the_subject():
    torch.manual_seed(0)
    out, rgb = torch.randn(2, 3, 8, 10), torch.randn(2, 3, 8, 10)
    plain = train.pixel_loss(out, rgb, None)
    ones = train.pixel_loss(out, rgb, torch.ones(2, 1, 8, 10))
    for a, b in zip(plain, ones):
        assert float(a) == pytest.approx(float(b), rel=1e-5)
    # An error on the weighted pixels only costs more with the weight than without.
    target = out.clone()
    target[:, :, 2:4, 3:5] += 0.5
    w = torch.ones(2, 1, 8, 10)
    w[:, :, 2:4, 3:5] = 6.0
    assert float(train.pixel_loss(out, target, w)[0]) > 2 * float(train.pixel_loss(out, target,
                                                                                   None)[0])


def _ae_weights(tmp_path, monkeypatch, *extra):
    seen = []
    original = train.ae_loss

    def spy(model, rgb, noise, reg, weights=None):
        seen.append((tuple(rgb.shape), weights))
        return original(model, rgb, noise, reg, weights)

    monkeypatch.setattr(train, "ae_loss", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train.main(TINY + small_text() + [
            "--out", str(tmp_path / "run"), "--stage", "ae", "--max-steps", "2", "--seed", "3",
            "--no-plots"] + list(extra)) == 0
    assert len(seen) == 2
    return seen


def test_ae_stage_weights_subject_pixels_with_subject_weight(tmp_path, monkeypatch):
    seen = _ae_weights(tmp_path, monkeypatch, "--subject-weight", "6", "--pool", "8",
                       "--ae-clips", "8", "--ae-batch", "48")
    for shape, w in seen:
        assert w is not None and tuple(w.shape) == (shape[0], 1) + shape[-2:]
        assert float(w.min()) >= 1.0
    assert any(float(w.max()) == 6.0 for _, w in seen), "no subject pixel was weighted"


def test_ae_stage_is_unweighted_by_default_and_threads_are_set(tmp_path, monkeypatch):
    assert all(w is None for _, w in _ae_weights(tmp_path, monkeypatch, "--threads", "2"))
    assert torch.get_num_threads() == 2  # --threads (the fixture set 1)
