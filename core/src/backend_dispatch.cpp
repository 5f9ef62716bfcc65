// Dispatch with CPU fallback: ops the primary backend lacks run on the CPU reference kernels,
// with their arguments staged through host memory. Sizes of every argument follow from the op's
// shape parameters, which is what lets one generic staging path serve every op.
#include <vector>

#include "strand/backend.h"

namespace strand {
namespace {

// A host copy of a device range; `write_back()` copies the host values back for outputs.
class HostCopy {
 public:
  HostCopy(Backend& device, const float* device_ptr, size_t count)
      : device_(device), device_ptr_(const_cast<float*>(device_ptr)) {
    if (device_ptr_ != nullptr && count > 0) {
      host_.resize(count);
      device_.download(host_.data(), device_ptr_, count);
    }
  }
  [[nodiscard]] float* get() { return device_ptr_ == nullptr ? nullptr : host_.data(); }
  void write_back() {
    if (device_ptr_ != nullptr && !host_.empty()) device_.upload(device_ptr_, host_.data(), host_.size());
  }

 private:
  Backend& device_;
  float* device_ptr_;
  std::vector<float> host_;
};

size_t strided(int rows, int stride, int width) {
  return rows <= 0 ? 0 : static_cast<size_t>(rows - 1) * static_cast<size_t>(stride) + static_cast<size_t>(width);
}
size_t prod(size_t a, size_t b) { return a * b; }

class DispatchBackend final : public Backend {
 public:
  explicit DispatchBackend(std::unique_ptr<Backend> primary)
      : primary_(std::move(primary)), cpu_(make_cpu_backend()) {}

  [[nodiscard]] std::string_view name() const override { return primary_->name(); }
  [[nodiscard]] DeviceKind device() const override { return primary_->device(); }
  [[nodiscard]] bool supports(Op op) const override { return primary_->supports(op); }
  std::unique_ptr<Buffer> allocate(size_t count) override { return primary_->allocate(count); }
  void upload(float* d, const float* s, size_t n) override { primary_->upload(d, s, n); }
  void download(float* d, const float* s, size_t n) override { primary_->download(d, s, n); }
  void copy(float* d, const float* s, size_t n) override { primary_->copy(d, s, n); }
  void copy_2d(float* d, int ds, const float* s, int ss, int rows, int cols) override {
    primary_->copy_2d(d, ds, s, ss, rows, cols);
  }
  void synchronize() override { primary_->synchronize(); }
  // An op the primary lacks stages through the host, which aborts a recording (see Backend).
  [[nodiscard]] bool can_record() const override { return primary_->can_record(); }
  void begin_recording() override { primary_->begin_recording(); }
  std::unique_ptr<Recording> end_recording() override { return primary_->end_recording(); }
  void replay(Recording& recording) override { primary_->replay(recording); }
  [[nodiscard]] uint64_t generation() const override { return primary_->generation(); }

