// GEMMs on the GPU through cuBLAS, row-major like kernels/cpu/gemm.h, plus the conversions the
// bf16 path needs. cuBLAS statuses are returned for the caller to turn into errors; kernel launch
// errors are left for cudaGetLastError().
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace strand::cuda {

// Element type of the a and b operands: fp32 (SGEMM, plain fp32 math: no TF32, so results match
// the CPU to float rounding) or bf16 (tensor cores, fp32 accumulation). c is always fp32.
enum class GemmInput { fp32, bf16 };

// c[m, n] (row stride ldc) = a[m, k] (stride lda) * op(b) + beta * c, where op(b) = b^T with b
// stored [n, k] when trans_b, else b stored [k, n] (stride ldb). a and b hold floats or
// __nv_bfloat16 according to `input`. Runs on the handle's stream.
cublasStatus_t gemm(cublasHandle_t handle, GemmInput input, const void* a, int lda, const void* b,
                    int ldb, bool trans_b, float* c, int ldc, int m, int n, int k, float beta);

// y[rows, out] = x[rows, in] w[out, in]^T + bias[out] (bias may be null); x and w as `input`.
cublasStatus_t linear(cublasHandle_t handle, GemmInput input, const void* x, const void* w,
                      const float* bias, float* y, int rows, int in, int out, cudaStream_t stream);

// y[r, :] = row[:] for r < rows (row stride ldy): seeds a GEMM output with a bias.
void broadcast_row(const float* row, float* y, int rows, int cols, int ldy, cudaStream_t stream);

// out[i] = bf16(in[i]), round to nearest even.
void to_bf16(const float* in, __nv_bfloat16* out, size_t n, cudaStream_t stream);

}  // namespace strand::cuda
