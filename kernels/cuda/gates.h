// Gates of the hybrid layer's memory on the GPU: the semantics of cpu::memory_gates
// (kernels/cpu/delta_rule.h). All pointers are device pointers; the call is asynchronous on
// `stream`.
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

// raw: [3, tokens, heads] (rows a, b, g, each [tokens, heads] contiguous); a_log, dt_bias:
// [heads]. Writes alpha = exp(-exp(a_log) softplus(a + dt_bias)), beta = 2 sigmoid(b),
// gamma = sigmoid(g), each [tokens, heads]. Full-precision expf/log1pf (no fast-math
// intrinsics): within a few float ulps of the CPU. Outputs must not overlap raw or each other;
// tokens <= 0 or heads <= 0 launches nothing.
void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                  float* beta, float* gamma, int tokens, int heads, cudaStream_t stream);

// The same gates read from a fused projection's rows: token t's a, b and g columns (heads each,
// one after the other) start at raw + t * row_stride (row_stride >= 3 * heads). Same arithmetic
// per gate as memory_gates, so it equals copying the columns out then memory_gates bit for bit.
void memory_gates_rows(const float* raw, int row_stride, const float* a_log, const float* dt_bias,
                       float* alpha, float* beta, float* gamma, int tokens, int heads,
                       cudaStream_t stream);

}  // namespace strand::cuda