  void linear(const float* x, const float* w, const float* bias, float* y, int rows, int in,
              int out) override {
    if (native(Op::linear)) return primary_->linear(x, w, bias, y, rows, in, out);
    HostCopy hx(*primary_, x, prod(rows, in)), hw(*primary_, w, prod(out, in)),
        hb(*primary_, bias, out), hy(*primary_, y, prod(rows, out));
    cpu_->linear(hx.get(), hw.get(), hb.get(), hy.get(), rows, in, out);
    hy.write_back();
  }
  void layer_norm(const float* x, float* y, int rows, int dim, const float* weight,
                  const float* bias, float eps) override {
    if (native(Op::layer_norm)) return primary_->layer_norm(x, y, rows, dim, weight, bias, eps);
    HostCopy hx(*primary_, x, prod(rows, dim)), hy(*primary_, y, prod(rows, dim)),
        hw(*primary_, weight, dim), hb(*primary_, bias, dim);
    cpu_->layer_norm(hx.get(), hy.get(), rows, dim, hw.get(), hb.get(), eps);
    hy.write_back();
  }
  void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                           const float* scale, int rows_per_group, int group_stride,
                           float eps) override {
    if (native(Op::layer_norm_modulate))
      return primary_->layer_norm_modulate(x, y, rows, dim, shift, scale, rows_per_group,
                                           group_stride, eps);
    const int groups = (rows + rows_per_group - 1) / rows_per_group;
    HostCopy hx(*primary_, x, prod(rows, dim)), hy(*primary_, y, prod(rows, dim)),
        hs(*primary_, shift, strided(groups, group_stride, dim)),
        hc(*primary_, scale, strided(groups, group_stride, dim));
    cpu_->layer_norm_modulate(hx.get(), hy.get(), rows, dim, hs.get(), hc.get(), rows_per_group,
                              group_stride, eps);
    hy.write_back();
  }
  void rms_norm(const float* x, float* y, int rows, int dim, const float* weight,
                float eps) override {
    if (native(Op::rms_norm)) return primary_->rms_norm(x, y, rows, dim, weight, eps);
    HostCopy hx(*primary_, x, prod(rows, dim)), hy(*primary_, y, prod(rows, dim)),
        hw(*primary_, weight, dim);
    cpu_->rms_norm(hx.get(), hy.get(), rows, dim, hw.get(), eps);
    hy.write_back();
  }
  void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps) override {
    if (native(Op::l2_normalize_heads))
      return primary_->l2_normalize_heads(x, rows, heads, head_dim, eps);
    HostCopy hx(*primary_, x, prod(rows, prod(heads, head_dim)));
    cpu_->l2_normalize_heads(hx.get(), rows, heads, head_dim, eps);
    hx.write_back();
  }
  void gelu_tanh(float* x, size_t n) override { unary(Op::gelu_tanh, x, n); }
  void gelu_erf(float* x, size_t n) override { unary(Op::gelu_erf, x, n); }
  void silu(float* x, size_t n) override { unary(Op::silu, x, n); }
  void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                      int rows_per_group, int group_stride) override {
    if (native(Op::gated_residual))
      return primary_->gated_residual(x, y, gate, rows, dim, rows_per_group, group_stride);
    const int groups = (rows + rows_per_group - 1) / rows_per_group;
    HostCopy hx(*primary_, x, prod(rows, dim)), hy(*primary_, y, prod(rows, dim)),
        hg(*primary_, gate, strided(groups, group_stride, dim));
    cpu_->gated_residual(hx.get(), hy.get(), hg.get(), rows, dim, rows_per_group, group_stride);
    hx.write_back();
  }
  void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                            int head_dim, int row_stride) override {
    if (native(Op::gated_residual_heads))
      return primary_->gated_residual_heads(x, y, gate, rows, heads, head_dim, row_stride);
    const size_t count = strided(rows, row_stride, heads * head_dim);
    HostCopy hx(*primary_, x, count), hy(*primary_, y, count), hg(*primary_, gate, prod(rows, heads));
    cpu_->gated_residual_heads(hx.get(), hy.get(), hg.get(), rows, heads, head_dim, row_stride);
    hx.write_back();
  }
  void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
               const int* pos_r, const int* pos_c, float theta) override {
    if (native(Op::rope_3d))
      return primary_->rope_3d(x, tokens, heads, head_dim, row_stride, pos_t, pos_r, pos_c, theta);
    HostCopy hx(*primary_, x, strided(tokens, row_stride, heads * head_dim));
    cpu_->rope_3d(hx.get(), tokens, heads, head_dim, row_stride, pos_t, pos_r, pos_c, theta);
    hx.write_back();
  }
  void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
                 int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
                 float scale) override {
    if (native(Op::attention))
      return primary_->attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk,
                                 heads, head_dim, scale);
    const int width = heads * head_dim;
    HostCopy hq(*primary_, q, strided(tq, q_stride, width)),
        hk(*primary_, k, strided(tk, k_stride, width)), hv(*primary_, v, strided(tk, v_stride, width)),
        ho(*primary_, out, strided(tq, out_stride, width));
    cpu_->attention(hq.get(), q_stride, hk.get(), k_stride, hv.get(), v_stride, ho.get(),
                    out_stride, tq, tk, heads, head_dim, scale);
    ho.write_back();
  }
  void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                          const float* alpha, const float* beta, int tokens, int heads, int dk,
                          int dv) override {
    if (native(Op::gated_delta_update))
      return primary_->gated_delta_update(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads,
                                          dk, dv);
    HostCopy hs(*primary_, s, prod(heads, prod(dk, dv))),
        hk(*primary_, k, strided(tokens, k_stride, heads * dk)),
        hv(*primary_, v, strided(tokens, v_stride, heads * dv)),
        ha(*primary_, alpha, prod(tokens, heads)), hb(*primary_, beta, prod(tokens, heads));
    cpu_->gated_delta_update(hs.get(), hk.get(), k_stride, hv.get(), v_stride, ha.get(), hb.get(),
                             tokens, heads, dk, dv);
    hs.write_back();
  }
  void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                   int tokens, int heads, int dk, int dv, float scale) override {
    if (native(Op::memory_read))
      return primary_->memory_read(s, q, q_stride, out, out_stride, tokens, heads, dk, dv, scale);
    HostCopy hs(*primary_, s, prod(heads, prod(dk, dv))),
        hq(*primary_, q, strided(tokens, q_stride, heads * dk)),
        ho(*primary_, out, strided(tokens, out_stride, heads * dv));
    cpu_->memory_read(hs.get(), hq.get(), q_stride, ho.get(), out_stride, tokens, heads, dk, dv,
                      scale);
    ho.write_back();
  }
  void conv2d_3x3(const float* in, int c_in, int h, int w, const float* weight, const float* bias,
                  int c_out, int stride, float* out) override {
    if (native(Op::conv2d_3x3))
      return primary_->conv2d_3x3(in, c_in, h, w, weight, bias, c_out, stride, out);
    const size_t h_out = static_cast<size_t>((h - 1) / stride + 1);
    const size_t w_out = static_cast<size_t>((w - 1) / stride + 1);
    HostCopy hi(*primary_, in, prod(c_in, prod(h, w))),
        hw(*primary_, weight, prod(c_out, prod(c_in, 9))), hb(*primary_, bias, c_out),
        ho(*primary_, out, prod(c_out, h_out * w_out));
    cpu_->conv2d_3x3(hi.get(), c_in, h, w, hw.get(), hb.get(), c_out, stride, ho.get());
    ho.write_back();
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    if (native(Op::upsample_nearest_2x)) return primary_->upsample_nearest_2x(in, c, h, w, out);
    HostCopy hi(*primary_, in, prod(c, prod(h, w))), ho(*primary_, out, prod(c, prod(4 * h, w)));
    cpu_->upsample_nearest_2x(hi.get(), c, h, w, ho.get());
    ho.write_back();
  }
  void rms_norm_rows(const float* x, int x_stride, float* y, int rows, int dim,
                     const float* weight, float eps) override {
    if (native(Op::rms_norm)) return primary_->rms_norm_rows(x, x_stride, y, rows, dim, weight, eps);
    Backend::rms_norm_rows(x, x_stride, y, rows, dim, weight, eps);  // copy, then the CPU's norm
  }
  void feed_forward(const float* x, const float* w1, const float* b1, const float* w2,
                    const float* b2, float* hidden, float* y, int rows, int in, int mid,
                    int out) override {
    if (native(Op::feed_forward) && native(Op::linear) && native(Op::gelu_tanh)) {
      return primary_->feed_forward(x, w1, b1, w2, b2, hidden, y, rows, in, mid, out);
    }
    Backend::feed_forward(x, w1, b1, w2, b2, hidden, y, rows, in, mid, out);  // op by op
  }
  // The fused ops run on the primary when it has them (and, for qk_norm_rope, the ops its
  // default composes, which a primary may fall back to); otherwise op by op, each dispatched.
  void qk_norm_rope(const float* x, int x_stride, float* q, float* k, int rows, int heads,
                    int head_dim, const float* q_weight, const float* k_weight, float eps,
                    const int* pos_t, const int* pos_r, const int* pos_c, float theta,
                    bool rope_k) override {
    if (native(Op::qk_norm_rope) && native(Op::rms_norm) && native(Op::rope_3d)) {
      return primary_->qk_norm_rope(x, x_stride, q, k, rows, heads, head_dim, q_weight, k_weight,
                                    eps, pos_t, pos_r, pos_c, theta, rope_k);
    }
    Backend::qk_norm_rope(x, x_stride, q, k, rows, heads, head_dim, q_weight, k_weight, eps, pos_t,
                          pos_r, pos_c, theta, rope_k);
  }
  void residual_norm(float* x, const float* y, const float* gate, float* out, int rows, int dim,
                     int rows_per_group, int group_stride, ResidualNorm norm, const float* norm_a,
                     const float* norm_b, float eps) override {
    const Op norm_op =
        norm == ResidualNorm::layer_norm_modulate ? Op::layer_norm_modulate : Op::layer_norm;
    if (native(Op::residual_norm) && native(Op::gated_residual) && native(norm_op)) {
      return primary_->residual_norm(x, y, gate, out, rows, dim, rows_per_group, group_stride, norm,
                                     norm_a, norm_b, eps);
    }
    Backend::residual_norm(x, y, gate, out, rows, dim, rows_per_group, group_stride, norm, norm_a,
                           norm_b, eps);
  }
  void l2_normalize_heads_rows(const float* x, int x_stride, float* y, int rows, int heads,
                               int head_dim, float eps) override {
    if (native(Op::l2_normalize_heads))
      return primary_->l2_normalize_heads_rows(x, x_stride, y, rows, heads, head_dim, eps);
    Backend::l2_normalize_heads_rows(x, x_stride, y, rows, heads, head_dim, eps);
  }
  void memory_gates_rows(const float* x, int x_stride, const float* a_log, const float* dt_bias,
                         float* alpha, float* beta, float* gamma, int tokens, int heads,
                         float* scratch) override {
    if (native(Op::memory_gates))
      return primary_->memory_gates_rows(x, x_stride, a_log, dt_bias, alpha, beta, gamma, tokens,
                                         heads, scratch);
    Backend::memory_gates_rows(x, x_stride, a_log, dt_bias, alpha, beta, gamma, tokens, heads,
                               scratch);
  }
  void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                    float* beta, float* gamma, int tokens, int heads) override {
    if (native(Op::memory_gates))
      return primary_->memory_gates(raw, a_log, dt_bias, alpha, beta, gamma, tokens, heads);
    const size_t gates = prod(tokens, heads);
    HostCopy hr(*primary_, raw, 3 * gates), hl(*primary_, a_log, heads),
        hd(*primary_, dt_bias, heads), ha(*primary_, alpha, gates), hb(*primary_, beta, gates),
        hg(*primary_, gamma, gates);
    cpu_->memory_gates(hr.get(), hl.get(), hd.get(), ha.get(), hb.get(), hg.get(), tokens, heads);
    ha.write_back();
    hb.write_back();
    hg.write_back();
  }

 private:
  [[nodiscard]] bool native(Op op) const {
    return primary_->device() == DeviceKind::cpu || primary_->supports(op);
  }
  void unary(Op op, float* x, size_t n) {
    if (native(op)) {
      if (op == Op::gelu_tanh) primary_->gelu_tanh(x, n);
      else if (op == Op::gelu_erf) primary_->gelu_erf(x, n);
      else primary_->silu(x, n);
      return;
    }
    HostCopy hx(*primary_, x, n);
    if (op == Op::gelu_tanh) cpu_->gelu_tanh(hx.get(), n);
    else if (op == Op::gelu_erf) cpu_->gelu_erf(hx.get(), n);
    else cpu_->silu(hx.get(), n);
    hx.write_back();
  }

  std::unique_ptr<Backend> primary_;
  std::unique_ptr<Backend> cpu_;
};

}  // namespace

std::unique_ptr<Backend> make_dispatch_backend(std::unique_ptr<Backend> primary) {
  return std::make_unique<DispatchBackend>(std::move(primary));
}

}  // namespace strand
