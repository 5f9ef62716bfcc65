// Normalisations on the GPU; semantics of kernels/cpu/norm.h (rows contiguous, x and y may alias).
// Mean and variance are two-pass in fp32, as on the CPU. Launch errors: cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

void layer_norm(const float* x, float* y, int rows, int dim, const float* weight, const float* bias,
                float eps, cudaStream_t stream);
// LayerNorm without affine fused with adaLN: y = norm(x) * (1 + scale[g]) + shift[g],
// g = row / rows_per_group, group rows group_stride floats apart.
void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                         const float* scale, int rows_per_group, int group_stride, float eps,
                         cudaStream_t stream);
void rms_norm(const float* x, float* y, int rows, int dim, const float* weight, float eps,
              cudaStream_t stream);
// The same with x's rows x_stride floats apart (y contiguous, not overlapping x).
void rms_norm(const float* x, int x_stride, float* y, int rows, int dim, const float* weight,
              float eps, cudaStream_t stream);
void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps,
                        cudaStream_t stream);
// The same with x's rows x_stride floats apart (>= heads * head_dim) into contiguous y (not
// overlapping x): per vector the in-place kernel's arithmetic, so the result equals a copy then
// the in-place op bit for bit.
void l2_normalize_heads(const float* x, int x_stride, float* y, int rows, int heads,
                        int head_dim, float eps, cudaStream_t stream);

}  // namespace strand::cuda
