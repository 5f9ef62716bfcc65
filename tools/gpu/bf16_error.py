#!/usr/bin/env python3
"""bf16 error of the C++ engine against the PyTorch reference's bf16 error (issue 6, section 2:
"bf16 within 2x the error of the PyTorch reference at bf16, both against an fp32 reference").

One run generates the same N blocks four ways and compares their clean latents x0:
  engine fp32, engine bf16   strand-cli bench --latents-out (--device cuda; on the CPU the engine
                             has fp32 only, so --engine-precisions fp32 there);
  torch fp32, torch bf16     training/bench_gpu.py's ReferenceRunner (strand_ref's modules and
                             weights; weights and activations in the dtype, norm statistics and the
                             delta-rule state in fp32, SDPA attention), TF32 off for fp32.
Inputs are identical, not merely alike: the same weights (read from the same file), the prompt's
token ids from strand_ref's WordPiece port of the engine's tokenizer through the model's own text
encoder, and the engine's Philox noise (strand_ref.rng.noise, bit-exact with core/src/rng.cpp)
in the engine's sampling loop (strand_ref.session.Session.generate_next_block). The prompt and
seed are read back from the engine's latents file, so both sides cannot drift apart.

Errors are relative L2 errors ||x - ref|| / ||ref|| (float64 sums), as tests/core/parity.h, per
block and over all blocks. The common reference is torch fp32. It is used for both bf16 errors
when engine fp32 agrees with it within --fp32-parity-limit (1e-3; in practice ~1e-6 to 1e-5),
which also checks that the inputs really are identical. If it does not agree, the script says so
("reference": "own fp32") and compares each implementation's bf16 with ITS OWN fp32 run instead.
Verdict: ratio = engine bf16 error / torch bf16 error, pass when <= --max-ratio (2).

    python3 tools/gpu/bf16_error.py --cli build-cuda/bin/strand-cli --model M.safetensors \\
        --blocks 4 --device cuda --json out.json
    python3 tools/gpu/bf16_error.py --cli build/bin/strand-cli --device cpu --blocks 2 \\
        --engine-precisions fp32          # CPU: torch fp32 + bf16, engine fp32 only
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
import bench_gpu  # noqa: E402
from strand_ref.export import read_tensors  # noqa: E402
from strand_ref.model import use_strict_float32  # noqa: E402
from strand_ref.rng import noise  # noqa: E402
from strand_ref.tokenizer import WordPieceTokenizer  # noqa: E402

DEFAULT_MODEL = os.path.join(ROOT, "tests", "data", "strand-tiny-random.safetensors")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| in float64 (tests/core/parity.h's rel_error)."""
    a64, r64 = a.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    if a64.shape != r64.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {ref.shape}")
    return float(np.sqrt(np.sum((a64 - r64) ** 2) / max(float(np.sum(r64 ** 2)), 1e-30)))


def compare(runs: List[np.ndarray], refs: List[np.ndarray]) -> dict:
    return {"per_block": [rel_error(a, r) for a, r in zip(runs, refs)],
            "overall": rel_error(np.stack(runs), np.stack(refs))}


# ---- the engine ----------------------------------------------------------------------------


