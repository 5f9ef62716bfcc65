// strand::cuda::attention against the CPU reference strand::cpu::attention on random inputs: the
// fp32 path to 5e-5 relative, the bf16 tensor-core path to within 2x the error that rounding the
// inputs to bf16 causes by itself (the FlashAttention test rule: at most ~2x the error of an exact
// computation at the same input precision). Shapes cover tq / tk that are not tile multiples,
// tk > tq (softmax_kv layers), tk < tq, head dims 64 / 128 and others (fp32 fallback), and row
// strides larger than heads * head_dim, odd ones included; padding entries of `out` must stay
// untouched. GPU tests skip without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "strand/error.h"
#include "tests/core/parity.h"

namespace {

#define SKIP_WITHOUT_GPU()                                                   \
  do {                                                                       \
    if (strand::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << cudaGetErrorString(cudaGetLastError())

constexpr float kSentinel = 777.0f;  // written into out's padding; must survive every call

using strand::test::rel_error;

// Round to nearest even bf16, kept in a float (inputs are finite).
float round_to_bf16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::bit_cast<float>(bits & 0xffff0000u);
}

uint16_t bf16_bits(float x) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(round_to_bf16(x)) >> 16);
}

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    if (cudaMalloc(&data_, std::max<size_t>(count, 1) * sizeof(T)) != cudaSuccess) data_ = nullptr;
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return data_; }
  bool upload(const std::vector<T>& host) {
    return host.size() == count_ && cudaMemcpy(data_, host.data(), count_ * sizeof(T),
                                               cudaMemcpyHostToDevice) == cudaSuccess;
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    if (cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      host.clear();
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t count_;
};

struct Case {
  int tq, tk, heads, head_dim;
  int q_pad, k_pad, v_pad, out_pad;  // row stride = heads * head_dim + pad
  float scale_factor = 1.0f;         // scale = scale_factor / sqrt(head_dim)
  float amplitude = 1.0f;            // inputs uniform in [-amplitude, amplitude]
};

std::string describe(const Case& c) {
  char text[200];
  std::snprintf(text, sizeof text, "tq=%d tk=%d heads=%d dh=%d pads=%d/%d/%d/%d scale*%g amp=%g",
                c.tq, c.tk, c.heads, c.head_dim, c.q_pad, c.k_pad, c.v_pad, c.out_pad,
                static_cast<double>(c.scale_factor), static_cast<double>(c.amplitude));
  return text;
}

struct Problem {
  Case c;
  int width, q_stride, k_stride, v_stride, out_stride;
  float scale;
  std::vector<float> q, k, v;

  explicit Problem(const Case& shape, uint32_t seed) : c(shape) {
    width = c.heads * c.head_dim;
    q_stride = width + c.q_pad;
    k_stride = width + c.k_pad;
    v_stride = width + c.v_pad;
    out_stride = width + c.out_pad;
    scale = c.scale_factor / std::sqrt(static_cast<float>(c.head_dim));
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(-c.amplitude, c.amplitude);
    auto fill = [&](std::vector<float>& x, int rows, int stride) {
      x.assign(static_cast<size_t>(rows) * stride, 0.0f);
      for (float& value : x) value = uniform(rng);  // padding random too: it must not be read
    };
    fill(q, c.tq, q_stride);
    fill(k, c.tk, k_stride);
    fill(v, c.tk, v_stride);
  }

  std::vector<float> cpu_reference(bool round_inputs) const {
    auto rounded = [&](const std::vector<float>& x) {
      std::vector<float> y(x);
      if (round_inputs) std::transform(y.begin(), y.end(), y.begin(), round_to_bf16);
      return y;
    };
    const std::vector<float> q_in = rounded(q), k_in = rounded(k), v_in = rounded(v);
    std::vector<float> out(static_cast<size_t>(c.tq) * out_stride, kSentinel);
    strand::cpu::attention(q_in.data(), q_stride, k_in.data(), k_stride, v_in.data(), v_stride,
                           out.data(), out_stride, c.tq, c.tk, c.heads, c.head_dim, scale);
    return out;
  }

  // The [tq, heads * head_dim] values without the padding columns.
  std::vector<float> values(const std::vector<float>& out) const {
    std::vector<float> packed;
    packed.reserve(static_cast<size_t>(c.tq) * width);
    for (int t = 0; t < c.tq; ++t) {
      const float* row = out.data() + static_cast<size_t>(t) * out_stride;
      packed.insert(packed.end(), row, row + width);
    }
    return packed;
  }

  int touched_padding(const std::vector<float>& out) const {
    int touched = 0;
    for (int t = 0; t < c.tq; ++t)
      for (int i = width; i < out_stride; ++i)
        touched += out[static_cast<size_t>(t) * out_stride + i] != kSentinel;
    return touched;
  }
};

// Runs strand::cuda::attention on its own stream; returns the whole strided output.
std::vector<float> run_gpu(const Problem& p, bool bf16) {
  DeviceArray<float> q(p.q.size()), k(p.k.size()), v(p.v.size());
  const std::vector<float> out_init(static_cast<size_t>(p.c.tq) * p.out_stride, kSentinel);
  DeviceArray<float> out(out_init.size());
  EXPECT_TRUE(q.get() && k.get() && v.get() && out.get());
  EXPECT_TRUE(q.upload(p.q) && k.upload(p.k) && v.upload(p.v) && out.upload(out_init));
  cudaStream_t stream = nullptr;
  EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  strand::cuda::attention(q.get(), p.q_stride, k.get(), p.k_stride, v.get(), p.v_stride, out.get(),
                          p.out_stride, p.c.tq, p.c.tk, p.c.heads, p.c.head_dim, p.scale, bf16,
                          stream);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaStreamDestroy(stream);
  return out.download();
}

bool all_finite(const std::vector<float>& x) {
  return std::all_of(x.begin(), x.end(), [](float value) { return std::isfinite(value); });
}

// Both attention kinds of the engine at small scale, plus tile-edge shapes. Tiles: the bf16
// kernel takes 128 queries x 64 (dh 64) or 32 (dh 128) keys, the fp32 kernel 32 x 32.
const std::vector<Case> kTensorCoreCases = {
    {100, 100, 3, 64, 8, 0, 16, 4},  // hybrid-like block, even out stride (float2 stores)
    {77, 300, 2, 128, 3, 5, 1, 7},   // tk > tq, odd strides everywhere
    {130, 65, 2, 128, 0, 0, 0, 0},   // tk < tq, one query row past a tile
    {1, 1, 1, 64, 0, 0, 0, 1},       // single query, single key
    {256, 256, 2, 128, 0, 0, 0, 0},  // exact tile multiples
    {129, 1000, 1, 64, 2, 2, 2, 2},  // many key tiles, partial last tile
    {200, 700, 2, 64, 0, 0, 0, 0, 4.0f, 3.0f},   // peaked softmax: rescaling across tiles
    {150, 450, 2, 128, 0, 0, 0, 0, 4.0f, 3.0f},  // the same at dh 128
    {468, 1404, 4, 128, 64, 64, 64, 64},         // softmax_kv-like: 3 blocks of keys
};

TEST(CudaAttention, Fp32MatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::vector<Case> cases = kTensorCoreCases;
  cases.push_back({45, 70, 3, 32, 1, 2, 3, 4});  // other head dims: fp32 only
  cases.push_back({33, 97, 2, 80, 0, 5, 0, 3});
  cases.push_back({64, 31, 1, 256, 0, 0, 0, 0});
  uint32_t seed = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    const Problem p(c, seed++);
    const std::vector<float> ref = p.cpu_reference(false);
    const std::vector<float> gpu = run_gpu(p, false);
    ASSERT_EQ(gpu.size(), ref.size());
    EXPECT_EQ(p.touched_padding(gpu), 0);
    const double err = rel_error(p.values(gpu), p.values(ref));
    // Two fp32 summation orders: ~1e-6 typically, up to ~1e-5 for the peaked cases (logits of
    // magnitude ~40 whose rounding moves exp directly); 1e-4 is the engine's parity bar.
    EXPECT_LT(err, 5e-5);
    std::printf("fp32  %-62s rel_err %.2e\n", describe(c).c_str(), err);
  }
}

