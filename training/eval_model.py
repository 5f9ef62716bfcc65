#!/usr/bin/env python3
"""Helpers of training/evaluate_model.sh: held-out evaluation schedules, the one-file summary of
a model's section-5 metrics (issue 3), the comparison file of several models, and strips.

    eval_model.py schedules --frames N --out DIR          switches.json, revisit.json, long.json
    eval_model.py summary DIR --block-frames B [--name NAME] [--json OUT]
    eval_model.py combine OUT.json NAME=DIR/summary.json ...
    eval_model.py strip --rows "caption=DIR" ... --frames F0:F1:STEP --out PNG [--scale S]

Schedules (every prompt at a multiple of 12 frames, so at a block boundary for blocks of 1, 2,
3, 4, 6 or 12 frames; strand-cli applies a prompt from the block containing its frame):
- switches: N frames, a new prompt every 48 frames; every prompt is a combination held out of
  training (train_lib/data.is_held_out) and differs from the one before in one or two of time,
  biome, weather and subject (as the training clips switch); static camera.
- revisit: N frames of one held-out scene: static, a fast pan right, a fast pan left of the same
  length (the camera comes back to where it started), static again.
- long: 1.5 N frames, "a sunny desert at noon" then, from the middle, "snowy mountains at dusk"
  (the second is held out, the first is not): drift over the longest clip and the model card's
  strips.

The summary pools the frames of all schedules (from evaluate.py's --per-frame reports), so that
adherence on held-out combinations counts every scored frame whose prompted combination is held
out, whatever schedule it came from.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import world_vocab as vocab  # noqa: E402

SCHEDULES = ("switches", "revisit", "long")
SWITCH_EVERY = 48
ALIGN = 12
SCENE_AXES = ("time", "biome", "weather", "subject")
LONG_PROMPTS = ("a sunny desert at noon", "snowy mountains at dusk")


def _is_held_out(attrs: Mapping[str, str]) -> bool:
    # train_lib.data imports torch; the schedule rule itself is a hash of the combination.
    from train_lib.data import is_held_out
    return is_held_out(attrs)


def _prompt_in_chain(attrs: Mapping[str, str], previous: Optional[Mapping[str, str]],
                     seed: int) -> str:
    """A paraphrase of attrs that parses to exactly attrs after `previous` (a paraphrase may
    leave a static camera or a clear sky unsaid, which a schedule would inherit); the canonical
    description, which names every axis, when no paraphrase of 50 does."""
    for k in range(50):
        text = vocab.paraphrases(attrs, 1, seed=seed * 100 + k)[0]
        if vocab.parse_prompt(text, previous) == dict(attrs):
            return text
    text = vocab.describe(attrs)
    assert vocab.parse_prompt(text, previous) == dict(attrs), text
    return text


def _scene_changes(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    return sum(a[x] != b[x] for x in SCENE_AXES) + (
        a["subject"] == b["subject"] != "none" and a["colour"] != b["colour"])


def make_schedules(frames: int, seed: int = 11) -> Dict[str, List[Dict[str, object]]]:
    from train_lib.data import held_out_combinations
    if frames < 2 * SWITCH_EVERY:
        raise ValueError(f"--frames must be at least {2 * SWITCH_EVERY}")
    rng = random.Random(seed)
    scenes = [c for c in held_out_combinations() if c["camera"] == "static"]
    out: Dict[str, List[Dict[str, object]]] = {}

    # switches: a chain of held-out scenes, each one or two axes away from the previous one,
    # always changing the axis left alone longest (so every axis switches, not only the
    # subject, and a model that draws one look everywhere cannot score on a constant axis).
    chain = [rng.choice(scenes)]
    last_changed = {axis: -1 for axis in SCENE_AXES}
    for k in range(1, (frames + SWITCH_EVERY - 1) // SWITCH_EVERY):
        stale = min(SCENE_AXES, key=lambda axis: (last_changed[axis], SCENE_AXES.index(axis)))
        near = [c for c in scenes if 1 <= _scene_changes(chain[-1], c) <= 2 and c not in chain]
        near_stale = [c for c in near if c[stale] != chain[-1][stale]]
        chain.append(rng.choice(near_stale or near or [c for c in scenes if c not in chain]))
        for axis in SCENE_AXES:
            if chain[-1][axis] != chain[-2][axis]:
                last_changed[axis] = k
    entries, previous = [], None
    for k, attrs in enumerate(chain):
        entries.append({"frame": k * SWITCH_EVERY,
                        "prompt": _prompt_in_chain(attrs, previous, seed + k)})
        previous = attrs
    out["switches"] = entries

    # revisit: out and back at the same speed over one held-out scene.
    # Clear weather: the land band that revisits compare is not hidden by fog or flakes.
    scene = rng.choice([c for c in scenes if c["weather"] == "clear"])
    lead = 2 * ALIGN
    pan = max(3 * ALIGN, min(6 * ALIGN, (frames - 2 * lead) // 2 // ALIGN * ALIGN))
    entries, previous = [], None
    for k, (frame, camera) in enumerate(((0, "static"), (lead, "pan_right_fast"),
                                         (lead + pan, "pan_left_fast"),
                                         (lead + 2 * pan, "static"))):
        attrs = dict(scene, camera=camera)
        entries.append({"frame": frame, "prompt": _prompt_in_chain(attrs, previous, seed + 50 + k)})
        previous = attrs
    out["revisit"] = entries

    long_frames = frames * 3 // 2
    out["long"] = [{"frame": 0, "prompt": LONG_PROMPTS[0]},
                   {"frame": long_frames // 2 // ALIGN * ALIGN, "prompt": LONG_PROMPTS[1]}]
    for name, schedule in out.items():
        parsed = vocab.parse_schedule(schedule)
        assert all(f % ALIGN == 0 for f, _ in parsed), name
    return out


def schedule_frames(name: str, frames: int) -> int:
    return frames * 3 // 2 if name == "long" else frames


# --- summary ---------------------------------------------------------------------------------
def _pooled_adherence(measured: Sequence[Mapping[str, str]], expected: Sequence[Mapping[str, str]]
                      ) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for axis in vocab.AXIS_NAMES:
        pairs = [(m[axis], e[axis]) for m, e in zip(measured, expected)
                 if axis != "colour" or e["subject"] != "none"]
        out[axis] = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    values = [v for v in out.values() if v is not None]
    out["mean"] = sum(values) / len(values) if values else None
    out["frames"] = len(measured)
    return out


def _adherence_if_prompts_ignored(measured: Sequence[Mapping[str, str]],
                                  expected: Sequence[Mapping[str, str]]) -> Dict[str, Optional[float]]:
    """The adherence these very frames would get if they had nothing to do with their prompts:
    per axis, sum over values of P(measured = v) * P(prompted = v) over the same frames. Unlike
    1 / (number of values) it accounts for a model that draws one look everywhere (a constant
    "dusk" scores 1/4 on random prompts but more on a dusk-heavy schedule)."""
    out: Dict[str, Optional[float]] = {}
    for axis in vocab.AXIS_NAMES:
        idx = [i for i, e in enumerate(expected) if axis != "colour" or e["subject"] != "none"]
        if not idx:
            out[axis] = None
            continue
        n = len(idx)
        out[axis] = sum((sum(measured[i][axis] == v for i in idx) / n) *
                        (sum(expected[i][axis] == v for i in idx) / n) for v in vocab.AXES[axis])
    values = [v for v in out.values() if v is not None]
    out["mean"] = sum(values) / len(values) if values else None
    return out


def summarize(directory: Path, block_frames: int, name: Optional[str] = None) -> Dict[str, object]:
    from evaluate import expected_attributes
    directory = Path(directory)
    measured_all, expected_all, held = [], [], []
    switches: List[Dict[str, object]] = []
    per_schedule: Dict[str, object] = {}
    for schedule_name in SCHEDULES:
        report_path = directory / "eval" / f"{schedule_name}.json"
        if not report_path.exists():
            continue
        report = json.loads(report_path.read_text())
        schedule = json.loads((directory / "schedules" / f"{schedule_name}.json").read_text())
        n = report["frames"]
        expected, changes = expected_attributes(schedule, n)
        excluded = {i for f in changes for i in range(f, min(n, f + report["excluded_after_switch"]))}
        for i in range(n):
            if i in excluded:
                continue
            measured_all.append({a: report["per_frame"][a][i] for a in vocab.AXIS_NAMES})
            expected_all.append(expected[i])
            held.append(_is_held_out(expected[i]))
        switches += [dict(s, schedule=schedule_name) for s in report["switch_latency"]["per_switch"]]
        entry = {"frames": n, "adherence": report["adherence"],
                 "flicker": report["flicker"],
                 "switch_latency": {k: v for k, v in report["switch_latency"].items()
                                    if k != "per_switch"}}
        if schedule_name == "revisit":
            entry["revisit"] = report["revisit"]
        if schedule_name == "long":
            entry["drift"] = report["drift"]
        stats_path = directory / "stats" / f"{schedule_name}.json"
        if stats_path.exists():
            stats = json.loads(stats_path.read_text())
            entry["render"] = {k: stats[k] for k in ("device", "frames_generated", "totals_ms", "wall_ms",
                                                     "frames_per_second", "peak_rss_bytes")
                               if k in stats}
            blocks = stats.get("blocks", [])
            if len(blocks) >= 20:
                # Per-block time and memory at the start and the end of the clip: flat for
                # fixed-size memory, growing for a full cache (times are noisy on a shared CPU).
                def median_ms(part):
                    return sorted(b["ms"]["total"] for b in part)[len(part) // 2]
                entry["render"]["per_block"] = {
                    "blocks": len(blocks),
                    "first_10_median_ms": median_ms(blocks[:10]),
                    "last_10_median_ms": median_ms(blocks[-10:]),
                    "memory_state_bytes_first": blocks[0]["memory_state_bytes"],
                    "memory_state_bytes_last": blocks[-1]["memory_state_bytes"]}
        per_schedule[schedule_name] = entry

    if not per_schedule:
        raise FileNotFoundError(f"no evaluate.py reports under {directory}/eval")
    held_idx = [i for i, h in enumerate(held) if h]
    found = [s["latency_frames"] for s in switches if s["latency_frames"] is not None]
    within = sum(1 for v in found if v <= 2 * block_frames)
    flicker_ratios = {k: v["flicker"].get("ratio_to_world") for k, v in per_schedule.items()}
    # Pooled over the schedules (frame-weighted means): a static, empty scene's own flicker is
    # near zero, so a per-schedule ratio can be huge there; the pooled one is the headline.
    own = sum(v["flicker"]["world_mean"] * v["flicker"]["world_frames"]
              for v in per_schedule.values() if v["flicker"].get("world_mean") is not None)
    drawn = sum(v["flicker"]["mean"] * v["flicker"]["world_frames"]
                for v in per_schedule.values() if v["flicker"].get("world_mean") is not None)
    chance = {axis: 1.0 / len(values) for axis, values in vocab.AXES.items()}
    chance["mean"] = sum(chance.values()) / len(chance)
    summary: Dict[str, object] = {
        "name": name or directory.name,
        "block_frames": block_frames,
        "adherence_held_out": _pooled_adherence([measured_all[i] for i in held_idx],
                                                [expected_all[i] for i in held_idx]),
        "adherence_all": _pooled_adherence(measured_all, expected_all),
        "chance": chance,
        "held_out_if_prompts_ignored": _adherence_if_prompts_ignored(
            [measured_all[i] for i in held_idx], [expected_all[i] for i in held_idx]),
        "switch_latency": {
            "switches": len(switches), "never_measured": len(switches) - len(found),
            "median_frames": sorted(found)[len(found) // 2] if found else None,
            "within_2_blocks": within, "fraction_within_2_blocks":
                within / len(switches) if switches else None,
            "per_switch": [{k: s[k] for k in ("schedule", "frame", "axis", "to", "latency_frames")}
                           for s in switches]},
        "flicker": {"ratio_to_world": drawn / own if own else None,
                    "note": "frame-weighted mean frame-to-frame change (0-255, pan undone) over "
                            "the schedules' first 480 frames, divided by world.py's own render",
                    "per_schedule_ratio": flicker_ratios,
                    "per_schedule_mean": {k: v["flicker"]["mean"] for k, v in per_schedule.items()},
                    "per_schedule_world_mean": {k: v["flicker"].get("world_mean")
                                                for k, v in per_schedule.items()}},
    }
    if "long" in per_schedule:
        drift = per_schedule["long"]["drift"]
        summary["drift"] = {"frames": per_schedule["long"]["frames"],
                            "first": drift["first_frames"], "last": drift["last_frames"],
                            "adherence_first": drift["adherence_first"]["mean"],
                            "adherence_last": drift["adherence_last"]["mean"],
                            "adherence_mean_change": drift["adherence_mean_change"]}
    if "revisit" in per_schedule:
        r = per_schedule["revisit"]["revisit"]
        summary["revisit"] = {k: r.get(k) for k in ("pairs", "mean_abs_diff", "correlation")}
        if "world" in r:
            summary["revisit"]["world"] = {k: r["world"].get(k)
                                           for k in ("pairs", "mean_abs_diff", "correlation")}
    if "render" in per_schedule.get("long", {}):
        summary["render_long"] = per_schedule["long"]["render"]
    summary["per_schedule"] = per_schedule
    return summary


# --- strips ----------------------------------------------------------------------------------
def strip(rows: Sequence[str], frame_range: str, out: Path, scale: float = 1.0,
          notes: bool = True) -> None:
    """One PNG: a row per "caption=DIR" (frames DIR/frame_NNNNNN.png), columns F0, F0+STEP, ...
    below F1 (a row may give its own range: "caption=DIR@F0:F1:STEP"), each frame labelled with
    its index; "\\n" in a caption breaks the line."""
    from PIL import Image, ImageDraw
    loaded = []
    for row in rows:
        caption, _, folder = row.partition("=")
        folder, _, own_range = folder.partition("@")
        f0, f1, step = (int(v) for v in (own_range or frame_range).split(":"))
        indices = list(range(f0, f1, step))
        imgs = [Image.open(Path(folder) / f"frame_{i:06d}.png").convert("RGB") for i in indices]
        loaded.append((caption, list(zip(indices, imgs))))
    columns = max(len(imgs) for _, imgs in loaded)
    w0, h0 = loaded[0][1][0][1].size
    w, h = round(w0 * scale), round(h0 * scale)
    caption_w, gap = 170, 4
    canvas = Image.new("RGB", (caption_w + columns * (w + gap), len(rows) * (h + gap) + gap),
                       (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    for r, (caption, imgs) in enumerate(loaded):
        top = gap + r * (h + gap)
        for line, text in enumerate(caption.split("\\n")):
            draw.text((8, top + 4 + 14 * line), text, fill=(230, 230, 230))
        for c, (index, img) in enumerate(imgs):
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            x0 = caption_w + c * (w + gap)
            canvas.paste(img, (x0, top))
            if notes:
                label = str(index)
                draw.rectangle((x0 + 2, top + 2, x0 + 6 + 6 * len(label), top + 14), fill=(0, 0, 0))
                draw.text((x0 + 4, top + 3), label, fill=(255, 255, 255))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedules")
    s.add_argument("--frames", type=int, default=240)
    s.add_argument("--seed", type=int, default=11)
    s.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("summary")
    m.add_argument("dir", type=Path)
    m.add_argument("--block-frames", type=int, required=True)
    m.add_argument("--name")
    m.add_argument("--json", type=Path)
    c = sub.add_parser("combine")
    c.add_argument("out", type=Path)
    c.add_argument("entries", nargs="+", help="NAME=SUMMARY.json")
    c.add_argument("--note", action="append", default=[])
    t = sub.add_parser("strip")
    t.add_argument("--rows", nargs="+", required=True, help="caption=DIR")
    t.add_argument("--frames", required=True, help="F0:F1:STEP")
    t.add_argument("--scale", type=float, default=1.0)
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "schedules":
        try:
            schedules = make_schedules(args.frames, args.seed)
        except ValueError as e:
            parser.error(str(e))
        args.out.mkdir(parents=True, exist_ok=True)
        for name, schedule in schedules.items():
            (args.out / f"{name}.json").write_text(json.dumps(schedule, indent=1) + "\n")
            (args.out / f"{name}.frames").write_text(f"{schedule_frames(name, args.frames)}\n")
            held = [_is_held_out(a) for _, a in vocab.parse_schedule(schedule)]
            print(f"{name}: {schedule_frames(name, args.frames)} frames, "
                  f"{len(schedule)} prompts, held out: {held}")
    elif args.command == "summary":
        summary = summarize(args.dir, args.block_frames, args.name)
        text = json.dumps(summary, indent=1) + "\n"
        (args.json or args.dir / "summary.json").write_text(text)
        a, ch = summary["adherence_held_out"], summary["chance"]
        print(f"{summary['name']}: held-out adherence {a['mean']:.3f} (chance {ch['mean']:.3f}), "
              f"switches within 2 blocks {summary['switch_latency']['fraction_within_2_blocks']}, "
              f"flicker ratio {summary['flicker']['ratio_to_world']}")
    elif args.command == "combine":
        combined: Dict[str, object] = {"notes": args.note, "models": {}}
        for entry in args.entries:
            name, _, path = entry.partition("=")
            combined["models"][name] = json.loads(Path(path).read_text())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(combined, indent=1) + "\n")
    elif args.command == "strip":
        strip(args.rows, args.frames, args.out, args.scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
