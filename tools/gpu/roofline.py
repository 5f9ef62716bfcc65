#!/usr/bin/env python3
"""Roofline probes on the GPU the benchmarks run on (docs/performance.md, GPU section): the two
ceilings every per-op floor is computed from, measured rather than read off a datasheet, plus
PyTorch's own speed on the two kernels issue 6 sets targets for.

- memory bandwidth: a 2 GiB device-to-device copy, counting bytes read + bytes written;
- GEMM rates through cuBLAS (torch.matmul) on random data: bf16 (fp32 accumulate), fp32 without
  TF32, and TF32, at 8192^3 and at the DiT's FFN shape [4680 x 1536] x [1536 x 8960];
- PyTorch SDPA at one 4680-token block, 12 heads x 128, bf16, each backend that runs
  (flash, cuDNN, memory-efficient), in TFLOP/s of 4 T^2 H dh (Q K^T and P V);
- the gated delta rule at 12 heads x 128 x 4680 tokens in PyTorch (training/bench_gpu.py's
  batched chunked form, float32).
Times are medians of CUDA-event-timed repeats after warm-up; inputs that fit in L2 are rotated
among several copies so that repeats do not measure the cache.

    python3 tools/gpu/roofline.py [--json OUT.json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))


def timed_ms(fn, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of fn() over `repeats` CUDA-event-timed calls (after warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bandwidth(quick: bool) -> dict:
    n = (1 << 31) // 4  # 2 GiB of float32
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    ms = timed_ms(lambda: dst.copy_(src), 5 if quick else 20)
    moved = 2 * n * 4
    return {"bytes_moved": moved, "ms": ms, "bytes_per_s": moved / (ms / 1e3),
            "method": "2 GiB device-to-device copy (torch copy_), bytes read + written"}


def gemm(m: int, n: int, k: int, dtype: torch.dtype, tf32: bool, quick: bool) -> dict:
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        copies = 1 if m * k * 2 > 64 << 20 else 4  # rotate operands that fit in L2
        a = [torch.randn(m, k, device="cuda", dtype=dtype) for _ in range(copies)]
        b = [torch.randn(k, n, device="cuda", dtype=dtype) for _ in range(copies)]
        state = {"i": 0}

        def run():
            i = state["i"] = (state["i"] + 1) % copies
            torch.matmul(a[i], b[i])

        ms = timed_ms(run, 5 if quick else 20)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    flops = 2.0 * m * n * k
    return {"m": m, "n": n, "k": k, "dtype": str(dtype).replace("torch.", ""), "tf32": tf32,
            "ms": ms, "flops_per_s": flops / (ms / 1e3)}


def sdpa(tokens: int, heads: int, dh: int, quick: bool) -> dict:
    out = {}
    q, k, v = ([torch.randn(1, heads, tokens, dh, device="cuda", dtype=torch.bfloat16)
                for _ in range(4)] for _ in range(3))
    flops = 4.0 * tokens * tokens * heads * dh
    backends = {"default": None}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends.update({"flash": SDPBackend.FLASH_ATTENTION,
                         "cudnn": SDPBackend.CUDNN_ATTENTION,
                         "efficient": SDPBackend.EFFICIENT_ATTENTION})
    except ImportError:
        sdpa_kernel = None
    for name, backend in backends.items():
        state = {"i": 0}

        def run():
            i = state["i"] = (state["i"] + 1) % 4
            F.scaled_dot_product_attention(q[i], k[i], v[i])

        try:
            if backend is None:
                ms = timed_ms(run, 5 if quick else 30)
            else:
                with sdpa_kernel(backend):
                    ms = timed_ms(run, 5 if quick else 30)
            out[name] = {"ms": ms, "flops_per_s": flops / (ms / 1e3)}
        except RuntimeError as exc:  # a backend that does not support this shape / build
            out[name] = {"error": str(exc).splitlines()[0][:200]}
    return {"tokens": tokens, "heads": heads, "head_dim": dh, "dtype": "bfloat16",
            "flops": flops, "backends": out}


def delta_rule(tokens: int, heads: int, dh: int, quick: bool) -> dict:
    from bench_gpu import gated_delta_chunked_batched, l2n
    k = l2n(torch.randn(tokens, heads, dh, device="cuda"))
    v = torch.randn(tokens, heads, dh, device="cuda")
    g = -torch.rand(tokens, heads, device="cuda") * 0.1
    beta = 2.0 * torch.rand(tokens, heads, device="cuda")
    s0 = torch.randn(heads, dh, dh, device="cuda")
    ms = timed_ms(lambda: gated_delta_chunked_batched(s0, k, v, g, beta, 64), 3 if quick else 10)
    return {"tokens": tokens, "heads": heads, "head_dim": dh, "ms": ms,
            "implementation": "training/bench_gpu.py gated_delta_chunked_batched, chunk 64, fp32"}


def main() -> None:
    parser = argparse.ArgumentParser(description="GPU roofline probes")
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (dry runs)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("roofline.py: no CUDA GPU visible to PyTorch")
    props = torch.cuda.get_device_properties(0)
    report = {
        "device": torch.cuda.get_device_name(0), "sm_count": props.multi_processor_count,
        "memory_bytes": props.total_memory, "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "l2_bytes": getattr(props, "L2_cache_size", None),
    }
    parts = {
        "bandwidth": lambda: bandwidth(args.quick),
        "gemm_bf16_8192": lambda: gemm(8192, 8192, 8192, torch.bfloat16, False, args.quick),
        "gemm_fp32_8192": lambda: gemm(8192, 8192, 8192, torch.float32, False, args.quick),
        "gemm_tf32_8192": lambda: gemm(8192, 8192, 8192, torch.float32, True, args.quick),
        "gemm_bf16_ffn": lambda: gemm(4680, 8960, 1536, torch.bfloat16, False, args.quick),
        "gemm_fp32_ffn": lambda: gemm(4680, 8960, 1536, torch.float32, False, args.quick),
        "sdpa_4680_h12_d128": lambda: sdpa(4680, 12, 128, args.quick),
        "torch_delta_rule_4680_h12_d128": lambda: delta_rule(4680, 12, 128, args.quick),
    }
    for name, probe in parts.items():
        try:
            report[name] = probe()
        except Exception as exc:  # one failing probe must not lose the others
            report[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        torch.cuda.empty_cache()
    # The ceilings the floors use: the best measured rate of each precision.
    report["ceilings"] = {
        "bytes_per_s": report["bandwidth"].get("bytes_per_s"),
        "bf16_flops_per_s": report["gemm_bf16_8192"].get("flops_per_s"),
        "fp32_flops_per_s": report["gemm_fp32_8192"].get("flops_per_s"),
        "tf32_flops_per_s": report["gemm_tf32_8192"].get("flops_per_s"),
    }
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
