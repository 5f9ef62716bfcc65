#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"

#include <algorithm>

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

// ---------------------------------------------------------------------------------- cuBLASLt

struct LtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;  // bytes the algorithm needs
  bool supported = false;
  ~Plan() {
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    if (w != nullptr) cublasLtMatrixLayoutDestroy(w);
    if (x != nullptr) cublasLtMatrixLayoutDestroy(x);
    if (y != nullptr) cublasLtMatrixLayoutDestroy(y);
  }
};

namespace {

// Largest power of two (at most 256) dividing the address: plans differ by operand alignment.
int alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && address % static_cast<uintptr_t>(a) != 0) a /= 2;
  return a;
}

cudaDataType_t data_type(LtType t) { return t == LtType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

enum KeyField { kRows, kIn, kOut, kEpilogue, kBiasType, kYType, kAlignX, kAlignW, kAlignY, kWorkspace };

}  // namespace

LtGemm::LtGemm() {
  if (cublasLtCreate(&handle_) != CUBLAS_STATUS_SUCCESS) handle_ = nullptr;
}

LtGemm::~LtGemm() {
  for (auto& [key, plan] : plans_) delete plan;
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

cublasStatus_t LtGemm::plan_for(const Key& key, Plan** out_plan) {
  auto found = plans_.find(key);
  if (found != plans_.end()) {
    *out_plan = found->second;
    return found->second->supported ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
  }
  auto* plan = new Plan;
  plans_[key] = plan;  // a failed plan is remembered too: the fallback is chosen once per shape
  *out_plan = plan;
  const int rows = std::get<kRows>(key), in = std::get<kIn>(key), out = std::get<kOut>(key);
  const auto epilogue = static_cast<LtEpilogue>(std::get<kEpilogue>(key));
  const auto y_type = static_cast<LtType>(std::get<kYType>(key));
  cublasStatus_t st = cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  // Row-major y = x w^T is column-major y^T [out x rows] = op(A) B with A = w read as [in x out]
  // column-major and transposed, B = x read as [in x rows] column-major.
  const cublasOperation_t trans_w = CUBLAS_OP_T, trans_x = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_w, sizeof(trans_w));
  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_x, sizeof(trans_x));
  cublasLtEpilogue_t lt_epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  if (epilogue == LtEpilogue::bias) lt_epilogue = CUBLASLT_EPILOGUE_BIAS;
  if (epilogue == LtEpilogue::gelu_bias) lt_epilogue = CUBLASLT_EPILOGUE_GELU_BIAS;
  st = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &lt_epilogue,
                                      sizeof(lt_epilogue));
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (epilogue != LtEpilogue::none) {
    const cudaDataType_t bias_type = data_type(static_cast<LtType>(std::get<kBiasType>(key)));
    st = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                        &bias_type, sizeof(bias_type));
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  st = cublasLtMatrixLayoutCreate(&plan->w, CUDA_R_16BF, in, out, in);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&plan->x, CUDA_R_16BF, in, rows, in);
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatrixLayoutCreate(&plan->y, data_type(y_type), out, rows, out);
  }
  if (st != CUBLAS_STATUS_SUCCESS) return st;

  cublasLtMatmulPreference_t preference = nullptr;
  st = cublasLtMatmulPreferenceCreate(&preference);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  const size_t max_workspace = static_cast<size_t>(std::get<kWorkspace>(key));
  const uint32_t align_w = static_cast<uint32_t>(std::get<kAlignW>(key));
  const uint32_t align_x = static_cast<uint32_t>(std::get<kAlignX>(key));
  const uint32_t align_y = static_cast<uint32_t>(std::get<kAlignY>(key));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &max_workspace, sizeof(max_workspace));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                       &align_w, sizeof(align_w));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                       &align_x, sizeof(align_x));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                       &align_y, sizeof(align_y));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                       &align_y, sizeof(align_y));
  cublasLtMatmulHeuristicResult_t result{};
  int found_count = 0;
  st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->w, plan->x, plan->y, plan->y,
                                      preference, 1, &result, &found_count);
  cublasLtMatmulPreferenceDestroy(preference);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (found_count < 1 || result.state != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_NOT_SUPPORTED;
  plan->algo = result.algo;
  plan->workspace = result.workspaceSize;
  plan->supported = true;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t LtGemm::linear(const __nv_bfloat16* x, const __nv_bfloat16* w, const void* bias,
                              LtType bias_type, void* y, LtType y_type, int rows, int in, int out,
                              LtEpilogue epilogue, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  if (rows <= 0 || out <= 0) return CUBLAS_STATUS_SUCCESS;
  if (handle_ == nullptr || in <= 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  if ((epilogue != LtEpilogue::none) != (bias != nullptr)) return CUBLAS_STATUS_INVALID_VALUE;
  const Key key{rows,
                in,
                out,
                static_cast<int>(epilogue),
                static_cast<int>(bias_type),
                static_cast<int>(y_type),
                alignment_of(x),
                alignment_of(w),
                alignment_of(y),
                static_cast<int>(std::min<size_t>(workspace_bytes, size_t{1} << 30))};
  Plan* plan = nullptr;
  const cublasStatus_t planned = plan_for(key, &plan);
  if (planned != CUBLAS_STATUS_SUCCESS) {
    // Unsupported combinations (and plan errors) fall back to separate ops in the caller.
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (bias != nullptr) {
    const cublasStatus_t st = cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  const float alpha = 1.0f, beta = 0.0f;
  return cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->w, x, plan->x, &beta, y, plan->y, y,
                        plan->y, &plan->algo, workspace, workspace_bytes, stream);
}

}  // namespace strand::cuda
