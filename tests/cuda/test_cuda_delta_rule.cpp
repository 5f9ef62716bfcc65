// The CUDA gated delta rule (kernels/cuda/delta_rule.h) against the CPU sequential rule
// (kernels/cpu/delta_rule.h): fresh random inputs as the model makes them (L2-normalised keys,
// alpha in (0.9, 1) or harsh with exact zeros, beta in (0, 2)), several shapes, padded strides,
// partial last chunks, and a long run of repeated updates. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/delta_rule.h"
#include "kernels/cuda/delta_rule.h"
#include "kernels/cuda/device.h"
#include "strand/error.h"
#include "tests/core/delta_rule_inputs.h"
#include "tests/core/parity.h"

namespace strand::cuda {
namespace {

using Vec = std::vector<float>;
using test::rel_error;
using test::delta_rule::cpu_sequential;
using test::delta_rule::Inputs;
using test::delta_rule::make_inputs;

void check_cuda(cudaError_t e, const char* what) {
  ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e);
}

// Device copy of a host vector; freed on scope exit.
class DeviceVec {
 public:
  explicit DeviceVec(const Vec& host) : size_(host.size()) {
    if (cudaMalloc(&ptr_, std::max<size_t>(size_, 1) * sizeof(float)) != cudaSuccess)
      ptr_ = nullptr;
    if (ptr_ != nullptr && size_ > 0)
      cudaMemcpy(ptr_, host.data(), size_ * sizeof(float), cudaMemcpyHostToDevice);
  }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  ~DeviceVec() { cudaFree(ptr_); }
  float* get() const { return ptr_; }
  Vec download() const {
    Vec host(size_);
    cudaMemcpy(host.data(), ptr_, size_ * sizeof(float), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_;
};

// chunked_*: the automatic schedule (what the engine runs); single_*: the one-pass kernel;
// grouped_*: the grouped schedule with the `groups` of gpu_update (0: the automatic count).
enum class Kernel {
  chunked_fp32,
  chunked_tf32,
  single_fp32,
  single_tf32,
  grouped_fp32,
  grouped_tf32,
  fma,          // DeltaSchedule::fma_single_pass (exact fp32 whatever the precision)
  folded_fp32,  // DeltaSchedule::folded_single_pass
  folded_tf32,
  overlapped_fp32,  // DeltaSchedule::overlapped_single_pass
  overlapped_tf32,
  overlapped_folded_fp32,  // DeltaSchedule::overlapped_folded_single_pass
  sequential
};

Vec gpu_update(const Inputs& in, Kernel kernel, int groups = 0) {
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  if (kernel == Kernel::sequential) {
    gated_delta_update_sequential(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(),
                                  in.tokens, in.heads, in.dk, in.dv, nullptr);
  } else {
    const bool fp32 = kernel == Kernel::chunked_fp32 || kernel == Kernel::single_fp32 ||
                      kernel == Kernel::grouped_fp32 || kernel == Kernel::folded_fp32 ||
                      kernel == Kernel::overlapped_fp32 || kernel == Kernel::overlapped_folded_fp32;
    const DeltaSchedule schedule =
        kernel == Kernel::single_fp32 || kernel == Kernel::single_tf32 ? DeltaSchedule::single_pass
        : kernel == Kernel::grouped_fp32 || kernel == Kernel::grouped_tf32 ? DeltaSchedule::grouped
        : kernel == Kernel::fma ? DeltaSchedule::fma_single_pass
        : kernel == Kernel::folded_fp32 || kernel == Kernel::folded_tf32
            ? DeltaSchedule::folded_single_pass
        : kernel == Kernel::overlapped_fp32 || kernel == Kernel::overlapped_tf32
            ? DeltaSchedule::overlapped_single_pass
        : kernel == Kernel::overlapped_folded_fp32 ? DeltaSchedule::overlapped_folded_single_pass
                                                   : DeltaSchedule::automatic;
    gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                       in.heads, in.dk, in.dv, nullptr,
                       fp32 ? DeltaPrecision::fp32 : DeltaPrecision::tf32, schedule, groups);
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return s.download();
}

bool have_gpu() {
  return device_count() > 0;
}

struct Shape {
  int tokens, heads, dk, dv, pad;
  bool harsh;
};

std::string shape_name(const Shape& c) {
  return "T" + std::to_string(c.tokens) + "_h" + std::to_string(c.heads) + "_dk" +
         std::to_string(c.dk) + "_dv" + std::to_string(c.dv) + "_pad" + std::to_string(c.pad) +
         (c.harsh ? "_harsh" : "");
}

// Tokens not a multiple of 64, dk != dv, dims 16..128, odd strides (the 4-byte copy path), resets.
const std::vector<Shape> kShapes = {
    {1, 1, 32, 32, 0, false},
    {64, 1, 128, 128, 0, false},
    {65, 2, 64, 64, 0, false},
    {600, 1, 128, 128, 0, false},
    {520, 2, 32, 32, 3, false},
    {301, 3, 16, 24, 5, false},
    {300, 2, 24, 16, 0, true},
    {200, 2, 64, 128, 4, false},
    {333, 2, 128, 64, 0, false},
    {257, 3, 128, 40, 1, true},
    {130, 2, 100, 36, 0, false},
    {4680 / 4, 12, 128, 128, 0, false},
    // Enough chunks for several groups: partial last chunk and group, resets, small and odd dims
    // (state columns [M | N] of width dk + dv straddling the 64-column tiles).
    {777, 2, 128, 128, 0, true},
    {1000, 3, 32, 32, 2, false},
    {901, 2, 100, 36, 0, true},
    {1100, 2, 16, 24, 5, false},
    {1300, 4, 64, 64, 0, false},
};

class CudaDeltaRule : public ::testing::TestWithParam<Shape> {};

// fp32 mode (3xTF32) must match the CPU sequential rule to float accuracy.
TEST_P(CudaDeltaRule, ChunkedFp32MatchesCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const double err = rel_error(gpu_update(in, Kernel::chunked_fp32), cpu_sequential(in));
  RecordProperty("normalised_error", std::to_string(err));
  std::printf("  chunked fp32 %s: %.3g\n", shape_name(c).c_str(), err);
  EXPECT_LE(err, 1e-4);
}

// The FMA schedule: plain fp32 arithmetic, so as close to the sequential rule as the 3xTF32 one.
TEST_P(CudaDeltaRule, FmaSinglePassMatchesCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const double err = rel_error(gpu_update(in, Kernel::fma), cpu_sequential(in));
  RecordProperty("normalised_error", std::to_string(err));
  std::printf("  fma single pass %s: %.3g\n", shape_name(c).c_str(), err);
  EXPECT_LE(err, 1e-4);
}

// The folded schedule (X folded into W' and U0' first): fp32 as close as the single pass, TF32
// within TF32's error.
TEST_P(CudaDeltaRule, FoldedSinglePassMatchesCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const Vec want = cpu_sequential(in);
  const double fp32 = rel_error(gpu_update(in, Kernel::folded_fp32), want);
  const double tf32 = rel_error(gpu_update(in, Kernel::folded_tf32), want);
  RecordProperty("normalised_error", std::to_string(fp32));
  std::printf("  folded single pass %s: fp32 %.3g, tf32 %.3g\n", shape_name(c).c_str(), fp32, tf32);
  EXPECT_LE(fp32, 1e-4);
  EXPECT_LE(tf32, 1e-2);
}

// The overlapped schedule (prepare beside the recurrence, per-chunk ready flags) computes what the
// single pass computes, bit for bit: the same kernels' arithmetic, only their order changes.
TEST_P(CudaDeltaRule, OverlappedSinglePassEqualsSinglePass) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  EXPECT_EQ(gpu_update(in, Kernel::overlapped_fp32), gpu_update(in, Kernel::single_fp32));
  EXPECT_EQ(gpu_update(in, Kernel::overlapped_tf32), gpu_update(in, Kernel::single_tf32));
  EXPECT_EQ(gpu_update(in, Kernel::overlapped_folded_fp32), gpu_update(in, Kernel::folded_fp32));
}

// tf32 mode: reduced precision by design, but still the same update (a wrong kernel is O(1) off).
TEST_P(CudaDeltaRule, ChunkedTf32IsCloseToCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const Vec want = cpu_sequential(in);
  const double err = rel_error(gpu_update(in, Kernel::chunked_tf32), want);
  const double single = rel_error(gpu_update(in, Kernel::single_tf32), want);
  RecordProperty("normalised_error", std::to_string(err));
  std::printf("  chunked tf32 %s: %.3g (single pass %.3g)\n", shape_name(c).c_str(), err, single);
  EXPECT_LE(err, 1e-2);
  EXPECT_LE(single, 1e-2);
}

// Group counts to try for a shape: one group (the grouped kernel alone), 2, 3 (usually a partial
// last group), the automatic count, and one group per chunk (the most combine steps).
std::vector<int> group_counts(int tokens) {
  const int chunks = (tokens + kDeltaChunk - 1) / kDeltaChunk;
  std::vector<int> counts = {1, 2, 3, 0, chunks};
  counts.erase(std::remove_if(counts.begin(), counts.end(), [&](int g) { return g > chunks; }),
               counts.end());
  return counts;
}

// The grouped schedule (fp32: 3xTF32 everywhere, the combine steps included) against the CPU
// sequential rule and against the single-pass kernel, for several group counts.
TEST_P(CudaDeltaRule, GroupedFp32MatchesCpuSequentialAndSinglePass) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const Vec want = cpu_sequential(in);
  const Vec single = gpu_update(in, Kernel::single_fp32);
  EXPECT_LE(rel_error(single, want), 1e-4);
  for (const int groups : group_counts(c.tokens)) {
    const Vec got = gpu_update(in, Kernel::grouped_fp32, groups);
    const double err = rel_error(got, want);
    std::printf("  grouped fp32 %s groups %d: %.3g (vs single pass %.3g)\n", shape_name(c).c_str(),
                groups, err, rel_error(got, single));
    EXPECT_LE(err, 1e-4) << "groups " << groups;
    EXPECT_LE(rel_error(got, single), 1e-4) << "groups " << groups;
  }
}

TEST_P(CudaDeltaRule, GroupedTf32IsCloseToCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const Vec want = cpu_sequential(in);
  for (const int groups : group_counts(c.tokens)) {
    const double err = rel_error(gpu_update(in, Kernel::grouped_tf32, groups), want);
    std::printf("  grouped tf32 %s groups %d: %.3g\n", shape_name(c).c_str(), groups, err);
    EXPECT_LE(err, 1e-2) << "groups " << groups;
  }
}

TEST_P(CudaDeltaRule, SequentialKernelMatchesCpuSequential) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape c = GetParam();
  const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv));
  const double err = rel_error(gpu_update(in, Kernel::sequential), cpu_sequential(in));
  EXPECT_LE(err, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaDeltaRule, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& p) {
                           return shape_name(p.param);
                         });

