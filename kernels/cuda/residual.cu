#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/residual.h"

namespace strand::cuda {
namespace {

__global__ void gated_residual_kernel(float* __restrict__ x, const float* __restrict__ y,
                                      const float* __restrict__ gate, int rows, int dim,
                                      int rows_per_group, int group_stride) {
  const size_t total = static_cast<size_t>(rows) * dim;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    if (gate == nullptr) {
      x[i] += y[i];
    } else {
      const size_t r = i / dim, j = i % dim;
      x[i] += gate[(r / rows_per_group) * group_stride + j] * y[i];
    }
  }
}

__global__ void gated_residual_heads_kernel(float* __restrict__ x, const float* __restrict__ y,
                                            const float* __restrict__ gate, int rows, int heads,
                                            int head_dim, int row_stride) {
  const int width = heads * head_dim;
  const size_t total = static_cast<size_t>(rows) * width;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / width;
    const int c = static_cast<int>(i % width);
    const size_t at = r * row_stride + c;
    x[at] += gate[r * heads + c / head_dim] * y[at];
  }
}

}  // namespace

void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                    int rows_per_group, int group_stride, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  const size_t total = static_cast<size_t>(rows) * dim;
  gated_residual_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
      x, y, gate, rows, dim, rows_per_group > 0 ? rows_per_group : 1, group_stride);
}

void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                          int head_dim, int row_stride, cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const size_t total = static_cast<size_t>(rows) * heads * head_dim;
  gated_residual_heads_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
      x, y, gate, rows, heads, head_dim, row_stride);
}

}  // namespace strand::cuda
