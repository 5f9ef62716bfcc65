#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/qk_norm_rope.h"
#include "kernels/cuda/rope_rotate.cuh"

namespace strand::cuda {
namespace {

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

constexpr int kMaxThreads = 256;  // as norm.cu's register kernels
constexpr int kMaxVec = 8;

// Block 2r normalises row r's q, block 2r + 1 its k (adjacent in memory: one row of x is read by
// two neighbouring blocks). A thread holds float4 j = threadIdx.x + i * blockDim.x of the row;
// a float4 is two rotary pairs of one head, so its table entry is the float4 j % quads_per_head
// of the token's row of the table. The norm's statements are row_norm_registers_kernel<2>'s in
// norm.cu, written the same way so that the compiler contracts them the same way.
template <int kVec>
__global__ void qk_norm_rope_kernel(const float* __restrict__ x, int x_stride,
                                    float* __restrict__ q, float* __restrict__ k, int dim,
                                    int quads_per_head, const float* __restrict__ q_weight,
                                    const float* __restrict__ k_weight, float eps,
                                    const float4* __restrict__ cos_sin, bool rope_k) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x >> 1;
  const bool is_k = (blockIdx.x & 1u) != 0;
  const int quads = dim / 4;
  const auto* xr = reinterpret_cast<const float4*>(x + row * x_stride + (is_k ? dim : 0));
  auto* yr = reinterpret_cast<float4*>((is_k ? k : q) + row * dim);
  const float* weight = is_k ? k_weight : q_weight;
  float4 v[kVec];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    v[i] = j < quads ? xr[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    sum += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
  }
  const float inv = 1.0f / sqrtf(detail::block_sum(sum, scratch) / static_cast<float>(dim) + eps);
  const auto* w4 = reinterpret_cast<const float4*>(weight);
  const bool rotate = !is_k || rope_k;
  const float4* table = cos_sin + row * static_cast<size_t>(quads_per_head);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j >= quads) continue;
    float r[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    float4 wv = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    if (w4 != nullptr) wv = w4[j];
    const float wa[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) r[e] = w4 != nullptr ? r[e] * inv * wa[e] : r[e] * inv;
    float4 out = make_float4(r[0], r[1], r[2], r[3]);
    if (rotate) out = detail::rotated_quad(out, table[j % quads_per_head]);
    yr[j] = out;
  }
}

// norm.cu's launch_registers arithmetic: the same threads and float4 a thread for the same width.
int vec_for(int quads) {
  return (quads + kMaxThreads - 1) / kMaxThreads;
}

}  // namespace

bool qk_norm_rope_fits(const float* x, int x_stride, const float* q, const float* k, int heads,
                       int head_dim, const float* q_weight, const float* k_weight) {
  if (heads <= 0 || head_dim < 4 || head_dim % 4 != 0 || x_stride % 4 != 0) return false;
  const int64_t dim = static_cast<int64_t>(heads) * head_dim;
  if (dim > int64_t{4} * kMaxThreads * kMaxVec || x_stride < 2 * dim) return false;
  return aligned16(x) && aligned16(q) && aligned16(k) && aligned16(q_weight) && aligned16(k_weight);
}

void qk_norm_rope(const float* x, int x_stride, float* q, float* k, int rows, int heads,
                  int head_dim, const float* q_weight, const float* k_weight, float eps,
                  const float2* cos_sin, bool rope_k, cudaStream_t stream) {
  if (rows <= 0) return;
  const int dim = heads * head_dim;
  const int quads = dim / 4;
  const int vec = vec_for(quads);
  const int threads = std::max(32, ((quads + vec - 1) / vec + 31) / 32 * 32);
  const auto blocks = static_cast<unsigned>(2 * static_cast<int64_t>(rows));
  const auto* table = reinterpret_cast<const float4*>(cos_sin);
  auto launch = [&](auto kernel) {
    kernel<<<blocks, threads, 0, stream>>>(x, x_stride, q, k, dim, head_dim / 4, q_weight, k_weight,
                                           eps, table, rope_k);
  };
  switch (vec) {
    case 1:
      launch(qk_norm_rope_kernel<1>);
      break;
    case 2:
      launch(qk_norm_rope_kernel<2>);
      break;
    case 3:
      launch(qk_norm_rope_kernel<3>);
      break;
    case 4:
      launch(qk_norm_rope_kernel<4>);
      break;
    case 5:
    case 6:
      launch(qk_norm_rope_kernel<6>);
      break;
    default:
      launch(qk_norm_rope_kernel<8>);
      break;
  }
}

}  // namespace strand::cuda
