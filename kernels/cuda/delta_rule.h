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

// How the chunks of one update are walked.
//  single_pass: one pass over all chunks, one block per (head, 16 value columns): C chunk steps
//               one after another (C = ceil(tokens / kDeltaChunk)).
//  grouped:     the chunks are split into G runs of near-equal length (run g: chunks
//               [g C / G, (g + 1) C / G)). Each chunk update is affine in its starting state, so
//               each run r >= 1 is the map S -> M_r S + N_r; all runs are computed at once (run 0
//               on the real state, the others on the augmented state [M | N] started at [I | 0]
//               with values [0 | V]), then S <- M_r S + N_r for r = 1 .. G-1. Sequential depth
//               about C / G + G - 1 steps for about twice the arithmetic.
//               kernels/cpu/delta_rule.h gated_delta_update_grouped is its reference.
//  automatic:   grouped with the group count gated_delta_groups picks, single pass where that is
//               1 or where the workspace is too small for it. A grouped chunk step costs about 4
//               single-pass steps (H200, docs/performance.md run K), so grouping pays only where
//               the single pass leaves most multiprocessors idle (few heads); at the engine's
//               1.3B shape (12 heads x 128 x 128) it is the single pass.
//  fma_single_pass: the single pass with each chunk step's products on the plain fp32 units
//               (each thread a few outputs in registers, float4 operands from shared memory)
//               instead of tensor cores: exact fp32 whatever the precision argument. Measured
//               (H200, docs/performance.md run K, 4680 tokens x 12 heads x 128): 497 us against
//               312 us for the tensor-core single pass (whose step issues far fewer instructions
//               since it reads mma.sync fragments straight from shared memory); automatic does
//               not pick it.
//  folded_single_pass: the single pass with X folded into each chunk's operands by the prepare
//               kernel (W' = diag(tail) X diag(beta gamma) K, U0' = diag(tail) X diag(beta) V,
//               plain fp32, written instead of X), so a chunk step is Ud = U0' - W' S and
//               S = decay S + K^T Ud: two tensor-core products and three barriers instead of
//               three and four, for 16 KB more workspace reads a chunk step. Opt-in until
//               timed against single_pass (its device code is checked on the CPU emulator);
//               automatic does not pick it.
//  overlapped_single_pass: the single pass with its prepare kernel on a helper stream beside the
//               recurrence instead of before it: prepare blocks start chunk by chunk on the
//               multiprocessors the recurrence leaves free (96 of 132 busy at the 1.3B shape) and
//               set a ready flag per (head, chunk); a recurrence block copies a chunk once its
//               flag is set. Needs every recurrence block resident with a multiprocessor to spare
//               (heads x value tiles < multiprocessors), else it runs as single_pass. The helper
//               stream forks from and joins `stream` with events, so CUDA graph capture records
//               it. Opt-in until timed (device code checked on the CPU emulator).
//  overlapped_folded_single_pass: both of the above.
// The device code of the prepare kernel and of both single-pass recurrences also runs on the CPU
// (tools/gpu/emulate_delta_rule.sh, the ctest DeltaKernelsEmulated): the place to try changes to
// these kernels before they take GPU time.
enum class DeltaSchedule {
  automatic,
  single_pass,
  grouped,
  fma_single_pass,
  folded_single_pass,
  overlapped_single_pass,
  overlapped_folded_single_pass
};

// Tokens per sub-chunk of the chunked (WY / UT-transform) form.
constexpr int kDeltaChunk = 64;
// Largest key dim the chunked kernel handles (the value dim is unbounded).
constexpr int kDeltaMaxKeyDim = 128;

// Chunked form of the sequential rule, per head and token t in order:
//   S <- alpha[t,h] S;  u = beta[t,h] (v[t,h] - S^T k[t,h]);  S <- S + k[t,h] u^T.
// k: [tokens, heads, dk] with row stride k_stride; v: [tokens, heads, dv] with row stride v_stride
// (strides in elements, k_stride >= heads * dk, v_stride >= heads * dv); alpha, beta: [tokens,
// heads] contiguous. s is updated in place. One kernel per (chunk, head) builds the chunk's
// (I + A)^-1 and decay factors in scratch memory; then the state is carried across the chunks with
// tensor-core products, in one pass or in groups of chunks (schedule, groups: as in the workspace
// overload below). Scratch comes from cudaMallocAsync on `stream`.
// Throws strand::Error: invalid_argument for negative sizes or short strides, unsupported for
// dk > kDeltaMaxKeyDim, out_of_memory when scratch cannot be allocated, device for a failed launch.
// k, v, alpha, beta must not alias s.
void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, cudaStream_t stream,
                        DeltaPrecision precision = DeltaPrecision::fp32,
                        DeltaSchedule schedule = DeltaSchedule::automatic, int groups = 0);

// Bytes of scratch the update needs for `tokens` x `heads`: enough for any schedule the
// automatic one picks with dk, dv <= kDeltaMaxKeyDim (larger dv: see the overload below; with
// less, automatic falls back to the single pass).
size_t gated_delta_workspace_bytes(int tokens, int heads);

// Bytes for the grouped schedule with `groups` runs (clamped to [1, chunks]; groups <= 0: the
// most groups automatic ever picks for this token count). groups == 1 is also the single pass's
// need.
size_t gated_delta_workspace_bytes(int tokens, int heads, int dk, int dv, int groups);

// Bytes of scratch `schedule` needs: single_pass and fma_single_pass the single pass's
// (groups == 1 above); folded_single_pass that plus W' and U0' (heads x chunks x kDeltaChunk x
// (dk and dv, padded) floats: 58 MB at 4680 x 12 x 128 x 128); overlapped_single_pass that plus
// heads x chunks ready flags; overlapped_folded_single_pass both; grouped and automatic as the
// overload above with `groups`.
size_t gated_delta_workspace_bytes(DeltaSchedule schedule, int tokens, int heads, int dk, int dv,
                                   int groups = 0);
// The group count the automatic schedule uses for this shape on the current device (1: single
// pass): the count with the lowest estimated time (waves of blocks on the device's multiprocessors
// x chunk steps, a grouped step weighed as 4 single-pass steps), at most 8, with at least 4 chunks
// a group and 8 chunks in all.
int gated_delta_groups(int tokens, int heads, int dk, int dv,
                       DeltaPrecision precision = DeltaPrecision::fp32);

// The same update with caller-owned scratch (256-byte aligned, not used by anything else until
// the update has run on `stream`): no allocation per call. schedule picks the walk (see
// DeltaSchedule); groups, for grouped only: the run count (clamped to [1, chunks]), 0 for
// gated_delta_groups's choice. Workspace: at least the single pass's need
// (gated_delta_workspace_bytes(tokens, heads, dk, dv, 1)); grouped needs its own count's; the
// automatic schedule runs as many groups as the workspace holds (gated_delta_workspace_bytes
// (tokens, heads) holds its choice for dk, dv <= kDeltaMaxKeyDim). Throws invalid_argument when
// the workspace is missing, unaligned or below that need.
void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                        DeltaPrecision precision = DeltaPrecision::fp32,
                        DeltaSchedule schedule = DeltaSchedule::automatic, int groups = 0);

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
