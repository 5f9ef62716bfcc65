"""Counter-based noise of docs/model-spec.md section 5: Philox4x32-10 + Box-Muller.

Vectorised with numpy uint64 arithmetic: every 32x32-bit product fits exactly in 64 bits, so the
high and low words are `p >> 32` and `p & 0xffffffff`.
"""
from __future__ import annotations

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9  # key bump ("golden ratio")
PHILOX_W1 = 0xBB67AE85  # key bump (sqrt(3) - 1)
COUNTER_TAG = 0x5354524E  # "STRN": the fourth counter word of every noise draw
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters: np.ndarray, key: tuple) -> np.ndarray:
    """Philox4x32 with 10 rounds.

    counters: uint array [..., 4] (values < 2^32); key: (k0, k1). Returns uint32 [..., 4].
    """
    c = np.asarray(counters, dtype=np.uint64) & MASK32
    c0, c1, c2, c3 = (c[..., i].copy() for i in range(4))
    k0 = int(key[0]) & 0xFFFFFFFF
    k1 = int(key[1]) & 0xFFFFFFFF
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    shift = np.uint64(32)
    for rnd in range(10):
        if rnd:  # the key is bumped between rounds, not after the last
            k0 = (k0 + PHILOX_W0) & 0xFFFFFFFF
            k1 = (k1 + PHILOX_W1) & 0xFFFFFFFF
        p0 = m0 * c0
        p1 = m1 * c2
        hi0, lo0 = p0 >> shift, p0 & MASK32
        hi1, lo1 = p1 >> shift, p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def _uniform(r: np.ndarray) -> np.ndarray:
    # (r + 0.5) / 2^32 in double: strictly inside (0, 1), so log() is finite.
    return (r.astype(np.float64) + 0.5) / 4294967296.0


def noise(seed: int, block: int, step: int, shape) -> np.ndarray:
    """noise(seed, block, step) as float32 with the given shape (normally [F, C, h, w]).

    Element j (flat index) uses counter (j // 4, block, step, "STRN") with key (seed lo, seed hi)
    and takes z[j % 4] of the Box-Muller pairs (r0, r1) -> z0, z1 and (r2, r3) -> z2, z3.
    The counter words are 32-bit: block and step are taken modulo 2^32 (the spec leaves larger
    values undefined; 2^32 blocks is far beyond any video).
    """
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    key = (seed & 0xFFFFFFFF, seed >> 32)
    count = int(np.prod(shape))
    groups = (count + 3) // 4
    ctr = np.empty((groups, 4), dtype=np.uint64)
    ctr[:, 0] = np.arange(groups, dtype=np.uint64)
    ctr[:, 1] = int(block) & 0xFFFFFFFF
    ctr[:, 2] = int(step) & 0xFFFFFFFF
    ctr[:, 3] = COUNTER_TAG
    r = philox4x32_10(ctr, key)
    u = _uniform(r)
    rad0 = np.sqrt(-2.0 * np.log(u[:, 0]))
    rad1 = np.sqrt(-2.0 * np.log(u[:, 2]))
    ang0 = 2.0 * np.pi * u[:, 1]
    ang1 = 2.0 * np.pi * u[:, 3]
    z = np.stack([rad0 * np.cos(ang0), rad0 * np.sin(ang0),
                  rad1 * np.cos(ang1), rad1 * np.sin(ang1)], axis=-1)
    return z.reshape(-1)[:count].astype(np.float32).reshape(shape)
