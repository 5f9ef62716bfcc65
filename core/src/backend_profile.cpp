// A timing decorator: forwards every op to the wrapped backend and accumulates wall time and
// call counts per op (synchronising after each op so device time is attributed correctly).
// Used by `strand-cli bench --ops` to show where a block's time goes, and how far each op is from
// its roofline floor (OpProfile's flops and bytes).
#include <chrono>
#include <initializer_list>
#include <string>
#include <utility>

#include "strand/backend.h"

namespace strand {
namespace {

class ProfilingBackend final : public Backend {
 public:
  ProfilingBackend(std::unique_ptr<Backend> inner, OpProfile* profile)
      : inner_(std::move(inner)), profile_(profile) {}

  [[nodiscard]] std::string_view name() const override { return inner_->name(); }
  [[nodiscard]] DeviceKind device() const override { return inner_->device(); }
  [[nodiscard]] bool supports(Op op) const override { return inner_->supports(op); }
  std::unique_ptr<Buffer> allocate(size_t n) override { return inner_->allocate(n); }
  void upload(float* d, const float* s, size_t n) override { inner_->upload(d, s, n); }
  void download(float* d, const float* s, size_t n) override { inner_->download(d, s, n); }
  void copy(float* d, const float* s, size_t n) override { inner_->copy(d, s, n); }
  void copy_2d(float* d, int ds, const float* s, int ss, int rows, int cols) override {
    inner_->copy_2d(d, ds, s, ss, rows, cols);
  }
  void synchronize() override { inner_->synchronize(); }

  // One op's least work (see OpProfile).
  struct Cost {
    double flops = 0;
    double bytes = 0;
    double weight_bytes = 0;
  };
  static constexpr double kF = sizeof(float);

#define STRAND_TIMED(op, call, cost, shape)                                                 \
  do {                                                                                      \
    const auto start = std::chrono::steady_clock::now();                                    \
    inner_->call;                                                                           \
    inner_->synchronize();                                                                  \
    const double ms =                                                                       \
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start) \
            .count();                                                                       \
    const Cost op_cost = cost;                                                              \
    add(profile_->ops[static_cast<size_t>(op)], ms, op_cost);                               \
    if (profile_->record_shapes)                                                            \
      add(profile_->by_shape[std::string(op_name(op)) + shape], ms, op_cost);               \
  } while (0)

  static void add(OpProfile::Entry& slot, double ms, const Cost& c) {
    slot.ms += ms;
    ++slot.calls;
    slot.flops += c.flops;
    slot.bytes += c.bytes;
    slot.weight_bytes += c.weight_bytes;
  }
  static std::string dims(std::initializer_list<std::pair<const char*, double>> parts) {
    std::string s;
    for (const auto& [label, value] : parts)
      s += " " + std::string(label) + std::to_string(static_cast<int64_t>(value));
    return s;
  }

