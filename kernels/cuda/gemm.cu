#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"

namespace strand::cuda {
namespace {

__global__ void broadcast_row_kernel(const float* __restrict__ row, float* __restrict__ y, int rows,
                                     int cols, int ldy) {
  const size_t total = static_cast<size_t>(rows) * cols;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    y[r * ldy + c] = row[c];
  }
}

__global__ void to_bf16_kernel(const float* __restrict__ in, __nv_bfloat16* __restrict__ out,
                               size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

}  // namespace

cublasStatus_t gemm(cublasHandle_t handle, GemmInput input, const void* a, int lda, const void* b,
                    int ldb, bool trans_b, float* c, int ldc, int m, int n, int k, float beta) {
  if (m <= 0 || n <= 0) return CUBLAS_STATUS_SUCCESS;
  const float alpha = 1.0f;
  if (k <= 0) {
    // c = beta c (an empty sum); cuBLAS wants k >= 1.
    if (beta == 1.0f) return CUBLAS_STATUS_SUCCESS;
    if (beta == 0.0f) {
      cudaStream_t stream = nullptr;
      cublasGetStream(handle, &stream);
      cudaMemset2DAsync(c, sizeof(float) * static_cast<size_t>(ldc), 0, sizeof(float) * n, m,
                        stream);
      return CUBLAS_STATUS_SUCCESS;
    }
    const float zero = 0.0f;
    return cublasSgeam(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &beta, c, ldc, &zero, c, ldc, c,
                       ldc);
  }
  // Row-major C = A op(B) is column-major C^T = op(B)^T A^T: cuBLAS sees b first.
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (input == GemmInput::fp32) {
    return cublasSgemm(handle, op_b, CUBLAS_OP_N, n, m, k, &alpha, static_cast<const float*>(b),
                       ldb, static_cast<const float*>(a), lda, &beta, c, ldc);
  }
  return cublasGemmEx(handle, op_b, CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_16BF, ldb, a,
                      CUDA_R_16BF, lda, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t linear(cublasHandle_t handle, GemmInput input, const void* x, const void* w,
                      const float* bias, float* y, int rows, int in, int out, cudaStream_t stream) {
  if (rows <= 0 || out <= 0) return CUBLAS_STATUS_SUCCESS;
  float beta = 0.0f;
  if (bias != nullptr) {
    broadcast_row(bias, y, rows, out, out, stream);
    beta = 1.0f;
  }
  return gemm(handle, input, x, in, w, in, /*trans_b=*/true, y, out, rows, out, in, beta);
}

void broadcast_row(const float* row, float* y, int rows, int cols, int ldy, cudaStream_t stream) {
  const size_t total = static_cast<size_t>(rows) * cols;
  if (total == 0) return;
  broadcast_row_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(row, y, rows, cols,
                                                                                 ldy);
}

void to_bf16(const float* in, __nv_bfloat16* out, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_bf16_kernel<<<detail::grid_for(n), detail::kThreads, 0, stream>>>(in, out, n);
}

}  // namespace strand::cuda