// Folds `calls` consecutive blocks of `tokens` tokens of `in` into one device state, each with
// update_block(s, k, v, alpha, beta) (device pointers, the inputs at the block's first token), and
// into the CPU sequential state; compares the two every `check_every` calls and after the last.
// Returns the worst error.
template <typename UpdateBlock>
double worst_error_of_repeated_updates(const Inputs& in, int calls, int tokens, int check_every,
                                       UpdateBlock update_block) {
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  Vec cpu = in.s0;
  double worst = 0.0;
  for (int call = 0; call < calls; ++call) {
    const size_t t0 = static_cast<size_t>(call) * tokens;
    update_block(s.get(), k.get() + t0 * in.ks, v.get() + t0 * in.vs, alpha.get() + t0 * in.heads,
                 beta.get() + t0 * in.heads);
    cpu::gated_delta_update_sequential(
        cpu.data(), in.k.data() + t0 * in.ks, in.ks, in.v.data() + t0 * in.vs, in.vs,
        in.alpha.data() + t0 * in.heads, in.beta.data() + t0 * in.heads, tokens, in.heads, in.dk,
        in.dv);
    if (call % check_every == check_every - 1 || call == calls - 1) {
      check_cuda(cudaDeviceSynchronize(), "update");
      worst = std::max(worst, rel_error(s.download(), cpu));
    }
  }
  return worst;
}

