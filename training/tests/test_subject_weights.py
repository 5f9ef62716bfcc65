"""The subject-weighted losses (train.py --subject-weight): the world says where its subjects are,
the weight map puts the weight on those latent cells (and only those), and the weights travel
through the data pipeline into the DiT stages' and the decoder stage's losses (CPU, seconds)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import train  # noqa: E402
from train_lib import data  # noqa: E402
from world import SKY_ZONE_Y, REF_H, World  # noqa: E402

from test_train import TINY, small_text  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_world_subject_mask_marks_the_subjects_and_leaves_the_frames_alone():
    world = World(4, 128, 72)
    schedule = [{"frame": 0, "prompt": "red balloons over a forest at noon"},
                {"frame": 6, "prompt": "an empty forest at noon"}]
    video, mask, labels = world.render_schedule_with_subject_mask(schedule, 30)
    plain, plain_labels = World(4, 128, 72).render_schedule(schedule, 30)
    assert torch.equal(video, plain) and labels == plain_labels
    assert mask.shape == (30, 72, 128) and mask.dtype == torch.bool
    # Balloons are drawn: their pixels are marked, in the upper part of the frame only.
    assert int(mask[0].sum()) > 50
    assert not bool(mask[0, int(72 * 0.75):].any())
    # Red pixels: where the mask is set the frame is redder than where it is not.
    red = video[0, 0].float() - video[0, 1:].float().mean(0)
    assert float(red[mask[0]].mean()) > float(red[~mask[0]].mean()) + 40
    # Once the balloons have faded out (1.5 s after frame 6) nothing is marked.
    assert not bool(mask[6 + world.transition_frames + 1:].any())


def test_world_subject_mask_is_empty_without_subjects():
    _, mask, _ = World(2, 64, 36).render_schedule_with_subject_mask(
        [{"frame": 0, "prompt": "snowy mountains at dusk"}], 4)
    assert mask.shape == (4, 36, 64) and not bool(mask.any())


def test_latent_weight_map_weights_subject_cells_and_only_them():
    mask = torch.zeros(2, 16, 32, dtype=torch.bool)
    mask[0, 9, 13] = True                # one pixel: cell (1, 1) at stride 8
    weights = data.latent_weight_map(mask, (2, 4), 6.0, ring=False)
    assert weights.shape == (2, 2, 4)
    expected = torch.ones(2, 2, 4)
    expected[0, 1, 1] = 6.0
    assert torch.equal(weights, expected)
    # The ring: the 8 neighbours get the mean of 1 and 6, the cell itself keeps 6.
    ringed = data.latent_weight_map(mask, (2, 4), 6.0)
    assert ringed[0, 1, 1] == 6.0
    assert torch.equal(ringed[0, :, 0:3].flatten().sort().values,
                       torch.tensor([3.5, 3.5, 3.5, 3.5, 3.5, 6.0]))
    assert torch.equal(ringed[0, :, 3], torch.ones(2)) and torch.equal(ringed[1], torch.ones(2, 4))
    # Weight 1 is uniform; sizes that are not a whole stride are refused.
    assert torch.equal(data.latent_weight_map(mask, (2, 4), 1.0), torch.ones(2, 2, 4))
    with pytest.raises(ValueError):
        data.latent_weight_map(mask, (3, 4), 6.0)


def test_latent_weight_map_of_a_world_render_points_at_the_birds():
    world = World(9, 256, 144)
    video, mask, _ = world.render_schedule_with_subject_mask(
        [{"frame": 0, "prompt": "white birds over the coast at dawn"}], 3)
    weights = data.latent_weight_map(mask, (18, 32), 6.0, ring=False)
    assert weights.shape == (3, 18, 32)
    heavy = weights == 6.0
    assert 4 <= int(heavy[0].sum()) <= 100          # a few cells of 576, not none, not all
    # Birds fly in the sky band (world.SKY_ZONE_Y): every weighted cell is in its rows.
    rows = heavy.any(dim=2).any(dim=0).nonzero().flatten()
    assert int(rows.max()) < SKY_ZONE_Y / REF_H * 18 + 1
    assert torch.equal(weights[~heavy], torch.ones(int((~heavy).sum())))


def test_pixel_weight_map_grows_the_mask():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 4, 4] = True
    w = data.pixel_weight_map(mask, 5.0, grow=1)
    assert w.shape == (1, 1, 8, 8)
    assert int((w == 5.0).sum()) == 9 and int((w == 1.0).sum()) == 55


def test_weighted_mse_is_mse_with_unit_weights_and_favours_weighted_cells():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 2, 5), torch.randn(2, 3, 4, 2, 5)
    ones = torch.ones(2, 3, 1, 2, 5)
    assert torch.allclose(train.weighted_mse(pred, target, ones), F.mse_loss(pred, target))
    assert train.weighted_mse(pred, target, None) == F.mse_loss(pred, target)
    # An error only in one cell counts more when that cell is weighted.
    err = target.clone()
    err[:, :, :, 0, 0] += 1.0
    w = ones.clone()
    w[:, :, :, 0, 0] = 6.0
    # 1 of 10 cells is wrong by 1: plain mean 1/10; weighted 6 / (6 + 9 x 1) = 0.4.
    assert float(F.mse_loss(err, target)) == pytest.approx(0.1)
    assert float(train.weighted_mse(err, target, w)) == pytest.approx(6.0 / 15.0)


def _capture(monkeypatch, name):
    seen = []
    original = getattr(train, name)

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(train, name, spy)
    return seen


def test_training_steps_use_the_subject_weights(tmp_path, monkeypatch):
    """Two steps each of dec, dit and selfforce with --subject-weight 6 on a tiny model: the
    losses get weight maps shaped like their targets, with weighted cells in them, the dec stage
    trains the decoder only, and the unweighted loss is logged beside the weighted one."""
    flows = _capture(monkeypatch, "flow_pair")
    decs = _capture(monkeypatch, "decoder_loss")
    trainable = []
    original_dec = train.decoder_loss

    def dec_spy(model, *args, **kwargs):
        trainable.append(({p.requires_grad for p in model.encoder.parameters()},
                          {p.requires_grad for p in model.decoder.parameters()}))
        return original_dec(model, *args, **kwargs)

    monkeypatch.setattr(train, "decoder_loss", dec_spy)
    folder = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train.main(TINY + small_text() + [
            "--out", str(folder), "--stage", "dec,dit,selfforce", "--max-steps", "2",
            "--subject-weight", "6", "--batch", "4", "--pool", "4", "--seed", "3",
            "--no-plots"]) == 0
    weights = [kw["weights"] for _, kw in flows if kw.get("weights") is not None]
    assert len(weights) == len(flows) > 0, "the DiT stages got no weight maps"
    for (args, kw) in flows:
        z, w = args[1], kw["weights"]
        assert w.shape == (z.shape[0], z.shape[1], 1) + tuple(z.shape[-2:])
    assert any(float(w.max()) == 6.0 for w in weights)
    assert all(float(w.min()) >= 1.0 for w in weights)
    assert trainable == [({False}, {True})] * 2
    dec_weights = [args[2] for args, _ in decs]
    assert dec_weights and any(w is not None and float(w.max()) == 6.0 for w in dec_weights)
    from train_lib.logbook import Logbook
    records = Logbook(str(folder / "losses.json")).records
    assert {r["stage"] for r in records} == {"dec", "dit", "selfforce"}
    assert all("mse" in r for r in records if r["stage"] in ("dit", "selfforce"))


def test_uniform_weight_renders_no_masks(tmp_path, monkeypatch):
    """--subject-weight 1 (the default) keeps the old recipe: no second render, no weights."""
    flows = _capture(monkeypatch, "flow_pair")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train.main(TINY + small_text() + [
            "--out", str(tmp_path / "run"), "--stage", "dit", "--max-steps", "1",
            "--no-plots"]) == 0
    assert flows and all(kw.get("weights") is None for _, kw in flows)


def test_ae_ceiling_scores_a_perfect_and_a_blurring_roundtrip():
    """training/ae_ceiling.py: the identity round trip keeps the world's own scores; one that
    blurs 8x (what an 8x autoencoder does at worst) loses the subjects."""
    import ae_ceiling

    frames, attrs = ae_ceiling.test_frames(16, seed=2)
    perfect = ae_ceiling.score(frames, attrs, lambda f: f)
    assert perfect["subject"] == 1.0 and perfect["mean_abs_error"] == 0.0
    assert perfect["colour"] >= 0.9

    def blur(f):
        small = F.avg_pool2d(f.float(), 8)
        return F.interpolate(small, scale_factor=8, mode="nearest").round().to(torch.uint8)

    blurred = ae_ceiling.score(frames, attrs, blur)
    assert blurred["subject"] < 0.6 and blurred["mean_abs_error"] > 1.0
