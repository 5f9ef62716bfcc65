# Slices the device code of kernels/cuda/delta_rule.cu that tools/gpu/delta_rule_emulator.cpp runs
# on the CPU: the tile constants, the raw mma.sync helpers (with the inline-asm product swapped for
# the emulator's emu_mma_tf32), load_rows_async and TilePieces, the prepare kernel, the
# single-pass recurrence kernel (unfolded and folded) and the FMA recurrence kernel, with each
# dynamic shared-memory declaration replaced by the emulator's per-CTA buffer. Left out: the WMMA helpers and the
# grouped kernels (nvcuda::wmma has no host form), the cp.async helpers (the emulator defines its
# own) and everything from the sequential kernel on (host code).
# Usage: slice_delta_kernels.py delta_rule.cu out.inc
import re
import sys

src = open(sys.argv[1]).read().split('\n')


def find(prefix, start=0):
    for i in range(start, len(src)):
        if src[i].startswith(prefix):
            return i
    raise SystemExit('marker not found: ' + prefix)


pieces = [
    ('constexpr int kChunk = ', 'using FragARow'),
    ('// Raw warp-level TF32 tensor-core products', '// cp.async with zero fill'),
    ('// dst[row * ld + col] = src[row * src_stride + col]',
     '// ------------------------------------------------------------------------ grouped: phase 1 kernel'),
    ('// ------------------------------------------------------------------- FMA recurrence kernel',
     '// --------------------------------------------------------------------------- sequential kernel'),
]
text = ''
for begin, end in pieces:
    a = find(begin)
    b = find(end, a)
    text += '\n'.join(src[a:b]) + '\n'

device_line = 'extern __shared__ __align__(128) float smem[];'
if text.count(device_line) < 3:
    raise SystemExit('expected the shared-memory declaration in three kernels: ' + device_line)
text = text.replace(device_line, 'float* smem = reinterpret_cast<float*>(emu_shared());')

# The tensor-core product: its inline asm becomes a call to the emulator's warp-level model.
mma = re.compile(r'__device__ __forceinline__ void mma_tf32\(.*?\n}\n', re.S)
if len(mma.findall(text)) != 1:
    raise SystemExit('mma_tf32 definition not found once')
text = mma.sub('inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {\n'
               '  emu_mma_tf32(d, a, b);\n}\n', text)
if 'asm' in re.sub(r'//.*', '', text):
    raise SystemExit('inline asm left in the slice')
open(sys.argv[2], 'w').write(text)