// Many consecutive blocks folded into one device state (as the engine does per clean pass), with
// slow decay so old errors are not forgotten: the state must stay as accurate as one call.
TEST(CudaDeltaRuleLong, RepeatedUpdatesStayAccurate) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int calls = 60, tokens = 250, heads = 2, dk = 64, dv = 64;
  const Inputs in = make_inputs(calls * tokens, heads, dk, dv, 0, false, 1234, 0.995f);
  const double worst = worst_error_of_repeated_updates(
      in, calls, tokens, 10,
      [&](float* s, const float* k, const float* v, const float* alpha, const float* beta) {
        gated_delta_update(s, k, in.ks, v, in.vs, alpha, beta, tokens, heads, dk, dv, nullptr);
      });
  std::printf("  %d calls x %d tokens: worst error %.3g\n", calls, tokens, worst);
  EXPECT_LE(worst, 1e-4);
}

// The overlapped schedule inside a CUDA graph (as the engine records its passes): the helper
// stream's fork and join are captured, and replays reset the ready flags (two replays in a row,
// each on a fresh state, give the single pass's result).
TEST(CudaDeltaRuleOverlapped, GraphReplaysMatchSinglePass) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(1000, 3, 128, 64, 0, true, 23);
  const Vec want = gpu_update(in, Kernel::single_fp32);
  EXPECT_EQ(gpu_update(in, Kernel::overlapped_fp32), want);  // (also creates the helper stream)
  const size_t bytes = gated_delta_workspace_bytes(DeltaSchedule::overlapped_single_pass, in.tokens,
                                                   in.heads, in.dk, in.dv);
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  void* ws = nullptr;
  check_cuda(cudaMalloc(&ws, bytes), "workspace");
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaGraph_t graph = nullptr;
  check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
  gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                     in.heads, in.dk, in.dv, ws, bytes, stream, DeltaPrecision::fp32,
                     DeltaSchedule::overlapped_single_pass);
  check_cuda(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec = nullptr;
  check_cuda(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (int replay = 0; replay < 2; ++replay) {
    check_cuda(
        cudaMemcpy(s.get(), in.s0.data(), in.s0.size() * sizeof(float), cudaMemcpyHostToDevice),
        "reset state");
    check_cuda(cudaGraphLaunch(exec, stream), "replay");
    check_cuda(cudaStreamSynchronize(stream), "replay");
    EXPECT_EQ(s.download(), want) << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  cudaFree(ws);
}

// The engine's shape (12 heads, 128 x 128 state, one 4680-token block) on the schedule the engine
// gets (automatic: grouped where the device allows) and on the single pass.
TEST(CudaDeltaRuleFullShape, AutomaticAndSinglePassMatchCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(4680, 12, 128, 128, 0, false, 4680);
  const Vec want = cpu_sequential(in);
  std::printf("  automatic groups at 4680 x 12 x 128: %d (fp32), %d (tf32)\n",
              gated_delta_groups(4680, 12, 128, 128, DeltaPrecision::fp32),
              gated_delta_groups(4680, 12, 128, 128, DeltaPrecision::tf32));
  const double auto32 = rel_error(gpu_update(in, Kernel::chunked_fp32), want);
  const double single32 = rel_error(gpu_update(in, Kernel::single_fp32), want);
  const double grouped8 = rel_error(gpu_update(in, Kernel::grouped_fp32, 8), want);
  const double auto_tf32 = rel_error(gpu_update(in, Kernel::chunked_tf32), want);
  std::printf("  fp32 automatic %.3g, single pass %.3g, 8 groups %.3g; tf32 automatic %.3g\n",
              auto32, single32, grouped8, auto_tf32);
  EXPECT_LE(auto32, 1e-4);
  EXPECT_LE(single32, 1e-4);
  EXPECT_LE(grouped8, 1e-4);
  EXPECT_LE(auto_tf32, 1e-2);
}

// Consecutive blocks through the grouped schedule with slow decay: errors must not build up.
TEST(CudaDeltaRuleLong, RepeatedGroupedUpdatesStayAccurate) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int calls = 20, tokens = 700, heads = 2, dk = 64, dv = 64;
  const Inputs in = make_inputs(calls * tokens, heads, dk, dv, 0, false, 4321, 0.995f);
  const double worst = worst_error_of_repeated_updates(
      in, calls, tokens, 5,
      [&](float* s, const float* k, const float* v, const float* alpha, const float* beta) {
        gated_delta_update(s, k, in.ks, v, in.vs, alpha, beta, tokens, heads, dk, dv, nullptr,
                           DeltaPrecision::fp32, DeltaSchedule::grouped, 3);
      });
  std::printf("  %d grouped calls x %d tokens: worst error %.3g\n", calls, tokens, worst);
  EXPECT_LE(worst, 1e-4);
}

// A full reset (alpha == 0 for every head at one token of a later group): the grouped result
// cannot depend on the state before it, bit for bit (M of that group is exactly zero).
TEST(CudaDeltaRuleGrouped, ResetInALaterGroupForgetsTheStart) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Inputs in = make_inputs(700, 2, 32, 48, 0, false, 31);  // 11 chunks, 3 groups: 7..10 last
  for (int h = 0; h < in.heads; ++h) in.alpha[static_cast<size_t>(455) * in.heads + h] = 0.0f;
  Inputs other = in;
  for (auto& x : other.s0) x = -3.0f * x + 0.25f;
  for (const Kernel kernel : {Kernel::grouped_fp32, Kernel::grouped_tf32}) {
    const Vec a = gpu_update(in, kernel, 3);
    EXPECT_EQ(a, gpu_update(other, kernel, 3));
    EXPECT_LE(rel_error(a, cpu_sequential(in)), kernel == Kernel::grouped_fp32 ? 1e-4 : 1e-2);
  }
}