TEST(CudaAttention, Bf16WithinTwiceTheInputRoundingError) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 100;
  for (const Case& c : kTensorCoreCases) {
    SCOPED_TRACE(describe(c));
    const Problem p(c, seed++);
    const std::vector<float> exact = p.values(p.cpu_reference(false));
    // What bf16 inputs cost with otherwise exact arithmetic: the yardstick.
    const double rounding_err = rel_error(p.values(p.cpu_reference(true)), exact);
    const std::vector<float> gpu = run_gpu(p, true);
    ASSERT_EQ(gpu.size(), static_cast<size_t>(c.tq) * p.out_stride);
    EXPECT_EQ(p.touched_padding(gpu), 0);
    const std::vector<float> values = p.values(gpu);
    ASSERT_TRUE(all_finite(values));
    const double err = rel_error(values, exact);
    // The kernel adds P's rounding to bf16 (comparable to V's) and fp32 reassociation; the 1e-3
    // floor covers cases where input rounding happens to be tiny. A wrong fragment, mask or
    // rescale gives errors of order 1.
    EXPECT_LT(err, 2.0 * rounding_err + 1e-3) << "input rounding alone: " << rounding_err;
    // Keeps the yardstick meaningful: ~1e-3 for unit inputs, a few 1e-2 for the peaked cases.
    EXPECT_LT(rounding_err, 0.1);
    std::printf("bf16  %-62s rel_err %.2e (bf16 inputs alone %.2e)\n", describe(c).c_str(), err,
                rounding_err);
  }
}

