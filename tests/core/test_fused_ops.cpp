// The fused ops of the transformer layers (Backend::qk_norm_rope, l2_normalize_heads_rows,
// memory_gates_rows, residual_norm): on the CPU they must equal the separate reference kernels
// bit for bit (the CPU engine's output may not move), and the dispatch and profiling wrappers
// must hand each one to the device whole, not as its separate ops (or a device's fused kernel
// would never run).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "strand/backend.h"

namespace strand {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Columns [column, column + width) of `rows` rows `stride` floats apart, packed.
std::vector<float> columns(const std::vector<float>& x, int rows, int stride, int column,
                           int width) {
  std::vector<float> out(static_cast<size_t>(rows) * width);
  for (int r = 0; r < rows; ++r) {
    const auto from = x.begin() + static_cast<std::ptrdiff_t>(r) * stride + column;
    std::copy(from, from + width, out.begin() + static_cast<std::ptrdiff_t>(r) * width);
  }
  return out;
}

struct Positions {
  std::vector<int> t, r, c;
};
Positions positions(int frames, int rows, int cols) {
  Positions p;
  for (int f = 0; f < frames; ++f)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        p.t.push_back(f - 3);
        p.r.push_back(r);
        p.c.push_back(c);
      }
  return p;
}

struct QkCase {
  int frames, rows, cols, heads, head_dim, stride_extra;  // stride = 2 * width + stride_extra
  bool weighted;
};
const QkCase kQkCases[] = {{3, 3, 3, 2, 64, 3 * 128 + 16, true},
                           {1, 3, 5, 3, 128, 36, true},
                           {1, 7, 1, 2, 6, 5, false},
                           {2, 2, 2, 1, 4, 0, true}};

TEST(FusedOps, QkNormRopeIsTheSeparateOps) {
  auto cpu = make_cpu_backend();
  for (const QkCase c : kQkCases) {
    const Positions p = positions(c.frames, c.rows, c.cols);
    const int tokens = static_cast<int>(p.t.size()), dim = c.heads * c.head_dim;
    const int stride = 2 * dim + c.stride_extra;
    const auto x = random_values(static_cast<size_t>(tokens) * stride, 1, -2.0f, 3.0f);
    const auto qw = random_values(static_cast<size_t>(dim), 2, 0.5f, 1.5f);
    const auto kw = random_values(static_cast<size_t>(dim), 3, 0.5f, 1.5f);
    const float* q_weight = c.weighted ? qw.data() : nullptr;
    const float* k_weight = c.weighted ? kw.data() : nullptr;
    for (const bool rope_k : {true, false}) {
      const std::string shape = std::to_string(tokens) + "x" + std::to_string(c.heads) + "x" +
                                std::to_string(c.head_dim) + " stride " + std::to_string(stride) +
                                (rope_k ? "" : ", k unrotated");
      std::vector<float> want_q = columns(x, tokens, stride, 0, dim);
      std::vector<float> want_k = columns(x, tokens, stride, dim, dim);
      cpu::rms_norm(want_q.data(), want_q.data(), tokens, dim, q_weight, 1e-6f);
      cpu::rms_norm(want_k.data(), want_k.data(), tokens, dim, k_weight, 1e-6f);
      cpu::rope_3d(want_q.data(), tokens, c.heads, c.head_dim, dim, p.t.data(), p.r.data(),
                   p.c.data(), 10000.0f);
      if (rope_k) {
        cpu::rope_3d(want_k.data(), tokens, c.heads, c.head_dim, dim, p.t.data(), p.r.data(),
                     p.c.data(), 10000.0f);
      }
      std::vector<float> q(want_q.size(), 9.0f), k(want_k.size(), 9.0f);
      const std::vector<float> before = x;
      cpu->qk_norm_rope(x.data(), stride, q.data(), k.data(), tokens, c.heads, c.head_dim, q_weight,
                        k_weight, 1e-6f, p.t.data(), p.r.data(), p.c.data(), 10000.0f, rope_k);
      EXPECT_EQ(q, want_q) << shape;
      EXPECT_EQ(k, want_k) << shape;
      EXPECT_EQ(x, before) << shape;
    }
  }
}

