"""training/upload_checkpoint.py: blocks.* halved, the rest untouched, readable as float32."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import upload_checkpoint  # noqa: E402
from strand_ref.export import read_tensors, write_tensors  # noqa: E402


def test_blocks_are_halved_and_read_back_close(tmp_path):
    rng = np.random.default_rng(3)
    tensors = {"blocks.0.attn.q.weight": rng.standard_normal((64, 48)).astype(np.float32),
               "encoder.conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
               "head.kept_ids": np.arange(5, dtype=np.int32)}
    source, copy = tmp_path / "m.safetensors", tmp_path / "up" / "m.safetensors"
    write_tensors(str(source), tensors, {"strand.config": "{}"})
    assert upload_checkpoint.main([str(source), str(copy)]) == 0
    back, meta = read_tensors(str(copy))
    assert meta == {"strand.config": "{}"}
    assert os.path.getsize(copy) < os.path.getsize(source)
    q = tensors["blocks.0.attn.q.weight"]
    assert back["blocks.0.attn.q.weight"].dtype == np.float32
    assert not np.array_equal(back["blocks.0.attn.q.weight"], q)  # really rounded
    np.testing.assert_allclose(back["blocks.0.attn.q.weight"], q, rtol=2.0 ** -11, atol=2.0 ** -25)
    np.testing.assert_array_equal(back["encoder.conv.weight"], tensors["encoder.conv.weight"])
    np.testing.assert_array_equal(back["head.kept_ids"], tensors["head.kept_ids"])


def test_values_outside_float16_range_are_refused():
    with pytest.raises(ValueError, match="float16"):
        upload_checkpoint.halve_blocks({"blocks.0.w": np.array([1e6], dtype=np.float32)})