  void linear(const float* x, const float* w, const float* b, float* y, int r, int i,
              int o) override {
    const double weights = kF * (double(o) * i + (b != nullptr ? o : 0));
    STRAND_TIMED(Op::linear, linear(x, w, b, y, r, i, o),
                 (Cost{2.0 * r * i * o, kF * (double(r) * i + double(r) * o) + weights, weights}),
                 dims({{"r", r}, {"in", i}, {"out", o}}));
  }
  void feed_forward(const float* x, const float* w1, const float* b1, const float* w2,
                    const float* b2, float* hidden, float* y, int r, int i, int m,
                    int o) override {
    const double weights = kF * (double(m) * i + double(o) * m + (b1 != nullptr ? m : 0) +
                                 (b2 != nullptr ? o : 0));
    // The hidden activations need not leave the chip: the floor counts only x, y and weights.
    STRAND_TIMED(Op::feed_forward, feed_forward(x, w1, b1, w2, b2, hidden, y, r, i, m, o),
                 (Cost{2.0 * r * i * m + 2.0 * r * m * o,
                       kF * (double(r) * i + double(r) * o) + weights, weights}),
                 dims({{"r", r}, {"in", i}, {"mid", m}, {"out", o}}));
  }
  void layer_norm(const float* x, float* y, int r, int d, const float* w, const float* b,
                  float e) override {
    STRAND_TIMED(Op::layer_norm, layer_norm(x, y, r, d, w, b, e),
                 (Cost{0, kF * (2.0 * r * d + 2.0 * d), 0}), dims({{"r", r}, {"d", d}}));
  }
  void layer_norm_modulate(const float* x, float* y, int r, int d, const float* sh, const float* sc,
                           int g, int gs, float e) override {
    const double groups = g > 0 ? (r + g - 1) / g : 1;
    STRAND_TIMED(Op::layer_norm_modulate, layer_norm_modulate(x, y, r, d, sh, sc, g, gs, e),
                 (Cost{0, kF * (2.0 * r * d + 2.0 * groups * d), 0}), dims({{"r", r}, {"d", d}}));
  }
  void rms_norm_rows(const float* x, int xs, float* y, int r, int d, const float* w,
                     float e) override {
    STRAND_TIMED(Op::rms_norm, rms_norm_rows(x, xs, y, r, d, w, e),
                 (Cost{0, kF * (2.0 * r * d + d), 0}), dims({{"r", r}, {"d", d}}));
  }
  void rms_norm(const float* x, float* y, int r, int d, const float* w, float e) override {
    STRAND_TIMED(Op::rms_norm, rms_norm(x, y, r, d, w, e), (Cost{0, kF * (2.0 * r * d + d), 0}),
                 dims({{"r", r}, {"d", d}}));
  }
  void l2_normalize_heads(float* x, int r, int h, int hd, float e) override {
    STRAND_TIMED(Op::l2_normalize_heads, l2_normalize_heads(x, r, h, hd, e),
                 (Cost{0, kF * 2.0 * r * h * hd, 0}), dims({{"r", r}, {"h", h}, {"d", hd}}));
  }
  void gelu_tanh(float* x, size_t n) override {
    STRAND_TIMED(Op::gelu_tanh, gelu_tanh(x, n), (Cost{0, kF * 2.0 * n, 0}),
                 dims({{"n", double(n)}}));
  }
  void gelu_erf(float* x, size_t n) override {
    STRAND_TIMED(Op::gelu_erf, gelu_erf(x, n), (Cost{0, kF * 2.0 * n, 0}),
                 dims({{"n", double(n)}}));
  }
  void silu(float* x, size_t n) override {
    STRAND_TIMED(Op::silu, silu(x, n), (Cost{0, kF * 2.0 * n, 0}), dims({{"n", double(n)}}));
  }
  void gated_residual(float* x, const float* y, const float* g, int r, int d, int rg,
                      int gs) override {
    STRAND_TIMED(Op::gated_residual, gated_residual(x, y, g, r, d, rg, gs),
                 (Cost{0, kF * 3.0 * r * d, 0}), dims({{"r", r}, {"d", d}}));
  }
  void gated_residual_heads(float* x, const float* y, const float* gate, int r, int h, int hd,
                            int stride) override {
    STRAND_TIMED(Op::gated_residual_heads, gated_residual_heads(x, y, gate, r, h, hd, stride),
                 (Cost{0, kF * (3.0 * r * h * hd + double(r) * h), 0}),
                 dims({{"r", r}, {"h", h}, {"d", hd}}));
  }
  void rope_3d(float* x, int t, int h, int hd, int rs, const int* pt, const int* pr, const int* pc,
               float theta) override {
    STRAND_TIMED(Op::rope_3d, rope_3d(x, t, h, hd, rs, pt, pr, pc, theta),
                 (Cost{0, kF * 2.0 * t * h * hd, 0}), dims({{"t", t}, {"h", h}, {"d", hd}}));
  }
  void attention(const float* q, int qs, const float* k, int ks, const float* v, int vs, float* o,
                 int os, int tq, int tk, int h, int hd, float scale) override {
    STRAND_TIMED(Op::attention, attention(q, qs, k, ks, v, vs, o, os, tq, tk, h, hd, scale),
                 (Cost{4.0 * tq * tk * h * hd, kF * (2.0 * tq + 2.0 * tk) * h * hd, 0}),
                 dims({{"q", tq}, {"k", tk}, {"h", h}, {"d", hd}}));
  }
  // The sequential rule's work per token and head: decay (dk dv), S^T k (2 dk dv), the rank-1
  // update (2 dk dv). A chunked kernel does more, so this is a floor.
  void gated_delta_update(float* s, const float* k, int ks, const float* v, int vs, const float* a,
                          const float* b, int t, int h, int dk, int dv) override {
    STRAND_TIMED(Op::gated_delta_update, gated_delta_update(s, k, ks, v, vs, a, b, t, h, dk, dv),
                 (Cost{5.0 * t * h * dk * dv,
                       kF * (2.0 * h * dk * dv + double(t) * h * (dk + dv + 2.0)), 0}),
                 dims({{"t", t}, {"h", h}, {"dk", dk}, {"dv", dv}}));
  }
  void memory_read(const float* s, const float* q, int qs, float* o, int os, int t, int h, int dk,
                   int dv, float scale) override {
    STRAND_TIMED(
        Op::memory_read, memory_read(s, q, qs, o, os, t, h, dk, dv, scale),
        (Cost{2.0 * t * h * dk * dv, kF * (double(h) * dk * dv + double(t) * h * (dk + dv)), 0}),
        dims({{"t", t}, {"h", h}, {"dk", dk}, {"dv", dv}}));
  }
  void conv2d_3x3(const float* in, int ci, int h, int w, const float* wt, const float* b, int co,
                  int stride, float* out) override {
    const double ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride;
    const double weights = kF * (9.0 * co * ci + (b != nullptr ? co : 0));
    STRAND_TIMED(Op::conv2d_3x3, conv2d_3x3(in, ci, h, w, wt, b, co, stride, out),
                 (Cost{2.0 * 9.0 * ci * co * ho * wo,
                       kF * (double(ci) * h * w + co * ho * wo) + weights, weights}),
                 dims({{"cin", ci}, {"cout", co}, {"h", h}, {"w", w}, {"s", stride}}));
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    STRAND_TIMED(Op::upsample_nearest_2x, upsample_nearest_2x(in, c, h, w, out),
                 (Cost{0, kF * 5.0 * c * h * w, 0}), dims({{"c", c}, {"h", h}, {"w", w}}));
  }
  // Reads the three projections and the two per-head vectors, writes the three gates.
  void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                    float* beta, float* gamma, int t, int h) override {
    STRAND_TIMED(Op::memory_gates, memory_gates(raw, a_log, dt_bias, alpha, beta, gamma, t, h),
                 (Cost{0, kF * (6.0 * t * h + 2.0 * h), 0}), dims({{"t", t}, {"h", h}}));
  }
  // Reads q's and k's columns and both weights, writes q and k (the angle table, a function of
  // the positions, is not counted).
  void qk_norm_rope(const float* x, int xs, float* q, float* k, int r, int h, int hd,
                    const float* qw, const float* kw, float e, const int* pt, const int* pr,
                    const int* pc, float theta, bool rope_k) override {
    const double d = double(h) * hd;
    STRAND_TIMED(Op::qk_norm_rope,
                 qk_norm_rope(x, xs, q, k, r, h, hd, qw, kw, e, pt, pr, pc, theta, rope_k),
                 (Cost{0, kF * (4.0 * r * d + 2.0 * d), 0}),
                 dims({{"r", r}, {"h", h}, {"d", hd}, {"rope_k", rope_k ? 1 : 0}}));
  }
  // Reads x, y, the gate rows and the norm's two parameter rows; writes x and out.
  void residual_norm(float* x, const float* y, const float* g, float* out, int r, int d, int rg,
                     int gs, ResidualNorm norm, const float* na, const float* nb,
                     float e) override {
    const double groups = rg > 0 ? (r + rg - 1) / rg : 1;
    const double gate_rows = g != nullptr ? groups : 0.0;
    const double norm_rows = norm == ResidualNorm::layer_norm_modulate ? groups : 1.0;
    STRAND_TIMED(Op::residual_norm, residual_norm(x, y, g, out, r, d, rg, gs, norm, na, nb, e),
                 (Cost{0, kF * (4.0 * r * d + (gate_rows + 2.0 * norm_rows) * d), 0}),
                 dims({{"r", r},
                       {"d", d},
                       {"gate", g != nullptr ? 1 : 0},
                       {"modulate", norm == ResidualNorm::layer_norm_modulate ? 1 : 0}}));
  }
  void l2_normalize_heads_rows(const float* x, int xs, float* y, int r, int h, int hd,
                               float e) override {
    STRAND_TIMED(Op::l2_normalize_heads, l2_normalize_heads_rows(x, xs, y, r, h, hd, e),
                 (Cost{0, kF * 2.0 * r * h * hd, 0}), dims({{"r", r}, {"h", h}, {"d", hd}}));
  }
  void memory_gates_rows(const float* x, int xs, const float* a_log, const float* dt_bias,
                         float* alpha, float* beta, float* gamma, int t, int h,
                         float* scratch) override {
    STRAND_TIMED(Op::memory_gates,
                 memory_gates_rows(x, xs, a_log, dt_bias, alpha, beta, gamma, t, h, scratch),
                 (Cost{0, kF * (6.0 * t * h + 2.0 * h), 0}), dims({{"t", t}, {"h", h}}));
  }
#undef STRAND_TIMED

 private:
  std::unique_ptr<Backend> inner_;
  OpProfile* profile_;
};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner,
                                                OpProfile* profile) {
  return std::make_unique<ProfilingBackend>(std::move(inner), profile);
}

}  // namespace strand
