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

// One thread per (token, head); the three rows of raw are read at the same index.
__global__ void memory_gates_kernel(const float* __restrict__ raw, const float* __restrict__ a_log,
                                    const float* __restrict__ dt_bias, float* __restrict__ alpha,
                                    float* __restrict__ beta, float* __restrict__ gamma,
                                    size_t total, int heads) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(i % heads);
    const float decay = -expf(a_log[h]) * softplus(raw[i] + dt_bias[h]);
    alpha[i] = expf(decay);
    beta[i] = 2.0f * sigmoid(raw[total + i]);
    gamma[i] = sigmoid(raw[2 * total + i]);
  }
}

}  // namespace

void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                  float* beta, float* gamma, int tokens, int heads, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0) return;
  const size_t total = static_cast<size_t>(tokens) * heads;
  memory_gates_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
      raw, a_log, dt_bias, alpha, beta, gamma, total, heads);
}

}  // namespace strand::cuda
