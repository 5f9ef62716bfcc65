#!/usr/bin/env python3
"""Turns the raw results of tools/gpu/bench_all.sh (one folder of JSON files and logs) into
summary.json, summary.md and PNG plots. Every section is optional: a part that failed or was not
run is reported as such and the rest is still summarised.

Runs where bench_all.sh ran (matplotlib is on the GPU machine) and again anywhere afterwards on the
unpacked raw files, e.g. to redraw the plots:
    mkdir -p /tmp/r && tar -xzf raw.tar.gz -C /tmp/r
    python3 tools/gpu/report.py --work /tmp/r/raw --out /tmp/r

Conventions (also written into the summary):
- DiT time = the 4 denoising passes + the clean pass of one block (the engine's denoise_ms +
  clean_ms; decode excluded).
- Video frames follow Wan's 4x temporal VAE: a block of 3 latent frames is 12 video frames (the
  very first block 9: frames = 4 x latent frames - 3), so video fps = 12 / DiT seconds per block
  and 921 frames = 231 latent frames = 77 blocks.
- Floors: per op and shape, max(bytes / measured bandwidth, FLOPs / measured cuBLAS rate of the run's
  precision). Bytes are the least traffic at float32 (the Backend interface's type) except that in
  bf16 mode the weights of linear/conv2d_3x3 count 2 bytes (the backend caches bf16 copies). The
  measured op times are synchronised per op (bench --ops), so each includes one launch and one sync.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
from typing import Any, Dict, List, Optional

BLOCKS_921 = 77          # 921 video frames = 231 latent frames = 77 blocks of 3
VIDEO_FRAMES_PER_BLOCK = 12
TARGETS = {"delta_ms": 0.05, "attention_tflops": 350.0, "hybrid_video_fps": 40.0,
           "speedup_vs_torch": 2.0, "flat_tolerance": 0.05}
GIB = float(1 << 30)


def load(work: str, name: str) -> Optional[dict]:
    path = os.path.join(work, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def dit_ms(row: dict) -> float:
    return row["ms"]["denoise"] + row["ms"]["clean"]


def fmt(value, spec: str = ".1f", none: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


# --------------------------------------------------------------------------------------------


def stages(work: str) -> List[dict]:
    rows = []
    try:
        with open(os.path.join(work, "stages.tsv"), encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    rows.append({"stage": parts[0], "status": parts[1], "seconds": float(parts[2]),
                                 "note": parts[3]})
    except OSError:
        pass
    return rows


def tests(work: str) -> dict:
    """Counts from ctest's log (complete or cut short)."""
    try:
        with open(os.path.join(work, "ctest.log"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {"available": False}
    passed = len(re.findall(r"Test\s+#\d+: \S+ .*\bPassed\b", text))
    failed_names = re.findall(r"Test\s+#\d+: (\S+) .*\*\*\*(?:Failed|Exception|Timeout)", text)
    skipped = len(re.findall(r"Test\s+#\d+: \S+ .*\bSkipped\b", text))
    # "100% tests passed, 0 tests failed out of N", or without the failed part (newer ctest).
    summary = re.search(r"(\d+)% tests passed(?:, (\d+) tests failed)? out of (\d+)", text)
    return {"available": True, "passed": passed, "failed": len(failed_names),
            "failed_names": failed_names[:40], "skipped": skipped,
            "complete": summary is not None,
            "ctest_summary": summary.group(0) if summary else None}


def roofline(work: str) -> Optional[dict]:
    r = load(work, "roofline.json")
    if not r or "ceilings" not in r:
        return None
    return r


def op_floors(ops: dict, roof: Optional[dict]) -> Optional[dict]:
    """Per op and per shape: measured ms vs floor ms."""
    if not ops or not ops.get("ops_by_shape"):
        return None
    ceil = (roof or {}).get("ceilings", {})
    bw = ceil.get("bytes_per_s")
    bf16 = ops.get("precision") == "bf16"
    rate = ceil.get("bf16_flops_per_s" if bf16 else "fp32_flops_per_s")

    def floor_of(e: dict) -> dict:
        nbytes = e["bytes_f32"] - (e["weight_bytes_f32"] / 2 if bf16 else 0.0)
        if bw and rate:  # without the roofline probes there are times but no floors
            t_bytes = nbytes / bw * 1e3
            t_flops = e["flops"] / rate * 1e3
        else:
            t_bytes = t_flops = float("nan")
        floor = max(t_bytes, t_flops)
        return {"ms": e["ms"], "calls": e["calls"], "floor_ms": floor,
                "bound": "compute" if t_flops >= t_bytes else "memory",
                "ratio": e["ms"] / floor if floor > 0 else None,
                "ms_per_call": e["ms"] / max(1, e["calls"]),
                "tflops_per_s": e["flops"] / (e["ms"] / 1e3) / 1e12 if e["ms"] > 0 else None,
                "gbytes_per_s": nbytes / (e["ms"] / 1e3) / 1e9 if e["ms"] > 0 else None}

    shapes = {k: floor_of(v) for k, v in ops.get("ops_by_shape", {}).items()}
    by_op: Dict[str, dict] = {}
    for key, s in shapes.items():
        op = key.split(" ", 1)[0]
        agg = by_op.setdefault(op, {"ms": 0.0, "floor_ms": 0.0, "calls": 0})
        agg["ms"] += s["ms"]
        agg["floor_ms"] += s["floor_ms"]
        agg["calls"] += s["calls"]
    for agg in by_op.values():
        agg["ratio"] = agg["ms"] / agg["floor_ms"] if agg["floor_ms"] > 0 else None
        agg["floor_ms"] = agg["floor_ms"] if math.isfinite(agg["floor_ms"]) else None
    total_ms = sum(a["ms"] for a in by_op.values())
    total_floor = sum(a["floor_ms"] for a in by_op.values() if a["floor_ms"] is not None)
    return {"precision": ops.get("precision"), "model": ops.get("model", {}).get("name"),
            "blocks": ops.get("blocks_timed"), "by_op": by_op, "by_shape": shapes,
            "total_ms": total_ms, "total_floor_ms": total_floor,
            "ceilings": {"bytes_per_s": bw, "flops_per_s": rate}}


def target_ops(floors: Optional[dict], cfg_tokens: int = 4680, heads: int = 12,
               dh: int = 128) -> dict:
    """The two kernels with issue-6 targets, from the per-shape profile."""
    out = {}
    if not floors:
        return out
    shapes = floors["by_shape"]
    key_attn = f"attention q{cfg_tokens} k{cfg_tokens} h{heads} d{dh}"
    key_delta = f"gated_delta_update t{cfg_tokens} h{heads} dk{dh} dv{dh}"
    if key_attn in shapes:
        s = shapes[key_attn]
        out["attention"] = {"shape": key_attn, "ms_per_call": s["ms_per_call"],
                            "tflops_per_s": s["tflops_per_s"],
                            "target_tflops_per_s": TARGETS["attention_tflops"],
                            "met": (s["tflops_per_s"] or 0) >= TARGETS["attention_tflops"]}
    if key_delta in shapes:
        s = shapes[key_delta]
        out["gated_delta_update"] = {"shape": key_delta, "ms_per_call": s["ms_per_call"],
                                     "target_ms": TARGETS["delta_ms"],
                                     "met": s["ms_per_call"] <= TARGETS["delta_ms"]}
    return out


def small_model(run: Optional[dict]) -> Optional[dict]:
    if not run or not run.get("blocks"):
        return None
    rows = run["blocks"]
    total = median([r["ms"]["total"] for r in rows])
    dit = median([dit_ms(r) for r in rows])
    fpb = run.get("frames_per_block", 3)
    return {"model": run["model"]["name"], "device": run.get("device"),
            "precision": run.get("precision"), "blocks": len(rows),
            "median_total_ms": total, "median_dit_ms": dit,
            "median_decode_ms": median([r["ms"]["decode"] for r in rows]),
            "frames_per_second": 1e3 * fpb / total if total else None,
            "dit_frames_per_second": 1e3 * fpb / dit if dit else None,
            "frames_per_block": fpb}


def window(rows: List[dict], centre: int, half: int = 4) -> List[dict]:
    return [r for r in rows if abs(r["block"] - centre) <= half]


def long_run(run: Optional[dict]) -> Optional[dict]:
    if not run or not run.get("blocks"):
        return None
    rows = run["blocks"]
    last = rows[-1]["block"]
    steady = [r for r in rows if 1 <= r["block"] <= 10] or rows
    early, late = window(rows, 10), window(rows, last - 4)
    dev = lambda rs: median([r.get("device_memory_used_bytes") for r in rs])  # noqa: E731
    res = {
        "model": run["model"]["name"], "precision": run.get("precision"),
        "blocks_timed": len(rows), "last_block": last, "stopped": run.get("stopped"),
        "median_dit_ms_blocks_1_10": median([dit_ms(r) for r in steady]),
        "median_denoise_ms_blocks_1_10": median([r["ms"]["denoise"] for r in steady]),
        "median_clean_ms_blocks_1_10": median([r["ms"]["clean"] for r in steady]),
        "median_decode_ms_blocks_1_10": median([r["ms"]["decode"] for r in steady]),
        "setup_ms": run.get("setup_ms"),
        "near_block_10": {"dit_ms": median([dit_ms(r) for r in early]),
                          "device_bytes": dev(early),
                          "rss_bytes": median([r["rss_bytes"] for r in early]),
                          "state_bytes": early[len(early) // 2]["memory_state_bytes"]
                          if early else None},
        "near_last": {"block": last, "dit_ms": median([dit_ms(r) for r in late]),
                      "device_bytes": dev(late), "rss_bytes": median([r["rss_bytes"] for r in late]),
                      "state_bytes": late[len(late) // 2]["memory_state_bytes"] if late else None},
        "peak_device_bytes": run.get("device_memory_used_bytes_peak_after_block"),
        "device_bytes_at_start": run.get("device_memory_used_bytes_at_start"),
        "state_bytes_per_block_growth": run.get("memory_state_bytes_per_block_growth"),
    }
    d = res["median_dit_ms_blocks_1_10"]
    res["video_fps"] = VIDEO_FRAMES_PER_BLOCK * 1e3 / d if d else None
    e, l = res["near_block_10"], res["near_last"]
    if e["dit_ms"] and l["dit_ms"] and last >= 20:
        res["time_change"] = l["dit_ms"] / e["dit_ms"] - 1
    if e["device_bytes"] and l["device_bytes"] and last >= 20:
        res["device_memory_change"] = l["device_bytes"] / e["device_bytes"] - 1
    return res


def linear_fit(xs: List[float], ys: List[float]):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return my - b * mx, b


def at_921(run: Optional[dict], label: str) -> Optional[dict]:
    """Time (DiT, summed over blocks 0-76) and peak device memory for 921 frames; extrapolated
    (and flagged) when the run stopped earlier."""
    if not run or not run.get("blocks"):
        return None
    rows = [r for r in run["blocks"] if r["block"] < BLOCKS_921]
    measured = len(rows)
    total_ms = sum(dit_ms(r) for r in rows)
    devs = [r.get("device_memory_used_bytes") for r in rows if r.get("device_memory_used_bytes")]
    peak = max(devs) if devs else None
    out = {"variant": label, "model": run["model"]["name"], "blocks_measured": measured,
           "dit_seconds": total_ms / 1e3, "peak_device_bytes": peak, "estimated": False,
           "stopped": run.get("stopped"),
           "state_bytes_at_921": (run.get("memory_state_bytes_fixed", 0)
                                  + BLOCKS_921 * run.get("memory_state_bytes_per_block_growth", 0))}
    if measured < BLOCKS_921:
        fit_rows = [r for r in rows if r["block"] >= 1] or rows
        if len(fit_rows) >= 3:
            a, b = linear_fit([r["block"] for r in fit_rows], [dit_ms(r) for r in fit_rows])
            rest = sum(a + b * n for n in range(measured, BLOCKS_921))
            out["dit_seconds"] = (total_ms + rest) / 1e3
            out["estimated"] = True
            out["fit_ms_per_block"] = {"intercept": a, "slope_per_block": b}
            dev_rows = [r for r in fit_rows if r.get("device_memory_used_bytes")]
            if len(dev_rows) >= 3:
                da, db = linear_fit([r["block"] for r in dev_rows],
                                    [r["device_memory_used_bytes"] for r in dev_rows])
                out["peak_device_bytes"] = da + db * (BLOCKS_921 - 1)
        else:
            out["dit_seconds"] = None
    return out


def torch_ref(run: Optional[dict]) -> Optional[dict]:
    if not run or not run.get("blocks"):
        return None
    m = run.get("median_ms", {})
    return {"model": run.get("model"), "dtype": run.get("dtype"), "attention": run.get("attention"),
            "torch": run.get("torch"), "blocks": run.get("blocks_timed"),
            "median_dit_ms": m.get("dit_ms"), "median_denoise_ms": m.get("denoise_ms"),
            "median_clean_ms": m.get("clean_ms"),
            "video_fps": VIDEO_FRAMES_PER_BLOCK * 1e3 / m["dit_ms"] if m.get("dit_ms") else None,
            "max_memory_allocated_bytes": run.get("max_memory_allocated_bytes")}


def smi_peaks(work: str) -> Optional[dict]:
    """Peak nvidia-smi memory.used per stage (the sampler runs beside every stage)."""
    try:
        with open(os.path.join(work, "smi.csv"), encoding="utf-8") as f:
            samples = []
            for line in f:
                parts = [p.strip() for p in line.split(",")]
                if len(parts) >= 2 and parts[1].replace(".", "").isdigit():
                    samples.append((parts[0], float(parts[1])))
        with open(os.path.join(work, "stage_times.tsv"), encoding="utf-8") as f:
            spans = [l.rstrip("\n").split("\t") for l in f if l.count("\t") >= 2]
    except OSError:
        return None
    stamped = [(_epoch(t), mib) for t, mib in samples]
    peaks = {}
    for name, begin, end in ((s[0], float(s[1]), float(s[2])) for s in spans):
        vals = [mib for t, mib in stamped if t is not None and begin <= t <= end]
        if vals:
            peaks[name] = max(vals) * (1 << 20)
    return peaks


def _epoch(text: str) -> Optional[float]:
    """Seconds since the epoch of an nvidia-smi timestamp ("2026/11/13 12:00:00.123", local
    time, like the stage spans that `date +%s.%N` wrote on the same machine)."""
    from datetime import datetime
    for pattern in ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S"):
        try:
            return datetime.strptime(text, pattern).timestamp()
        except ValueError:
            continue
    try:
        return float(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------


def build_summary(work: str) -> dict:
    roof = roofline(work)
    ops = load(work, "ops-mixed.json")
    floors = op_floors(ops, roof)
    runs = {k: load(work, f"e2e-{k}.json") for k in ("mixed", "hybrid", "kv")}
    s: Dict[str, Any] = {
        "env": load(work, "env.json"),
        "stages": stages(work),
        "tests": tests(work),
        "reference_self_check": load(work, "ref-selfcheck.json"),
        "roofline": roof,
        "attention_microbench": _read_text(work, "bench-attention.log"),
        "ops": floors,
        "target_ops": target_ops(floors),
        "default_model": {k: small_model(load(work, f"small-{k}.json"))
                          for k in ("tiny-fp32", "tiny-bf16", "trained-fp32", "trained-bf16")},
        "ref_shape": {k: long_run(v) for k, v in runs.items()},
        "at_921_frames": [x for x in (at_921(runs["kv"], "all softmax_kv (full cache)"),
                                      at_921(runs["mixed"], "22 hybrid + 8 softmax_kv"),
                                      at_921(runs["hybrid"], "all hybrid")) if x],
        "pytorch": {k: torch_ref(load(work, f"torch-{k}.json")) for k in ("mixed", "hybrid")},
        "smi_peak_bytes_by_stage": smi_peaks(work),
        "conventions": __doc__.split("Conventions (also written into the summary):", 1)[1].strip(),
    }
    checks = {}
    hy = s["ref_shape"].get("hybrid")
    if hy and hy.get("video_fps"):
        checks["all_hybrid_video_fps_ge_40"] = hy["video_fps"] >= TARGETS["hybrid_video_fps"]
    for k in ("mixed", "hybrid"):
        eng, ref = s["ref_shape"].get(k), s["pytorch"].get(k)
        if eng and ref and eng.get("median_dit_ms_blocks_1_10") and ref.get("median_dit_ms"):
            sp = ref["median_dit_ms"] / eng["median_dit_ms_blocks_1_10"]
            s["pytorch"][k]["engine_speedup"] = sp
            checks[f"{k}_speedup_vs_pytorch_ge_2"] = sp >= TARGETS["speedup_vs_torch"]
    if hy and hy.get("last_block", 0) >= 290:
        if hy.get("time_change") is not None:
            checks["all_hybrid_time_flat_10_to_300"] = abs(hy["time_change"]) <= TARGETS["flat_tolerance"]
        if hy.get("device_memory_change") is not None:
            checks["all_hybrid_memory_flat_10_to_300"] = (abs(hy["device_memory_change"])
                                                          <= TARGETS["flat_tolerance"])
    for name, t in s["target_ops"].items():
        checks[f"{name}_target"] = t["met"]
    s["checks"] = checks
    return s


def _read_text(work: str, name: str) -> Optional[str]:
    try:
        with open(os.path.join(work, name), encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------


def gib(v) -> str:
    return fmt(v / GIB if v is not None else None, ".2f")


def markdown(s: dict) -> str:
    L: List[str] = []
    env = s.get("env") or {}
    L.append(f"# GPU benchmark: {env.get('gpu', 'unknown GPU')}")
    L.append("")
    L.append(f"Run {env.get('date', '?')}, commit {env.get('commit', '?')}, driver "
             f"{env.get('driver', '?')}, torch {env.get('torch', '?')}, mode {env.get('mode', '?')}.")
    L.append("")
    L.append("## Stages")
    L.append("| stage | status | s | note |")
    L.append("| --- | --- | ---: | --- |")
    for st in s["stages"]:
        L.append(f"| {st['stage']} | {st['status']} | {st['seconds']:.0f} | {st['note']} |")
    t = s["tests"]
    L.append("")
    if t.get("available"):
        L.append(f"Tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"
                 f"{'' if t['complete'] else ' (cut short)'}"
                 + (f"; failed: {', '.join(t['failed_names'])}" if t["failed_names"] else ""))
    sc = s.get("reference_self_check")
    if sc:
        L.append(f"PyTorch reference self-check ({sc.get('device')}): "
                 f"{'ok' if sc.get('ok') else 'FAILED'} (DiT rel. error "
                 f"{fmt(sc.get('dit_output_rel_error'), '.1e')}, memory "
                 f"{fmt(sc.get('memory_rel_error'), '.1e')})")
    roof = s.get("roofline")
    L.append("")
    L.append("## Roofline probes")
    if roof:
        c = roof["ceilings"]
        L.append(f"Copy bandwidth {fmt((c.get('bytes_per_s') or 0) / 1e12, '.2f')} TB/s; cuBLAS "
                 f"bf16 {fmt((c.get('bf16_flops_per_s') or 0) / 1e12, '.0f')}, fp32 "
                 f"{fmt((c.get('fp32_flops_per_s') or 0) / 1e12, '.1f')}, tf32 "
                 f"{fmt((c.get('tf32_flops_per_s') or 0) / 1e12, '.0f')} TFLOP/s (8192^3); FFN shape "
                 f"bf16 {fmt((roof.get('gemm_bf16_ffn', {}).get('flops_per_s') or 0) / 1e12, '.0f')}"
                 f", fp32 {fmt((roof.get('gemm_fp32_ffn', {}).get('flops_per_s') or 0) / 1e12, '.1f')}"
                 " TFLOP/s.")
        sd = roof.get("sdpa_4680_h12_d128", {}).get("backends", {})
        parts = [f"{k} {v['flops_per_s'] / 1e12:.0f}" for k, v in sd.items() if "flops_per_s" in v]
        if parts:
            L.append(f"PyTorch SDPA, 4680 tokens, 12 x 128, bf16 (TFLOP/s): {', '.join(parts)}.")
        dr = roof.get("torch_delta_rule_4680_h12_d128", {})
        if "ms" in dr:
            L.append(f"PyTorch chunked delta rule, 12 x 128 x 4680 tokens: {dr['ms']:.2f} ms.")
    else:
        L.append("not available")
    L.append("")
    L.append("## Per-op time vs floor (1.3B shape, 22 hybrid + 8 softmax_kv)")
    f = s.get("ops")
    if f:
        L.append(f"{f['precision']}, {f['blocks']} blocks after warm-up, each op synchronised. "
                 f"Sum {f['total_ms']:.0f} ms vs floor {f['total_floor_ms']:.0f} ms"
                 f"{'' if f['ceilings']['bytes_per_s'] else ' (no roofline probes: no floors)'}.")
        L.append("")
        L.append("| op | calls | ms | floor ms | x floor |")
        L.append("| --- | ---: | ---: | ---: | ---: |")
        for op, a in sorted(f["by_op"].items(), key=lambda kv: -kv[1]["ms"]):
            L.append(f"| {op} | {a['calls']} | {a['ms']:.1f} | {fmt(a['floor_ms'], '.2f')} | "
                     f"{fmt(a['ratio'], '.1f')} |")
        for name, t in s["target_ops"].items():
            if name == "attention":
                L.append(f"\nIntra-block attention ({t['shape']}): {t['ms_per_call']:.3f} ms a call, "
                         f"{fmt(t['tflops_per_s'], '.0f')} TFLOP/s (target >= 350): "
                         f"{'met' if t['met'] else 'not met'}.")
            else:
                L.append(f"Gated delta update ({t['shape']}): {t['ms_per_call']:.3f} ms a call "
                         f"(target <= 0.05, sync included): {'met' if t['met'] else 'not met'}.")
    else:
        L.append("not available")
    L.append("")
    L.append("## Default model (end to end, decode included)")
    L.append("| model | device | precision | blocks | ms/block | DiT ms | frames/s | DiT-only frames/s |")
    L.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for k, m in s["default_model"].items():
        if m:
            L.append(f"| {m['model']} | {m['device']} | {m['precision']} | {m['blocks']} | "
                     f"{fmt(m['median_total_ms'], '.2f')} | {fmt(m['median_dit_ms'], '.2f')} | "
                     f"{fmt(m['frames_per_second'])} | {fmt(m['dit_frames_per_second'])} |")
        else:
            L.append(f"| {k} | | | not run | | | | |")
    L.append("")
    L.append("For comparison, the CPU engine on the bundled model (docs/performance.md, run 2, a 2-core "
             "VM): 110.9 ms per block, 27.0 frames/s of 128x72.")
    L.append("")
    L.append("## 1.3B reference shape (DiT only: 4 denoising passes + clean pass)")
    L.append("| variant | blocks run | DiT ms/block (1-10) | video fps | PyTorch ms | engine speed-up |"
             " GPU GiB near 10 | GPU GiB near last | last block | stopped |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    names = {"mixed": "22 hybrid + 8 softmax_kv", "hybrid": "all hybrid", "kv": "all softmax_kv"}
    for k, r in s["ref_shape"].items():
        if not r:
            L.append(f"| {names[k]} | not run | | | | | | | | |")
            continue
        ref = s["pytorch"].get(k) or {}
        L.append(f"| {names[k]} | {r['blocks_timed']} | {fmt(r['median_dit_ms_blocks_1_10'])} | "
                 f"{fmt(r['video_fps'])} | {fmt(ref.get('median_dit_ms'))} | "
                 f"{fmt(ref.get('engine_speedup'), '.2f')} | {gib(r['near_block_10']['device_bytes'])}"
                 f" | {gib(r['near_last']['device_bytes'])} | {r['last_block']} | "
                 f"{r['stopped'] or ''} |")
    hy = s["ref_shape"].get("hybrid")
    if hy and hy.get("time_change") is not None:
        L.append(f"\nAll-hybrid, block {hy['last_block']} vs block 10 (9-block medians): DiT time "
                 f"{hy['time_change']:+.1%}, GPU memory {fmt(hy.get('device_memory_change'), '+.1%')}"
                 f", memory state {hy['near_last']['state_bytes']} bytes (constant by design).")
    L.append("")
    L.append("## 921 frames (77 blocks): full softmax_kv vs 75% hybrid vs all-hybrid")
    L.append("| variant | blocks measured | DiT s for 921 frames | peak GPU GiB | memory state GiB at 921 | note |")
    L.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in s["at_921_frames"]:
        note = "extrapolated (linear fit of per-block time and memory)" if r["estimated"] else ""
        if r.get("stopped"):
            note = (note + "; " if note else "") + f"run stopped: {r['stopped']}"
        L.append(f"| {r['variant']} | {r['blocks_measured']} | {fmt(r['dit_seconds'])} | "
                 f"{gib(r['peak_device_bytes'])} | {gib(r['state_bytes_at_921'])} | {note} |")
    L.append("")
    L.append("## Checks against issue 6's targets")
    for k, v in s["checks"].items():
        L.append(f"- {k}: {'met' if v else 'NOT met'}")
    L.append("")
    L.append("## Conventions")
    L.append(s["conventions"])
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------------


def plots(s: dict, work: str, out: str) -> List[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    gpu = (s.get("env") or {}).get("gpu", "GPU")
    f = s.get("ops")
    if f:
        items = sorted(f["by_op"].items(), key=lambda kv: kv[1]["ms"])
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(items) + 1.5))
        y = range(len(items))
        ax.barh([i + 0.2 for i in y], [a["ms"] for _, a in items], 0.4, label="measured (synced)")
        ax.barh([i - 0.2 for i in y], [max(a["floor_ms"] or 0, 1e-4) for _, a in items], 0.4,
                label="roofline floor")
        ax.set_yticks(list(y))
        ax.set_yticklabels([k for k, _ in items], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"ms over {f['blocks']} blocks ({f['precision']})")
        ax.set_title(f"Per-op time vs floor, 1.3B shape, {gpu}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        path = os.path.join(out, "ops_vs_floor.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    runs = {k: load(work, f"e2e-{k}.json") for k in ("hybrid", "mixed", "kv")}
    if any(r and r.get("blocks") for r in runs.values()):
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.2))
        labels = {"hybrid": "all hybrid", "mixed": "22 hybrid + 8 softmax_kv",
                  "kv": "all softmax_kv (full cache)"}
        colours = {"hybrid": "tab:blue", "mixed": "tab:orange", "kv": "tab:red"}
        for k, r in runs.items():
            if not r or not r.get("blocks"):
                continue
            rows = r["blocks"]
            b = [x["block"] for x in rows]
            ax_t.plot(b, [dit_ms(x) for x in rows], color=colours[k], lw=0.9, label=labels[k])
            dev = [x.get("device_memory_used_bytes") for x in rows]
            if any(dev):
                ax_m.plot(b, [(d or 0) / GIB for d in dev], color=colours[k], lw=1.2,
                          label=labels[k] + ": GPU in use")
            ax_m.plot(b, [x["memory_state_bytes"] / GIB for x in rows], color=colours[k], lw=1,
                      ls="--", label=labels[k] + ": memory state")
        for ax in (ax_t, ax_m):
            ax.axvline(BLOCKS_921 - 1, color="grey", lw=0.8, ls=":")
            ax.set_xlabel("block (3 latent frames = 12 video frames)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax_t.set_ylabel("DiT ms per block (4 denoising + clean)")
        ax_t.set_title("Per-block time (dotted: 921 frames)", fontsize=9)
        ax_m.set_ylabel("GiB")
        ax_m.set_title("Memory", fontsize=9)
        fig.suptitle(f"Strand CUDA engine, 1.3B shape, {gpu}", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out, "long_run.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    rows921 = s.get("at_921_frames") or []
    if rows921:
        fig, (ax_t, ax_m, ax_r) = plt.subplots(1, 3, figsize=(13, 4))
        names = [r["variant"] for r in rows921]
        hatch = ["//" if r["estimated"] else "" for r in rows921]
        ax_t.bar(names, [r["dit_seconds"] or 0 for r in rows921], hatch=hatch, color="tab:blue")
        ax_t.set_ylabel("DiT seconds for 921 frames (hatched: extrapolated)")
        ax_m.bar(names, [(r["peak_device_bytes"] or 0) / GIB for r in rows921], hatch=hatch,
                 color="tab:orange")
        ax_m.set_ylabel("peak GPU GiB in use")
        for ax in (ax_t, ax_m):
            ax.tick_params(axis="x", labelsize=7, rotation=12)
            ax.grid(alpha=0.3, axis="y")
        eng = [s["ref_shape"].get(k) for k in ("mixed", "hybrid")]
        ref = [s["pytorch"].get(k) for k in ("mixed", "hybrid")]
        xs = range(2)
        ax_r.bar([x - 0.2 for x in xs], [(e or {}).get("median_dit_ms_blocks_1_10") or 0 for e in eng],
                 0.4, label="Strand engine")
        ax_r.bar([x + 0.2 for x in xs], [(r or {}).get("median_dit_ms") or 0 for r in ref], 0.4,
                 label="PyTorch reference (bf16, SDPA)")
        ax_r.set_xticks(list(xs))
        ax_r.set_xticklabels(["22 hybrid + 8 kv", "all hybrid"], fontsize=8)
        ax_r.set_ylabel("DiT ms per block (blocks 1-10)")
        ax_r.legend(fontsize=7)
        ax_r.grid(alpha=0.3, axis="y")
        fig.suptitle(f"921 frames and engine vs PyTorch, 1.3B shape, {gpu}", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out, "compare_921.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def plot_engine_vs_torch(engine_path: str, torch_path: str, out_png: str) -> str:
    """Per-block DiT time of one strand-cli bench JSON and one training/bench_gpu.py JSON of the
    same model on the same card: denoising passes and clean pass stacked, one bar per timed block."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(engine_path, encoding="utf-8") as f:
        engine = json.load(f)
    with open(torch_path, encoding="utf-8") as f:
        ref = json.load(f)
    runs = [("Strand engine", [(r["block"], r["ms"]["denoise"], r["ms"]["clean"])
                               for r in engine["blocks"]]),
            ("PyTorch reference", [(r["block"], r["denoise_ms"], r["clean_ms"])
                                   for r in ref["blocks"]])]
    top = 1.3 * max(d + c for _, rows in runs for _, d, c in rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, (label, rows) in zip(axes, runs):
        blocks = [b for b, _, _ in rows]
        den = [d for _, d, _ in rows]
        cln = [c for _, _, c in rows]
        ax.bar(blocks, den, color="tab:blue", label="4 denoising passes")
        ax.bar(blocks, cln, bottom=den, color="tab:orange", label="clean pass (state update)")
        med = median([d + c for _, d, c in rows])
        ax.axhline(med, color="black", lw=0.8, ls="--", label=f"median DiT {med:.0f} ms")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("block")
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylim(0, top)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    axes[0].set_ylabel("DiT ms per block")
    model = (engine.get("model") or {}).get("name", ref.get("model", "model"))
    fig.suptitle(f"{model}, {engine.get('precision', '')}, {ref.get('device', 'GPU')}: "
                 "engine vs PyTorch, same card", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def compact(s: dict) -> str:
    """A few lines for stdout (the device tool returns the tail of the output)."""
    L = []
    for st in s["stages"]:
        if st["status"] != "ok":
            L.append(f"stage {st['stage']}: {st['status']} ({st['note']})")
    t = s["tests"]
    if t.get("available"):
        L.append(f"tests: {t['passed']} passed, {t['failed']} failed"
                 + (f" [{', '.join(t['failed_names'][:8])}]" if t["failed_names"] else ""))
    roof = s.get("roofline")
    if roof:
        c = roof["ceilings"]
        L.append(f"roofline: {(c.get('bytes_per_s') or 0) / 1e12:.2f} TB/s, bf16 "
                 f"{(c.get('bf16_flops_per_s') or 0) / 1e12:.0f} / fp32 "
                 f"{(c.get('fp32_flops_per_s') or 0) / 1e12:.1f} TFLOP/s")
    for name, t in s["target_ops"].items():
        L.append(f"{name}: {t['ms_per_call']:.3f} ms/call"
                 + (f", {t['tflops_per_s']:.0f} TFLOP/s" if name == "attention" else "")
                 + f" ({'met' if t['met'] else 'not met'})")
    for k, m in s["default_model"].items():
        if m:
            L.append(f"{k}: {m['frames_per_second']:.1f} frames/s end to end "
                     f"({m['median_total_ms']:.2f} ms/block)")
    for k, r in s["ref_shape"].items():
        if r:
            ref = s["pytorch"].get(k) or {}
            L.append(f"1.3B {k}: {fmt(r['median_dit_ms_blocks_1_10'])} ms/block DiT, "
                     f"{fmt(r['video_fps'])} video fps, {r['blocks_timed']} blocks, GPU "
                     f"{gib(r['near_block_10']['device_bytes'])} -> "
                     f"{gib(r['near_last']['device_bytes'])} GiB; PyTorch "
                     f"{fmt(ref.get('median_dit_ms'))} ms (x{fmt(ref.get('engine_speedup'), '.2f')})")
    for r in s["at_921_frames"]:
        L.append(f"921 frames, {r['variant']}: {fmt(r['dit_seconds'])} s, peak "
                 f"{gib(r['peak_device_bytes'])} GiB{' (extrapolated)' if r['estimated'] else ''}")
    for k, v in s["checks"].items():
        L.append(f"check {k}: {'met' if v else 'NOT met'}")
    return "\n".join(L)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a bench_all.sh run")
    parser.add_argument("--work", help="folder of raw results")
    parser.add_argument("--out", help="where summary.* and *.png go")
    parser.add_argument("--engine-vs-torch", nargs=2, metavar=("ENGINE_JSON", "TORCH_JSON"),
                        help="only draw per-block DiT time, strand-cli bench vs bench_gpu.py")
    parser.add_argument("--png", help="output of --engine-vs-torch")
    args = parser.parse_args()
    if args.engine_vs_torch:
        if not args.png:
            parser.error("--engine-vs-torch needs --png")
        print(plot_engine_vs_torch(args.engine_vs_torch[0], args.engine_vs_torch[1], args.png))
        return
    if not args.work or not args.out:
        parser.error("--work and --out are required")
    os.makedirs(args.out, exist_ok=True)
    s = build_summary(args.work)
    s["plots"] = [os.path.basename(p) for p in plots(s, args.work, args.out)]
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(s, f, indent=1, default=str)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown(s))
    print(compact(s))


if __name__ == "__main__":
    main()
