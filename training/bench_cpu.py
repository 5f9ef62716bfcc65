#!/usr/bin/env python3
"""CPU benchmarks of the C++ engine, recorded in docs/performance.md. Not a test: it takes minutes.

In one run on one machine, with the same thread count for both engines:
1. C++ engine (strand-cli bench) vs the PyTorch reference (bench_reference.py) on the bundled model:
   median per-block ms by stage and their ratio.
2. The DiT passes' achieved GFLOP/s vs OpenBLAS sgemm on the model's FFN shape (strand-cli bench
   measures both).
3. Flatness: an all-hybrid variant of the bundled model over --long-blocks blocks (per-block ms and
   RSS at block 10 vs the last block), and the all-softmax_kv (full cache) variant beside it over
   --kv-blocks blocks, plotted to docs/images/cpu-flat-memory.png.

    .venv/bin/python training/bench_cpu.py [--threads 2] [--blocks 20] [--long-blocks 1000]
        [--kv-blocks 200] [--out out/bench]
Prints a JSON summary and writes OUT/summary.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "tests", "data", "strand-tiny-random.safetensors")


def run(cmd: list[str], env: dict | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def cpp_bench(cli: str, model: str, blocks: int, threads: int, out_json: str) -> dict:
    run([cli, "bench", "--model", model, "--blocks", str(blocks), "--threads", str(threads),
         "--json", out_json])
    with open(out_json, encoding="utf-8") as f:
        return json.load(f)


def median_stage(rows: list[dict], stage: str, skip_first: int = 1) -> float:
    key = stage.removesuffix("_ms")  # strand-cli names stages without the unit
    return statistics.median(r["ms"][key] for r in rows[skip_first:])


def variant(out_dir: str, layers: str, name: str) -> str:
    path = os.path.join(out_dir, name + ".safetensors")
    if not os.path.exists(path):
        run([sys.executable, os.path.join(ROOT, "training", "make_default_model.py"), "--out", path,
             "--check-blocks", "0", "--layers", layers, "--name", name])
    return path


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plot(hybrid: dict, kv: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ms, ax_mem) = plt.subplots(1, 2, figsize=(11, 4))
    for data, label, colour in ((hybrid, "all-hybrid (fixed memory)", "tab:blue"),
                                (kv, "all-softmax_kv (full KV cache)", "tab:red")):
        rows = data["blocks"]
        blocks = [r["block"] for r in rows]
        ax_ms.plot(blocks, [r["ms"]["denoise"] + r["ms"]["clean"] for r in rows],
                   label=label, color=colour, lw=0.8)
        ax_mem.plot(blocks, [r["rss_bytes"] / 2**20 for r in rows], label=label + ": RSS",
                    color=colour, lw=1.2)
        ax_mem.plot(blocks, [r["memory_state_bytes"] / 2**20 for r in rows],
                    label=label + ": memory state", color=colour, lw=1.2, ls="--")
    ax_ms.set_xlabel("block (3 frames each)")
    ax_ms.set_ylabel("DiT ms per block (4 denoising + clean pass)")
    ax_ms.set_title("Per-block time")
    ax_mem.set_xlabel("block (3 frames each)")
    ax_mem.set_ylabel("MiB")
    ax_mem.set_title("Memory")
    for ax in (ax_ms, ax_mem):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Strand CPU engine, {hybrid['threads']} threads, {cpu_name()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU benchmarks for docs/performance.md")
    parser.add_argument("--build", default=os.environ.get("STRAND_BUILD_DIR", os.path.join(ROOT, "build")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--long-blocks", type=int, default=1000)
    parser.add_argument("--kv-blocks", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "bench"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "images", "cpu-flat-memory.png"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cli = os.path.join(args.build, "bin", "strand-cli")

    summary: dict = {"cpu": cpu_name(), "threads": args.threads}
    # 1 + 2: the bundled model, C++ vs PyTorch.
    cpp = cpp_bench(cli, MODEL, args.blocks + 1, args.threads, os.path.join(args.out, "cpp.json"))
    ref = json.loads(run([sys.executable, os.path.join(ROOT, "training", "bench_reference.py"),
                          "--model", MODEL, "--blocks", str(args.blocks), "--warmup", "1",
                          "--threads", str(args.threads)]))
    stages = ("denoise_ms", "clean_ms", "decode_ms", "total_ms")
    cpp_median = {s: median_stage(cpp["blocks"], s) for s in stages}
    summary["bundled_model"] = {
        "cpp_median_ms": cpp_median,
        "pytorch_median_ms": ref["median"],
        "pytorch": ref["torch"],
        "speedup": {s: ref["median"][s] / cpp_median[s] for s in stages if cpp_median[s] > 0},
        "cpp_frames_per_second": 1000.0 * ref["frames_per_block"] / cpp_median["total_ms"],
        "pytorch_frames_per_second": ref.get("frames_per_second"),
        "dit_gflops_per_s": cpp["dit_gflops_per_s"],
        "sgemm_gflops_per_s": cpp["sgemm_gflops_per_s"],
        "dit_fraction_of_sgemm": cpp["dit_gflops_per_s"] / cpp["sgemm_gflops_per_s"],
    }
    # 3: flatness.
    hybrid_model = variant(args.out, "hybrid,hybrid,hybrid,hybrid", "strand-tiny-all-hybrid")
    kv_model = variant(args.out, "softmax_kv,softmax_kv,softmax_kv,softmax_kv", "strand-tiny-all-kv")
    hybrid = cpp_bench(cli, hybrid_model, args.long_blocks, args.threads,
                       os.path.join(args.out, "long-hybrid.json"))
    kv = cpp_bench(cli, kv_model, args.kv_blocks, args.threads, os.path.join(args.out, "long-kv.json"))

    def window_stats(rows: list[dict], centre: int) -> dict:
        # Median over 9 blocks around `centre`, so one scheduler hiccup does not decide it.
        near = [r for r in rows if abs(r["block"] - centre) <= 4]
        return {"dit_ms": statistics.median(r["ms"]["denoise"] + r["ms"]["clean"] for r in near),
                "rss_bytes": statistics.median(r["rss_bytes"] for r in near),
                "memory_state_bytes": near[len(near) // 2]["memory_state_bytes"]}

    early, late = window_stats(hybrid["blocks"], 10), window_stats(hybrid["blocks"], args.long_blocks - 5)
    summary["all_hybrid"] = {
        "blocks": args.long_blocks, "near_block_10": early, f"near_block_{args.long_blocks - 5}": late,
        "time_change": late["dit_ms"] / early["dit_ms"] - 1,
        "rss_change": late["rss_bytes"] / early["rss_bytes"] - 1,
    }
    kv_early, kv_late = window_stats(kv["blocks"], 10), window_stats(kv["blocks"], args.kv_blocks - 5)
    summary["all_softmax_kv"] = {
        "blocks": args.kv_blocks, "near_block_10": kv_early, f"near_block_{args.kv_blocks - 5}": kv_late,
        "time_change": kv_late["dit_ms"] / kv_early["dit_ms"] - 1,
        "rss_change": kv_late["rss_bytes"] / kv_early["rss_bytes"] - 1,
    }
    os.makedirs(os.path.dirname(args.plot), exist_ok=True)
    plot(hybrid, kv, args.plot)
    summary["plot"] = os.path.relpath(args.plot, ROOT)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
