// Elementwise activations, in place, vectorised and multithreaded for large n.
#pragma once
#include <cstddef>

namespace strand::cpu {

void gelu_tanh(float* x, size_t n);  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_erf(float* x, size_t n);   // 0.5 x (1 + erf(x / sqrt(2)))
void silu(float* x, size_t n);       // x * sigmoid(x)

// x[r, :] += gate[g, :] * y[r, :] with g = r / rows_per_group, gate row stride group_stride
// (gate may be null: plain residual add).
void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                    int rows_per_group, int group_stride);

// Per-head gate: x[r, h*head_dim + j] += gate[r*heads + h] * y[r, h*head_dim + j], rows of x and
// y row_stride floats apart. Used for o = o_softmax + gamma * o_memory in hybrid attention.
void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                          int head_dim, int row_stride);

}  // namespace strand::cpu
