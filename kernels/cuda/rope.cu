#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.h"

namespace strand::cuda {
namespace {

// One thread per (token, rotary pair): the angle is evaluated once and applied to every head.
__global__ void rope_3d_kernel(float* x, int tokens, int heads, int head_dim, int row_stride,
                               const int* pos_t, const int* pos_r, const int* pos_c, double theta) {
  const int pairs = head_dim / 2;
  const int spatial = pairs / 3;
  const int temporal = pairs - 2 * spatial;
  const size_t total = static_cast<size_t>(tokens) * pairs;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(i / pairs);
    const int p = static_cast<int>(i % pairs);
    int position, j, n;
    if (p < temporal) {
      position = pos_t[t], j = p, n = temporal;
    } else if (p < temporal + spatial) {
      position = pos_r[t], j = p - temporal, n = spatial;
    } else {
      position = pos_c[t], j = p - temporal - spatial, n = spatial;
    }
    const double freq = pow(theta, -static_cast<double>(j) / n);
    double s, c;
    sincos(static_cast<double>(position) * freq, &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    float* v = x + static_cast<size_t>(t) * row_stride + 2 * p;
    for (int h = 0; h < heads; ++h, v += head_dim) {
      const float x0 = v[0], x1 = v[1];
      // Separate products then a sum, as on the CPU (no fused multiply-add).
      v[0] = __fsub_rn(__fmul_rn(x0, cf), __fmul_rn(x1, sf));
      v[1] = __fadd_rn(__fmul_rn(x0, sf), __fmul_rn(x1, cf));
    }
  }
}

}  // namespace

void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
             const int* pos_r, const int* pos_c, float theta, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0 || head_dim < 2) return;
  const size_t total = static_cast<size_t>(tokens) * (head_dim / 2);
  rope_3d_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
      x, tokens, heads, head_dim, row_stride, pos_t, pos_r, pos_c, static_cast<double>(theta));
}

}  // namespace strand::cuda
