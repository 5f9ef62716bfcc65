// GEMM microbenchmark at the 1.3B reference shape (docs/model.md: 4680-token blocks, width 1536,
// FFN 8960): the bf16 path before cuBLASLt (convert x, seed y with the bias, cublasGemmEx with
// beta = 1, fp32 y) against cuBLASLt with the bias in the epilogue, and the feed-forward unfused
// (GEMM, GELU kernel, conversion, GEMM) against fused (GEMM + bias + GELU epilogue writing bf16,
// then GEMM + bias). One line per variant: "gemm <name> <ms> ms <TFLOP/s> TFLOP/s".
// Usage: strand-bench-gemm [repeats]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/gemm.h"
#include "tools/gpu/bench_timing.h"

namespace {

using strand::bench::time_ms;
namespace cuda = strand::cuda;

void report(const std::string& name, double ms, double flops) {
  std::printf("gemm %-34s %8.4f ms %7.1f TFLOP/s\n", name.c_str(), ms, flops / (ms * 1e9));
}

template <typename T>
T* device_array(size_t n, float fill) {
  std::vector<T> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<T>(fill * static_cast<float>((i * 7919) % 97) / 97.0f);
  T* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 20;
  const int rows = 4680, width = 1536, fused_qkv = 6192, ffn = 8960;
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
  cublasSetStream(blas, stream);
  cuda::LtGemm lt;
  void* workspace = nullptr;
  CHECK_CUDA(cudaMalloc(&workspace, cuda::kLtWorkspaceBytes));

  float* x = device_array<float>(static_cast<size_t>(rows) * ffn, 1.0f);
  __nv_bfloat16* xb = nullptr;
  CHECK_CUDA(cudaMalloc(&xb, sizeof(__nv_bfloat16) * rows * static_cast<size_t>(ffn)));
  __nv_bfloat16* wb = nullptr;
  CHECK_CUDA(cudaMalloc(&wb, sizeof(__nv_bfloat16) * static_cast<size_t>(ffn) * fused_qkv));
  cuda::to_bf16(x, wb, static_cast<size_t>(rows) * ffn, stream);  // weights: any finite values
  float* bias = device_array<float>(static_cast<size_t>(ffn), 0.1f);
  float* y = nullptr;
  CHECK_CUDA(cudaMalloc(&y, sizeof(float) * rows * static_cast<size_t>(ffn)));
  float* hidden = nullptr;
  CHECK_CUDA(cudaMalloc(&hidden, sizeof(float) * rows * static_cast<size_t>(ffn)));
  __nv_bfloat16* hidden_b = nullptr;
  CHECK_CUDA(cudaMalloc(&hidden_b, sizeof(__nv_bfloat16) * rows * static_cast<size_t>(ffn)));

  auto unfused_linear = [&](const float* in, int k, int n, float* out) {
    cuda::to_bf16(in, xb, static_cast<size_t>(rows) * k, stream);
    if (cuda::linear(blas, cuda::GemmInput::bf16, xb, wb, bias, out, rows, k, n, stream) !=
        CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "cuBLAS failed\n");
      std::exit(1);
    }
  };
  // As the backend does: an fp32 bias first, a bf16 copy of it when cuBLASLt offers no algorithm
  // for an fp32 bias with this output type (bf16 outputs).
  __nv_bfloat16* bias16 = nullptr;
  CHECK_CUDA(cudaMalloc(&bias16, sizeof(__nv_bfloat16) * ffn));
  cuda::to_bf16(bias, bias16, static_cast<size_t>(ffn), stream);
  auto lt_linear = [&](const __nv_bfloat16* in, int k, int n, void* out, cuda::LtType type,
                       cuda::LtEpilogue epilogue) {
    cublasStatus_t st = lt.linear(in, wb, bias, cuda::LtType::fp32, out, type, rows, k, n, epilogue,
                                  workspace, cuda::kLtWorkspaceBytes, stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
      st = lt.linear(in, wb, bias16, cuda::LtType::bf16, out, type, rows, k, n, epilogue, workspace,
                     cuda::kLtWorkspaceBytes, stream);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "cuBLASLt has no algorithm for %d x %d -> %d\n", rows, k, n);
      std::exit(1);
    }
  };

  for (const int out : {width, fused_qkv}) {
    const double flops = 2.0 * rows * width * out;
    const std::string shape = "[4680x1536]->" + std::to_string(out);
    report(shape + " seed+GemmEx", time_ms(stream, repeats, [&] { unfused_linear(x, width, out, y); }),
           flops);
    report(shape + " Lt bias", time_ms(stream, repeats, [&] {
             cuda::to_bf16(x, xb, static_cast<size_t>(rows) * width, stream);
             lt_linear(xb, width, out, y, cuda::LtType::fp32, cuda::LtEpilogue::bias);
           }),
           flops);
  }
  const double ffn_flops = 4.0 * rows * width * static_cast<double>(ffn);
  report("ffn 1536->8960->1536 unfused", time_ms(stream, repeats, [&] {
           unfused_linear(x, width, ffn, hidden);
           cuda::gelu_tanh(hidden, static_cast<size_t>(rows) * ffn, stream);
           unfused_linear(hidden, ffn, width, y);
         }),
         ffn_flops);
  report("ffn 1536->8960->1536 fused", time_ms(stream, repeats, [&] {
           cuda::to_bf16(x, xb, static_cast<size_t>(rows) * width, stream);
           lt_linear(xb, width, ffn, hidden_b, cuda::LtType::bf16, cuda::LtEpilogue::gelu_bias);
           lt_linear(hidden_b, ffn, width, y, cuda::LtType::fp32, cuda::LtEpilogue::bias);
         }),
         ffn_flops);
  report("ffn GEMMs alone (Lt, no epilogue)", time_ms(stream, repeats, [&] {
           lt.linear(xb, wb, nullptr, cuda::LtType::fp32, hidden_b, cuda::LtType::bf16, rows, width,
                     ffn, cuda::LtEpilogue::none, workspace, cuda::kLtWorkspaceBytes, stream);
           lt.linear(hidden_b, wb, nullptr, cuda::LtType::fp32, y, cuda::LtType::fp32, rows, ffn,
                     width, cuda::LtEpilogue::none, workspace, cuda::kLtWorkspaceBytes, stream);
         }),
         ffn_flops);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  return 0;
}
