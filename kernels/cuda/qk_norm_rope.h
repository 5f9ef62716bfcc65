// q and k of a softmax layer from a fused projection's rows in one pass (semantics of
// Backend::qk_norm_rope): each row's q and k columns are read once, RMS-normalised over the whole
// row (weights optional) and rotated by a RoPE angle table (rope_3d_table of the same tokens and
// head_dim), then written once. The arithmetic is that of rms_norm's register kernel (same block
// shape, so the same reduction order) followed by rope_3d_apply's vector path: the outputs equal
// the separate ops' bit for bit. Launch errors: cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

// Whether the fused kernel takes this shape: head_dim % 4 == 0, x_stride % 4 == 0, heads *
// head_dim <= 8192, and x, q, k and the weights (when given) 16-byte aligned (the row is held in
// registers as float4). Otherwise the caller runs the separate ops.
bool qk_norm_rope_fits(const float* x, int x_stride, const float* q, const float* k, int heads,
                       int head_dim, const float* q_weight, const float* k_weight);

// x: rows of x_stride floats, q's heads * head_dim columns then k's; q, k: [rows, heads *
// head_dim] contiguous, not overlapping x or each other. k is rotated only when rope_k. cos_sin:
// rope_3d_table(rows, head_dim) (16-byte aligned). Requires qk_norm_rope_fits; rows <= 0 launches
// nothing.
void qk_norm_rope(const float* x, int x_stride, float* q, float* k, int rows, int heads,
                  int head_dim, const float* q_weight, const float* k_weight, float eps,
                  const float2* cos_sin, bool rope_k, cudaStream_t stream);

}  // namespace strand::cuda
