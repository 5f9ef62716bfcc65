#include <cstdint>

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
                                float eps, int x_stride) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const float* xr = x + row * x_stride;
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

// The same norms with the row in registers, read from DRAM once with 16-byte loads: dim % 4 == 0,
// dim <= 4 * kVec * blockDim.x, every pointer 16-byte aligned (see vector_path). Same arithmetic
// as row_norm_kernel (two-pass variance, correctly rounded 1 / sqrt); only the summation order of
// the block reduction differs. The scalar kernel re-reads the row through L1/L2 and ran at 30% of
// the copy bandwidth at width 1536 (run D: 1224 GB/s).
template <int Mode, int kVec>
__global__ void row_norm_registers_kernel(const float* x, float* y, int dim, const float* weight,
                                          const float* bias, int rows_per_group,
                                          int group_stride, float eps, int x_stride) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const int quads = dim / 4;
  const auto* xr = reinterpret_cast<const float4*>(x + row * x_stride);
  auto* yr = reinterpret_cast<float4*>(y + row * dim);
  float4 v[kVec];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    v[i] = j < quads ? xr[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if constexpr (Mode == 2) {
      sum += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    } else {
      sum += v[i].x + v[i].y + v[i].z + v[i].w;
    }
  }
  float mean = 0.0f, inv = 0.0f;
  if constexpr (Mode == 2) {
    inv = 1.0f / sqrtf(detail::block_sum(sum, scratch) / static_cast<float>(dim) + eps);
  } else {
    mean = detail::block_sum(sum, scratch) / static_cast<float>(dim);
    float dev = 0.0f;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      if (threadIdx.x + i * blockDim.x < quads) {
        const float a = v[i].x - mean, b = v[i].y - mean, c = v[i].z - mean, d = v[i].w - mean;
        dev += a * a + b * b + c * c + d * d;
      }
    }
    inv = 1.0f / sqrtf(detail::block_sum(dev, scratch) / static_cast<float>(dim) + eps);
  }
  const float4* w4 = nullptr;
  const float4* b4 = nullptr;
  if constexpr (Mode == 1) {
    const size_t group_offset = (row / rows_per_group) * static_cast<size_t>(group_stride);
    w4 = reinterpret_cast<const float4*>(weight + group_offset);  // shift
    b4 = reinterpret_cast<const float4*>(bias + group_offset);    // scale
  } else {
    w4 = reinterpret_cast<const float4*>(weight);
    b4 = reinterpret_cast<const float4*>(bias);
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
      if constexpr (Mode == 1) {
        r[e] = (r[e] - mean) * inv * (1.0f + ba[e]) + wa[e];
      } else if constexpr (Mode == 2) {
        r[e] = w4 != nullptr ? r[e] * inv * wa[e] : r[e] * inv;
      } else {
        float t = (r[e] - mean) * inv;
        if (w4 != nullptr) t *= wa[e];
        if (b4 != nullptr) t += ba[e];
        r[e] = t;
      }
    }
    yr[j] = make_float4(r[0], r[1], r[2], r[3]);
  }
}

// Where the (row, head) vector `vec` is read and written: in place in contiguous rows, or (the
// strided form, l2_normalize_heads_rows) read from rows x_stride units apart and written to
// contiguous rows of y. Units are floats or float4. The 32-bit division serves every shape whose
// vector count fits 32 bits (a 64-bit one is a long software routine on the GPU).
template <typename T>
struct HeadVectors {
  const T* x;
  T* y;
  size_t x_stride, y_stride;  // units per row
  unsigned heads;
  int units;  // per head
  bool small;  // vectors < 2^32
  __device__ __forceinline__ void locate(size_t vec, const T** src, T** dst) const {
    const size_t row = small ? static_cast<unsigned>(vec) / heads : vec / heads;
    const size_t head = vec - row * heads;
    *src = x + row * x_stride + head * units;
    *dst = y + row * y_stride + head * units;
  }
};

// One warp per (row, head) vector, the vector in registers: kVec float4 a lane (head_dim % 4 == 0,
// head_dim <= 128 * kVec, x 16-byte aligned), so DRAM sees one read and one write, a warp reading
// 512 B of a 128-float head at once. The squares are summed per lane then across the warp.
// kStrided: read from and written to `at` (HeadVectors) instead of x in place; same arithmetic.
template <int kVec, bool kStrided>
__global__ void l2_heads_vector_kernel(float4* x, size_t vectors, int quads, float eps,
                                       HeadVectors<float4> at) {
  const int warps_per_block = blockDim.x >> 5;
  const size_t vec = static_cast<size_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  if (vec >= vectors) return;  // the whole warp: vec is the same for its 32 lanes
  const int lane = threadIdx.x & 31;
  const float4* v = x + vec * quads;
  float4* out = x + vec * quads;
  if constexpr (kStrided) at.locate(vec, &v, &out);
  float4 r[kVec];
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = lane + 32 * i;
    r[i] = j < quads ? v[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    sq += r[i].x * r[i].x + r[i].y * r[i].y + r[i].z * r[i].z + r[i].w * r[i].w;
  }
  const float inv = 1.0f / sqrtf(detail::warp_sum(sq) + eps);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = lane + 32 * i;
    if (j < quads) out[j] = make_float4(r[i].x * inv, r[i].y * inv, r[i].z * inv, r[i].w * inv);
  }
}

