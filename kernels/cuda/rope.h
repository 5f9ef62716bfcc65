// 3D RoPE on the GPU; semantics of kernels/cpu/rope.h. The positions are device arrays here (the
// backend uploads the host arrays through its pinned staging buffer).
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

// x: [tokens, heads, head_dim], token rows row_stride floats apart. Angles are computed in double
// precision (as on the CPU: they grow with the position) and rounded to float before rotating.
void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
             const int* pos_r, const int* pos_c, float theta, cudaStream_t stream);

}  // namespace strand::cuda
