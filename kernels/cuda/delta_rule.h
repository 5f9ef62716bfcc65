// Gated delta rule memory on the GPU: the same ops as kernels/cpu/delta_rule.h (docs/model.md,
// attention kind "hybrid"). State layout s[h][i][j], i < dk (key dim, rows), j < dv (value dim),
// float32, on the device. All pointers are device pointers; every call is asynchronous on `stream`.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace strand::cuda {

// Arithmetic of the matrix products inside the delta-rule kernels.
//  fp32: "3xTF32" on the tensor cores (each fp32 operand split into a TF32 head and a TF32 tail,
//        three products summed in fp32): about fp32 accuracy, within ~1e-5 relative of the CPU
//        sequential rule. The default.
//  tf32: one TF32 product per multiply (10-bit mantissa operands, fp32 accumulation): ~3x less
//        tensor work, ~1e-3 relative error on the state. Opt-in, for speed.
enum class DeltaPrecision { fp32, tf32 };

// Tokens per sub-chunk of the chunked (WY / UT-transform) form.
constexpr int kDeltaChunk = 64;
// Largest key dim the chunked kernel handles (the value dim is unbounded).
constexpr int kDeltaMaxKeyDim = 128;

// Chunked form of the sequential rule, per head and token t in order:
//   S <- alpha[t,h] S;  u = beta[t,h] (v[t,h] - S^T k[t,h]);  S <- S + k[t,h] u^T.
// k: [tokens, heads, dk] with row stride k_stride; v: [tokens, heads, dv] with row stride v_stride
// (strides in elements, k_stride >= heads * dk, v_stride >= heads * dv); alpha, beta: [tokens,
// heads] contiguous. s is updated in place. Two kernels: one per (chunk, head) builds the chunk's
// (I + A)^-1 and decay factors in scratch memory; one per (head, 16 value columns) carries the
// state across chunks with tensor-core products. Scratch comes from cudaMallocAsync on `stream`.
// Throws strand::Error: invalid_argument for negative sizes or short strides, unsupported for
// dk > kDeltaMaxKeyDim, out_of_memory when scratch cannot be allocated, device for a failed launch.
// k, v, alpha, beta must not alias s.
void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, cudaStream_t stream,
                        DeltaPrecision precision = DeltaPrecision::fp32);

// Bytes of scratch the update needs for `tokens` x `heads` (independent of dk and dv).
size_t gated_delta_workspace_bytes(int tokens, int heads);

// The same update with caller-owned scratch (workspace_bytes >= gated_delta_workspace_bytes,
// 256-byte aligned, not used by anything else until the update has run on `stream`): no
// allocation per call. Throws invalid_argument when the workspace is missing or too small.
void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                        DeltaPrecision precision = DeltaPrecision::fp32);

// The rule token by token, one thread per state column (a column of S evolves on its own): the
// simple kernel the chunked one is measured against, and a second reference in tests. Plain fp32
// FMA, dk <= kDeltaMaxKeyDim. Same arguments and errors as gated_delta_update.
void gated_delta_update_sequential(float* s, const float* k, int k_stride, const float* v,
                                   int v_stride, const float* alpha, const float* beta, int tokens,
                                   int heads, int dk, int dv, cudaStream_t stream);

// Block-level read: out[t,h] = scale * S_h^T q[t,h]. q: [tokens, heads, dk] with row stride
// q_stride; out: [tokens, heads, dv] with row stride out_stride. One strided-batched cuBLAS SGEMM
// (heads as the batch) on a cuBLAS handle this file keeps per thread and device. fp32: plain FP32
// math (no TF32); tf32: TF32 tensor cores. Throws strand::Error (invalid_argument, device).
// out must not alias s or q.
void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                 int tokens, int heads, int dk, int dv, float scale, cudaStream_t stream,
                 DeltaPrecision precision = DeltaPrecision::fp32);

}  // namespace strand::cuda