// Any head_dim: one warp per (row, head) vector; the second pass re-reads it through L1.
template <bool kStrided>
__global__ void l2_heads_kernel(float* x, size_t vectors, int head_dim, float eps,
                                HeadVectors<float> at) {
  const int warps_per_block = blockDim.x >> 5;
  const size_t vec = static_cast<size_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  if (vec >= vectors) return;
  const int lane = threadIdx.x & 31;
  const float* v = x + vec * head_dim;
  float* out = x + vec * head_dim;
  if constexpr (kStrided) at.locate(vec, &v, &out);
  float sq = 0.0f;
  for (int j = lane; j < head_dim; j += 32) sq += v[j] * v[j];
  const float inv = 1.0f / sqrtf(detail::warp_sum(sq) + eps);
  for (int j = lane; j < head_dim; j += 32) out[j] = v[j] * inv;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches the register kernel when the row fits (up to 8 float4 a thread, 256 threads) and every
// pointer allows 16-byte loads; false otherwise (the caller runs the scalar kernel).
template <int Mode>
bool launch_registers(const float* x, float* y, int rows, int dim, const float* weight,
                      const float* bias, int rows_per_group, int group_stride, float eps,
                      cudaStream_t stream, int x_stride) {
  constexpr int kMaxThreads = 256;
  if (dim % 4 != 0 || x_stride % 4 != 0 || group_stride % 4 != 0 || !aligned16(x) || !aligned16(y) ||
      !aligned16(weight) || !aligned16(bias)) {
    return false;
  }
  const int quads = dim / 4;
  const int vec = (quads + kMaxThreads - 1) / kMaxThreads;
  if (vec > 8) return false;
  const int threads = std::max(32, ((quads + vec - 1) / vec + 31) / 32 * 32);
  auto launch = [&](auto kernel) {
    kernel<<<rows, threads, 0, stream>>>(x, y, dim, weight, bias, rows_per_group, group_stride, eps,
                                         x_stride);
  };
  switch (vec) {
    case 1: launch(row_norm_registers_kernel<Mode, 1>); break;
    case 2: launch(row_norm_registers_kernel<Mode, 2>); break;
    case 3: launch(row_norm_registers_kernel<Mode, 3>); break;
    case 4: launch(row_norm_registers_kernel<Mode, 4>); break;
    case 5: case 6: launch(row_norm_registers_kernel<Mode, 6>); break;
    default: launch(row_norm_registers_kernel<Mode, 8>); break;
  }
  return true;
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
  if (launch_registers<0>(x, y, rows, dim, weight, bias, 1, 0, eps, stream, dim)) return;
  row_norm_kernel<0><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, weight, bias, 1, 0, eps, dim);
}

void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                         const float* scale, int rows_per_group, int group_stride, float eps,
                         cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  if (launch_registers<1>(x, y, rows, dim, shift, scale, rows_per_group, group_stride, eps, stream,
                          dim)) {
    return;
  }
  row_norm_kernel<1><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, shift, scale, rows_per_group,
                                                            group_stride, eps, dim);
}

void rms_norm(const float* x, float* y, int rows, int dim, const float* weight, float eps,
              cudaStream_t stream) {
  rms_norm(x, dim, y, rows, dim, weight, eps, stream);
}

void rms_norm(const float* x, int x_stride, float* y, int rows, int dim, const float* weight,
              float eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  if (launch_registers<2>(x, y, rows, dim, weight, nullptr, 1, 0, eps, stream, x_stride)) return;
  row_norm_kernel<2><<<rows, threads_for(dim), 0, stream>>>(x, y, dim, weight, nullptr, 1, 0, eps,
                                                            x_stride);
}

namespace {

// x in place (strided == false) or x's rows x_stride floats apart into contiguous y.
template <bool kStrided>
void launch_l2_heads(const float* x, int x_stride, float* y, int rows, int heads, int head_dim,
                     float eps, cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const size_t vectors = static_cast<size_t>(rows) * static_cast<size_t>(heads);
  constexpr int kWarps = 8;
  const auto blocks = static_cast<unsigned>((vectors + kWarps - 1) / kWarps);
  const int quads = head_dim / 4;
  const size_t width = static_cast<size_t>(heads) * static_cast<size_t>(head_dim);
  const bool small = vectors <= 0xffffffffu;
  const bool vector = head_dim % 4 == 0 && head_dim <= 512 && aligned16(x) && aligned16(y) &&
                      x_stride % 4 == 0;
  if (vector) {
    auto* y4 = reinterpret_cast<float4*>(y);
    const HeadVectors<float4> at{reinterpret_cast<const float4*>(x), y4,
                                 static_cast<size_t>(x_stride) / 4, width / 4,
                                 static_cast<unsigned>(heads), quads, small};
    if (quads <= 32) {
      l2_heads_vector_kernel<1, kStrided><<<blocks, kWarps * 32, 0, stream>>>(y4, vectors, quads,
                                                                             eps, at);
    } else if (quads <= 64) {
      l2_heads_vector_kernel<2, kStrided><<<blocks, kWarps * 32, 0, stream>>>(y4, vectors, quads,
                                                                             eps, at);
    } else {
      l2_heads_vector_kernel<4, kStrided><<<blocks, kWarps * 32, 0, stream>>>(y4, vectors, quads,
                                                                             eps, at);
    }
    return;
  }
  const HeadVectors<float> at{x, y, static_cast<size_t>(x_stride), width,
                              static_cast<unsigned>(heads), head_dim, small};
  l2_heads_kernel<kStrided><<<blocks, kWarps * 32, 0, stream>>>(y, vectors, head_dim, eps, at);
}

}  // namespace

void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps,
                        cudaStream_t stream) {
  launch_l2_heads<false>(x, heads * head_dim, x, rows, heads, head_dim, eps, stream);
}

void l2_normalize_heads(const float* x, int x_stride, float* y, int rows, int heads,
                        int head_dim, float eps, cudaStream_t stream) {
  launch_l2_heads<true>(x, x_stride, y, rows, heads, head_dim, eps, stream);
}

}  // namespace strand::cuda
