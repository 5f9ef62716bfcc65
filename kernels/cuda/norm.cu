#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/norm.h"

namespace strand::cuda {
namespace {

// One block per row. The row is read three times (sum, squared deviations, output); after the
// first read it comes from L1/L2, so the kernel stays bound by one read and one write of DRAM.
// Mode: 0 = layer norm (optional weight/bias), 1 = adaLN modulation, 2 = RMS norm.
template <int Mode>
__global__ void row_norm_kernel(const float* x, float* y, int dim, const float* weight,
                                const float* bias, int rows_per_group, int group_stride,
                                float eps) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* yr = y + row * dim;
  float mean = 0.0f, inv = 0.0f;
  if constexpr (Mode == 2) {
    float sq = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) sq += xr[j] * xr[j];
    inv = 1.0f / sqrtf(detail::block_sum(sq, scratch) / static_cast<float>(dim) + eps);
  } else {
    float sum = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) sum += xr[j];
    mean = detail::block_sum(sum, scratch) / static_cast<float>(dim);
    float dev = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      const float d = xr[j] - mean;
      dev += d * d;
    }
    // 1 / sqrt (correctly rounded) rather than rsqrtf (2 ulp): keeps fp32 parity with the CPU.
    inv = 1.0f / sqrtf(detail::block_sum(dev, scratch) / static_cast<float>(dim) + eps);
  }
  // Every thread has read its elements before any writes them (block_sum synchronises), so y may
  // alias x.
  if constexpr (Mode == 1) {
    const size_t group_offset = (row / rows_per_group) * static_cast<size_t>(group_stride);
    const float* shift = weight + group_offset;  // weight = shift, bias = scale for this mode
    const float* scale = bias + group_offset;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      yr[j] = (xr[j] - mean) * inv * (1.0f + scale[j]) + shift[j];
    }
  } else if constexpr (Mode == 2) {
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      yr[j] = weight != nullptr ? xr[j] * inv * weight[j] : xr[j] * inv;
    }
  } else {
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      float v = (xr[j] - mean) * inv;
      if (weight != nullptr) v *= weight[j];
      if (bias != nullptr) v += bias[j];
      yr[j] = v;
    }
  }
}

// One warp per (row, head) vector.
__global__ void l2_heads_kernel(float* x, int vectors, int head_dim, float eps) {
  const int warps_per_block = blockDim.x >> 5;
  const size_t vec = static_cast<size_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  if (vec >= static_cast<size_t>(vectors)) return;
  const int lane = threadIdx.x & 31;
  float* v = x + vec * head_dim;
  float sq = 0.0f;
  for (int j = lane; j < head_dim; j += 32) sq += v[j] * v[j];
  const float inv = 1.0f / sqrtf(detail::warp_sum(sq) + eps);
  for (int j = lane; j < head_dim; j += 32) v[j] *= inv;
}

int threads_for(int dim) {
  // Enough threads for a few elements each; at least one full warp.
  int threads = 32;
  while (threads < 1024 && threads * 4 < dim) threads *= 2;
  return threads;
}

}  // namespace

void layer_norm(const float* x, float* y, int rows, int dim, const float* weight, const float* bias,
                float eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  row_norm_kernel<0><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, weight, bias, 1, 0, eps);
}

void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                         const float* scale, int rows_per_group, int group_stride, float eps,
                         cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  row_norm_kernel<1><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, shift, scale, rows_per_group,
                                                            group_stride, eps);
}

void rms_norm(const float* x, float* y, int rows, int dim, const float* weight, float eps,
              cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  row_norm_kernel<2><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, weight, nullptr, 1, 0, eps);
}

void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps,
                        cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const int vectors = rows * heads;
  constexpr int kWarps = 8;
  l2_heads_kernel<<<(vectors + kWarps - 1) / kWarps, kWarps * 32, 0, stream>>>(x, vectors, head_dim,
                                                                               eps);
}

}  // namespace strand::cuda
