// Backend: where the engine's arithmetic runs. A backend owns device memory (Buffer) and runs
// ops on pointers into it. Compute dispatches each op to the primary backend when it
// supports() that op, and otherwise to the CPU reference backend through host staging copies, so a
// new device can be brought up op by op (as in ggml's supports_op).
//
// Contract for every op: all pointers belong to the backend the op runs on; shapes and semantics
// are those of the CPU kernels in kernels/cpu/*.h (the reference implementation).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "strand/error.h"

namespace strand {

enum class DeviceKind { cpu = 1, cuda };

enum class Op {
  linear = 0,
  layer_norm,
  layer_norm_modulate,
  rms_norm,
  l2_normalize_heads,
  gelu_tanh,
  gelu_erf,
  silu,
  gated_residual,
  gated_residual_heads,
  rope_3d,
  attention,
  gated_delta_update,
  memory_read,
  conv2d_3x3,
  upsample_nearest_2x,
  memory_gates,
  feed_forward,
  qk_norm_rope,
  residual_norm,
  count
};
std::string_view op_name(Op op);

// The normalisation Backend::residual_norm applies after its residual add.
enum class ResidualNorm {
  layer_norm,           // layer_norm(x, out, weight, bias): norm_a = weight, norm_b = bias
  layer_norm_modulate,  // layer_norm_modulate(x, out, shift, scale): norm_a = shift, norm_b = scale
};

// A block of device memory holding float32 values.
class Buffer {
 public:
  virtual ~Buffer() = default;
  [[nodiscard]] virtual DeviceKind device() const = 0;
  [[nodiscard]] virtual size_t count() const = 0;  // floats
  [[nodiscard]] virtual float* data() = 0;         // device pointer
};

// A recorded sequence of ops (on CUDA, an instantiated graph) that a backend can replay. It holds
// the device pointers it was recorded with; the backend that made it must outlive it.
class Recording {
 public:
  virtual ~Recording() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  [[nodiscard]] virtual DeviceKind device() const = 0;
  [[nodiscard]] virtual bool supports(Op op) const = 0;

  // Zero-initialised buffer of `count` floats. Throws Error(out_of_memory).
  virtual std::unique_ptr<Buffer> allocate(size_t count) = 0;
  virtual void upload(float* device_dst, const float* host_src, size_t count) = 0;
  virtual void download(float* host_dst, const float* device_src, size_t count) = 0;
  virtual void copy(float* device_dst, const float* device_src, size_t count) = 0;
  // Copies `rows` rows of `cols` floats on the device, from src (row stride src_stride floats)
  // to dst (row stride dst_stride); the ranges must not overlap. The default issues one copy()
  // per row; backends override it with one 2-D copy.
  virtual void copy_2d(float* dst, int dst_stride, const float* src, int src_stride, int rows,
                       int cols) {
    for (int r = 0; r < rows; ++r) {
      copy(dst + static_cast<size_t>(r) * dst_stride, src + static_cast<size_t>(r) * src_stride,
           static_cast<size_t>(cols));
    }
  }
  // Waits for queued work (no-op on the CPU).
  virtual void synchronize() {}

  // Recording (optional; CUDA graphs). Between begin_recording() and end_recording() ops and
  // device copies are recorded, not run; replay() runs them again, reading whatever the same
  // pointers hold then. Anything else during a recording (upload, download, synchronize,
  // allocate, or an op that would have to allocate or upload itself) aborts it and throws
  // Error(unsupported); the backend is then usable as before and nothing ran. A recording is
  // valid while generation() is what it was when recording began: the backend moves it on
  // whenever device memory is freed or reused (a freed buffer's address may come back holding
  // something else). Backends that cannot record return false from can_record().
  // (Defined inline so that Backend keeps no key function: its type information is emitted
  // wherever it is used, and kernels/ links without core/.)
  [[nodiscard]] virtual bool can_record() const { return false; }
  virtual void begin_recording() { cannot_record(); }
  virtual std::unique_ptr<Recording> end_recording() { cannot_record(); }
  virtual void replay(Recording&) { cannot_record(); }
  [[nodiscard]] virtual uint64_t generation() const { return 0; }