// Workspace rules of the grouped schedule: its own size works, less is one clear error for an
// explicit grouped call, and the automatic schedule with only the single pass's size falls back
// to the single pass (the same state bit for bit).
TEST(CudaDeltaRuleWorkspace, GroupedSizes) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(900, 3, 64, 96, 0, false, 9);
  const size_t grouped_bytes = gated_delta_workspace_bytes(in.tokens, in.heads, in.dk, in.dv, 4);
  const size_t single_bytes = gated_delta_workspace_bytes(in.tokens, in.heads, in.dk, in.dv, 1);
  ASSERT_GT(grouped_bytes, single_bytes);
  EXPECT_GE(gated_delta_workspace_bytes(in.tokens, in.heads),
            gated_delta_workspace_bytes(in.tokens, in.heads, 128, 128, 0));
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  void* ws = nullptr;
  check_cuda(cudaMalloc(&ws, grouped_bytes), "workspace");
  gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                     in.heads, in.dk, in.dv, ws, grouped_bytes, nullptr, DeltaPrecision::fp32,
                     DeltaSchedule::grouped, 4);
  check_cuda(cudaDeviceSynchronize(), "grouped update");
  EXPECT_EQ(s.download(), gpu_update(in, Kernel::grouped_fp32, 4));
  EXPECT_THROW(gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(),
                                  in.tokens, in.heads, in.dk, in.dv, ws, grouped_bytes - 4, nullptr,
                                  DeltaPrecision::fp32, DeltaSchedule::grouped, 4),
               Error);
  DeviceVec s2(in.s0);
  gated_delta_update(s2.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                     in.heads, in.dk, in.dv, ws, single_bytes, nullptr);
  check_cuda(cudaDeviceSynchronize(), "automatic update, small workspace");
  EXPECT_EQ(s2.download(), gpu_update(in, Kernel::single_fp32));
  cudaFree(ws);
}

