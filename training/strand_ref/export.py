"""safetensors export/import of Strand models (docs/model-spec.md section 1).

We write the file ourselves instead of through `safetensors.torch.save_file` so the bytes are fully
deterministic (the Rust writer keeps `__metadata__` in a hash map whose order varies between runs):
header keys are sorted, tensors are laid out in name order, and the header is padded with spaces
to a multiple of 8 bytes so every tensor is aligned for the engine. The reader accepts F32, F16 and
BF16 (converted to float32) like the C++ loader.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .config import StrandConfig

CONFIG_KEY = "strand.config"
VOCAB_KEY = "strand.vocab"

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64,
              "U8": np.uint8}


def _tensor_bytes(array: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        # Round to nearest even on the upper 16 bits of the float32 pattern.
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    np_dtype = np.dtype(_NP_DTYPES[dtype]).newbyteorder("<")
    return np.ascontiguousarray(array).astype(np_dtype).tobytes()


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _default_dtype(array: np.ndarray) -> str:
    if array.dtype == np.int32:
        return "I32"
    if array.dtype == np.int64:
        return "I64"
    if array.dtype == np.uint8:
        return "U8"
    if array.dtype == np.float16:
        return "F16"
    return "F32"


def serialize_tensors(tensors: Mapping[str, object], metadata: Optional[Mapping[str, str]] = None,
                      float_dtype: str = "F32") -> bytes:
    """safetensors bytes of `tensors` (name -> tensor/array); floats stored as float_dtype."""
    if float_dtype not in ("F32", "F16", "BF16"):
        raise ValueError(f"unsupported float dtype {float_dtype}")
    header: Dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("metadata must map str to str")
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs: List[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = _as_numpy(tensors[name])
        dtype = _default_dtype(array)
        if dtype == "F32" and float_dtype != "F32":
            dtype = float_dtype
        if dtype == "F32":
            array = array.astype(np.float32)
        blob = _tensor_bytes(array, dtype)
        header[name] = {"dtype": dtype, "shape": [int(s) for s in array.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_tensors(path: str, tensors: Mapping[str, object],
                  metadata: Optional[Mapping[str, str]] = None, float_dtype: str = "F32") -> None:
    """Atomic write: temp file in the same folder, fsync, rename."""
    data = serialize_tensors(tensors, metadata, float_dtype)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_tensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """(name -> numpy array, metadata). F16/BF16 are converted to float32."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too small for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > 100_000_000 or 8 + n > len(data):
        raise ValueError(f"{path}: bad header length")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    buffer = memoryview(data)[8 + n:]
    out: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = buffer[begin:end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32).reshape(shape)
        elif dtype in _NP_DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_NP_DTYPES[dtype]).newbyteorder("<"))
            array = array.reshape(shape)
            if dtype == "F16":
                array = array.astype(np.float32)
        else:
            raise ValueError(f"{path}: unsupported dtype {dtype} for {name}")
        out[name] = np.array(array)  # own the memory
    return out, dict(metadata)


def save_model(path: str, model: torch.nn.Module, config: StrandConfig, vocab: List[str],
               float_dtype: str = "F32") -> None:
    """Writes the model's state_dict with the config and vocabulary in `__metadata__`."""
    for token in vocab:
        if "\n" in token or not token:
            raise ValueError(f"vocabulary token {token!r} is empty or contains a newline")
    config.validate()
    metadata = {CONFIG_KEY: config.to_json(), VOCAB_KEY: "\n".join(vocab)}
    state = {k: v for k, v in model.state_dict().items()}
    write_tensors(path, state, metadata, float_dtype)


def load_model(path: str, device="cpu"):
    """-> (StrandModel, StrandConfig, vocab list). Every tensor must be present with its shape."""
    from .model import StrandModel  # local import keeps export usable without building a model

    tensors, metadata = read_tensors(path)
    if CONFIG_KEY not in metadata or VOCAB_KEY not in metadata:
        raise ValueError(f"{path}: missing {CONFIG_KEY} or {VOCAB_KEY} metadata")
    config = StrandConfig.from_json(metadata[CONFIG_KEY])
    vocab = metadata[VOCAB_KEY].split("\n")
    model = StrandModel(config, len(vocab))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"{path}: tensors missing {missing[:5]} / unexpected {extra[:5]}")
    state = {}
    for name, ref in expected.items():
        array = tensors[name]
        if tuple(array.shape) != tuple(ref.shape):
            raise ValueError(f"{path}: {name} has shape {array.shape}, expected {tuple(ref.shape)}")
        state[name] = torch.from_numpy(array.astype(np.float32))
    model.load_state_dict(state)
    model.to(device)
    model.eval()
    return model, config, vocab