def run_engine(cli: str, model: str, device: str, precision: str, blocks: int, prompt: str,
               seed: int, work: str) -> dict:
    """strand-cli bench writing its latents; -> {"latents": [x0 per block], "meta": {...}}."""
    latents = os.path.join(work, f"engine-{precision}.safetensors")
    report = os.path.join(work, f"engine-{precision}.json")
    cmd = [cli, "bench", "--model", model, "--device", device, "--precision", precision,
           "--blocks", str(blocks), "--warmup", "0", "--prompt", prompt, "--seed", str(seed),
           "--latents-out", latents, "--json", report]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(work, f"engine-{precision}.log"), "w", encoding="utf-8") as f:
        f.write(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"engine {precision} failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    tensors, meta = read_tensors(latents)
    if meta.get("format") != "strand-latents" or meta.get("prompt") != prompt or \
            meta.get("seed") != str(seed) or meta.get("precision") != precision:
        raise SystemExit(f"{latents}: unexpected metadata {meta}")
    runs = [tensors[f"block.{n}"] for n in range(blocks)]
    return {"latents": runs, "meta": meta, "seconds": time.perf_counter() - start}


# ---- the PyTorch reference -----------------------------------------------------------------


def prompt_ids(model_path: str, prompt: str) -> List[int]:
    _, header = bench_gpu.read_header(model_path)
    cfg = bench_gpu.config_of(header)
    vocab = header["__metadata__"]["strand.vocab"].split("\n")
    return WordPieceTokenizer(vocab, lowercase=cfg.text_lowercase,
                              max_positions=cfg.text_max_positions).encode(prompt)


@torch.no_grad()
def run_torch(model_path: str, device: torch.device, precision: str, blocks: int, ids: List[int],
              seed: int) -> dict:
    """The engine's sampling loop (strand_ref Session.generate_next_block) on bench_gpu's pass."""
    dtype = DTYPES[precision]
    start = time.perf_counter()
    model, cfg = bench_gpu.load_model(model_path, device, dtype)
    runner = bench_gpu.ReferenceRunner(model, cfg, dtype)
    ctx_kv = runner.context_kv(model.text_context(ids))  # the text encoder, in the dtype too
    memory = runner.empty_memory()
    sigmas = [float(np.float32(s)) for s in cfg.sigmas]
    shape = (cfg.frames_per_block, cfg.latent_channels, cfg.latent_height, cfg.latent_width)

    def z(block: int, step: int) -> torch.Tensor:
        return torch.from_numpy(noise(seed, block, step, shape)).to(device)

    runs = []
    for n in range(blocks):
        x0 = bench_gpu.denoise_block(runner, ctx_kv, memory, n, sigmas, z(n, 0),
                                     lambda step, n=n: z(n, step))
        runner.dit(x0, 0.0, ctx_kv, memory, n, update=True)
        runs.append(x0.float().cpu().numpy())
    del model, runner, memory, ctx_kv
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"latents": runs, "seconds": time.perf_counter() - start}


# ---- report --------------------------------------------------------------------------------


def measure(args) -> dict:
    engine_precisions = [p for p in args.engine_precisions.split(",") if p]
    for p in engine_precisions:
        if p not in DTYPES:
            raise SystemExit(f"--engine-precisions: unknown precision {p!r}")
    if "fp32" not in engine_precisions:
        raise SystemExit("--engine-precisions must include fp32 (the parity check needs it)")
    _, header = bench_gpu.read_header(args.model)
    raw_cfg = json.loads(header["__metadata__"]["strand.config"])
    if raw_cfg.get("text", {}).get("encoder_file"):
        raise SystemExit(f"{args.model}: its text encoder is a separate file; this tool needs a "
                         "model whose encoder is inside (the bundled or make_large_model.py ones)")
    os.makedirs(args.work, exist_ok=True)
    device = torch.device(args.device)
    ids = prompt_ids(args.model, args.prompt)

    engine: Dict[str, dict] = {}
    for p in engine_precisions:
        engine[p] = run_engine(args.cli, args.model, args.device, p, args.blocks, args.prompt,
                               args.seed, args.work)
        print(f"engine {p}: {engine[p]['seconds']:.1f} s", file=sys.stderr, flush=True)
    use_strict_float32()  # fp32 means fp32 (no TF32); bf16 matmuls are unaffected
    ref: Dict[str, dict] = {}
    for p in ("fp32", "bf16"):
        ref[p] = run_torch(args.model, device, p, args.blocks, ids, args.seed)
        print(f"torch {p}: {ref[p]['seconds']:.1f} s", file=sys.stderr, flush=True)

    tf, tb = ref["fp32"]["latents"], ref["bf16"]["latents"]
    ef = engine["fp32"]["latents"]
    errors = {"engine_fp32_vs_torch_fp32": compare(ef, tf),
              "torch_bf16_vs_torch_fp32": compare(tb, tf)}
    parity = errors["engine_fp32_vs_torch_fp32"]["overall"]
    parity_ok = parity <= args.fp32_parity_limit
    verdict: Dict[str, object] = {"ratio": None, "pass": None}
    if "bf16" in engine:
        eb = engine["bf16"]["latents"]
        errors["engine_bf16_vs_torch_fp32"] = compare(eb, tf)
        errors["engine_bf16_vs_engine_fp32"] = compare(eb, ef)
        key = "engine_bf16_vs_torch_fp32" if parity_ok else "engine_bf16_vs_engine_fp32"
        torch_err = errors["torch_bf16_vs_torch_fp32"]
        ratio = errors[key]["overall"] / max(torch_err["overall"], 1e-30)
        verdict = {
            "ratio": ratio,
            "ratio_per_block": [e / max(t, 1e-30) for e, t in
                                zip(errors[key]["per_block"], torch_err["per_block"])],
            "ratio_against_own_fp32": errors["engine_bf16_vs_engine_fp32"]["overall"]
            / max(torch_err["overall"], 1e-30),
            "engine_error": key,
            "pass": ratio <= args.max_ratio,
        }
    meta = engine["fp32"]["meta"]
    return {
        "tool": "tools/gpu/bf16_error.py",
        "criterion": "issue 6 section 2: engine bf16 error <= 2x PyTorch bf16 error, both against "
                     "an fp32 reference",
        "model": {"path": args.model, "name": meta.get("model_name"), "id": meta.get("model_id")},
        "device": bench_gpu.device_name(device), "engine_device": args.device,
        "torch": torch.__version__,
        "prompt": args.prompt, "prompt_tokens": len(ids), "seed": args.seed,
        "blocks": args.blocks, "engine_precisions": engine_precisions,
        "inputs": "identical: same weights file, same token ids (strand_ref WordPiece port), "
                  "same Philox noise (strand_ref.rng), same sampling loop",
        "reference": "torch fp32 (common)" if parity_ok else "own fp32 (engine fp32 did not "
                     "match torch fp32 within the parity limit)",
        "metric": "relative L2 error of each block's clean latents x0, float64 sums "
                  "(tests/core/parity.h); overall = over all blocks together",
        "fp32_parity": {"engine_fp32_vs_torch_fp32": parity, "limit": args.fp32_parity_limit,
                        "ok": parity_ok},
        "errors": errors,
        "max_ratio": args.max_ratio,
        **verdict,
        "seconds": {**{f"engine_{p}": round(e["seconds"], 2) for p, e in engine.items()},
                    **{f"torch_{p}": round(r["seconds"], 2) for p, r in ref.items()}},
    }