// A caller-owned workspace gives the same state as the allocating overload, bit for bit.
// The folded schedule with caller-owned scratch: its own (larger) size, the allocating call's
// result, and a short workspace refused.
TEST(CudaDeltaRuleWorkspace, FoldedSizes) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(700, 3, 100, 36, 0, true, 19);
  const size_t bytes = gated_delta_workspace_bytes(DeltaSchedule::folded_single_pass, in.tokens,
                                                   in.heads, in.dk, in.dv);
  ASSERT_GT(bytes, gated_delta_workspace_bytes(in.tokens, in.heads, in.dk, in.dv, 1));
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  void* ws = nullptr;
  check_cuda(cudaMalloc(&ws, bytes), "workspace");
  gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                     in.heads, in.dk, in.dv, ws, bytes, nullptr, DeltaPrecision::fp32,
                     DeltaSchedule::folded_single_pass);
  check_cuda(cudaDeviceSynchronize(), "folded update");
  EXPECT_EQ(s.download(), gpu_update(in, Kernel::folded_fp32));
  EXPECT_THROW(gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(),
                                  in.tokens, in.heads, in.dk, in.dv, ws, bytes - 4, nullptr,
                                  DeltaPrecision::fp32, DeltaSchedule::folded_single_pass),
               Error);
  cudaFree(ws);
}

TEST(CudaDeltaRuleWorkspace, MatchesAllocatingCall) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(777, 3, 128, 128, 0, false, 77);
  const Vec want = gpu_update(in, Kernel::chunked_fp32);
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  const size_t bytes = gated_delta_workspace_bytes(in.tokens, in.heads);
  void* ws = nullptr;
  check_cuda(cudaMalloc(&ws, bytes), "workspace");
  gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), in.tokens,
                     in.heads, in.dk, in.dv, ws, bytes, nullptr);
  check_cuda(cudaDeviceSynchronize(), "update");
  EXPECT_EQ(s.download(), want);
  // Below the single pass's need is an error for every schedule (between that and the grouped
  // need, the automatic schedule runs fewer groups: CudaDeltaRuleWorkspace.GroupedSizes).
  const size_t least = gated_delta_workspace_bytes(in.tokens, in.heads, in.dk, in.dv, 1);
  EXPECT_THROW(gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(),
                                  in.tokens, in.heads, in.dk, in.dv, ws, least - 4, nullptr),
               Error);
  cudaFree(ws);
}

