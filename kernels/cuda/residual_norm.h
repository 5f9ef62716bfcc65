// A residual add and the layer norm that follows it in one pass (semantics of
// Backend::residual_norm): per row, x += gate[g] * y (or x += y), the new x written back, and
// out = layer_norm(x) with weight and bias, or layer_norm_modulate(x) with shift and scale rows of
// group g = row / rows_per_group (group_stride floats apart, the gate's too). The row stays in
// registers between the add and the norm, so x and y are read once and x and out written once.
// The arithmetic is gated_residual's vector kernel (one fma per element) followed by the
// layer_norm register kernel's (same block shape, so the same reduction order): the outputs equal
// the separate ops' bit for bit. Launch errors: cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace strand::cuda {

// Whether the fused kernel takes this shape: dim % 4 == 0, dim <= 8192, rows_per_group > 0,
// group_stride % 4 == 0, and every pointer given (x, y, gate, out, norm_a, norm_b; null ones
// count as aligned) 16-byte aligned. Otherwise the caller runs the separate ops.
bool residual_norm_fits(const float* x, const float* y, const float* gate, const float* out,
                        int dim, int rows_per_group, int group_stride, const float* norm_a,
                        const float* norm_b);

// x, y, out: [rows, dim] contiguous; out overlaps neither x nor y. gate: null (x += y) or rows
// of dim floats, group_stride apart. modulate == false: out = layer_norm(x, weight = norm_a,
// bias = norm_b), either may be null; modulate == true: out = layer_norm_modulate(x, shift =
// norm_a, scale = norm_b), both given. Requires residual_norm_fits; rows <= 0 launches nothing.
void residual_norm(float* x, const float* y, const float* gate, float* out, int rows, int dim,
                   int rows_per_group, int group_stride, bool modulate, const float* norm_a,
                   const float* norm_b, float eps, cudaStream_t stream);

}  // namespace strand::cuda