TEST(FusedOps, L2NormalizeHeadsRowsIsCopyThenNormalize) {
  auto cpu = make_cpu_backend();
  struct Case {
    int rows, heads, head_dim, stride, column;
  };
  for (const Case c :
       {Case{7, 2, 64, 6 * 128 + 36, 3 * 128}, Case{5, 3, 128, 384, 0}, Case{3, 4, 6, 30, 5}}) {
    const int width = c.heads * c.head_dim;
    const auto x = random_values(static_cast<size_t>(c.rows) * c.stride, 4);
    std::vector<float> want = columns(x, c.rows, c.stride, c.column, width);
    cpu::l2_normalize_heads(want.data(), c.rows, c.heads, c.head_dim, 1e-6f);
    std::vector<float> y(want.size(), 9.0f);
    cpu->l2_normalize_heads_rows(x.data() + c.column, c.stride, y.data(), c.rows, c.heads,
                                 c.head_dim, 1e-6f);
    EXPECT_EQ(y, want) << c.rows << "x" << c.heads << "x" << c.head_dim;
  }
}

TEST(FusedOps, MemoryGatesRowsIsCopyThenGates) {
  auto cpu = make_cpu_backend();
  struct Case {
    int tokens, heads, stride, column;
  };
  for (const Case c : {Case{9, 3, 13, 2}, Case{5, 12, 7 * 12 + 4, 4 * 12}, Case{1, 1, 3, 0}}) {
    ASSERT_LE(c.column + 3 * c.heads, c.stride);  // the gate columns lie inside each row
    const size_t n = static_cast<size_t>(c.tokens) * c.heads;
    const auto x = random_values(static_cast<size_t>(c.tokens) * c.stride, 5, -30.0f, 30.0f);
    const auto a_log = random_values(static_cast<size_t>(c.heads), 6, -3.0f, 2.0f);
    const auto dt_bias = random_values(static_cast<size_t>(c.heads), 7, -4.0f, 4.0f);
    std::vector<float> raw(3 * n);
    for (int g = 0; g < 3; ++g) {
      const auto part = columns(x, c.tokens, c.stride, c.column + g * c.heads, c.heads);
      std::copy(part.begin(), part.end(), raw.begin() + static_cast<std::ptrdiff_t>(g * n));
    }
    std::vector<float> want(3 * n), got(3 * n, 7.0f), scratch(3 * n);
    cpu::memory_gates(raw.data(), a_log.data(), dt_bias.data(), want.data(), want.data() + n,
                      want.data() + 2 * n, c.tokens, c.heads);
    cpu->memory_gates_rows(x.data() + c.column, c.stride, a_log.data(), dt_bias.data(), got.data(),
                           got.data() + n, got.data() + 2 * n, c.tokens, c.heads, scratch.data());
    EXPECT_EQ(got, want) << c.tokens << " tokens, " << c.heads << " heads";
  }
}

