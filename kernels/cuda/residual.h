// Gated residual adds on the GPU; semantics of kernels/cpu/activation.h (gated_residual*).
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

// x[r, :] += gate[r / rows_per_group, :] * y[r, :] (gate rows group_stride apart; null: x += y).
void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                    int rows_per_group, int group_stride, cudaStream_t stream);
// x[r, h*head_dim + j] += gate[r*heads + h] * y[r, h*head_dim + j]; rows row_stride apart.
void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                          int head_dim, int row_stride, cudaStream_t stream);

}  // namespace strand::cuda
