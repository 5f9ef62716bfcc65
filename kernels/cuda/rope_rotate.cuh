// The rotary rotation of one pair, shared by rope.cu and qk_norm_rope.cu so that the fused op
// rotates exactly as rope_3d_apply does (device code only; not a public header).
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda::detail {

// Separate products then a sum, as on the CPU (no fused multiply-add).
__device__ __forceinline__ float rotated_first(float x0, float x1, float c, float s) {
  return __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
}
__device__ __forceinline__ float rotated_second(float x0, float x1, float c, float s) {
  return __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}
// Pairs (v.x, v.y) and (v.z, v.w) by their table entry cs = (c0, s0, c1, s1).
__device__ __forceinline__ float4 rotated_quad(float4 v, float4 cs) {
  return make_float4(rotated_first(v.x, v.y, cs.x, cs.y), rotated_second(v.x, v.y, cs.x, cs.y),
                     rotated_first(v.z, v.w, cs.z, cs.w), rotated_second(v.z, v.w, cs.z, cs.w));
}

}  // namespace strand::cuda::detail
