// 3D rotary position embedding (docs/model-spec.md, "RMSNorm and RoPE").
#pragma once

namespace strand::cpu {

// x: [tokens, heads, head_dim] with a row stride of row_stride floats per token (>= heads *
// head_dim). Pairs (2j, 2j+1) of each head vector are rotated; the c = head_dim/2 pairs split into
// temporal (c - 2*(c/3)), row (c/3) and column (c/3) parts, pair j of a part with n pairs having
// frequency theta^(-j/n). pos_t/pos_r/pos_c give each token's positions (pos_t may be negative).
void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
             const int* pos_r, const int* pos_c, float theta);

}  // namespace strand::cpu
