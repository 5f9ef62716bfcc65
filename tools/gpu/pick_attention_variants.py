#!/usr/bin/env python3
"""The fastest attention kernel variant per shape class from strand-bench-attention's output, as
the value of STRAND_ATTENTION_VARIANTS (kernels/cuda/attention.cu): "d128=NAME,d64=NAME,short=NAME".

Shape classes: d128 = the 4680-token intra-block shape ("hybrid-block"), d64 = its head-dim-64
twin ("hybrid-dh64"), short = cross-attention to the prompt ("cross-prompt"). A variant whose
error against the fp32 path exceeds --max-error is never picked. Prints nothing for a class the
log lacks (the kernel's constant then stays in force).

    python3 tools/gpu/pick_attention_variants.py bench-attention.log
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Dict, Optional, Sequence, Tuple

LINE = re.compile(r"^variant\s+(\S+)\s.*\|\s+(\S+)\s+([\d.]+) ms\s+([\d.]+) TFLOP/s \| rel_err vs fp32 "
                  r"([\d.eE+-]+)")
CLASSES = {"hybrid-block": "d128", "hybrid-dh64": "d64", "cross-prompt": "short"}


def pick(text: str, max_error: float) -> Dict[str, Tuple[str, float]]:
    best: Dict[str, Tuple[str, float]] = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        shape, name, ms, error = m.group(1), m.group(2), float(m.group(3)), float(m.group(5))
        cls = CLASSES.get(shape)
        if cls is None or not error <= max_error:  # NaN never passes
            continue
        if cls not in best or ms < best[cls][1]:
            best[cls] = (name, ms)
    return best


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    p.add_argument("--max-error", type=float, default=1e-2)
    args = p.parse_args(argv)
    with open(args.log) as f:
        best = pick(f.read(), args.max_error)
    print(",".join(f"{cls}={name}" for cls, (name, _) in sorted(best.items())))
    for cls, (name, ms) in sorted(best.items()):
        print(f"{cls}: {name} {ms:.3f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
