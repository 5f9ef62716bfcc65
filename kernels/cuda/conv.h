// The autoencoder's convolutions on the GPU; semantics of kernels/cpu/conv.h. conv2d_3x3 is an
// im2col per band of output rows into a caller-owned workspace, then one cuBLAS GEMM per band.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/gemm.h"

namespace strand::cuda {

// Workspace elements (of the GEMM input type) a conv2d_3x3 of this shape uses when allowed at most
// `max_elements` (at least one output row's columns are always needed).
size_t conv2d_3x3_workspace(int c_in, int h, int w, int stride, size_t max_elements);

// out[c_out, h_out, w_out] = conv(in[c_in, h, w], weight[c_out, c_in, 3, 3]) + bias (may be null),
// zero padding 1, stride 1 or 2. With GemmInput::bf16 `weight` points to bf16 weights (in stays
// fp32: it is converted while gathering the columns). `workspace` holds `workspace_elements`
// values of the input type, at least conv2d_3x3_workspace(c_in, h, w, stride, 1).
cublasStatus_t conv2d_3x3(cublasHandle_t handle, GemmInput input, const float* in, int c_in, int h,
                          int w, const void* weight, const float* bias, int c_out, int stride,
                          float* out, void* workspace, size_t workspace_elements,
                          cudaStream_t stream);

// out[c, 2h, 2w], nearest neighbour.
void upsample_nearest_2x(const float* in, int c, int h, int w, float* out, cudaStream_t stream);

}  // namespace strand::cuda
