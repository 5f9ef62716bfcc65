#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/row_launch.cuh"

namespace strand::cuda {
namespace {

// T = float4 when dim and group_stride are multiples of 4 and x, y, gate are 16-byte aligned,
// else float; units = dim / (floats per T), group_stride in T units. See row_launch.cuh for the
// thread layout (one column per thread, rows grid-strided). x and y do not overlap.
template <typename T>
__global__ void gated_residual_kernel(T* __restrict__ x, const T* __restrict__ y,
                                      const T* __restrict__ gate, unsigned rows, unsigned units,
                                      unsigned rows_per_group, unsigned group_stride) {
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= units) return;
  for (unsigned row = blockIdx.y * blockDim.y + threadIdx.y; row < rows;
       row += gridDim.y * blockDim.y) {
    const size_t at = static_cast<size_t>(row) * units + col;
    if (gate == nullptr) {
      x[at] = detail::plain_add(x[at], y[at]);
    } else {
      const T g = gate[static_cast<size_t>(row / rows_per_group) * group_stride + col];
      x[at] = detail::gated_add(x[at], g, y[at]);
    }
  }
}

// units_per_head = head_dim / (floats per T); row_stride in T units. The thread's head (hence
// its gate column) is fixed: one gate load per row.
template <typename T>
__global__ void gated_residual_heads_kernel(T* __restrict__ x, const T* __restrict__ y,
                                            const float* __restrict__ gate, unsigned rows,
                                            unsigned heads, unsigned units_per_head,
                                            unsigned row_stride) {
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= heads * units_per_head) return;
  const unsigned head = col / units_per_head;
  for (unsigned row = blockIdx.y * blockDim.y + threadIdx.y; row < rows;
       row += gridDim.y * blockDim.y) {
    const size_t at = static_cast<size_t>(row) * row_stride + col;
    const float g = gate[static_cast<size_t>(row) * heads + head];
    x[at] = detail::gated_add(x[at], g, y[at]);
  }
}

}  // namespace

void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                    int rows_per_group, int group_stride, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  const unsigned per_group = rows_per_group > 0 ? static_cast<unsigned>(rows_per_group) : 1u;
  const bool vector = dim % 4 == 0 && detail::aligned16(x) && detail::aligned16(y) &&
                      (gate == nullptr || (group_stride % 4 == 0 && detail::aligned16(gate)));
  if (vector) {
    const int units = dim / 4;
    const auto l = detail::row_launch(rows, units);
    gated_residual_kernel<float4><<<l.grid, l.block, 0, stream>>>(
        reinterpret_cast<float4*>(x), reinterpret_cast<const float4*>(y),
        reinterpret_cast<const float4*>(gate), static_cast<unsigned>(rows),
        static_cast<unsigned>(units), per_group, static_cast<unsigned>(group_stride / 4));
  } else {
    const auto l = detail::row_launch(rows, dim);
    gated_residual_kernel<float><<<l.grid, l.block, 0, stream>>>(
        x, y, gate, static_cast<unsigned>(rows), static_cast<unsigned>(dim), per_group,
        static_cast<unsigned>(group_stride));
  }
}

void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                          int head_dim, int row_stride, cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const bool vector =
      head_dim % 4 == 0 && row_stride % 4 == 0 && detail::aligned16(x) && detail::aligned16(y);
  const int v = vector ? 4 : 1;
  const int units_per_head = head_dim / v;
  const auto l = detail::row_launch(rows, heads * units_per_head);
  if (vector) {
    gated_residual_heads_kernel<float4><<<l.grid, l.block, 0, stream>>>(
        reinterpret_cast<float4*>(x), reinterpret_cast<const float4*>(y), gate,
        static_cast<unsigned>(rows), static_cast<unsigned>(heads),
        static_cast<unsigned>(units_per_head), static_cast<unsigned>(row_stride / 4));
  } else {
    gated_residual_heads_kernel<float><<<l.grid, l.block, 0, stream>>>(
        x, y, gate, static_cast<unsigned>(rows), static_cast<unsigned>(heads),
        static_cast<unsigned>(units_per_head), static_cast<unsigned>(row_stride));
  }
}

}  // namespace strand::cuda
