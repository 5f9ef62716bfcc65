"""The GPU benchmark's Python parts, on the CPU at tiny sizes: training/bench_gpu.py's fast pass
agrees with strand_ref (its --self-check), and tools/gpu/make_large_model.py writes exactly the
tensors strand_ref's model has, in a file bench_gpu.py loads and runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

TRAINING = Path(__file__).resolve().parents[1]
ROOT = TRAINING.parent
sys.path.insert(0, str(TRAINING))

import bench_gpu  # noqa: E402
from strand_ref.model import StrandModel  # noqa: E402


def test_fast_pass_matches_the_reference_and_the_check_can_fail(monkeypatch):
    report = bench_gpu.self_check(torch.device("cpu"))
    assert report["ok"], report
    assert report["delta_rule_rel_error"] < 1e-10
    # A pass that skips RoPE must be caught.
    monkeypatch.setattr(bench_gpu, "rope", lambda x, cos, sin: x)
    assert not bench_gpu.self_check(torch.device("cpu"))["ok"]


def test_large_model_file_has_the_reference_layout_and_runs(tmp_path):
    out = tmp_path / "tiny-mixed.safetensors"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gpu" / "make_large_model.py"),
                    "--scale", "tiny", "--layers", "mixed", "--out", str(out), "--device", "cpu"],
                   check=True, capture_output=True)
    _, header = bench_gpu.read_header(str(out))
    cfg = bench_gpu.config_of(header)
    assert cfg.layers == ["hybrid"] * 3 + ["softmax_kv"]
    assert cfg.text_layers == 0
    vocab = len(header["__metadata__"]["strand.vocab"].split("\n"))
    want = {k: list(v.shape) for k, v in StrandModel(cfg, vocab).state_dict().items()}
    got = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    assert got == want
    report = subprocess.run(
        [sys.executable, str(TRAINING / "bench_gpu.py"), "--model", str(out), "--device", "cpu",
         "--dtype", "fp32", "--blocks", "2", "--warmup", "0", "--text-tokens", "5"],
        check=True, capture_output=True, text=True).stdout
    assert '"blocks_timed": 2' in report
