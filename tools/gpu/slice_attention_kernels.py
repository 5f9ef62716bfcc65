# Slices the device code out of kernels/cuda/attention.cu for tools/gpu/attention_emulator.cpp:
# the tensor-core kernel (from "// Tensor-core kernel." up to launch_flash) and the fp32 kernel
# (from kExactRows up to launch_exact), with the dynamic shared-memory declarations replaced by
# the emulator's per-CTA buffer. Usage: slice_attention_kernels.py attention.cu out.inc
import sys
src = open(sys.argv[1]).read().split('\n')
def find(prefix, start=0):
    for i in range(start, len(src)):
        if src[i].startswith(prefix): return i
    raise SystemExit('marker not found: ' + prefix)
a = find('// Tensor-core kernel.')
b = find('void launch_flash') - 1  # the template line before it
c = find('constexpr int kExactRows')
d = find('void launch_exact')
text = '\n'.join(src[a:b] + src[c:d])
for device_line, host_line in [
        ('extern __shared__ __align__(128) unsigned char shared_raw[];',
         'unsigned char* shared_raw = emu_shared();'),
        ('extern __shared__ float shared[];',
         'float* shared = reinterpret_cast<float*>(emu_shared());')]:
    if device_line not in text:
        raise SystemExit('shared-memory declaration not found: ' + device_line)
    text = text.replace(device_line, host_line)
open(sys.argv[2], 'w').write(text)
