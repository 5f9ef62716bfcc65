// 3D RoPE on the GPU; semantics of kernels/cpu/rope.h, in two steps: the angles of a position set
// are computed once into a device table (the backend caches it next to the device copy of the
// positions, see Device::rope_angles in cuda_backend.cpp), then each call only reads the table and
// rotates x. Launch errors: cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace strand::cuda {

// Size of the angle table (float2 entries) for `tokens` tokens of head_dim (one per rotary pair).
inline size_t rope_table_entries(int tokens, int head_dim) {
  if (tokens <= 0 || head_dim < 2) return 0;
  return static_cast<size_t>(tokens) * static_cast<size_t>(head_dim / 2);
}

// cos_sin[t * (head_dim / 2) + p] = (cos, sin) of the angle of rotary pair p of token t: pairs
// split into temporal, row and column parts as on the CPU, pair j of a part with n pairs at
// angle pos * theta^(-j/n) with pos from pos_t/pos_r/pos_c (device arrays of `tokens` ints).
// The angle is evaluated in double precision (it grows with the position) and rounded to float.
// cos_sin holds rope_table_entries(tokens, head_dim) float2. tokens <= 0 or head_dim < 2: nothing.
void rope_3d_table(float2* cos_sin, int tokens, int head_dim, const int* pos_t, const int* pos_r,
                   const int* pos_c, float theta, cudaStream_t stream);

// x: [tokens, heads, head_dim], token rows row_stride floats apart (>= heads * head_dim), rotated
// in place by the table rope_3d_table made for the same tokens and head_dim: x0' = x0 c - x1 s,
// x1' = x0 s + x1 c with separate float products (no fused multiply-add), as on the CPU. 16-byte
// loads when head_dim and row_stride are multiples of 4 and x is 16-byte aligned.
void rope_3d_apply(float* x, int tokens, int heads, int head_dim, int row_stride,
                   const float2* cos_sin, cudaStream_t stream);

}  // namespace strand::cuda