TEST(CudaDeltaRuleArgs, BadInputIsOneClearError) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Inputs in = make_inputs(10, 2, 32, 32, 0, false, 3);
  DeviceVec s(in.s0), k(in.k), v(in.v), alpha(in.alpha), beta(in.beta);
  const auto kind_of = [&](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::cancelled;  // "no error": not an outcome these calls may have
  };
  EXPECT_EQ(kind_of([&] {
              gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(),
                                 -1, 2, 32, 32, nullptr);
            }),
            ErrorKind::invalid_argument);
  EXPECT_EQ(kind_of([&] {
              gated_delta_update(s.get(), k.get(), 40, v.get(), in.vs, alpha.get(), beta.get(), 10,
                                 2, 32, 32, nullptr);
            }),
            ErrorKind::invalid_argument);
  EXPECT_EQ(kind_of([&] {
              gated_delta_update(s.get(), k.get(), 400, v.get(), 400, alpha.get(), beta.get(), 1, 1,
                                 160, 32, nullptr);
            }),
            ErrorKind::unsupported);
  EXPECT_EQ(kind_of([&] {
              memory_read(s.get(), k.get(), 10, v.get(), in.vs, 10, 2, 32, 32, 1.0f, nullptr);
            }),
            ErrorKind::invalid_argument);
  // Nothing to do is not an error, and leaves the state alone.
  gated_delta_update(s.get(), k.get(), in.ks, v.get(), in.vs, alpha.get(), beta.get(), 0, 2, 32, 32,
                     nullptr);
  check_cuda(cudaDeviceSynchronize(), "empty update");
  EXPECT_EQ(s.download(), in.s0);
}

struct ReadShape {
  int tokens, heads, dk, dv, pad;
};

class CudaMemoryRead : public ::testing::TestWithParam<ReadShape> {};

TEST_P(CudaMemoryRead, MatchesCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const ReadShape c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.tokens + c.dk * 5 + c.dv));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int qs = c.heads * c.dk + c.pad, os = c.heads * c.dv + 2 * c.pad;
  Vec s(static_cast<size_t>(c.heads) * c.dk * c.dv), q(static_cast<size_t>(c.tokens) * qs);
  for (auto& x : s) x = dist(rng);
  for (auto& x : q) x = dist(rng);
  const Vec sentinel(static_cast<size_t>(c.tokens) * os, 7.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  Vec want = sentinel;
  cpu::memory_read(s.data(), q.data(), qs, want.data(), os, c.tokens, c.heads, c.dk, c.dv, scale);
  for (const auto precision : {DeltaPrecision::fp32, DeltaPrecision::tf32}) {
    DeviceVec ds(s), dq(q), dout(sentinel);
    memory_read(ds.get(), dq.get(), qs, dout.get(), os, c.tokens, c.heads, c.dk, c.dv, scale,
                nullptr, precision);
    check_cuda(cudaDeviceSynchronize(), "memory_read");
    const Vec got = dout.download();
    const double err = rel_error(got, want);  // padding columns must keep the sentinel: err 0 there
    EXPECT_LE(err, precision == DeltaPrecision::fp32 ? 1e-5 : 5e-3)
        << (precision == DeltaPrecision::fp32 ? "fp32" : "tf32");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMemoryRead,
                         ::testing::Values(ReadShape{1, 1, 32, 32, 0}, ReadShape{300, 2, 64, 64, 3},
                                           ReadShape{257, 3, 128, 40, 0},
                                           ReadShape{4680, 12, 128, 128, 0}),
                         [](const ::testing::TestParamInfo<ReadShape>& p) {
                           const ReadShape& c = p.param;
                           return "T" + std::to_string(c.tokens) + "_h" + std::to_string(c.heads) +
                                  "_dk" + std::to_string(c.dk) + "_dv" + std::to_string(c.dv) +
                                  "_pad" + std::to_string(c.pad);
                         });

}  // namespace
}  // namespace strand::cuda
