#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/residual_norm.h"
#include "kernels/cuda/row_launch.cuh"

namespace strand::cuda {
namespace {

constexpr int kMaxThreads = 256;  // as norm.cu's register kernels
constexpr int kMaxVec = 8;

// One block per row; a thread holds float4 j = threadIdx.x + i * blockDim.x of the row. The add
// is gated_residual_kernel<float4>'s (detail::gated_add / plain_add), and the updated quads are
// stored to x at once (nothing reads them back). The norm's statements are
// row_norm_registers_kernel<0 or 1>'s in norm.cu, written the same way so that the compiler
// contracts them the same way. kModulate: norm_a = shift, norm_b = scale (rows of the row's
// group), else norm_a = weight, norm_b = bias (either may be null).
template <bool kModulate, int kVec>
__global__ void residual_norm_kernel(float* __restrict__ x, const float* __restrict__ y,
                                     const float* __restrict__ gate, float* __restrict__ out,
                                     int dim, int rows_per_group, int group_stride,
                                     const float* __restrict__ norm_a,
                                     const float* __restrict__ norm_b, float eps) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const int quads = dim / 4;
  auto* xr = reinterpret_cast<float4*>(x + row * dim);
  const auto* yr = reinterpret_cast<const float4*>(y + row * dim);
  auto* outr = reinterpret_cast<float4*>(out + row * dim);
  const size_t group_offset = (row / rows_per_group) * static_cast<size_t>(group_stride);
  const auto* g4 = gate != nullptr ? reinterpret_cast<const float4*>(gate + group_offset) : nullptr;
  float4 v[kVec];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < quads) {
      v[i] =
          g4 != nullptr ? detail::gated_add(xr[j], g4[j], yr[j]) : detail::plain_add(xr[j], yr[j]);
      xr[j] = v[i];
    } else {
      v[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    sum += v[i].x + v[i].y + v[i].z + v[i].w;
  }
  const float mean = detail::block_sum(sum, scratch) / static_cast<float>(dim);
  float dev = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    if (threadIdx.x + i * blockDim.x < quads) {
      const float a = v[i].x - mean, b = v[i].y - mean, c = v[i].z - mean, d = v[i].w - mean;
      dev += a * a + b * b + c * c + d * d;
    }
  }
  // 1 / sqrt (correctly rounded) rather than rsqrtf, as the layer_norm kernels.
  const float inv = 1.0f / sqrtf(detail::block_sum(dev, scratch) / static_cast<float>(dim) + eps);
  const float4* w4 = nullptr;
  const float4* b4 = nullptr;
  if constexpr (kModulate) {
    w4 = reinterpret_cast<const float4*>(norm_a + group_offset);  // shift
    b4 = reinterpret_cast<const float4*>(norm_b + group_offset);  // scale
  } else {
    w4 = reinterpret_cast<const float4*>(norm_a);
    b4 = reinterpret_cast<const float4*>(norm_b);
  }
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j >= quads) continue;
    float r[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    float4 wv = make_float4(1.0f, 1.0f, 1.0f, 1.0f), bv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (w4 != nullptr) wv = w4[j];
    if (b4 != nullptr) bv = b4[j];
    const float wa[4] = {wv.x, wv.y, wv.z, wv.w}, ba[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if constexpr (kModulate) {
        r[e] = (r[e] - mean) * inv * (1.0f + ba[e]) + wa[e];
      } else {
        float t = (r[e] - mean) * inv;
        if (w4 != nullptr) t *= wa[e];
        if (b4 != nullptr) t += ba[e];
        r[e] = t;
      }
    }
    outr[j] = make_float4(r[0], r[1], r[2], r[3]);
  }
}

// norm.cu's launch_registers arithmetic: the same threads and float4 a thread for the same width
// (hence the same reduction order as the separate layer_norm kernels).
int vec_for(int quads) {
  return (quads + kMaxThreads - 1) / kMaxThreads;
}

template <bool kModulate>
void launch(float* x, const float* y, const float* gate, float* out, int rows, int dim,
            int rows_per_group, int group_stride, const float* norm_a, const float* norm_b,
            float eps, cudaStream_t stream) {
  const int quads = dim / 4;
  const int vec = vec_for(quads);
  const int threads = std::max(32, ((quads + vec - 1) / vec + 31) / 32 * 32);
  auto go = [&](auto kernel) {
    kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(
        x, y, gate, out, dim, rows_per_group, group_stride, norm_a, norm_b, eps);
  };
  switch (vec) {
    case 1:
      go(residual_norm_kernel<kModulate, 1>);
      break;
    case 2:
      go(residual_norm_kernel<kModulate, 2>);
      break;
    case 3:
      go(residual_norm_kernel<kModulate, 3>);
      break;
    case 4:
      go(residual_norm_kernel<kModulate, 4>);
      break;
    case 5:
    case 6:
      go(residual_norm_kernel<kModulate, 6>);
      break;
    default:
      go(residual_norm_kernel<kModulate, 8>);
      break;
  }
}

}  // namespace

bool residual_norm_fits(const float* x, const float* y, const float* gate, const float* out,
                        int dim, int rows_per_group, int group_stride, const float* norm_a,
                        const float* norm_b) {
  if (dim < 4 || dim % 4 != 0 || dim > 4 * kMaxThreads * kMaxVec) return false;
  if (rows_per_group <= 0 || group_stride < 0 || group_stride % 4 != 0) return false;
  return detail::aligned16(x) && detail::aligned16(y) && detail::aligned16(gate) &&
         detail::aligned16(out) && detail::aligned16(norm_a) && detail::aligned16(norm_b);
}

void residual_norm(float* x, const float* y, const float* gate, float* out, int rows, int dim,
                   int rows_per_group, int group_stride, bool modulate, const float* norm_a,
                   const float* norm_b, float eps, cudaStream_t stream) {
  if (rows <= 0) return;
  if (modulate) {
    launch<true>(x, y, gate, out, rows, dim, rows_per_group, group_stride, norm_a, norm_b, eps,
                 stream);
  } else {
    launch<false>(x, y, gate, out, rows, dim, rows_per_group, group_stride, norm_a, norm_b, eps,
                  stream);
  }
}

}  // namespace strand::cuda