def print_table(report: dict) -> None:
    errors = report["errors"]
    names = list(errors)
    print(f"model {report['model']['name']} on {report['device']}, {report['blocks']} blocks, "
          f"seed {report['seed']}, {report['prompt_tokens']} prompt tokens")
    print("relative L2 error of clean latents per block:")
    print(f"{'block':>7} " + " ".join(f"{n:>27}" for n in names))
    for b in range(report["blocks"]):
        print(f"{b:>7} " + " ".join(f"{errors[n]['per_block'][b]:>27.3e}" for n in names))
    print(f"{'overall':>7} " + " ".join(f"{errors[n]['overall']:>27.3e}" for n in names))
    fp = report["fp32_parity"]
    print(f"fp32 parity (engine vs torch): {fp['engine_fp32_vs_torch_fp32']:.3e} "
          f"({'ok' if fp['ok'] else 'NOT ok'}, limit {fp['limit']:g}); reference: "
          f"{report['reference']}")
    if report["ratio"] is None:
        print("bf16 ratio: not measured (no engine bf16 run)")
    else:
        print(f"bf16 ratio engine/torch ({report['engine_error']}): {report['ratio']:.3f} "
              f"(against own fp32: {report['ratio_against_own_fp32']:.3f}) -> "
              f"{'PASS' if report['pass'] else 'FAIL'} (<= {report['max_ratio']:g})")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", required=True, help="the strand-cli binary")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda[:N], for both the engine and torch")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--prompt", default="a red fox running through a snowy forest at dawn")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--engine-precisions", default=None,
                        help="comma-separated (default: fp32,bf16 on cuda, fp32 on the cpu)")
    parser.add_argument("--max-ratio", type=float, default=2.0)
    parser.add_argument("--fp32-parity-limit", type=float, default=1e-3)
    parser.add_argument("--work", help="folder for the engine's files (default: next to --json)")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    if args.blocks < 1:
        parser.error("--blocks must be >= 1")
    if args.engine_precisions is None:
        args.engine_precisions = "fp32" if args.device == "cpu" else "fp32,bf16"
    if args.device == "cpu" and "bf16" in args.engine_precisions.split(","):
        parser.error("the engine has no bf16 mode on the CPU: --engine-precisions fp32")
    if args.work is None:
        args.work = os.path.join(os.path.dirname(os.path.abspath(args.json)) if args.json
                                 else os.getcwd(), "bf16-error-work")
    report = measure(args)
    print_table(report)
    if args.json:
        tmp = args.json + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json)
    return 1 if report["pass"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
