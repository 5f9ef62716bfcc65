"""Tests of the procedural world (training/world.py) and its vocabulary (training/world_vocab.py).

Expected attribute values are written by hand from the vocabulary's documented meaning; pixel
tests compare renders with each other (determinism, persistence, gradual change), never with
stored outputs of the renderer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import world_vocab as vocab  # noqa: E402
from world import HORIZON_Y, World  # noqa: E402

torch.set_num_threads(1)
W, H = 128, 72   # small frames keep the file fast


# --- vocabulary and parser ---
@pytest.mark.parametrize("text, expected", [
    ("twilight over frozen pines", {"time": "dusk", "biome": "forest"}),
    ("a red balloon over snowy mountains at dusk",
     {"time": "dusk", "biome": "snow", "subject": "balloons", "colour": "red"}),
    ("blue cars racing through downtown, fast pan left, snowing",
     {"biome": "city", "subject": "cars", "colour": "blue", "camera": "pan_left_fast",
      "weather": "snow"}),
    ("misty woods at sunrise", {"time": "dawn", "biome": "forest", "weather": "fog"}),
    ("a flock of seagulls over the beach at midnight, camera slowly panning right",
     {"time": "night", "biome": "coast", "subject": "birds", "camera": "pan_right_slow"}),
    ("arid dunes in a downpour, static camera",
     {"biome": "desert", "weather": "rain", "camera": "static"}),
])
def test_parser_synonyms(text, expected):
    parsed = vocab.parse_prompt(text)
    for axis, value in expected.items():
        assert parsed[axis] == value, (text, axis, parsed)


def test_parser_unknown_words_keep_defaults_and_previous_values():
    assert vocab.parse_prompt("zxqv flurble 42 !!") == vocab.DEFAULTS
    previous = vocab.parse_prompt("yellow balloons over a desert at dawn, quick pan left")
    now = vocab.parse_prompt("now it starts raining, wow", previous)
    assert now["weather"] == "rain"
    for axis in ("time", "biome", "subject", "colour", "camera"):
        assert now[axis] == previous[axis]


def test_colour_needs_a_subject_and_snow_is_disambiguated():
    # "green" describes the forest here, not a subject.
    assert vocab.parse_prompt("birds over a green forest")["colour"] == vocab.DEFAULTS["colour"]
    assert vocab.parse_prompt("green birds over a forest")["colour"] == "green"
    assert vocab.parse_prompt("snow")["biome"] == "snow"
    assert vocab.parse_prompt("a city with snow falling") == dict(
        vocab.DEFAULTS, biome="city", weather="snow")
    # Motion words of subjects do not move the camera.
    assert vocab.parse_prompt("birds gliding, cars moving")["camera"] == "static"


def test_paraphrases_parse_back_and_vary():
    combos = vocab.all_combinations()
    assert len(combos) == 4 * 5 * 4 * 5 * (1 + 3 * 7)
    for attrs in combos[::37]:
        sentences = vocab.paraphrases(attrs, 4, seed=3)
        assert len(set(sentences)) >= 3
        for sentence in sentences + [vocab.describe(attrs)]:
            assert vocab.parse_prompt(sentence) == attrs, sentence


def test_vocabulary_size_and_word_list():
    words = vocab.all_words()
    assert len(words) >= 40
    assert words == sorted(set(words))
    for word in ("twilight", "frozen", "pines", "woods", "balloons", "fog", "dusk", "left"):
        assert word in words


# --- renderer ---
def _schedule(*prompts_at):
    return [{"frame": f, "prompt": p} for f, p in prompts_at]


def test_render_shapes_labels_and_determinism():
    schedule = _schedule((0, "red balloons over a forest at dawn"),
                         (6, "the city at night in the rain, quick pan right"))
    a, labels = World(3, W, H).render_schedule(schedule, 12)
    b, _ = World(3, W, H).render_schedule(schedule, 12)
    c, _ = World(4, W, H).render_schedule(schedule, 12)
    assert a.dtype == torch.uint8 and a.shape == (12, 3, H, W)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len(labels) == 12
    assert labels[0]["time"] == "dawn" and labels[0]["subject"] == "balloons"
    assert labels[6]["time"] == "night" and labels[6]["biome"] == "city"
    assert labels[11]["camera"] == "pan_right_fast"
    assert [lab["transition"] for lab in labels] == [False] * 6 + [True] * 6
    # The camera accelerates smoothly after the switch, never jumping to full speed.
    xs = [lab["camera_x"] for lab in labels]
    steps = [xs[i + 1] - xs[i] for i in range(11)]
    assert steps[:5] == [0.0] * 5
    assert all(0 < s_next - s < 7.0 for s, s_next in zip(steps[4:], steps[5:]))


def test_persistent_scenery_when_panning_back():
    world = World(9, W, H)
    base = {"time": "day", "biome": "forest", "weather": "clear", "subject": "none"}
    frames = world.render_attributes([dict(base, camera_x=100.0, frame=0),
                                      dict(base, camera_x=900.0, frame=30),
                                      dict(base, camera_x=100.0, frame=60)])
    land = slice(int(H * 60 / 144), H)
    assert torch.equal(frames[0, :, land], frames[2, :, land])
    assert not torch.equal(frames[0, :, land], frames[1, :, land])


def test_schedule_pan_right_then_left_returns_to_the_same_place():
    schedule = _schedule((0, "a city skyline by day, quick pan right"),
                         (24, "a city skyline by day, quick pan left"))
    world = World(2, W, H)
    video, labels = world.render_schedule(schedule, 60)
    xs = [lab["camera_x"] for lab in labels]
    # Frame j on the way back nearest to frame 10's position.
    j = min(range(30, 60), key=lambda k: abs(xs[k] - xs[10]))
    assert abs(xs[j] - xs[10]) < 2.0 and max(xs) - xs[10] > 60.0
    land = slice(int(H * 60 / 144), int(H * 118 / 144))
    diff = (video[10, :, land].float() - video[j, :, land].float()).abs().mean()
    far = (video[10, :, land].float() - video[int(xs.index(max(xs))), :, land].float()).abs()
    assert diff < 8.0 < far.mean()


def test_transitions_are_gradual():
    schedule = _schedule((0, "a forest in broad daylight"), (4, "the forest at night"))
    world = World(1, W, H)
    video, labels = world.render_schedule(schedule, 4 + world.transition_frames + 4)
    sky = video[:, :, : int(H * HORIZON_Y / 144)].float().mean(dim=(1, 2, 3))
    steps = (sky[1:] - sky[:-1]).abs()
    total = (sky[0] - sky[-1]).abs()
    assert total > 60.0                          # day to night darkens the sky a lot
    assert float(steps.max()) < 0.2 * float(total)
    assert bool((sky[4:4 + world.transition_frames] < sky[3]).all())
    decreasing = sky[3:4 + world.transition_frames]
    assert bool((decreasing[1:] <= decreasing[:-1] + 0.5).all())


def test_render_attributes_blends_and_validates():
    world = World(1, W, H)
    frames = world.render_attributes([{"time": "day"}, {"time": {"day": 1, "night": 1}},
                                      {"time": "night"}])
    mean = frames.float().mean(dim=(1, 2, 3))
    assert mean[0] > mean[1] > mean[2]
    with pytest.raises(ValueError):
        world.render_attributes([{"time": "teatime"}])


def test_cli_render_writes_frames_and_labels(tmp_path):
    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps(_schedule((0, "birds over the coast at dusk"),
                                             (3, "cars in the city at night"))))
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(TRAINING / "world.py"), "render", "--schedule",
                    str(schedule), "--frames", "5", "--seed", "2", "--out", str(out),
                    "--width", "64", "--height", "36"], check=True, capture_output=True)
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:06d}.png" for i in range(5)]
    meta = json.loads((out / "labels.json").read_text())
    assert [lab["subject"] for lab in meta["labels"]] == ["birds"] * 3 + ["cars"] * 2
    assert meta["width"] == 64 and meta["seed"] == 2
