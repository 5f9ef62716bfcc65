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

// Grouped form (the reference of the GPU grouped path): the chunk update is affine in the state
// it starts from, so a run of consecutive chunks maps S_in to M S_in + N (M: dk x dk, N: dk x dv).
// The chunks are split into `groups` runs of near-equal length (run g covers chunks
// [g C / G, (g + 1) C / G), C = ceil(tokens / chunk), G = groups clamped to [1, C]); run 0 is
// applied to the state directly, and for every later run M and N come from the chunked update of
// the augmented state [I | 0] fed the values [0 | V], then S <- M S + N. Same final state as the
// sequential rule up to float rounding.
void gated_delta_update_grouped(float* s, const float* k, int k_stride, const float* v,
                                int v_stride, const float* alpha, const float* beta, int tokens,
                                int heads, int dk, int dv, int groups, int chunk = 64);

// Block-level read: out[t,h] = scale * S_h^T q[t,h]. q: [T, heads, dk] stride q_stride;
// out: [T, heads, dv] stride out_stride.
void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                 int tokens, int heads, int dk, int dv, float scale);

// Gates of the memory from the layer's three gate projections (one scalar per token and head).
// raw: [3, tokens, heads], the rows a, b, g one after another, each [tokens, heads] contiguous;
// a_log, dt_bias: [heads]. Writes [tokens, heads] each:
//   alpha = exp(-exp(a_log[h]) * softplus(a + dt_bias[h]))   decay of the state, in [0, 1]
//   beta  = 2 sigmoid(b)                                     write strength, in [0, 2]
//   gamma = sigmoid(g)                                       weight of the memory read, in [0, 1]
// with softplus(x) = x for x > 20, else log1p(exp(x)), and sigmoid(x) = 1 / (1 + exp(-x)): in
// float32 with the C library's expf/log1pf, the formulas the engine used on the host, so results
// are the same bit for bit. Saturates without NaN for finite raw values while exp(a_log) is
// finite. Outputs must not overlap raw or each other; tokens <= 0 or heads <= 0 writes nothing.
void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                  float* beta, float* gamma, int tokens, int heads);

}  // namespace strand::cpu