// The three residual adds of a DiT layer with the norm after each (norm3's affine layer norm after
// the gated attention residual, adaLN after the plain cross-attention residual and after the gated
// feed-forward one), plus group shapes the engine does not use (several groups, strided rows,
// layer norm without weight or bias): x and out equal gated_residual then the norm, bit for bit.
TEST(FusedOps, ResidualNormIsTheSeparateOps) {
  auto cpu = make_cpu_backend();
  struct Case {
    int rows, dim, rows_per_group, group_stride;
    bool gate, modulate, weight, bias;
  };
  for (const Case c : {Case{45, 64, 45, 0, true, false, true, true},
                       Case{45, 64, 45, 0, false, true, false, false},
                       Case{45, 64, 45, 0, true, true, false, false},
                       Case{13, 96, 4, 100, true, true, false, false},
                       Case{13, 96, 5, 96, true, false, true, false},
                       Case{7, 30, 2, 33, false, false, false, true},
                       Case{3, 8, 3, 0, false, false, false, false}}) {
    const int groups = (c.rows + c.rows_per_group - 1) / c.rows_per_group;
    const size_t n = static_cast<size_t>(c.rows) * c.dim;
    const size_t group_span = static_cast<size_t>(groups - 1) * c.group_stride + c.dim;
    const auto x = random_values(n, 11, -3.0f, 4.0f);
    const auto y = random_values(n, 12, -2.0f, 2.0f);
    const auto gate = random_values(group_span, 13, -1.0f, 1.5f);
    const auto norm_a = random_values(group_span, 14, -0.5f, 0.5f);
    const auto norm_b = random_values(group_span, 15, -0.7f, 0.7f);
    const float* g = c.gate ? gate.data() : nullptr;
    const float* a = c.modulate || c.weight ? norm_a.data() : nullptr;
    const float* b = c.modulate || c.bias ? norm_b.data() : nullptr;
    std::vector<float> want_x = x, want_out(n);
    cpu::gated_residual(want_x.data(), y.data(), g, c.rows, c.dim, c.rows_per_group,
                        c.group_stride);
    if (c.modulate) {
      cpu::layer_norm_modulate(want_x.data(), want_out.data(), c.rows, c.dim, a, b,
                               c.rows_per_group, c.group_stride, 1e-6f);
    } else {
      cpu::layer_norm(want_x.data(), want_out.data(), c.rows, c.dim, a, b, 1e-6f);
    }
    std::vector<float> got_x = x, got_out(n, 9.0f);
    cpu->residual_norm(
        got_x.data(), y.data(), g, got_out.data(), c.rows, c.dim, c.rows_per_group, c.group_stride,
        c.modulate ? ResidualNorm::layer_norm_modulate : ResidualNorm::layer_norm, a, b, 1e-6f);
    const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.dim) + " group " +
                              std::to_string(c.rows_per_group) + "/" +
                              std::to_string(c.group_stride) + (c.gate ? " gated" : "") +
                              (c.modulate ? " modulate" : " layer_norm");
    EXPECT_EQ(got_x, want_x) << shape;
    EXPECT_EQ(got_out, want_out) << shape;
    EXPECT_NE(got_x, x) << shape;  // the residual did land in x
  }
}

