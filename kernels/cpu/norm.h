// Normalisations. Rows are contiguous vectors of length dim; x and y may alias.
#pragma once

namespace strand::cpu {

// y = (x - mean) / sqrt(var + eps) * weight + bias; weight/bias may be null (no affine).
void layer_norm(const float* x, float* y, int rows, int dim, const float* weight, const float* bias,
                float eps);

// adaLN: y = LayerNorm_noaffine(x) * (1 + scale[g]) + shift[g], where g = row / rows_per_group and
// shift[g] = shift + g * group_stride (same for scale). Used per frame: rows_per_group = T_f.
void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                         const float* scale, int rows_per_group, int group_stride, float eps);

// y = x / sqrt(mean(x^2) + eps) * weight (weight may be null).
void rms_norm(const float* x, float* y, int rows, int dim, const float* weight, float eps);

// Per head: x[r, h*head_dim : (h+1)*head_dim] /= sqrt(sum^2 + eps); rows have width heads*head_dim.
void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps);

}  // namespace strand::cpu
