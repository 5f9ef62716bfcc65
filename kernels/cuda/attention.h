// Softmax attention on the GPU: the same op as strand::cpu::attention (kernels/cpu/attention.h),
// flash-style (online softmax over key tiles; the tq x tk score matrix is never stored).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace strand::cuda {

// q: [tq, heads, head_dim] with row stride q_stride (in elements); k, v: [tk, heads, head_dim] with
// row strides k_stride, v_stride; out: [tq, heads, head_dim] with row stride out_stride. All are
// device pointers to fp32. No mask: every query sees every key (the caller decides what k/v hold;
// tk may differ from tq). out = softmax(scale * q k^T) v per head; tk <= 0 gives zeros.
//
// bf16 = false: fp32 all the way (fp32 FMA, expf): within ~1e-6 relative of the CPU kernel.
// bf16 = true and head_dim 64 or 128: Q, K, V are rounded to bf16 (a conversion pass into
// stream-ordered scratch memory, or the caller's workspace), then a tensor-core kernel (wgmma on
// Hopper at head dim 128, mma.sync m16n8k16 elsewhere; fp32 accumulation and fp32 softmax
// statistics; P is rounded to bf16 before P v).
// Other head dims use the fp32 path.
// Expect ~1e-2 relative error, the error of bf16 inputs.
//
// Asynchronous on `stream`. Throws strand::Error: invalid_argument for negative sizes or strides
// smaller than heads * head_dim, out_of_memory when scratch memory cannot be allocated, device for
// a failed launch. out must not alias q, k or v.
void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, cudaStream_t stream);

// Bytes of scratch attention() needs for these sizes: the bf16 copies of q, k and v (0 when the
// fp32 path runs, i.e. bf16 false or another head dim).
size_t attention_workspace_bytes(int tq, int tk, int heads, int head_dim, bool bf16);

// The same with caller-owned scratch (>= attention_workspace_bytes, 16-byte aligned, not used by
// anything else until the call has run on `stream`): no allocation per call. workspace may be null
// when attention_workspace_bytes() is 0. Throws invalid_argument when it is missing or too small.
void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, void* workspace, size_t workspace_bytes,
               cudaStream_t stream);

// Implementations of the tensor-core kernel, selectable so that one benchmark run can time them
// all (strand-bench-attention prints one line per shape and variant). They compute the same
// function; results differ only by fp32 summation order. "RxW": R query rows a CTA split over W
// warps (so R / W rows a warp); "nK": keys per shared-memory tile.
enum class AttentionVariant : int {
  automatic = 0,        // default_attention_variant() for the shape
  baseline_n32 = 1,     // 128x4, n32: the original kernel (K and V in one cp.async group)
  baseline_n64 = 2,     // 128x4, n64: the same, 64-key tiles (spills a little at head dim 128)
  tuned_128x4_n32 = 3,  // tuned kernel (K/V in separate groups, lazy rescale, FFMA exponent)
  tuned_128x4_n64 = 4,
  tuned_128x8_n64 = 5,  // 16 rows a warp: half the accumulators, so 64-key tiles fit
  tuned_128x8_n32 = 6,
  tuned_64x4_n64 = 7,  // 64-row CTAs: twice the CTAs, for short key sequences / few rows
  tuned_64x4_n32 = 8,
  // Hopper only (sm_90a, attention_sm90.cu): two warpgroups of 64 rows, 128-key tiles in a 3-stage
  // ring, wgmma for Q K^T and P V. Head dim 128 with scale > 0; for other shapes, GPUs or builds
  // (attention_wgmma_available() false) it runs tuned_128x4_n32 / the head-dim-64 default.
  wgmma_128x2_n128 = 9,
  // The same with Q K^T of each key tile issued together with P V of the previous one, so that the
  // softmax overlaps a tensor-core product (FlashAttention-3's intra-warpgroup pipelining).
  wgmma_pipe_128x2_n128 = 10,
};
constexpr int kAttentionVariantCount = 11;  // automatic + 10 implementations

// True when the wgmma_* variants run their own kernels on the current device (an sm_90 GPU and a build
// with sm_90a code). The first call per device runs a probe kernel, so make it outside stream
// capture (the CUDA backend calls it when it is created).
bool attention_wgmma_available();

// A short name for logs ("baseline_n32", ...); "unknown" outside the enum.
const char* attention_variant_name(AttentionVariant variant);

// The implementation attention() and attention_bf16(automatic) use for a shape (never automatic).
AttentionVariant default_attention_variant(int tq, int tk, int heads, int head_dim);

// The tensor-core kernel alone, on inputs already in bf16 (same layout and stride rules, strides in
// elements). head_dim must be 64 or 128; q, k, v must be 16-byte aligned and their strides
// multiples of 8 (each row segment is copied in 16-byte pieces). out stays fp32. variant: which
// implementation (for benchmarks and tests); automatic picks default_attention_variant().
// Throws invalid_argument for a variant outside the enum.
void attention_bf16(const __nv_bfloat16* q, int q_stride, const __nv_bfloat16* k, int k_stride,
                    const __nv_bfloat16* v, int v_stride, float* out, int out_stride, int tq,
                    int tk, int heads, int head_dim, float scale, cudaStream_t stream,
                    AttentionVariant variant = AttentionVariant::automatic);

// Rounds rows of an fp32 [rows, width] matrix (row stride src_stride) to a packed bf16 [rows,
// width] matrix (row stride width): the conversion pass attention() runs before attention_bf16().
void convert_rows_to_bf16(const float* src, int src_stride, __nv_bfloat16* dst, int rows, int width,
                          cudaStream_t stream);

}  // namespace strand::cuda