// The tensor-core kernel on bf16 inputs in a strided layout (stride = width + 8, the alignment it
// needs), with each implementation (AttentionVariant, automatic included), against the CPU on the
// same rounded values: only P's rounding and summation order differ. Shapes: tq not a multiple of
// 64 or 128 rows, tk not a multiple of the key tile, tk = 1, head dims 64 / 128, a peaked softmax
// whose row max grows over the key tiles (the tuned kernels' lazy rescaling), a negative scale.
class CudaAttentionVariant : public ::testing::TestWithParam<int> {};

TEST_P(CudaAttentionVariant, Bf16KernelOnBf16Inputs) {
  SKIP_WITHOUT_GPU();
  const auto variant = static_cast<strand::cuda::AttentionVariant>(GetParam());
  const std::vector<Case> cases = {
      {100, 100, 3, 64, 8, 8, 8, 0},           {77, 300, 2, 128, 8, 16, 8, 5},
      {300, 129, 2, 128, 8, 8, 8, 2},          {70, 1, 1, 128, 8, 8, 8, 1},
      {129, 1000, 1, 64, 8, 8, 8, 2},          {200, 700, 2, 128, 8, 8, 8, 0, 4.0f, 3.0f},
      {65, 90, 1, 64, 8, 8, 8, 2, -2.0f, 1.0f}, {1000, 1100, 2, 128, 8, 8, 8, 0}};
  uint32_t seed = 200;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    Problem p(c, seed++);
    if (c.scale_factor > 1.0f) {
      // Later keys larger: the row max keeps growing over the key tiles.
      for (int t = 0; t < c.tk; ++t)
        for (int i = 0; i < p.k_stride; ++i)
          p.k[static_cast<size_t>(t) * p.k_stride + i] *= 0.2f + 2.0f * t / c.tk;
    }
    const std::vector<float> ref = p.values(p.cpu_reference(true));
    auto to_bits = [](const std::vector<float>& x) {
      std::vector<uint16_t> bits(x.size());
      std::transform(x.begin(), x.end(), bits.begin(), bf16_bits);
      return bits;
    };
    DeviceArray<uint16_t> q(p.q.size()), k(p.k.size()), v(p.v.size());
    const std::vector<float> out_init(static_cast<size_t>(c.tq) * p.out_stride, kSentinel);
    DeviceArray<float> out(out_init.size());
    ASSERT_TRUE(q.upload(to_bits(p.q)) && k.upload(to_bits(p.k)) && v.upload(to_bits(p.v)));
    ASSERT_TRUE(out.upload(out_init));
    strand::cuda::attention_bf16(reinterpret_cast<const __nv_bfloat16*>(q.get()), p.q_stride,
                                 reinterpret_cast<const __nv_bfloat16*>(k.get()), p.k_stride,
                                 reinterpret_cast<const __nv_bfloat16*>(v.get()), p.v_stride,
                                 out.get(), p.out_stride, c.tq, c.tk, c.heads, c.head_dim, p.scale,
                                 nullptr, variant);
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> gpu = out.download();
    EXPECT_EQ(p.touched_padding(gpu), 0);
    const std::vector<float> values = p.values(gpu);
    ASSERT_TRUE(all_finite(values));
    const double err = rel_error(values, ref);
    // P in bf16: each probability off by at most 2^-9 relative, ~1.1e-3 rms, averaging down.
    EXPECT_LT(err, 4e-3);
    std::printf("bf16k %-62s %-16s rel_err %.2e vs CPU on bf16 inputs\n", describe(c).c_str(),
                strand::cuda::attention_variant_name(variant), err);
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, CudaAttentionVariant,
                         ::testing::Range(0, strand::cuda::kAttentionVariantCount),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(strand::cuda::attention_variant_name(
                               static_cast<strand::cuda::AttentionVariant>(info.param)));
                         });