  // The ops (see kernels/cpu/*.h for exact semantics).
  virtual void linear(const float* x, const float* w, const float* bias, float* y, int rows, int in,
                      int out) = 0;
  virtual void layer_norm(const float* x, float* y, int rows, int dim, const float* weight,
                          const float* bias, float eps) = 0;
  virtual void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                                   const float* scale, int rows_per_group, int group_stride,
                                   float eps) = 0;
  virtual void rms_norm(const float* x, float* y, int rows, int dim, const float* weight,
                        float eps) = 0;
  virtual void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps) = 0;
  virtual void gelu_tanh(float* x, size_t n) = 0;
  virtual void gelu_erf(float* x, size_t n) = 0;
  virtual void silu(float* x, size_t n) = 0;
  virtual void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                              int rows_per_group, int group_stride) = 0;
  virtual void gated_residual_heads(float* x, const float* y, const float* gate, int rows,
                                    int heads, int head_dim, int row_stride) = 0;
  // Positions are host arrays (small); x is device memory.
  virtual void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride,
                       const int* pos_t, const int* pos_r, const int* pos_c, float theta) = 0;
  virtual void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
                         int v_stride, float* out, int out_stride, int tq, int tk, int heads,
                         int head_dim, float scale) = 0;
  virtual void gated_delta_update(float* s, const float* k, int k_stride, const float* v,
                                  int v_stride, const float* alpha, const float* beta, int tokens,
                                  int heads, int dk, int dv) = 0;
  virtual void memory_read(const float* s, const float* q, int q_stride, float* out,
                           int out_stride, int tokens, int heads, int dk, int dv, float scale) = 0;
  virtual void conv2d_3x3(const float* in, int c_in, int h, int w, const float* weight,
                          const float* bias, int c_out, int stride, float* out) = 0;
  virtual void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) = 0;
  // Gates of a hybrid layer's memory from its three gate projections. raw: [3, tokens, heads]
  // (rows a, then b, then g, each [tokens, heads] contiguous); a_log, dt_bias: [heads].
  // alpha = exp(-exp(a_log[h]) * softplus(a + dt_bias[h])), beta = 2 sigmoid(b),
  // gamma = sigmoid(g), each written [tokens, heads]; softplus(x) = x for x > 20, else
  // log1p(exp(x)).
  virtual void memory_gates(const float* raw, const float* a_log, const float* dt_bias,
                            float* alpha, float* beta, float* gamma, int tokens, int heads) = 0;
  // rms_norm of rows read with a row stride (x_stride >= dim floats apart) into contiguous y
  // [rows, dim]; y must not overlap x. The engine normalises q and k straight out of a fused
  // projection's output this way. By default: copy_2d into y, then rms_norm in place.
  virtual void rms_norm_rows(const float* x, int x_stride, float* y, int rows, int dim,
                             const float* weight, float eps) {
    copy_2d(y, dim, x, x_stride, rows, dim);
    rms_norm(y, y, rows, dim, weight, eps);
  }
  // The transformer's feed-forward: y = linear(gelu_tanh(linear(x, w1, b1)), w2, b2), x [rows,
  // in], w1 [mid, in], w2 [out, mid], y [rows, out] (y must not alias x). hidden [rows, mid] is
  // scratch from the caller; its contents afterwards are unspecified. A backend may fuse the
  // steps (bias and GELU in the first GEMM's epilogue, the hidden activations stored at the GEMM
  // input precision, as the bf16 CUDA backend does); by default it runs the three ops.
  virtual void feed_forward(const float* x, const float* w1, const float* b1, const float* w2,
                            const float* b2, float* hidden, float* y, int rows, int in, int mid,
                            int out) {
    linear(x, w1, b1, hidden, rows, in, mid);
    gelu_tanh(hidden, static_cast<size_t>(rows) * mid);
    linear(hidden, w2, b2, y, rows, mid, out);
  }

  // q and k of a softmax layer from a fused projection's rows: x holds, per row (x_stride floats
  // apart, >= 2 * heads * head_dim), q's heads * head_dim columns then k's. Writes contiguous
  // q = rope_3d(rms_norm(x's q columns, q_weight)) and k = rms_norm(x's k columns, k_weight),
  // rotated too when rope_k (a cached key stays unrotated), both [rows, heads * head_dim] with
  // row stride heads * head_dim; the RMS is over the whole row of heads * head_dim values, as
  // rms_norm's. Positions are host arrays of `rows` ints, as rope_3d's. q and k must not overlap
  // x or each other. By default the separate ops: rms_norm_rows twice, then rope_3d.
  virtual void qk_norm_rope(const float* x, int x_stride, float* q, float* k, int rows, int heads,
                            int head_dim, const float* q_weight, const float* k_weight, float eps,
                            const int* pos_t, const int* pos_r, const int* pos_c, float theta,
                            bool rope_k) {
    const int dim = heads * head_dim;
    rms_norm_rows(x, x_stride, q, rows, dim, q_weight, eps);
    rms_norm_rows(x + dim, x_stride, k, rows, dim, k_weight, eps);
    rope_3d(q, rows, heads, head_dim, dim, pos_t, pos_r, pos_c, theta);
    if (rope_k) rope_3d(k, rows, heads, head_dim, dim, pos_t, pos_r, pos_c, theta);
  }
  // A transformer sublayer's residual add and the normalisation that follows it, in one op:
  // gated_residual(x, y, gate, rows, dim, rows_per_group, group_stride) (gate may be null: x += y),
  // then, of the updated x into out [rows, dim], layer_norm(norm_a = weight, norm_b = bias, either
  // may be null) or layer_norm_modulate(norm_a = shift, norm_b = scale, the same rows_per_group
  // and group_stride as the gate's). x is updated in place (the residual stream); out must not
  // overlap x or y. A device kernel reads x and y once and writes x and out once, instead of
  // reading x again for the norm. By default the two separate ops.
  virtual void residual_norm(float* x, const float* y, const float* gate, float* out, int rows,
                             int dim, int rows_per_group, int group_stride, ResidualNorm norm,
                             const float* norm_a, const float* norm_b, float eps) {
    gated_residual(x, y, gate, rows, dim, rows_per_group, group_stride);
    if (norm == ResidualNorm::layer_norm_modulate) {
      layer_norm_modulate(x, out, rows, dim, norm_a, norm_b, rows_per_group, group_stride, eps);
    } else {
      layer_norm(x, out, rows, dim, norm_a, norm_b, eps);
    }
  }
  // l2_normalize_heads of rows read with a row stride (x_stride >= heads * head_dim floats apart)
  // into contiguous y [rows, heads * head_dim]; y must not overlap x. The engine normalises the
  // memory branch's q and k straight out of a fused projection's output this way. Profiled and
  // dispatched as Op::l2_normalize_heads. By default: copy_2d into y, then the op in place.
  virtual void l2_normalize_heads_rows(const float* x, int x_stride, float* y, int rows, int heads,
                                       int head_dim, float eps) {
    const int dim = heads * head_dim;
    copy_2d(y, dim, x, x_stride, rows, dim);
    l2_normalize_heads(y, rows, heads, head_dim, eps);
  }
  // memory_gates with the gate projections read from a fused projection's rows: row t (x_stride
  // floats apart) holds a's `heads` columns, then b's, then g's (so x_stride >= 3 * heads).
  // Outputs as memory_gates'. scratch [3, tokens, heads] is the caller's; the default copies the
  // columns there (copy_2d) and runs memory_gates on it, a backend with a strided kernel leaves it
  // untouched. Profiled and dispatched as Op::memory_gates.
  virtual void memory_gates_rows(const float* x, int x_stride, const float* a_log,
                                 const float* dt_bias, float* alpha, float* beta, float* gamma,
                                 int tokens, int heads, float* scratch) {
    const size_t per_gate = static_cast<size_t>(tokens) * static_cast<size_t>(heads);
    for (int g = 0; g < 3; ++g) {
      copy_2d(scratch + static_cast<size_t>(g) * per_gate, heads,
              x + static_cast<size_t>(g) * static_cast<size_t>(heads), x_stride, tokens, heads);
    }
    memory_gates(scratch, a_log, dt_bias, alpha, beta, gamma, tokens, heads);
  }

 protected:
  [[noreturn]] void cannot_record() const {
    throw Error(ErrorKind::unsupported, std::string(name()) + " cannot record or replay ops");
  }
};