// A device (host memory) that runs every op on the CPU and counts the fused calls it receives.
class CountingDevice final : public Backend {
 public:
  struct Counts {
    int qk_norm_rope = 0, l2_rows = 0, gates_rows = 0, residual_norm = 0;
  };
  explicit CountingDevice(Counts* counts) : counts_(counts) {}
  [[nodiscard]] std::string_view name() const override { return "counting"; }
  [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
  [[nodiscard]] bool supports(Op) const override { return true; }
  std::unique_ptr<Buffer> allocate(size_t n) override { return cpu_->allocate(n); }
  void upload(float* d, const float* s, size_t n) override { cpu_->upload(d, s, n); }
  void download(float* d, const float* s, size_t n) override { cpu_->download(d, s, n); }
  void copy(float* d, const float* s, size_t n) override { cpu_->copy(d, s, n); }

  void qk_norm_rope(const float* x, int xs, float* q, float* k, int r, int h, int hd,
                    const float* qw, const float* kw, float e, const int* pt, const int* pr,
                    const int* pc, float theta, bool rope_k) override {
    ++counts_->qk_norm_rope;
    cpu_->qk_norm_rope(x, xs, q, k, r, h, hd, qw, kw, e, pt, pr, pc, theta, rope_k);
  }
  void l2_normalize_heads_rows(const float* x, int xs, float* y, int r, int h, int hd,
                               float e) override {
    ++counts_->l2_rows;
    cpu_->l2_normalize_heads_rows(x, xs, y, r, h, hd, e);
  }
  void memory_gates_rows(const float* x, int xs, const float* al, const float* dt, float* a,
                         float* b, float* g, int t, int h, float* scratch) override {
    ++counts_->gates_rows;
    cpu_->memory_gates_rows(x, xs, al, dt, a, b, g, t, h, scratch);
  }

  void residual_norm(float* x, const float* y, const float* g, float* out, int r, int d, int rg,
                     int gs, ResidualNorm norm, const float* na, const float* nb,
                     float e) override {
    ++counts_->residual_norm;
    cpu_->residual_norm(x, y, g, out, r, d, rg, gs, norm, na, nb, e);
  }

  void linear(const float* x, const float* w, const float* b, float* y, int r, int i,
              int o) override {
    cpu_->linear(x, w, b, y, r, i, o);
  }
  void layer_norm(const float* x, float* y, int r, int d, const float* w, const float* b,
                  float e) override {
    cpu_->layer_norm(x, y, r, d, w, b, e);
  }
  void layer_norm_modulate(const float* x, float* y, int r, int d, const float* sh, const float* sc,
                           int g, int gs, float e) override {
    cpu_->layer_norm_modulate(x, y, r, d, sh, sc, g, gs, e);
  }
  void rms_norm(const float* x, float* y, int r, int d, const float* w, float e) override {
    cpu_->rms_norm(x, y, r, d, w, e);
  }
  void l2_normalize_heads(float* x, int r, int h, int d, float e) override {
    cpu_->l2_normalize_heads(x, r, h, d, e);
  }
  void gelu_tanh(float* x, size_t n) override { cpu_->gelu_tanh(x, n); }
  void gelu_erf(float* x, size_t n) override { cpu_->gelu_erf(x, n); }
  void silu(float* x, size_t n) override { cpu_->silu(x, n); }
  void gated_residual(float* x, const float* y, const float* g, int r, int d, int rg,
                      int gs) override {
    cpu_->gated_residual(x, y, g, r, d, rg, gs);
  }
  void gated_residual_heads(float* x, const float* y, const float* g, int r, int h, int d,
                            int rs) override {
    cpu_->gated_residual_heads(x, y, g, r, h, d, rs);
  }
  void rope_3d(float* x, int t, int h, int d, int rs, const int* pt, const int* pr, const int* pc,
               float theta) override {
    cpu_->rope_3d(x, t, h, d, rs, pt, pr, pc, theta);
  }
  void attention(const float* q, int qs, const float* k, int ks, const float* v, int vs, float* o,
                 int os, int tq, int tk, int h, int d, float scale) override {
    cpu_->attention(q, qs, k, ks, v, vs, o, os, tq, tk, h, d, scale);
  }
  void gated_delta_update(float* s, const float* k, int ks, const float* v, int vs, const float* a,
                          const float* b, int t, int h, int dk, int dv) override {
    cpu_->gated_delta_update(s, k, ks, v, vs, a, b, t, h, dk, dv);
  }
  void memory_read(const float* s, const float* q, int qs, float* o, int os, int t, int h, int dk,
                   int dv, float scale) override {
    cpu_->memory_read(s, q, qs, o, os, t, h, dk, dv, scale);
  }
  void conv2d_3x3(const float* in, int ci, int h, int w, const float* wt, const float* b, int co,
                  int stride, float* out) override {
    cpu_->conv2d_3x3(in, ci, h, w, wt, b, co, stride, out);
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    cpu_->upsample_nearest_2x(in, c, h, w, out);
  }
  void memory_gates(const float* raw, const float* al, const float* dt, float* a, float* b,
                    float* g, int t, int h) override {
    cpu_->memory_gates(raw, al, dt, a, b, g, t, h);
  }

 private:
  Counts* counts_;
  std::unique_ptr<Backend> cpu_ = make_cpu_backend();
};

// Profiling over dispatch over a device that has the ops: each fused op reaches the device as one
// call, is timed as one op (qk_norm_rope its own; the other two as the ops they extend) with its
// least traffic, and the separate ops it replaces are never called.
TEST(FusedOps, DispatchAndProfilingPassEachFusedOpWhole) {
  CountingDevice::Counts counts;
  OpProfile profile;
  auto device = make_profiling_backend(
      make_dispatch_backend(std::make_unique<CountingDevice>(&counts)), &profile);
  const Positions p = positions(1, 3, 5);
  const int tokens = 15, heads = 2, head_dim = 8, dim = heads * head_dim,
            stride = 4 * dim + 3 * heads;
  const auto x = random_values(static_cast<size_t>(tokens) * stride, 8);
  const auto w = random_values(static_cast<size_t>(dim), 9, 0.5f, 1.5f);
  std::vector<float> q(static_cast<size_t>(tokens) * dim), k(q.size()), qm(q.size());
  device->qk_norm_rope(x.data(), stride, q.data(), k.data(), tokens, heads, head_dim, w.data(),
                       w.data(), 1e-6f, p.t.data(), p.r.data(), p.c.data(), 10000.0f, true);
  device->l2_normalize_heads_rows(x.data() + 2 * dim, stride, qm.data(), tokens, heads, head_dim,
                                  1e-6f);
  const size_t n = static_cast<size_t>(tokens) * heads;
  std::vector<float> gates(3 * n), scratch(3 * n);
  device->memory_gates_rows(x.data() + 3 * dim, stride, w.data(), w.data(), gates.data(),
                            gates.data() + n, gates.data() + 2 * n, tokens, heads, scratch.data());
  EXPECT_EQ(counts.qk_norm_rope, 1);
  EXPECT_EQ(counts.l2_rows, 1);
  EXPECT_EQ(counts.gates_rows, 1);
  const auto entry = [&](Op op) { return profile.ops[static_cast<size_t>(op)]; };
  EXPECT_EQ(entry(Op::qk_norm_rope).calls, 1);
  EXPECT_EQ(entry(Op::qk_norm_rope).bytes, sizeof(float) * (4.0 * tokens * dim + 2.0 * dim));
  EXPECT_EQ(entry(Op::l2_normalize_heads).calls, 1);
  EXPECT_EQ(entry(Op::memory_gates).calls, 1);
  EXPECT_EQ(entry(Op::rms_norm).calls, 0);
  EXPECT_EQ(entry(Op::rope_3d).calls, 0);
  EXPECT_EQ(op_name(Op::qk_norm_rope), "qk_norm_rope");
}

// residual_norm reaches the device as one call per use, both norms, timed as Op::residual_norm
// with its least traffic (x and y read, x and out written, plus the gate and norm rows), and never
// as gated_residual or a norm.
TEST(FusedOps, DispatchAndProfilingPassResidualNormWhole) {
  CountingDevice::Counts counts;
  OpProfile profile;
  auto device = make_profiling_backend(
      make_dispatch_backend(std::make_unique<CountingDevice>(&counts)), &profile);
  const int rows = 12, dim = 16;
  const size_t n = static_cast<size_t>(rows) * dim;
  auto x = random_values(n, 21);
  const auto y = random_values(n, 22);
  const auto rows6 = random_values(6 * static_cast<size_t>(dim), 23);
  const float* row = rows6.data();
  std::vector<float> out(n);
  device->residual_norm(x.data(), y.data(), row, out.data(), rows, dim, rows, 0,
                        ResidualNorm::layer_norm, row + dim, row + 2 * dim, 1e-6f);
  device->residual_norm(x.data(), y.data(), nullptr, out.data(), rows, dim, rows, 0,
                        ResidualNorm::layer_norm_modulate, row + 3 * dim, row + 4 * dim, 1e-6f);
  EXPECT_EQ(counts.residual_norm, 2);
  const auto entry = [&](Op op) { return profile.ops[static_cast<size_t>(op)]; };
  EXPECT_EQ(entry(Op::residual_norm).calls, 2);
  // Gated: 4 rows * dim + gate row + 2 norm rows; plain: 4 rows * dim + 2 modulation rows.
  EXPECT_EQ(entry(Op::residual_norm).bytes,
            sizeof(float) * ((4.0 * n + 3.0 * dim) + (4.0 * n + 2.0 * dim)));
  EXPECT_EQ(entry(Op::gated_residual).calls, 0);
  EXPECT_EQ(entry(Op::layer_norm).calls, 0);
  EXPECT_EQ(entry(Op::layer_norm_modulate).calls, 0);
  EXPECT_EQ(op_name(Op::residual_norm), "residual_norm");
}

}  // namespace
}  // namespace strand
