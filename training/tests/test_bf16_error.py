"""tools/gpu/bf16_error.py on the CPU: end to end at the bundled tiny model for 2 blocks (strand-cli
bench --latents-out in fp32 against the PyTorch reference in fp32 and bf16; the engine has no bf16
on the CPU), which doubles as a whole-rollout parity check between the two implementations; and
the verdict logic (common vs own fp32 reference, ratio, pass/fail) on synthetic latents.

strand-cli is found at $STRAND_BUILD_DIR/bin (default <repo>/build/bin); the end-to-end test is
skipped when it is not built."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gpu" / "bf16_error.py"
BUILD_DIR = Path(os.environ.get("STRAND_BUILD_DIR", ROOT / "build"))
CLI = BUILD_DIR / "bin" / "strand-cli"
sys.path.insert(0, str(TOOL.parent))

import bf16_error  # noqa: E402


@pytest.mark.skipif(not CLI.is_file(), reason=f"{CLI} not built")
def test_cpu_run_reports_fp32_parity_and_torch_bf16_error(tmp_path):
    out = tmp_path / "bf16.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--cli", str(CLI), "--device", "cpu",
                           "--blocks", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(out.read_text())
    assert report["engine_precisions"] == ["fp32"]
    assert report["blocks"] == 2
    errors = report["errors"]
    parity = errors["engine_fp32_vs_torch_fp32"]
    assert len(parity["per_block"]) == 2
    # The same inputs through two implementations: float32 rounding apart only.
    assert parity["overall"] < 1e-4, parity
    assert report["fp32_parity"]["ok"] and report["reference"].startswith("torch fp32")
    # bf16 is visibly worse than fp32, and still close.
    torch_bf16 = errors["torch_bf16_vs_torch_fp32"]["overall"]
    assert 100 * parity["overall"] < torch_bf16 < 0.1
    assert report["ratio"] is None and report["pass"] is None  # no engine bf16 on the CPU
    assert "fp32 parity" in proc.stdout
    # The engine's latents are left in the work folder, with the prompt and seed it used.
    assert (tmp_path / "bf16-error-work" / "engine-fp32.safetensors").is_file()


def _fake_runs(monkeypatch, engine_fp32_offset: float, engine_bf16_scale: float):
    """Synthetic latents: torch fp32 R, torch bf16 R + e, engine fp32 R + engine_fp32_offset * d,
    engine bf16 = engine fp32 + engine_bf16_scale * e' with ||e'|| = ||e||."""
    rng = np.random.RandomState(0)
    shape = (3, 4, 2, 2)
    ref = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    err = [1e-2 * rng.standard_normal(shape) for _ in range(2)]
    err2 = [np.roll(e, 1) for e in err]  # another direction, the same norm
    e_fp32 = [r + engine_fp32_offset * rng.standard_normal(shape) for r in ref]

    def run_engine(cli, model, device, precision, blocks, prompt, seed, work):
        runs = e_fp32 if precision == "fp32" else [
            f + engine_bf16_scale * e for f, e in zip(e_fp32, err2)]
        return {"latents": runs, "seconds": 0.0,
                "meta": {"model_name": "fake", "model_id": "0"}}

    def run_torch(model_path, device, precision, blocks, ids, seed):
        runs = ref if precision == "fp32" else [r + e for r, e in zip(ref, err)]
        return {"latents": runs, "seconds": 0.0}

    monkeypatch.setattr(bf16_error, "run_engine", run_engine)
    monkeypatch.setattr(bf16_error, "run_torch", run_torch)


def _args(tmp_path) -> argparse.Namespace:
    return argparse.Namespace(cli="unused", model=bf16_error.DEFAULT_MODEL, device="cpu",
                              blocks=2, prompt="a red fox", seed=1, engine_precisions="fp32,bf16",
                              max_ratio=2.0, fp32_parity_limit=1e-3, work=str(tmp_path))


@pytest.mark.parametrize("scale,passes", [(1.5, True), (3.0, False)])
def test_ratio_against_the_common_fp32_reference(monkeypatch, tmp_path, scale, passes):
    _fake_runs(monkeypatch, engine_fp32_offset=1e-7, engine_bf16_scale=scale)
    report = bf16_error.measure(_args(tmp_path))
    assert report["reference"].startswith("torch fp32")
    assert report["engine_error"] == "engine_bf16_vs_torch_fp32"
    assert report["ratio"] == pytest.approx(scale, rel=1e-3)
    assert report["pass"] is passes
    assert len(report["ratio_per_block"]) == 2


def test_without_fp32_parity_each_side_is_compared_with_its_own_fp32(monkeypatch, tmp_path):
    _fake_runs(monkeypatch, engine_fp32_offset=0.1, engine_bf16_scale=1.0)
    report = bf16_error.measure(_args(tmp_path))
    assert not report["fp32_parity"]["ok"]
    assert report["reference"].startswith("own fp32")
    assert report["engine_error"] == "engine_bf16_vs_engine_fp32"
    # Not exactly 1: the engine's own fp32 latents (its denominator) are 10% off torch's.
    assert report["ratio"] == pytest.approx(1.0, rel=0.05)
    assert report["pass"] is True


def test_rel_error_is_parity_h():
    a, b = np.array([1.0, 2.0, 2.0], np.float32), np.array([1.0, 2.0, 3.0], np.float32)
    assert bf16_error.rel_error(a, b) == pytest.approx(1.0 / np.sqrt(14.0))
