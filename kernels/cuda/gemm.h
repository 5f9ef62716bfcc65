// GEMMs on the GPU through cuBLAS, row-major like kernels/cpu/gemm.h, plus the conversions the
// bf16 path needs. cuBLAS statuses are returned for the caller to turn into errors; kernel launch
// errors are left for cudaGetLastError().
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

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

// ---- cuBLASLt: bf16 GEMMs with the bias (and GELU) fused into the epilogue

// Element types of a cuBLASLt output or bias.
enum class LtType { fp32, bf16 };
// What the epilogue applies to the fp32 accumulator before the single store: nothing, + bias,
// or gelu_tanh(. + bias) (cuBLASLt's GELU is the tanh approximation; tests/cuda checks it against
// kernels/cpu's gelu_tanh).
enum class LtEpilogue { none, bias, gelu_bias };

// Workspace cuBLASLt may use per call (device memory the caller owns, in stream order).
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

// One cuBLASLt handle and the plans (descriptors + the heuristic's first algorithm) of the shapes
// seen so far. Host-side only: calls run on the stream given; not thread-safe (one per stream
// owner, like the backend that holds it). A plan depends on shape, types, epilogue and the
// operands' address alignment, all part of its key.
class LtGemm {
 public:
  LtGemm();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // y[rows, out] (row stride out, type y_type) = epilogue(x[rows, in] w[out, in]^T + bias[out]),
  // x and w bf16, fp32 accumulation; bias (null unless the epilogue takes one) of bias_type.
  // Returns CUBLAS_STATUS_NOT_SUPPORTED, having queued nothing, when cuBLASLt offers no algorithm
  // for the combination, so that the caller can fall back to separate ops.
  cublasStatus_t linear(const __nv_bfloat16* x, const __nv_bfloat16* w, const void* bias,
                        LtType bias_type, void* y, LtType y_type, int rows, int in, int out,
                        LtEpilogue epilogue, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream);

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int, int, int, int, int, int, int>;
  cublasStatus_t plan_for(const Key& key, Plan** plan);
  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, Plan*> plans_;
};

}  // namespace strand::cuda
