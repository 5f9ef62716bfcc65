"""Tests of the pixel-only evaluator (training/evaluate.py) on small world.py clips.

Ground truth must score high against its own schedule and near chance against unrelated
schedules; the pan estimate must recover the world's own camera motion; flicker and revisit
numbers must react to damage done to the frames here (shuffled frames, noise).
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

import evaluate as ev  # noqa: E402
from world import World  # noqa: E402
from world_vocab import AXES  # noqa: E402

torch.set_num_threads(1)
# One calibration frame per combination (half the default) keeps this file fast.
ev.CALIBRATION_FRAMES_PER_COMBO = 1

SCHEDULE = [
    {"frame": 0, "prompt": "red balloons over a pine forest at dawn, static camera"},
    {"frame": 12, "prompt": "blue cars in a rainy city at night, quick pan right"},
    {"frame": 24, "prompt": "white birds over the beach at dusk in thick fog, quick pan left"},
    {"frame": 36, "prompt": "yellow balloons above sand dunes in broad daylight, snowfall, "
                            "slow pan right"},
]
FRAMES = 48


TRANSITION_FRAMES = 3       # shorter than the world's 1.5 s, so short prompts are scored


@pytest.fixture(scope="module")
def clip():
    world = World(7, 256, 144)
    world.transition_frames = TRANSITION_FRAMES
    video, labels = world.render_schedule(SCHEDULE, FRAMES)
    return video, labels


@pytest.fixture(scope="module")
def truth_report(clip):
    # The reference render covers the first prompt only, where the shortened transitions
    # cannot differ from the world's own.
    return ev.evaluate(clip[0], SCHEDULE, seed=7, exclude_frames=TRANSITION_FRAMES + 1,
                       reference_frames=12)


def test_ground_truth_scores_high(truth_report):
    adherence = truth_report["adherence"]
    for axis in AXES:
        assert adherence[axis] >= 0.95, (axis, adherence)
    assert truth_report["switch_latency"]["never_measured"] == 0
    # Same frames as the world's own render: flicker ratio exactly 1.
    assert truth_report["flicker"]["ratio_to_world"] == pytest.approx(1.0)


def test_mismatched_schedule_scores_low(clip, truth_report):
    # Every prompt swapped for a different value on every axis.
    wrong = [
        {"frame": 0, "prompt": "green cars in a snowy city at night in the rain, quick pan left"},
        {"frame": 12, "prompt": "purple birds over the desert at dawn in fog, static camera"},
        {"frame": 24, "prompt": "orange balloons over a pine forest by day in the rain, slow pan right"},
        {"frame": 36, "prompt": "red cars on the coast at dusk, clear skies, quick pan left"},
    ]
    report = ev.evaluate(clip[0], wrong, exclude_frames=TRANSITION_FRAMES + 1, reference=False)
    for axis in AXES:
        assert report["adherence"][axis] <= 0.2, (axis, report["adherence"])
    assert report["adherence"]["mean"] < truth_report["adherence"]["mean"] - 0.7


def test_pan_estimate_matches_the_world_camera(clip):
    video, labels = clip
    pan = ev.estimate_pan(video)
    for i in range(1, FRAMES):
        true_step = labels[i]["camera_x"] - labels[i - 1]["camera_x"]
        assert pan[i] == pytest.approx(true_step, abs=0.6), i


def test_pan_estimate_works_at_other_sizes():
    schedule = [{"frame": 0, "prompt": "a city by day, quick pan left"}]
    video, labels = World(2, 128, 72).render_schedule(schedule, 30)
    pan = ev.estimate_pan(video)
    assert pan[-1] == pytest.approx(labels[-1]["camera_x"] - labels[-2]["camera_x"], abs=1.0)


def test_flicker_rises_when_frames_are_damaged(clip):
    video = clip[0][:24]
    pan = ev.estimate_pan(video)
    clean = sum(ev.flicker(video, pan)) / 23
    noise = torch.randint(-40, 41, video.shape, generator=torch.Generator().manual_seed(1))
    noisy = (video.int() + noise).clamp(0, 255).to(torch.uint8)
    assert sum(ev.flicker(noisy, pan)) / 23 > 2 * clean


def test_revisits_are_found_and_detect_a_changed_place():
    schedule = [{"frame": 0, "prompt": "the forest by day, quick pan right"},
                {"frame": 30, "prompt": "the forest by day, quick pan left"}]
    world = World(4, 256, 144)
    video, _ = world.render_schedule(schedule, 72)
    expected, _ = ev.expected_attributes(schedule, 72)
    pan = ev.estimate_pan(video)
    same = ev.revisits(video, pan, expected, min_gap=12)
    assert same["pairs"] >= 5
    assert same["correlation"] > 0.99
    # Replace the way back with another seed's world: same camera path, different place.
    other, _ = World(5, 256, 144).render_schedule(schedule, 72)
    mixed = torch.cat([video[:36], other[36:]])
    changed = ev.revisits(mixed, pan, expected, min_gap=12)
    assert changed["pairs"] == same["pairs"]
    assert changed["correlation"] < 0.8
    assert changed["mean_abs_diff"] > 5 * same["mean_abs_diff"] + 1.0


def test_cli_writes_a_report(tmp_path):
    video, _ = World(7, 128, 72).render_schedule(SCHEDULE[:1], 8)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    from world import save_png
    for i in range(8):
        save_png(video[i], frames_dir / f"frame_{i:06d}.png")
    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps(SCHEDULE[:1]))
    out = tmp_path / "report.json"
    subprocess.run([sys.executable, str(TRAINING / "evaluate.py"), "--frames", str(frames_dir),
                    "--schedule", str(schedule), "--json", str(out), "--seed", "7",
                    "--reference-frames", "8", "--calibration-per-combo", "1"],
                   check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["frames"] == 8 and report["width"] == 128
    assert report["adherence"]["time"] == 1.0
    assert set(report) >= {"adherence", "switch_latency", "flicker", "drift", "revisit"}
