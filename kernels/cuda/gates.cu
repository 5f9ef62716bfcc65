#include "kernels/cuda/gates.h"
#include "kernels/cuda/launch.cuh"

namespace strand::cuda {
namespace {

// The CPU reference's formulas (kernels/cpu/delta_rule.cpp), in the same order of operations.
__device__ __forceinline__ float softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));
}
__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// One thread per (token, head); the three rows of raw are read at the same index. Index is
// unsigned (32-bit) whenever 3 * tokens * heads fits: a 64-bit modulo is a long software routine
// on the GPU, a 32-bit one a few instructions.
template <typename Index>
__global__ void memory_gates_kernel(const float* __restrict__ raw, const float* __restrict__ a_log,
                                    const float* __restrict__ dt_bias, float* __restrict__ alpha,
                                    float* __restrict__ beta, float* __restrict__ gamma,
                                    Index total, Index heads) {
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index h = i % heads;
    const float decay = -expf(a_log[h]) * softplus(raw[i] + dt_bias[h]);
    alpha[i] = expf(decay);
    beta[i] = 2.0f * sigmoid(raw[total + i]);
    gamma[i] = sigmoid(raw[2 * total + i]);
  }
}

// The strided form: token t's gate columns a, b, g sit at raw + t * row_stride (heads each, one
// after the other), read straight out of the fused projection.
template <typename Index>
__global__ void memory_gates_rows_kernel(const float* __restrict__ raw, Index row_stride,
                                         const float* __restrict__ a_log,
                                         const float* __restrict__ dt_bias,
                                         float* __restrict__ alpha, float* __restrict__ beta,
                                         float* __restrict__ gamma, Index total, Index heads) {
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index t = i / heads;
    const Index h = i - t * heads;
    const float* r = raw + static_cast<size_t>(t) * row_stride + h;
    const float decay = -expf(a_log[h]) * softplus(r[0] + dt_bias[h]);
    alpha[i] = expf(decay);
    beta[i] = 2.0f * sigmoid(r[heads]);
    gamma[i] = sigmoid(r[2 * heads]);
  }
}

}  // namespace

void memory_gates_rows(const float* raw, int row_stride, const float* a_log, const float* dt_bias,
                       float* alpha, float* beta, float* gamma, int tokens, int heads,
                       cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0) return;
  const size_t total = static_cast<size_t>(tokens) * heads;
  if (total <= (size_t{1} << 30)) {  // i + the grid stride cannot wrap (see memory_gates)
    memory_gates_rows_kernel<unsigned><<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
        raw, static_cast<unsigned>(row_stride), a_log, dt_bias, alpha, beta, gamma,
        static_cast<unsigned>(total), static_cast<unsigned>(heads));
  } else {
    memory_gates_rows_kernel<size_t><<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
        raw, static_cast<size_t>(row_stride), a_log, dt_bias, alpha, beta, gamma, total,
        static_cast<size_t>(heads));
  }
}

void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                  float* beta, float* gamma, int tokens, int heads, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0) return;
  const size_t total = static_cast<size_t>(tokens) * heads;
  // 32-bit when neither 2 * total + i nor i + the grid stride (at most 2^24 threads: grid_for)
  // can wrap.
  if (total <= (size_t{1} << 30)) {
    memory_gates_kernel<unsigned><<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
        raw, a_log, dt_bias, alpha, beta, gamma, static_cast<unsigned>(total),
        static_cast<unsigned>(heads));
  } else {
    memory_gates_kernel<size_t><<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
        raw, a_log, dt_bias, alpha, beta, gamma, total, static_cast<size_t>(heads));
  }
}

}  // namespace strand::cuda