// Wall time and calls per op, filled by a profiling backend, with each op's least work (for
// roofline floors): flops counts matrix work at 2 per multiply-add (GEMMs, attention, the delta
// rule, the memory read, convolutions; 0 for elementwise ops); bytes is the least device traffic
// at float32 (every input read once, every output written once), of which weight_bytes are the
// weights and biases of linear and conv2d_3x3 (a backend may hold those in bf16).
struct OpProfile {
  struct Entry {
    double ms = 0;
    int64_t calls = 0;
    double flops = 0;
    double bytes = 0;
    double weight_bytes = 0;
  };
  Entry ops[static_cast<size_t>(Op::count)]{};
  // When record_shapes is set, the same per op and shape, keyed like "attention q4680 k4680 h12
  // d128" (so one shape's time is not mixed with another's).
  bool record_shapes = false;
  std::map<std::string, Entry> by_shape;
};

// The CPU backend: OpenBLAS sgemm + vectorised, multithreaded loops (kernels/cpu).
std::unique_ptr<Backend> make_cpu_backend();

// Arithmetic of a GPU backend. fp32: every op in float32 (cuBLAS SGEMM without TF32), within
// float rounding of the CPU. bf16: GEMM and convolution operands in bfloat16 with float32
// accumulation and float32 outputs (weights converted once and cached), everything else float32.
enum class ComputePrecision { fp32 = 1, bf16 };

// The CUDA backend on device `device_index` (kernels/cuda): device buffers, one stream, cuBLAS,
// pinned staging for upload/download. Ops it lacks report supports() == false, so wrap it in
// make_dispatch_backend. Errors: Error(unsupported) when built without CUDA or there is no such
// device; Error(out_of_memory) when an allocation fails (the backend stays usable); Error(device)
// for any other CUDA failure; after a sticky one (the CUDA context is lost) every later call
// throws Error(device) too.
// In bf16 mode the bf16 copy of a `linear` weight or `conv2d_3x3` weight is cached by device
// pointer and dropped when its buffer is freed or written by upload/copy: ops must not write
// into buffers used as weights.
std::unique_ptr<Backend> make_cuda_backend(int device_index, ComputePrecision precision);

}  // namespace strand

namespace strand {
// Wraps `primary`: ops it supports run there; the rest run on the CPU reference backend, with
// their arguments staged through host memory (slow, but correct). With a CPU primary this is a
// plain pass-through.
std::unique_ptr<Backend> make_dispatch_backend(std::unique_ptr<Backend> primary);
// Wraps `inner`, timing every op into `profile` (synchronising after each op).
std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner, OpProfile* profile);
}  // namespace strand
