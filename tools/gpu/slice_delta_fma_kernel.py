# Slices the FMA recurrence kernel of kernels/cuda/delta_rule.cu for tools/gpu/delta_fma_emulator.cpp:
# the tile constants (from "constexpr int kChunk" up to the WMMA fragment types), load_rows_async,
# and the kernel section ("FMA recurrence kernel" up to the sequential kernel), with the dynamic
# shared-memory declaration replaced by the emulator's per-CTA buffer. The cp.async helpers stay
# out: the emulator defines its own. Usage: slice_delta_fma_kernel.py delta_rule.cu out.inc
import sys
src = open(sys.argv[1]).read().split('\n')


def find(prefix, start=0):
    for i in range(start, len(src)):
        if src[i].startswith(prefix):
            return i
    raise SystemExit('marker not found: ' + prefix)


a = find('constexpr int kChunk = ')
b = find('using FragARow')
c = find('// dst[row * ld + col] = src[row * src_stride + col]')
d = find('// ------------------------------------------------------------------------------ prepare kernel')
e = find('// ------------------------------------------------------------------- FMA recurrence kernel')
f = find('// --------------------------------------------------------------------------- sequential kernel')
text = '\n'.join(src[a:b] + src[c:d] + src[e:f])
device_line = 'extern __shared__ __align__(128) float smem[];'
if device_line not in text:
    raise SystemExit('shared-memory declaration not found: ' + device_line)
text = text.replace(device_line, 'float* smem = reinterpret_cast<float*>(emu_shared());')
open(sys.argv[2], 'w').write(text)
