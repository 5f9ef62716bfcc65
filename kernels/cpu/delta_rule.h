// Gated delta rule memory (docs/model-spec.md, SelfAttn kind "hybrid").
// State layout: s[h][i][j], i < dk (key dim, rows), j < dv (value dim), float32.
#pragma once

namespace strand::cpu {

// Sequential reference: for t in 0..T-1, per head:
//   S <- alpha[t,h] S;  u = beta[t,h] (v[t,h] - S^T k[t,h]);  S <- S + k[t,h] u^T.
// k: [T, heads, dk] row stride k_stride; v: [T, heads, dv] row stride v_stride;
// alpha, beta: [T, heads] contiguous.
void gated_delta_update_sequential(float* s, const float* k, int k_stride, const float* v,
                                   int v_stride, const float* alpha, const float* beta, int tokens,
                                   int heads, int dk, int dv);

// Chunked (WY / UT-transform) form over sub-chunks of `chunk` tokens: same final state as the
// sequential rule up to float rounding, with the work in GEMMs.
void gated_delta_update_chunked(float* s, const float* k, int k_stride, const float* v,
                                int v_stride, const float* alpha, const float* beta, int tokens,
                                int heads, int dk, int dv, int chunk = 64);

// Block-level read: out[t,h] = scale * S_h^T q[t,h]. q: [T, heads, dk] stride q_stride;
// out: [T, heads, dv] stride out_stride.
void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                 int tokens, int heads, int dk, int dv, float scale);

}  // namespace strand::cpu