// On an H100 / H200 the wgmma variant must run its own kernel: otherwise the variant tests above
// would pass on the fallback kernel and never check it.
TEST(CudaAttention, WgmmaKernelRunsOnHopper) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp props{};
  ASSERT_CUDA(cudaGetDeviceProperties(&props, 0));
  if (props.major != 9 || props.minor != 0) GTEST_SKIP() << "not a compute capability 9.0 GPU";
  EXPECT_TRUE(strand::cuda::attention_wgmma_available());
}

TEST(CudaAttention, NoKeysGivesZeros) {
  SKIP_WITHOUT_GPU();
  for (const bool bf16 : {false, true}) {
    const Problem p({5, 0, 2, 64, 0, 0, 0, 3}, 7);
    const std::vector<float> gpu = run_gpu(p, bf16);
    EXPECT_EQ(p.touched_padding(gpu), 0);
    const std::vector<float> values = p.values(gpu);
    EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](float x) { return x == 0.0f; }));
  }
}

// Argument checks happen before any CUDA call: these run without a GPU.
TEST(CudaAttention, BadArgumentsThrow) {
  auto kind_of = [](auto&& call) {
    try {
      call();
    } catch (const strand::Error& e) {
      return e.kind();
    }
    return strand::ErrorKind::device;  // "did not throw": never expected below
  };
  const auto invalid = strand::ErrorKind::invalid_argument;
  float* none = nullptr;
  EXPECT_EQ(kind_of([&] {
              strand::cuda::attention(none, 128, none, 128, none, 128, none, 128, -1, 4, 2, 64,
                                      1.0f, true, nullptr);
            }),
            invalid);
  EXPECT_EQ(kind_of([&] {  // stride smaller than heads * head_dim
              strand::cuda::attention(none, 100, none, 128, none, 128, none, 128, 4, 4, 2, 64, 1.0f,
                                      false, nullptr);
            }),
            invalid);
  EXPECT_EQ(kind_of([&] {  // the tensor-core kernel has no head dim 96
              strand::cuda::attention_bf16(nullptr, 96, nullptr, 96, nullptr, 96, none, 96, 4, 4, 1,
                                           96, 1.0f, nullptr);
            }),
            invalid);
  EXPECT_EQ(
      kind_of([&] {  // no such implementation
        strand::cuda::attention_bf16(
            nullptr, 64, nullptr, 64, nullptr, 64, none, 64, 4, 4, 1, 64, 1.0f, nullptr,
            static_cast<strand::cuda::AttentionVariant>(strand::cuda::kAttentionVariantCount));
      }),
      invalid);
  EXPECT_EQ(kind_of([&] {  // bf16 strides must be multiples of 8
              strand::cuda::attention_bf16(nullptr, 68, nullptr, 64, nullptr, 64, none, 64, 4, 4, 1,
                                           64, 1.0f, nullptr);
            }),
            invalid);
}

}  // namespace
