// cuBLASLt GEMMs with fused epilogues (kernels/cuda/gemm.h) against kernels/cpu: the GELU epilogue
// must be the tanh approximation the engine's gelu_tanh computes (checked tightly enough to tell
// it from the erf GELU), the bias epilogue must add the bias once, and a bf16 output must be the
// fp32 result rounded. Skips without a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm.h"

namespace strand::cuda {
namespace {

bool have_gpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

// A device array of T freed at scope exit.
template <typename T>
class Device {
 public:
  explicit Device(size_t n) : n_(n) { EXPECT_EQ(cudaMalloc(&p_, n * sizeof(T)), cudaSuccess); }
  Device(const std::vector<T>& host) : Device(host.size()) {
    EXPECT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Device() { cudaFree(p_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() { return p_; }
  std::vector<T> fetch() {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  size_t n_;
  T* p_ = nullptr;
};

std::vector<__nv_bfloat16> to_bf16_host(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}
std::vector<float> rounded_to_bf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(__float2bfloat16_rn(v[i]));
  return out;
}

class LtGemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&workspace_, kLtWorkspaceBytes), cudaSuccess);
  }
  void TearDown() override {
    if (workspace_ != nullptr) cudaFree(workspace_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  LtGemm lt_;
};

// x times the identity, plus a zero bias, through the GELU epilogue: the output is GELU of
// bf16-exact inputs, computed in fp32, so it can be compared to the CPU's gelu_tanh at 1e-5 -
// far below the tanh-vs-erf gap (up to ~5e-4 in this range).
TEST_F(LtGemmTest, GeluEpilogueIsTheTanhApproximation) {
  const int n = 64, rows = 32;
  std::vector<float> x(static_cast<size_t>(rows) * n), identity(static_cast<size_t>(n) * n, 0.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -4.0f + 8.0f * static_cast<float>(i % 257) / 256.0f;
  for (int i = 0; i < n; ++i) identity[static_cast<size_t>(i) * n + i] = 1.0f;
  x = rounded_to_bf16(x);
  Device<__nv_bfloat16> dx(to_bf16_host(x)), dw(to_bf16_host(identity));
  Device<float> dbias(std::vector<float>(n, 0.0f)), dy(x.size());
  ASSERT_EQ(lt_.linear(dx.get(), dw.get(), dbias.get(), LtType::fp32, dy.get(), LtType::fp32, rows,
                       n, n, LtEpilogue::gelu_bias, workspace_, kLtWorkspaceBytes, stream_),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  const std::vector<float> got = dy.fetch();
  std::vector<float> tanh_gelu = x, erf_gelu = x;
  cpu::gelu_tanh(tanh_gelu.data(), tanh_gelu.size());
  cpu::gelu_erf(erf_gelu.data(), erf_gelu.size());
  double worst_tanh = 0, worst_erf = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst_tanh = std::max(worst_tanh, static_cast<double>(std::fabs(got[i] - tanh_gelu[i])));
    worst_erf = std::max(worst_erf, static_cast<double>(std::fabs(got[i] - erf_gelu[i])));
  }
  std::printf("GELU epilogue: max |diff| vs gelu_tanh %.3g, vs gelu_erf %.3g\n", worst_tanh,
              worst_erf);
  EXPECT_LE(worst_tanh, 1e-5);
  EXPECT_GT(worst_erf, 1e-4);  // the check above can tell the two apart
}

// Bias epilogue with fp32 and bf16 outputs against the CPU GEMM on the same bf16 operands.
TEST_F(LtGemmTest, BiasEpilogueMatchesTheCpu) {
  struct Shape {
    int rows, in, out;
  };
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape s : {Shape{1, 64, 384}, Shape{37, 48, 24}, Shape{432, 128, 512},
                        Shape{300, 96, 200}}) {
    std::vector<float> x(static_cast<size_t>(s.rows) * s.in), w(static_cast<size_t>(s.out) * s.in),
        bias(static_cast<size_t>(s.out));
    for (auto& v : x) v = dist(rng);
    for (auto& v : w) v = dist(rng);
    for (auto& v : bias) v = dist(rng);
    x = rounded_to_bf16(x);
    w = rounded_to_bf16(w);
    std::vector<float> want(static_cast<size_t>(s.rows) * s.out);
    cpu::linear(x.data(), w.data(), bias.data(), want.data(), s.rows, s.in, s.out);
    Device<__nv_bfloat16> dx(to_bf16_host(x)), dw(to_bf16_host(w));
    Device<float> dbias(bias), dy(want.size());
    Device<__nv_bfloat16> dy16(want.size());
    ASSERT_EQ(lt_.linear(dx.get(), dw.get(), dbias.get(), LtType::fp32, dy.get(), LtType::fp32,
                         s.rows, s.in, s.out, LtEpilogue::bias, workspace_, kLtWorkspaceBytes,
                         stream_),
              CUBLAS_STATUS_SUCCESS);
    const cublasStatus_t bf16_out =
        lt_.linear(dx.get(), dw.get(), dbias.get(), LtType::fp32, dy16.get(), LtType::bf16, s.rows,
                   s.in, s.out, LtEpilogue::bias, workspace_, kLtWorkspaceBytes, stream_);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const std::vector<float> got = dy.fetch();
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) /
                                  (1.0 + std::fabs(static_cast<double>(want[i]))));
    }
    EXPECT_LE(worst, 1e-5) << s.rows << "x" << s.in << "->" << s.out;
    if (bf16_out == CUBLAS_STATUS_SUCCESS) {  // an fp32 bias with a bf16 output may be unsupported
      const std::vector<__nv_bfloat16> got16 = dy16.fetch();
      double worst16 = 0;
      for (size_t i = 0; i < got16.size(); ++i) {
        worst16 = std::max(worst16, std::fabs(static_cast<double>(__bfloat162float(got16[i])) -
                                              want[i]) /
                                        (1.0 + std::fabs(static_cast<double>(want[i]))));
      }
      EXPECT_LE(worst16, 8e-3) << "bf16 output " << s.rows << "x" << s.in << "->" << s.out;
    } else {
      EXPECT_EQ(bf16_out, CUBLAS_STATUS_NOT_SUPPORTED);
    }
    std::printf("bias epilogue %dx%d->%d: max rel error %.3g (bf16 output: %s)\n", s.rows, s.in,
                s.out, worst, bf16_out == CUBLAS_STATUS_SUCCESS ? "yes" : "not supported");
  }
}

// A bias without an epilogue that takes one (or the reverse) is a caller error, not a silent drop.
TEST_F(LtGemmTest, BiasAndEpilogueMustAgree) {
  Device<__nv_bfloat16> dx(64), dw(64);
  Device<float> dy(64), dbias(8);
  EXPECT_EQ(lt_.linear(dx.get(), dw.get(), nullptr, LtType::fp32, dy.get(), LtType::fp32, 8, 8, 8,
                       LtEpilogue::bias, workspace_, kLtWorkspaceBytes, stream_),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(lt_.linear(dx.get(), dw.get(), dbias.get(), LtType::fp32, dy.get(), LtType::fp32, 8, 8,
                       8, LtEpilogue::none, workspace_, kLtWorkspaceBytes, stream_),
            CUBLAS_STATUS_INVALID_VALUE);
}

}  // namespace
}  // namespace strand::cuda
