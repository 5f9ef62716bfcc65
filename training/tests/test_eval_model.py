"""Tests of training/eval_model.py (the helpers of training/evaluate_model.sh): the evaluation
schedules really are held out of training and switch at block boundaries, and the summary pools
evaluate.py's per-frame reports correctly (no rendering: the reports are made up here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import eval_model as em  # noqa: E402
import world_vocab as vocab  # noqa: E402
from evaluate import expected_attributes  # noqa: E402
from train_lib.data import is_held_out  # noqa: E402


def test_schedules_are_held_out_aligned_and_parse_to_what_was_meant():
    schedules = em.make_schedules(240)
    assert set(schedules) == set(em.SCHEDULES)
    for name in ("switches", "revisit"):
        parsed = vocab.parse_schedule(schedules[name])
        assert all(is_held_out(attrs) for _, attrs in parsed), name
        assert all(frame % 12 == 0 for frame, _ in parsed)
    switches = vocab.parse_schedule(schedules["switches"])
    assert len(switches) == 5
    for (_, a), (_, b) in zip(switches, switches[1:]):
        assert 1 <= em._scene_changes(a, b) <= 2
    changed = {axis for (_, a), (_, b) in zip(switches, switches[1:])
               for axis in em.SCENE_AXES if a[axis] != b[axis]}
    assert {"time", "biome"} <= changed          # not only the subject switches
    cameras = [attrs["camera"] for _, attrs in vocab.parse_schedule(schedules["revisit"])]
    assert cameras == ["static", "pan_right_fast", "pan_left_fast", "static"]
    assert em.make_schedules(240) == schedules   # deterministic


def _fake_run(tmp: Path, measured_from_expected) -> Path:
    """Writes schedules and evaluate.py-shaped reports whose per-frame measurements are
    measured_from_expected(expected attributes of that frame)."""
    schedules = em.make_schedules(96)
    (tmp / "schedules").mkdir(parents=True)
    (tmp / "eval").mkdir()
    for name, schedule in schedules.items():
        n = em.schedule_frames(name, 96)
        (tmp / "schedules" / f"{name}.json").write_text(json.dumps(schedule))
        expected, _ = expected_attributes(schedule, n)
        measured = [measured_from_expected(e) for e in expected]
        report = {"frames": n, "excluded_after_switch": 18, "adherence": {},
                  "flicker": {"mean": 2.0, "world_mean": 1.0, "world_frames": n,
                              "ratio_to_world": 2.0},
                  "switch_latency": {"per_switch": [{"frame": 48, "axis": "time", "to": "day",
                                                     "latency_frames": 4}]},
                  "per_frame": {axis: [m[axis] for m in measured] for axis in vocab.AXIS_NAMES},
                  "revisit": {"pairs": 0}, "drift": {
                      "first_frames": [0, 1], "last_frames": [1, 2],
                      "adherence_first": {"mean": 1.0}, "adherence_last": {"mean": 1.0},
                      "adherence_mean_change": 0.0}}
        (tmp / "eval" / f"{name}.json").write_text(json.dumps(report))
    return tmp


def test_summary_of_perfect_frames_is_one_and_of_constant_frames_is_its_prompt_share(tmp_path):
    perfect = em.summarize(_fake_run(tmp_path / "a", dict), block_frames=3)
    assert perfect["adherence_held_out"]["mean"] == 1.0
    assert perfect["adherence_all"]["mean"] == 1.0
    assert perfect["adherence_held_out"]["frames"] > 0
    assert perfect["flicker"]["ratio_to_world"] == 2.0
    assert perfect["switch_latency"]["fraction_within_2_blocks"] == 1.0

    constant = em.summarize(_fake_run(tmp_path / "b", lambda e: dict(e, time="dusk")), 3)
    held = constant["adherence_held_out"]
    ignored = constant["held_out_if_prompts_ignored"]
    assert held["time"] < 1.0
    # A constant answer scores exactly its share of the prompts: what "prompts ignored" predicts.
    assert abs(held["time"] - ignored["time"]) < 1e-9
    assert constant["switch_latency"]["fraction_within_2_blocks"] == 1.0


def test_evaluate_model_sh_refuses_a_bad_recache_count(tmp_path):
    # Checked before anything renders: one clear error, nothing written.
    script = Path(__file__).resolve().parents[1] / "evaluate_model.sh"
    out = tmp_path / "eval"
    for bad in ("-1", "two"):
        r = subprocess.run(["bash", str(script), "world", str(out), "--recache", bad],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "--recache needs a number" in r.stderr, r.stderr
    assert not out.exists()
