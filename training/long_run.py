#!/usr/bin/env python3
"""The 10000-frame run of issue 3, section 5 (docs/bench/model-long-run.md): drift of adherence
(frames 9000-10000 against 0-1000) and flatness of per-block time and memory, beside the
full-cache softmax_kv baseline's growth.

    long_run.py report --stats RENDER_STATS.json --rss RSS_SAMPLES.txt
                       --eval-first FIRST.json --eval-last LAST.json
                       --bench NAME=BENCH.json ... --plot PNG --json OUT.json [--command TEXT ...]
    long_run.py strip --frames DIR --indices 0,2500,5000,7500,9999 --prompt P --seed S --out PNG

RSS_SAMPLES.txt: lines "seconds frames_written rss_kib", sampled from /proc/PID/status while
strand-cli render ran (render --stats has no per-block RSS; strand-cli bench has).
FIRST/LAST.json: training/evaluate.py reports of the two 1000-frame windows.
BENCH.json: strand-cli bench --json reports (per-block ms, memory state bytes and RSS).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DRIFT_TARGET = 0.05


def _median_ms(blocks: Sequence[dict]) -> float:
    return statistics.median(b["ms"]["total"] for b in blocks)


def _per_block_summary(blocks: Sequence[dict], window: int) -> Dict[str, object]:
    """Median block time over the first and last `window` blocks (block 0 left out: it has
    no memory yet and pays one-off costs), and memory state at the first and last block."""
    body = blocks[1:] if len(blocks) > window + 1 else blocks
    first, last = body[:window], body[-window:]
    out: Dict[str, object] = {
        "blocks": len(blocks),
        "window_blocks": len(first),
        "first_window": [first[0]["block"], first[-1]["block"]],
        "last_window": [last[0]["block"], last[-1]["block"]],
        "first_median_ms": _median_ms(first),
        "last_median_ms": _median_ms(last),
        "memory_state_bytes_first": blocks[0]["memory_state_bytes"],
        "memory_state_bytes_last": blocks[-1]["memory_state_bytes"],
        "memory_state_bytes_min": min(b["memory_state_bytes"] for b in blocks),
        "memory_state_bytes_max": max(b["memory_state_bytes"] for b in blocks),
    }
    out["last_over_first_ms"] = out["last_median_ms"] / out["first_median_ms"]
    if "rss_bytes" in blocks[0]:
        out["rss_bytes_first"] = blocks[0]["rss_bytes"]
        out["rss_bytes_last"] = blocks[-1]["rss_bytes"]
    return out


def _adherence_entry(report: dict) -> Dict[str, object]:
    return {"frames": report["frames"], "scored_frames": report["scored_frames"],
            "adherence": report["adherence"],
            "flicker_mean": report["flicker"]["mean"]}


def _window_mean_rgb_exact(frames_dir: Path, start: int, count: int) -> List[float]:
    """Mean R, G, B (0-1) over frames start .. start+count-1 of a strand-cli PNG folder."""
    import numpy as np
    from PIL import Image
    total = np.zeros(3)
    for i in range(start, start + count):
        total += np.asarray(Image.open(frames_dir / f"frame_{i:06d}.png").convert("RGB"),
                            dtype=np.float64).mean(axis=(0, 1))
    return [round(float(v) / count / 255.0, 4) for v in total]


def report(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = json.loads(Path(args.stats).read_text())
    first = json.loads(Path(args.eval_first).read_text())
    last = json.loads(Path(args.eval_last).read_text())
    benches = {}
    for entry in args.bench:
        name, _, path = entry.partition("=")
        benches[name] = json.loads(Path(path).read_text())
    samples = []
    for line in Path(args.rss).read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3:
            samples.append((int(parts[0]), int(parts[1]), int(parts[2]) * 1024))

    blocks = stats["blocks"]
    fpb = stats["frames_per_block"]
    a0, a1 = first["adherence"]["mean"], last["adherence"]["mean"]
    diff = a1 - a0
    out: Dict[str, object] = {
        "what": "issue 3 section 5: adherence drift over frames 9000-10000 vs 0-1000, and "
                "per-block time and memory over 10000 frames, with the full-cache softmax_kv "
                "baseline's growth",
        "model": stats["model"],
        "prompt": blocks[0]["prompt"],
        "seed": stats["seed"],
        "device": stats["device"],
        "frames_written": stats["frames_written"],
        "frames_generated": stats["frames_generated"],
        "commands": args.command,
        "adherence": {
            "first_1000": {"frame_range": [0, first["frames"]], **_adherence_entry(first)},
            "last_1000": {"frame_range": [stats["frames_written"] - last["frames"],
                                     stats["frames_written"]], **_adherence_entry(last)},
            "mean_change_last_minus_first": diff,
            "abs_change": abs(diff),
            "target_abs_change": DRIFT_TARGET,
            "target_met": abs(diff) <= DRIFT_TARGET,
            "per_axis_change": {k: (last["adherence"][k] - first["adherence"][k])
                                if first["adherence"].get(k) is not None
                                and last["adherence"].get(k) is not None else None
                                for k in first["adherence"]},
            "chance": first["chance"],
        },
        "render": {
            "totals_ms": stats["totals_ms"], "wall_ms": stats["wall_ms"],
            "frames_per_second": stats["frames_per_second"],
            "frames_per_second_wall": stats["frames_per_second_wall"],
            "peak_rss_bytes": stats["peak_rss_bytes"],
            "memory_state_bytes_fixed": stats["memory_state_bytes_fixed"],
            "memory_state_bytes_per_block_growth": stats["memory_state_bytes_per_block_growth"],
            "per_block_10": _per_block_summary(blocks, 10),
            "per_block_100": _per_block_summary(blocks, 100),
            "rss_samples": len(samples),
            "rss_bytes_first_sample": samples[0][2] if samples else None,
            "rss_bytes_last_sample": samples[-1][2] if samples else None,
            "rss_bytes_min_sample": min(s[2] for s in samples) if samples else None,
            "rss_bytes_max_sample": max(s[2] for s in samples) if samples else None,
            "rss_note": "sampled from /proc every 20 s while rendering (frames written, RSS)",
        },
        "bench": {},
    }
    for name, b in benches.items():
        rows = b["blocks"]
        entry = {"model": b["model"], "threads": b["threads"], "prompt": b["prompt"],
                 "seed": b["seed"], "blocks_timed": b["blocks_timed"], "stopped": b["stopped"],
                 "frames_per_second": b["frames_per_second"],
                 "memory_state_bytes_per_block_growth": b["memory_state_bytes_per_block_growth"],
                 "peak_rss_bytes": b["peak_rss_bytes"],
                 "per_block_10": _per_block_summary(rows, 10) if len(rows) >= 22 else None,
                 "block_ms": [round(r["ms"]["total"], 1) for r in rows],
                 "memory_state_bytes": [r["memory_state_bytes"] for r in rows],
                 "rss_bytes": [r["rss_bytes"] for r in rows]}
        out["bench"][name] = entry

    # Every scored window (first, last and any --eval-window), in frame order.
    windows = [(0, first), (stats["frames_written"] - last["frames"], last)]
    for entry in args.eval_window:
        start, _, path = entry.partition("=")
        windows.append((int(start), json.loads(Path(path).read_text())))
    windows.sort(key=lambda w: w[0])
    out["adherence"]["windows"] = [
        {"frame_range": [start, start + r["frames"]], "mean": r["adherence"]["mean"],
         **{k: v for k, v in r["adherence"].items() if k != "mean" and not isinstance(v, dict)},
         **({"mean_rgb": _window_mean_rgb_exact(Path(args.frames), start, r["frames"])}
            if args.frames else {})}
        for start, r in windows]

    # ---- plot ----
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5))
    (t_all, t_zoom), (m_all, m_zoom) = axes
    xs = [b["block"] for b in blocks]
    ms = [b["ms"]["total"] for b in blocks]
    roll = []
    half = 25
    for i in range(len(ms)):
        roll.append(statistics.median(ms[max(0, i - half):i + half + 1]))
    t_all.plot(xs, ms, lw=0.3, color="tab:blue", alpha=0.35, label="hybrid render, per block")
    t_all.plot(xs, roll, lw=1.2, color="tab:blue", label="hybrid render, running median (51)")
    colours = {"kv-full": "tab:red", "hybrid": "tab:green"}
    # The zoom shows the span of the shortest bench (the full cache's, which slows down).
    zoom_n = min(len(b["blocks"]) for b in benches.values()) if benches else 100
    zoom_n = min(max(zoom_n + zoom_n // 4, 20), len(blocks))
    for name, b in benches.items():
        rows = b["blocks"]
        bx = [r["block"] for r in rows]
        t_all.plot(bx, [r["ms"]["total"] for r in rows], lw=1.2, color=colours.get(name),
                   label=f"{name} bench ({len(rows)} blocks in {args.bench_seconds} s)")
        t_zoom.plot(bx[:zoom_n], [r["ms"]["total"] for r in rows][:zoom_n], lw=1.2,
                    color=colours.get(name), label=f"{name} bench")

    t_zoom.plot(xs[:zoom_n], ms[:zoom_n], lw=0.8, color="tab:blue", alpha=0.7,
                label="hybrid render")
    t_all.set_yscale("log")
    t_zoom.set_yscale("log")
    t_all.set_title(f"time per block ({fpb} frames), all {len(blocks)} blocks of the render")
    t_zoom.set_title(f"time per block, first {zoom_n} blocks")
    for ax in (t_all, t_zoom):
        ax.set_ylabel("ms per block (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    mib = 1 / 2 ** 20
    state = [b["memory_state_bytes"] * mib for b in blocks]
    m_all.plot(xs, state, color="tab:blue", label="hybrid render: memory state")
    if samples:
        m_all.plot([s[1] / fpb for s in samples], [s[2] * mib for s in samples], color="tab:blue",
                   ls="--", label="hybrid render: process RSS (sampled)")
    for name, b in benches.items():
        rows = b["blocks"]
        bx = [r["block"] for r in rows]
        c = colours.get(name)
        for ax, n in ((m_all, len(rows)), (m_zoom, zoom_n)):
            ax.plot(bx[:n], [r["memory_state_bytes"] * mib for r in rows][:n], color=c,
                    label=f"{name} bench: memory state")
            ax.plot(bx[:n], [r["rss_bytes"] * mib for r in rows][:n], color=c, ls="--",
                    label=f"{name} bench: RSS")
        growth = b["memory_state_bytes_per_block_growth"]
        if growth:
            gx = list(range(0, xs[-1] + 1, 10))
            m_all.plot(gx, [(x + 1) * growth * mib for x in gx], color=c, ls=":",
                       label=f"{name}: memory state at this length ({growth * mib:.2f} MiB/block, "
                             f"computed)")
    m_zoom.plot(xs[:zoom_n], state[:zoom_n], color="tab:blue", label="hybrid render: memory state")
    for ax in (m_all, m_zoom):
        ax.set_yscale("log")
        ax.set_xlabel("block")
        ax.set_ylabel("MiB (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="center right")
    m_all.set_title("memory per block, all blocks")
    m_zoom.set_title(f"memory per block, first {zoom_n} blocks")
    fig.suptitle(f"{stats['model']['name']}: {stats['frames_written']} frames, \"{out['prompt']}\", "
                 f"seed {stats['seed']}, CPU (shared 2-core machine); kv-full = run-2 softmax_kv "
                 f"full cache", fontsize=10)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"adherence first {a0:.3f}, last {a1:.3f}, change {diff:+.3f} (target |change| <= "
          f"{DRIFT_TARGET}: {'met' if abs(diff) <= DRIFT_TARGET else 'not met'})")
    p = out["render"]["per_block_100"]
    print(f"render: blocks {p['first_window']} median {p['first_median_ms']:.0f} ms, "
          f"{p['last_window']} median {p['last_median_ms']:.0f} ms; state "
          f"{p['memory_state_bytes_first']} -> {p['memory_state_bytes_last']} bytes")
    return 0


def strip(args: argparse.Namespace) -> int:
    """One PNG: the render's frames at the given indices, world.py's ground truth below."""
    import numpy as np
    from PIL import Image, ImageDraw
    import world_vocab as vocab
    from world import World

    indices = [int(v) for v in args.indices.split(",")]
    model_imgs = [Image.open(Path(args.frames) / f"frame_{i:06d}.png").convert("RGB")
                  for i in indices]
    w, h = model_imgs[0].size
    attrs = vocab.parse_prompt(args.prompt, None)
    world = World(args.seed, w, h)
    truth = world.render_attributes([dict(attrs, frame=i, camera_x=0.0) for i in indices])
    truth_imgs = [Image.fromarray(np.ascontiguousarray(t.permute(1, 2, 0).numpy()))
                  for t in truth]
    rows = [(args.caption.replace("\\n", "\n"), model_imgs),
            (f"world.py ground truth\nseed {args.seed}", truth_imgs)]
    caption_w, gap = 170, 4
    canvas = Image.new("RGB", (caption_w + len(indices) * (w + gap), len(rows) * (h + gap) + gap),
                       (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    for r, (caption, imgs) in enumerate(rows):
        top = gap + r * (h + gap)
        for line, text in enumerate(caption.split("\n")):
            draw.text((8, top + 4 + 14 * line), text, fill=(230, 230, 230))
        for c, (index, img) in enumerate(zip(indices, imgs)):
            x0 = caption_w + c * (w + gap)
            canvas.paste(img, (x0, top))
            label = str(index)
            draw.rectangle((x0 + 2, top + 2, x0 + 6 + 6 * len(label), top + 14), fill=(0, 0, 0))
            draw.text((x0 + 4, top + 3), label, fill=(255, 255, 255))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command_name", required=True)
    r = sub.add_parser("report")
    r.add_argument("--stats", required=True)
    r.add_argument("--rss", required=True)
    r.add_argument("--eval-first", required=True)
    r.add_argument("--eval-last", required=True)
    r.add_argument("--eval-window", action="append", default=[],
                   help="START=EVAL.json: another scored window, for the per-window table")
    r.add_argument("--frames", help="the render's PNG folder (mean colour per window)")
    r.add_argument("--bench", action="append", default=[], help="NAME=BENCH.json")
    r.add_argument("--bench-seconds", type=int, default=360)
    r.add_argument("--plot", required=True)
    r.add_argument("--json", required=True)
    r.add_argument("--command", action="append", default=[], help="a command to record")
    s = sub.add_parser("strip")
    s.add_argument("--frames", required=True)
    s.add_argument("--indices", required=True)
    s.add_argument("--prompt", required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--caption", default="strand-world-v1")
    s.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return report(args) if args.command_name == "report" else strip(args)


if __name__ == "__main__":
    sys.exit(main())
