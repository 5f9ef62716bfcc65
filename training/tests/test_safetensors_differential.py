"""Differential tests: Strand's strict safetensors reader/writer against the reference `safetensors`.

The C++ side is driven through tests/tools/safetensors_check.cpp (`strand-safetensors-check`),
found at $STRAND_BUILD_DIR/bin (default: <repo>/build/bin). The module is skipped when it is not
built.

- Files written by the reference (torch and numpy front ends; every dtype torch 1.13 / numpy can
  write, scalars, zero-size tensors, metadata) load in C++ with identical bytes; F16/BF16 are
  converted to float32 exactly like torch does (all 65536 bit patterns of each).
- The file the C++ writer produces (--write-sample) loads in the reference with the values defined
  here independently.
- Crafted invalid files: the C++ reader rejects each with the expected rule. Where Strand is
  stricter than the reference (duplicate keys, misalignment, names usable as paths, unknown entry
  fields), the test records what the reference actually does.
- Random header mutations / truncations: whatever C++ accepts, the reference accepts too, with the
  same contents.
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")
import safetensors.numpy as st_numpy  # noqa: E402
import safetensors.torch as st_torch  # noqa: E402

BUILD_DIR = Path(os.environ.get("STRAND_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
CHECKER = BUILD_DIR / "bin" / "strand-safetensors-check"

pytestmark = pytest.mark.skipif(not CHECKER.is_file(), reason=f"{CHECKER} not built")

TORCH_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
NUMPY_NAMES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint64): "U64", np.dtype(np.uint32): "U32",
    np.dtype(np.uint16): "U16", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
}


def run_checker(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECKER), *map(str, args)], capture_output=True, text=True, timeout=60)


def cpp_dump(path: Path) -> dict:
    result = run_checker("--dump", path)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def python_accepts(data: bytes) -> bool:
    try:
        st_numpy.load(data)
    except safetensors.SafetensorError:
        return False
    return True


def torch_bytes(tensor: torch.Tensor) -> bytes:
    # numpy has no bfloat16: view its bits as int16 (same little-endian bytes).
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.contiguous().numpy().tobytes()


def assert_f32_bits_equal(cpp_hex: str, expected: np.ndarray) -> None:
    got = np.frombuffer(bytes.fromhex(cpp_hex), dtype="<f4")
    expected = expected.astype("<f4").ravel()
    assert got.shape == expected.shape
    both_nan = np.isnan(got) & np.isnan(expected)  # NaN payloads may differ; NaN-ness may not
    assert np.array_equal(got.view("<u4")[~both_nan], expected.view("<u4")[~both_nan])
    assert np.array_equal(np.isnan(got), np.isnan(expected))


# ---- reference writes, C++ reads -----------------------------------------------------------------

def test_torch_written_file_loads_with_identical_bytes(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "blocks.0.attn.q.weight": torch.randn(7, 5, generator=gen),
        "f64": torch.randn(3, generator=gen, dtype=torch.float64),
        "f16": torch.randn(2, 3, 4, generator=gen).half(),
        "bf16": torch.randn(9, generator=gen).bfloat16(),
        "i64": torch.tensor([-(2**62), 0, 2**62 - 1]),
        "i32": torch.arange(-5, 5, dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.arange(0, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "empty_bf16": torch.zeros(2, 0, dtype=torch.bfloat16),
    }
    metadata = {"format": "pt", "strand.config": json.dumps({"a": [1, 2]}), "unicode": "caf\u00e9 \u2713"}
    path = tmp_path / "torch.safetensors"
    st_torch.save_file(tensors, str(path), metadata=metadata)

    dumped = cpp_dump(path)
    assert dumped["metadata"] == metadata
    by_name = {t["name"]: t for t in dumped["tensors"]}
    assert set(by_name) == set(tensors)
    for name, tensor in tensors.items():
        entry = by_name[name]
        assert entry["dtype"] == TORCH_NAMES[tensor.dtype], name
        assert entry["shape"] == list(tensor.shape), name
        assert bytes.fromhex(entry["hex"]) == torch_bytes(tensor), name
        if tensor.dtype in (torch.float32, torch.float16, torch.bfloat16):
            assert_f32_bits_equal(entry["f32_hex"], tensor.float().numpy())


def test_numpy_written_file_with_unsigned_types_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "u64": np.array([0, 2**64 - 1, 12345], dtype=np.uint64),
        "u32": rng.integers(0, 2**32, size=(3, 2), dtype=np.uint32),
        "u16": np.array([0, 1, 65535], dtype=np.uint16),
        "f16": rng.standard_normal(5).astype(np.float16),
        "bool": np.array([[True], [False]]),
        "scalar_i64": np.array(-7, dtype=np.int64),
        "zero": np.zeros((0,), dtype=np.float32),
    }
    path = tmp_path / "numpy.safetensors"
    st_numpy.save_file(arrays, str(path))
    dumped = cpp_dump(path)
    assert dumped["metadata"] == {}
    by_name = {t["name"]: t for t in dumped["tensors"]}
    assert set(by_name) == set(arrays)
    for name, array in arrays.items():
        assert by_name[name]["dtype"] == NUMPY_NAMES[array.dtype], name
        assert by_name[name]["shape"] == list(array.shape), name
        assert bytes.fromhex(by_name[name]["hex"]) == array.astype(array.dtype.newbyteorder("<")).tobytes(), name


def test_empty_file_from_reference_loads(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    st_numpy.save_file({}, str(path))
    assert cpp_dump(path) == {"metadata": {}, "tensors": []}


def test_every_f16_and_bf16_bit_pattern_converts_like_torch(tmp_path: Path) -> None:
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    tensors = {"f16": bits.view(torch.float16), "bf16": bits.clone().view(torch.bfloat16)}
    path = tmp_path / "all_bits.safetensors"
    st_torch.save_file(tensors, str(path))
    by_name = {t["name"]: t for t in cpp_dump(path)["tensors"]}
    for name, tensor in tensors.items():
        assert_f32_bits_equal(by_name[name]["f32_hex"], tensor.float().numpy())


# ---- C++ writes, reference reads -----------------------------------------------------------------

def expected_sample() -> dict[str, np.ndarray]:
    """The sample set documented in tests/tools/safetensors_check.cpp, computed independently."""
    i = np.arange
    return {
        "f64": i(3) * 1.25 - 2,
        "i64": ((i(4, dtype=np.int64) - 2) * 1000000007).reshape(2, 2),
        "f32": ((i(6, dtype=np.float32) - 2.5) / 4).reshape(2, 3),
        "scalar": np.array(42.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "i32": (-3 * i(4)).astype(np.int32),
        "f16": np.array([1.0, -2.0, 0.5, 65504.0], dtype=np.float16),
        "u16": np.array([65535, 1], dtype=np.uint16),
        "i16": np.array([-32768, 0, 32767], dtype=np.int16),
        "u8": np.array([0, 1, 2, 254, 255], dtype=np.uint8),
        "i8": np.array([-128, 127], dtype=np.int8),
        "bool": np.array([True, False, True]),
    }


def test_cpp_written_file_loads_in_reference(tmp_path: Path) -> None:
    path = tmp_path / "sample.safetensors"
    result = run_checker("--write-sample", path)
    assert result.returncode == 0, result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name != "sample.safetensors"], "temp file left behind"

    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert (8 + header_length) % 8 == 0

    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"producer": "strand", "unicode": "caf\u00e9 \u2713"}
        assert f.get_tensor("bf16").float().tolist() == [1.0, -2.5, 3.140625]
        names = set(f.keys())
    expected = expected_sample()
    assert names == set(expected) | {"bf16"}
    with safetensors.safe_open(str(path), framework="np") as f:
        for name, want in expected.items():
            got = f.get_tensor(name)
            assert got.dtype == want.dtype, name
            assert got.shape == want.shape, name
            assert np.array_equal(got, want), name
    # And the C++ reader accepts its own output.
    assert run_checker(path).stdout.strip() == "ok"


# ---- crafted invalid files -----------------------------------------------------------------------

def make_file(header: str | bytes, data: bytes = b"", pad: bool = True) -> bytes:
    if isinstance(header, str):
        header = header.encode()
    if pad:
        header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + data


def entry(name: str, dtype: str, shape: str, begin: int, end: int) -> str:
    return f'"{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}'


def obj(*entries: str) -> str:
    return "{" + ",".join(entries) + "}"


# (case, file bytes, rule the C++ reader must report, does the reference accept it?)
# reference_accepts=True marks where Strand is deliberately stricter than the reference.
CRAFTED = [
    ("too_small", b"\x02\x00\x00", "too_small", False),
    ("header_over_limit", struct.pack("<Q", 100_000_001) + b"{}", "header_too_large", False),
    ("header_past_end", struct.pack("<Q", 17) + b"{}" + b" " * 14, "header_too_large", False),
    ("header_length_wraps", struct.pack("<Q", 2**64 - 1) + b"{}" + b" " * 6, "header_too_large", False),
    ("invalid_utf8", make_file(b'{"__metadata__":{"a":"\xff"}}'), "header_not_utf8", False),
    ("utf8_surrogate", make_file(b'{"__metadata__":{"a":"\xed\xa0\x80"}}'), "header_not_utf8", False),
    ("overlong_utf8", make_file(b'{"__metadata__":{"a":"\xc0\xaf"}}'), "header_not_utf8", False),
    ("not_json", make_file('{"a":'), "header_not_json", False),
    ("json_array", make_file("[1,2]"), "header_not_json", False),
    ("nul_padding", make_file(b"{}\0\0\0\0\0\0", pad=False), "header_not_json", False),
    ("metadata_not_object", make_file('{"__metadata__":["a"]}'), "bad_metadata", False),
    ("metadata_value_not_string", make_file('{"__metadata__":{"a":1}}'), "bad_metadata", False),
    ("entry_not_object", make_file('{"x":3}'), "bad_entry", False),
    ("entry_missing_dtype", make_file('{"x":{"shape":[1],"data_offsets":[0,4]}}', bytes(4)), "bad_entry", False),
    ("three_offsets", make_file('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', bytes(4)),
     "bad_entry", False),
    ("float_dim", make_file('{"x":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', bytes(4)), "bad_entry", False),
    # Stricter: unknown fields in an entry are rejected (the reference ignores them).
    ("unknown_entry_field", make_file('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}', bytes(4)),
     "bad_entry", True),
    ("unknown_dtype", make_file(obj(entry("x", "F128", "[1]", 0, 16)), bytes(16)), "unknown_dtype", False),
    ("lowercase_dtype", make_file(obj(entry("x", "f32", "[1]", 0, 4)), bytes(4)), "unknown_dtype", False),
    ("negative_dim", make_file(obj(entry("x", "F32", "[-1,2]", 0, 4)), bytes(4)), "bad_shape", False),
    ("count_overflow", make_file(obj(entry("x", "U8", "[1099511627776,1099511627776]", 0, 0))), "bad_shape", False),
    ("bytes_wrap_to_zero", make_file(obj(entry("x", "F32", "[4611686018427387904]", 0, 0))), "bad_shape", False),
    ("count_wraps_to_zero", make_file(obj(entry("x", "U8", "[4611686018427387904,16]", 0, 0))), "bad_shape", False),
    # Stricter: duplicate keys. The reference's JSON parser keeps the last duplicate; zero-size
    # duplicates then pass silently.
    ("duplicate_zero_size", make_file(obj(entry("a", "F32", "[0]", 0, 0), entry("a", "F32", "[0]", 0, 0))),
     "duplicate_key", True),
    ("duplicate_tensor", make_file(obj(entry("a", "F32", "[1]", 0, 4), entry("a", "F32", "[1]", 4, 8)), bytes(8)),
     "duplicate_key", False),
    ("duplicate_metadata_key", make_file('{"__metadata__":{"k":"1","k":"2"}}'), "duplicate_key", True),
    ("duplicate_entry_field", make_file('{"x":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                                        bytes(4)), "duplicate_key", False),
    ("duplicate_metadata", make_file('{"__metadata__":{},"__metadata__":{}}'), "duplicate_key", False),
    # Stricter: names usable as paths or hiding control characters.
    ("name_empty", make_file(obj(entry("", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_slash", make_file(obj(entry("a/b", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_backslash", make_file(obj(entry("a\\\\b", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_dotdot", make_file(obj(entry("..", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_nul", make_file(obj(entry("a\\u0000b", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_tab", make_file(obj(entry("a\\tb", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("name_c1_control", make_file(obj(entry("\\u0085", "F32", "[1]", 0, 4)), bytes(4)), "bad_name", True),
    ("size_mismatch", make_file(obj(entry("x", "F32", "[2,2]", 0, 12)), bytes(12)), "size_mismatch", False),
    ("begin_after_end", make_file(obj(entry("x", "F32", "[1]", 8, 4)), bytes(8)), "size_mismatch", False),
    ("overlap", make_file(obj(entry("a", "F32", "[2]", 0, 8), entry("b", "F32", "[2]", 4, 12)), bytes(12)),
     "overlap_or_gap", False),
    ("gap", make_file(obj(entry("a", "F32", "[2]", 0, 8), entry("b", "F32", "[2]", 16, 24)), bytes(24)),
     "overlap_or_gap", False),
    ("not_from_zero", make_file(obj(entry("a", "F32", "[1]", 4, 8)), bytes(8)), "overlap_or_gap", False),
    ("same_offsets", make_file(obj(entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 0, 4)), bytes(4)),
     "overlap_or_gap", False),
    # Stricter: tensors must be aligned to their element size in the file.
    ("misaligned_offset", make_file(obj(entry("a", "U8", "[1]", 0, 1), entry("b", "F32", "[1]", 1, 5)), bytes(5)),
     "misaligned", True),
    ("unpadded_header", make_file(obj(entry("ab", "F16", "[1]", 0, 2)), bytes(2), pad=False), "misaligned", True),
    ("trailing_bytes", make_file(obj(entry("a", "F32", "[2]", 0, 8)), bytes(9)), "trailing_bytes", False),
    ("truncated", make_file(obj(entry("a", "F32", "[4]", 0, 16)), bytes(8)), "truncated", False),
]


@pytest.mark.parametrize("case,data,rule,reference_accepts", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_invalid_file(tmp_path: Path, case: str, data: bytes, rule: str, reference_accepts: bool) -> None:
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    result = run_checker(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"error {rule}: "), result.stdout
    assert result.stdout.count("\n") == 1, "one-line message"
    assert python_accepts(data) == reference_accepts


def test_every_rule_has_a_crafted_case() -> None:
    rules = {rule for _, _, rule, _ in CRAFTED}
    header = (Path(__file__).resolve().parents[2] / "core/include/strand/safetensors.h").read_text()
    enum_body = header.split("enum class SafetensorsRule {")[1].split("};")[0]
    declared = {line.split(",")[0].strip() for line in enum_body.splitlines() if line.strip() and
                not line.strip().startswith("//")}
    assert declared - rules == {"io"}  # io is a read failure, not a file


def test_zero_size_tensor_offsets_need_no_alignment(tmp_path: Path) -> None:
    data = make_file(obj(entry("a", "U8", "[3]", 0, 3), entry("z", "F32", "[0]", 3, 3)), bytes(3))
    path = tmp_path / "z.safetensors"
    path.write_bytes(data)
    assert run_checker(path).stdout.strip() == "ok"
    assert python_accepts(data)


# ---- random mutations: C++ never accepts what the reference rejects ------------------------------

def test_mutations_cpp_is_at_least_as_strict(tmp_path: Path) -> None:
    base_path = tmp_path / "base.safetensors"
    st_torch.save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2).half()},
                       str(base_path), metadata={"k": "v"})
    base = base_path.read_bytes()
    header_end = 8 + struct.unpack("<Q", base[:8])[0]
    rng = random.Random(1234)
    variants = [base] + [base[:n] for n in range(0, len(base), 3)]
    alphabet = b'{}[]",:0123456789- abFUI_\\\x00\xff'
    for _ in range(150):
        mutated = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(0, header_end)] = rng.choice(alphabet)
        variants.append(bytes(mutated))
    path = tmp_path / "m.safetensors"
    both_accepted = 0
    for data in variants:
        path.write_bytes(data)
        result = run_checker("--dump", path)
        assert result.returncode in (0, 1), result.stderr
        if result.returncode == 1:
            assert result.stdout.startswith("error "), result.stdout
            continue
        assert python_accepts(data), f"C++ accepted a file the reference rejects: {data[:header_end]!r}"
        both_accepted += 1
        reference = st_numpy.load(data) if b"BF16" not in data else None
        if reference is not None:
            dumped = {t["name"]: t for t in json.loads(result.stdout)["tensors"]}
            assert set(dumped) == set(reference)
            for name, array in reference.items():
                assert bytes.fromhex(dumped[name]["hex"]) == array.tobytes()
    assert both_accepted >= 1  # at least the unmodified file
