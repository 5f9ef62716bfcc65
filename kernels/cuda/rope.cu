#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rope_rotate.cuh"
#include "kernels/cuda/row_launch.cuh"

namespace strand::cuda {
namespace {

// Rows = tokens, columns = rotary pairs (row_launch.cuh layout): the thread's pair fixes its part
// and frequency, evaluated once; each token then costs one double sincos. The formulas are those
// the per-call kernel used before the table (same double pow / sincos, same rounding to float),
// so the rotated values are unchanged bit for bit.
__global__ void rope_table_kernel(float2* __restrict__ cos_sin, unsigned tokens, int pairs,
                                  const int* __restrict__ pos_t, const int* __restrict__ pos_r,
                                  const int* __restrict__ pos_c, double theta) {
  const int p = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (p >= pairs) return;
  const int spatial = pairs / 3;
  const int temporal = pairs - 2 * spatial;
  const int* pos;
  int j, n;
  if (p < temporal) {
    pos = pos_t, j = p, n = temporal;
  } else if (p < temporal + spatial) {
    pos = pos_r, j = p - temporal, n = spatial;
  } else {
    pos = pos_c, j = p - temporal - spatial, n = spatial;
  }
  const double freq = pow(theta, -static_cast<double>(j) / n);
  for (unsigned t = blockIdx.y * blockDim.y + threadIdx.y; t < tokens;
       t += gridDim.y * blockDim.y) {
    double s, c;
    sincos(static_cast<double>(pos[t]) * freq, &s, &c);
    cos_sin[static_cast<size_t>(t) * pairs + p] =
        make_float2(static_cast<float>(c), static_cast<float>(s));
  }
}

using detail::rotated_first;
using detail::rotated_quad;
using detail::rotated_second;

// 16-byte path: a column is 4 floats of one head (pairs 2q and 2q+1), the table entry for them
// one float4 (c0, s0, c1, s1). quads_per_head = head_dim / 4, row_stride4 = row_stride / 4,
// table_stride4 = head_dim / 4 (float4 per token in the table).
__global__ void rope_apply_vector_kernel(float4* __restrict__ x, unsigned tokens, unsigned heads,
                                         unsigned quads_per_head, unsigned row_stride4,
                                         const float4* __restrict__ cos_sin) {
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= heads * quads_per_head) return;
  const unsigned q = col % quads_per_head;
  for (unsigned t = blockIdx.y * blockDim.y + threadIdx.y; t < tokens;
       t += gridDim.y * blockDim.y) {
    const size_t at = static_cast<size_t>(t) * row_stride4 + col;
    const float4 v = x[at];
    const float4 cs = cos_sin[static_cast<size_t>(t) * quads_per_head + q];
    x[at] = rotated_quad(v, cs);
  }
}

// Any shape: a column is one pair (2p, 2p+1) of one head; an odd head_dim leaves its last float.
__global__ void rope_apply_scalar_kernel(float* __restrict__ x, unsigned tokens, unsigned heads,
                                         unsigned head_dim, unsigned row_stride,
                                         const float2* __restrict__ cos_sin) {
  const unsigned pairs = head_dim / 2;
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= heads * pairs) return;
  const unsigned head = col / pairs, p = col % pairs;
  const unsigned offset = head * head_dim + 2 * p;
  for (unsigned t = blockIdx.y * blockDim.y + threadIdx.y; t < tokens;
       t += gridDim.y * blockDim.y) {
    float* v = x + static_cast<size_t>(t) * row_stride + offset;
    const float2 cs = cos_sin[static_cast<size_t>(t) * pairs + p];
    const float x0 = v[0], x1 = v[1];
    v[0] = rotated_first(x0, x1, cs.x, cs.y);
    v[1] = rotated_second(x0, x1, cs.x, cs.y);
  }
}

}  // namespace

void rope_3d_table(float2* cos_sin, int tokens, int head_dim, const int* pos_t, const int* pos_r,
                   const int* pos_c, float theta, cudaStream_t stream) {
  if (tokens <= 0 || head_dim < 2) return;
  const int pairs = head_dim / 2;
  const auto l = detail::row_launch(tokens, pairs);
  rope_table_kernel<<<l.grid, l.block, 0, stream>>>(cos_sin, static_cast<unsigned>(tokens), pairs,
                                                    pos_t, pos_r, pos_c,
                                                    static_cast<double>(theta));
}

void rope_3d_apply(float* x, int tokens, int heads, int head_dim, int row_stride,
                   const float2* cos_sin, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0 || head_dim < 2) return;
  const bool vector = head_dim % 4 == 0 && row_stride % 4 == 0 && detail::aligned16(x) &&
                      detail::aligned16(cos_sin);
  if (vector) {
    const int quads = head_dim / 4;
    const auto l = detail::row_launch(tokens, heads * quads);
    rope_apply_vector_kernel<<<l.grid, l.block, 0, stream>>>(
        reinterpret_cast<float4*>(x), static_cast<unsigned>(tokens), static_cast<unsigned>(heads),
        static_cast<unsigned>(quads), static_cast<unsigned>(row_stride / 4),
        reinterpret_cast<const float4*>(cos_sin));
  } else {
    const auto l = detail::row_launch(tokens, heads * (head_dim / 2));
    rope_apply_scalar_kernel<<<l.grid, l.block, 0, stream>>>(
        x, static_cast<unsigned>(tokens), static_cast<unsigned>(heads),
        static_cast<unsigned>(head_dim), static_cast<unsigned>(row_stride), cos_sin);
  }
}

}  // namespace strand::cuda
