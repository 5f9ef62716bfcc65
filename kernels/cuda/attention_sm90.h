// Intra-block softmax attention on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a):
// the AttentionVariant::wgmma_128x2_n128 implementation behind attention_bf16() (attention.h).
// Internal to kernels/cuda: attention.cu validates arguments and dispatches here.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace strand::cuda::sm90 {

struct WgmmaAttentionParams {
  const __nv_bfloat16* q;  // [tq, heads, 128], row stride q_stride elements (multiple of 8)
  const __nv_bfloat16* k;  // [tk, heads, 128]
  const __nv_bfloat16* v;  // [tk, heads, 128]
  float* out;              // [tq, heads, 128] fp32, row stride out_stride
  int64_t q_stride, k_stride, v_stride, out_stride;
  int tq, tk;        // tk >= 1
  float scale_log2;  // scale * log2(e), > 0
  bool out_pairs;    // out and out_stride allow 8-byte float2 stores
};

// True when the current device can run the kernel: compute capability 9.0 and this build holds
// sm_90a machine code for it (checked once per device by running a probe kernel). False without
// a device, on other GPUs, and in builds without the sm_90a target.
bool wgmma_attention_available();

// out = softmax(scale q k^T) v per head, head dim 128, for heads x ceil(tq / 128) CTAs of two
// warpgroups. pipelined: each warpgroup issues Q K^T of a key tile together with P V of the one
// before, so its softmax overlaps that product (the same arithmetic in the same order). Requires wgmma_attention_available(), 16-byte aligned q/k/v and scale > 0 (the
// caller checks). Asynchronous on `stream`; throws strand::Error(device) for a failed launch.
void launch_wgmma_attention(const WgmmaAttentionParams& params, int heads, bool pipelined,
                            cudaStream_t stream);

}  // namespace strand::cuda::sm90
