// Backend dispatch: a pretend device that supports only `linear` must give exactly the CPU
// results, every other op going through the CPU fallback with host staging.
#include <gtest/gtest.h>

#include <set>

#include "engine.h"
#include "kernels/cpu/gemm.h"
#include "strand/backend.h"
#include "strand/error.h"
#include "test_support.h"

namespace strand {
namespace {

// Device memory is host memory here, but the device only implements `linear`; anything else
// reaching it is a dispatch bug.
class LinearOnlyDevice final : public Backend {
 public:
  class Mem final : public Buffer {
   public:
    explicit Mem(size_t n) : v_(n, 0.0f) {}
    [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
    [[nodiscard]] size_t count() const override { return v_.size(); }
    [[nodiscard]] float* data() override { return v_.data(); }

   private:
    std::vector<float> v_;
  };
  int* linear_calls;
  explicit LinearOnlyDevice(int* calls) : linear_calls(calls) {}
  [[nodiscard]] std::string_view name() const override { return "linear-only"; }
  [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
  [[nodiscard]] bool supports(Op op) const override { return op == Op::linear; }
  std::unique_ptr<Buffer> allocate(size_t n) override { return std::make_unique<Mem>(n); }
  void upload(float* d, const float* s, size_t n) override { std::copy(s, s + n, d); }
  void download(float* d, const float* s, size_t n) override { std::copy(s, s + n, d); }
  void copy(float* d, const float* s, size_t n) override { std::copy(s, s + n, d); }
  void linear(const float* x, const float* w, const float* b, float* y, int r, int i, int o) override {
    ++*linear_calls;
    cpu::linear(x, w, b, y, r, i, o);
  }
  [[noreturn]] static void misrouted() { throw Error(ErrorKind::device, "op reached a device that lacks it"); }
  void layer_norm(const float*, float*, int, int, const float*, const float*, float) override { misrouted(); }
  void layer_norm_modulate(const float*, float*, int, int, const float*, const float*, int, int, float) override { misrouted(); }
  void rms_norm(const float*, float*, int, int, const float*, float) override { misrouted(); }
  void l2_normalize_heads(float*, int, int, int, float) override { misrouted(); }
  void gelu_tanh(float*, size_t) override { misrouted(); }
  void gelu_erf(float*, size_t) override { misrouted(); }
  void silu(float*, size_t) override { misrouted(); }
  void gated_residual(float*, const float*, const float*, int, int, int, int) override { misrouted(); }
  void gated_residual_heads(float*, const float*, const float*, int, int, int, int) override { misrouted(); }
  void rope_3d(float*, int, int, int, int, const int*, const int*, const int*, float) override { misrouted(); }
  void attention(const float*, int, const float*, int, const float*, int, float*, int, int, int, int, int, float) override { misrouted(); }
  void gated_delta_update(float*, const float*, int, const float*, int, const float*, const float*, int, int, int, int) override { misrouted(); }
  void memory_read(const float*, const float*, int, float*, int, int, int, int, int, float) override { misrouted(); }
  void conv2d_3x3(const float*, int, int, int, const float*, const float*, int, int, float*) override { misrouted(); }
  void upsample_nearest_2x(const float*, int, int, int, float*) override { misrouted(); }
  void memory_gates(const float*, const float*, const float*, float*, float*, float*, int, int) override { misrouted(); }
};

TEST(Backend, CpuSupportsEveryOp) {
  auto cpu = make_cpu_backend();
  std::set<std::string_view> names;
  for (int op = 0; op < static_cast<int>(Op::count); ++op) {
    EXPECT_TRUE(cpu->supports(static_cast<Op>(op)));
    names.insert(op_name(static_cast<Op>(op)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Op::count));  // every op has its own name
}

TEST(Backend, FallbackGivesTheCpuResultsExactly) {
  auto model = test::random_model(
      test::tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv}), 17);
  int linear_calls = 0;
  Engine device(model, make_dispatch_backend(std::make_unique<LinearOnlyDevice>(&linear_calls)));
  Engine cpu(model, make_cpu_backend());
  const std::string prompt = "a red balloon at dusk";
  const TextContext t_dev = device.encode_prompt(prompt), t_cpu = cpu.encode_prompt(prompt);
  EXPECT_EQ(t_dev.ctx, t_cpu.ctx);
  MemoryState m_dev = device.empty_memory(), m_cpu = cpu.empty_memory();
  const auto& c = model->config();
  std::vector<float> x(static_cast<size_t>(c.frames_per_block) * c.latent_channels *
                       c.latent_height() * c.latent_width());
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 17) / 8.0f - 1.0f;
  for (int block = 0; block < 2; ++block) {
    EXPECT_EQ(device.dit(x, 0.75f, t_dev, m_dev, block, false), cpu.dit(x, 0.75f, t_cpu, m_cpu, block, false));
    device.dit(x, 0.0f, t_dev, m_dev, block, true);
    cpu.dit(x, 0.0f, t_cpu, m_cpu, block, true);
    device.download_kv_blocks(m_dev);  // new cache blocks stay on a device until read
    EXPECT_EQ(m_dev, m_cpu);
  }
  EXPECT_EQ(device.decode(x.data()), cpu.decode(x.data()));
  EXPECT_GT(linear_calls, 0);
}

// memory_gates on a device that lacks it: staged through host memory to the CPU kernel, all three
// outputs written back; the profiling wrapper counts it with its least traffic.
TEST(Backend, MemoryGatesFallbackAndProfile) {
  const int tokens = 5, heads = 3;
  const size_t n = static_cast<size_t>(tokens) * heads;
  std::vector<float> raw(3 * n), a_log = {-1.0f, 0.0f, 0.5f}, dt_bias = {0.25f, -2.0f, 1.0f};
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<float>(i % 11) * 3.0f - 15.0f;
  std::vector<float> alpha(n), beta(n), gamma(n);
  make_cpu_backend()->memory_gates(raw.data(), a_log.data(), dt_bias.data(), alpha.data(),
                                   beta.data(), gamma.data(), tokens, heads);

  int linear_calls = 0;
  OpProfile profile;
  auto device = make_profiling_backend(
      make_dispatch_backend(std::make_unique<LinearOnlyDevice>(&linear_calls)), &profile);
  auto d_raw = device->allocate(raw.size()), d_log = device->allocate(heads),
       d_bias = device->allocate(heads), d_out = device->allocate(3 * n);
  device->upload(d_raw->data(), raw.data(), raw.size());
  device->upload(d_log->data(), a_log.data(), a_log.size());
  device->upload(d_bias->data(), dt_bias.data(), dt_bias.size());
  float* out = d_out->data();
  device->memory_gates(d_raw->data(), d_log->data(), d_bias->data(), out, out + n, out + 2 * n,
                       tokens, heads);
  std::vector<float> got(3 * n);
  device->download(got.data(), out, got.size());
  EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n)), alpha);
  EXPECT_EQ(std::vector<float>(got.begin() + static_cast<std::ptrdiff_t>(n),
                               got.begin() + static_cast<std::ptrdiff_t>(2 * n)),
            beta);
  EXPECT_EQ(std::vector<float>(got.begin() + static_cast<std::ptrdiff_t>(2 * n), got.end()), gamma);
  const OpProfile::Entry& entry = profile.ops[static_cast<size_t>(Op::memory_gates)];
  EXPECT_EQ(entry.calls, 1);
  EXPECT_EQ(entry.flops, 0.0);
  EXPECT_EQ(entry.bytes, static_cast<double>(sizeof(float) * (6 * n + 2 * heads)));
}

}  // namespace
}  // namespace strand
