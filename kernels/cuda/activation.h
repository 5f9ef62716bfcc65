// Elementwise activations on the GPU, in place; semantics of kernels/cpu/activation.h.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace strand::cuda {

void gelu_tanh(float* x, size_t n,
               cudaStream_t stream);  // 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
void gelu_erf(float* x, size_t n, cudaStream_t stream);  // 0.5 x (1 + erf(x / sqrt(2)))
void silu(float* x, size_t n, cudaStream_t stream);      // x sigmoid(x)

}  // namespace strand::cuda
