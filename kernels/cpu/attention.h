// Softmax attention on the CPU: per head S = q k^T * scale (cblas), row softmax, o = P v.
#pragma once

namespace strand::cpu {

// q: [tq, heads, head_dim] with row stride q_stride; k, v: [tk, heads, head_dim] with strides
// k_stride, v_stride; out: [tq, heads, head_dim] with stride out_stride. No mask (the block is
// bidirectional; causality across blocks comes from what the caller puts in k/v).
void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale);

}  // namespace strand::cpu
