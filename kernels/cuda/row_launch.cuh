// Launch shape and vector helpers for the row-wise elementwise kernels of kernels/cuda (residual,
// rope): device code only, not a public header.
//
// Layout: a row of `units` column units (a float, or a float4 when the shapes and pointers allow
// 16-byte accesses). blockDim.x threads cover columns, blockDim.y rows; every thread keeps ONE
// column for every row it visits (rows grid-strided over gridDim.y * blockDim.y), so anything
// derived from the column (head index, gate offset) is computed once per thread and the per-row
// index math is one 32-bit add and one 64-bit multiply: no division per element.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace strand::cuda::detail {

struct RowLaunch {
  dim3 grid, block;
};

// At most 256 threads a block; columns split into as few equal 32-multiples as fit, so a row of
// 384 float4 (width 1536) runs as 2 x 192 threads with no idle lanes.
inline RowLaunch row_launch(int rows, int units) {
  constexpr int kMaxThreads = 256;
  const int chunks = (units + kMaxThreads - 1) / kMaxThreads;
  const int per_chunk = (units + chunks - 1) / chunks;
  const int tx = (per_chunk + 31) / 32 * 32;  // <= kMaxThreads
  const int ty = std::max(1, kMaxThreads / tx);
  const int x_blocks = (units + tx - 1) / tx;
  const int y_blocks = std::min((rows - 1) / ty + 1, 65535);
  return {dim3(static_cast<unsigned>(x_blocks), static_cast<unsigned>(y_blocks)),
          dim3(static_cast<unsigned>(tx), static_cast<unsigned>(ty))};
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// x + g * y in the order of the scalar kernels (nvcc contracts it to one fma per element, as it
// did for `x[i] += g * y[i]`): the vector path gives the scalar path's bits.
__device__ __forceinline__ float gated_add(float x, float g, float y) {
  return x + g * y;
}
__device__ __forceinline__ float4 gated_add(float4 x, float4 g, float4 y) {
  return make_float4(x.x + g.x * y.x, x.y + g.y * y.y, x.z + g.z * y.z, x.w + g.w * y.w);
}
__device__ __forceinline__ float4 gated_add(float4 x, float g, float4 y) {
  return make_float4(x.x + g * y.x, x.y + g * y.y, x.z + g * y.z, x.w + g * y.w);
}
__device__ __forceinline__ float plain_add(float x, float y) {
  return x + y;
}
__device__ __forceinline__ float4 plain_add(float4 x, float4 y) {
  return make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
}

}  // namespace strand::cuda::detail
