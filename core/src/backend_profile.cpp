// A timing decorator: forwards every op to the wrapped backend and accumulates wall time and
// call counts per op (synchronising after each op so device time is attributed correctly).
// Used by `strand-cli bench --ops` to show where a block's time goes.
#include <chrono>

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
  void synchronize() override { inner_->synchronize(); }

#define STRAND_TIMED(op, call)                                                              \
  do {                                                                                      \
    const auto start = std::chrono::steady_clock::now();                                    \
    inner_->call;                                                                           \
    inner_->synchronize();                                                                  \
    auto& slot = profile_->ops[static_cast<size_t>(op)];                                    \
    slot.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - \
                                                         start).count();                    \
    ++slot.calls;                                                                           \
  } while (0)

  void linear(const float* x, const float* w, const float* b, float* y, int r, int i, int o) override {
    STRAND_TIMED(Op::linear, linear(x, w, b, y, r, i, o));
  }
  void layer_norm(const float* x, float* y, int r, int d, const float* w, const float* b, float e) override {
    STRAND_TIMED(Op::layer_norm, layer_norm(x, y, r, d, w, b, e));
  }
  void layer_norm_modulate(const float* x, float* y, int r, int d, const float* sh, const float* sc,
                           int g, int gs, float e) override {
    STRAND_TIMED(Op::layer_norm_modulate, layer_norm_modulate(x, y, r, d, sh, sc, g, gs, e));
  }
  void rms_norm(const float* x, float* y, int r, int d, const float* w, float e) override {
    STRAND_TIMED(Op::rms_norm, rms_norm(x, y, r, d, w, e));
  }
  void l2_normalize_heads(float* x, int r, int h, int hd, float e) override {
    STRAND_TIMED(Op::l2_normalize_heads, l2_normalize_heads(x, r, h, hd, e));
  }
  void gelu_tanh(float* x, size_t n) override { STRAND_TIMED(Op::gelu_tanh, gelu_tanh(x, n)); }
  void gelu_erf(float* x, size_t n) override { STRAND_TIMED(Op::gelu_erf, gelu_erf(x, n)); }
  void silu(float* x, size_t n) override { STRAND_TIMED(Op::silu, silu(x, n)); }
  void gated_residual(float* x, const float* y, const float* g, int r, int d, int rg, int gs) override {
    STRAND_TIMED(Op::gated_residual, gated_residual(x, y, g, r, d, rg, gs));
  }
  void gated_residual_heads(float* x, const float* y, const float* gate, int r, int h, int hd,
                            int stride) override {
    STRAND_TIMED(Op::gated_residual_heads, gated_residual_heads(x, y, gate, r, h, hd, stride));
  }
  void rope_3d(float* x, int t, int h, int hd, int rs, const int* pt, const int* pr, const int* pc,
               float theta) override {
    STRAND_TIMED(Op::rope_3d, rope_3d(x, t, h, hd, rs, pt, pr, pc, theta));
  }
  void attention(const float* q, int qs, const float* k, int ks, const float* v, int vs, float* o,
                 int os, int tq, int tk, int h, int hd, float scale) override {
    STRAND_TIMED(Op::attention, attention(q, qs, k, ks, v, vs, o, os, tq, tk, h, hd, scale));
  }
  void gated_delta_update(float* s, const float* k, int ks, const float* v, int vs, const float* a,
                          const float* b, int t, int h, int dk, int dv) override {
    STRAND_TIMED(Op::gated_delta_update, gated_delta_update(s, k, ks, v, vs, a, b, t, h, dk, dv));
  }
  void memory_read(const float* s, const float* q, int qs, float* o, int os, int t, int h, int dk,
                   int dv, float scale) override {
    STRAND_TIMED(Op::memory_read, memory_read(s, q, qs, o, os, t, h, dk, dv, scale));
  }
  void conv2d_3x3(const float* in, int ci, int h, int w, const float* wt, const float* b, int co,
                  int stride, float* out) override {
    STRAND_TIMED(Op::conv2d_3x3, conv2d_3x3(in, ci, h, w, wt, b, co, stride, out));
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    STRAND_TIMED(Op::upsample_nearest_2x, upsample_nearest_2x(in, c, h, w, out));
  }
#undef STRAND_TIMED

 private:
  std::unique_ptr<Backend> inner_;
  OpProfile* profile_;
};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner, OpProfile* profile) {
  return std::make_unique<ProfilingBackend>(std::move(inner), profile);
}

}  // namespace strand
