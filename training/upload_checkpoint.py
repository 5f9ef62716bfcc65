"""A smaller copy of a trained checkpoint, for resuming it on a GPU machine.

GPU calls take at most 64 MiB of uploads, and the repository plus the pruned text encoder already
fill most of it, so a 12 MiB checkpoint to resume from does not fit. This writes the DiT's
transformer blocks (`blocks.*`, 85% of the file) in float16 and everything else (autoencoder,
embeddings, head) unchanged. The reader converts F16 back to float32, so `train.py --resume`
takes the copy as it is; resuming from it perturbs each block weight by at most 2^-11 of its
value (2^-25 absolute below float16's normal range), far below one optimiser step. Use it for uploads only: the exported result is float32.

    python3 training/upload_checkpoint.py out/run9/hybrid.safetensors out/run9-up/hybrid.safetensors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strand_ref.export import read_tensors, write_tensors  # noqa: E402

HALVED_PREFIX = "blocks."


def halve_blocks(tensors):
    """The tensors with every float32 `blocks.*` array cast to float16."""
    out = {}
    for name, array in tensors.items():
        if name.startswith(HALVED_PREFIX) and array.dtype == np.float32:
            if np.abs(array).max(initial=0.0) > 60000.0:
                raise ValueError(f"{name} exceeds float16's range; upload the float32 file")
            out[name] = array.astype(np.float16)
        else:
            out[name] = array
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("out")
    args = p.parse_args(argv)
    tensors, metadata = read_tensors(args.source)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_tensors(args.out, halve_blocks(tensors), metadata)
    print(f"{args.source} ({Path(args.source).stat().st_size} bytes) -> {args.out} "
          f"({Path(args.out).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
