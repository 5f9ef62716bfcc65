// The CUDA backend against the CPU reference (ggml's test-backend-ops, for our ops): every op on
// fresh random inputs and several shapes, in fp32 (float rounding of the CPU) and bf16 (GEMM
// operands in bf16); device<->host round trips; out of memory; and the engine end to end on the
// bundled model. Without a GPU (or without CUDA) the GPU tests skip and only the error contract
// of make_cuda_backend is checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "strand/backend.h"
#include "strand/devices.h"
#include "strand/error.h"
#include "strand/model.h"
#include "strand/session.h"
#include "tests/core/parity.h"

namespace strand {
namespace {

bool have_gpu() {
  for (const ComputeDevice& d : compute_devices()) {
    if (d.kind == "cuda" && d.usable_by_engine) return true;
  }
  return false;
}

#define SKIP_WITHOUT_GPU()                                      \
  do {                                                          \
    if (!have_gpu()) {                                          \
      GTEST_SKIP() << "no CUDA device (or built without CUDA)"; \
    }                                                           \
  } while (false)

using strand::test::rel_error;

std::vector<float> random_values(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A device copy of host values; fetch() reads it back.
class DeviceArray {
 public:
  DeviceArray(Backend& backend, const std::vector<float>& host)
      : backend_(backend), buffer_(backend.allocate(host.size())) {
    backend_.upload(buffer_->data(), host.data(), host.size());
  }
  [[nodiscard]] float* get() { return buffer_->data(); }
  [[nodiscard]] std::vector<float> fetch() {
    std::vector<float> host(buffer_->count());
    backend_.download(host.data(), buffer_->data(), host.size());
    return host;
  }

 private:
  Backend& backend_;
  std::unique_ptr<Buffer> buffer_;
};

// Ops whose arithmetic changes in bf16 mode; the others stay fp32 in both modes.
bool bf16_op(Op op) {
  return op == Op::linear || op == Op::conv2d_3x3 || op == Op::attention ||
         op == Op::feed_forward || op == Op::memory_read;  // memory_read: TF32 in bf16 mode
}

class CudaOps : public ::testing::TestWithParam<ComputePrecision> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    gpu_ = make_cuda_backend(0, GetParam());
    cpu_ = make_cpu_backend();
  }
  [[nodiscard]] bool bf16() const { return GetParam() == ComputePrecision::bf16; }
  // fp32: float rounding of the CPU (GPU sums in another order, FMA contraction). bf16: operands
  // rounded to 8 mantissa bits, fp32 accumulation.
  [[nodiscard]] double tolerance(Op op) const { return bf16() && bf16_op(op) ? 2e-2 : 1e-5; }
  [[nodiscard]] bool skip_unsupported(Op op) const { return !gpu_->supports(op); }
  void expect_close(Op op, const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& shape) {
    const double err = rel_error(got, want);
    EXPECT_LE(err, tolerance(op)) << op_name(op) << " " << shape;
    // bf16 really rounds the operands: exact agreement would mean fp32 ran instead.
    if (bf16() && bf16_op(op) && op != Op::attention) {
      EXPECT_GT(err, 1e-5) << op_name(op) << " " << shape;
    }
    std::printf("[ %-20s %-5s ] %-34s rel error %.3g\n", std::string(op_name(op)).c_str(),
                bf16() ? "bf16" : "fp32", shape.c_str(), err);
  }

  std::unique_ptr<Backend> gpu_, cpu_;
};

TEST_P(CudaOps, Linear) {
  struct Shape {
    int rows, in, out;
    bool bias;
  };
  for (const Shape s : {Shape{1, 64, 384, true}, Shape{37, 48, 20, false},
                        Shape{432, 128, 512, true}, Shape{3, 1, 5, true}}) {
    const auto x = random_values(static_cast<size_t>(s.rows) * s.in, 1);
    const auto w = random_values(static_cast<size_t>(s.out) * s.in, 2);
    const auto b = random_values(static_cast<size_t>(s.out), 3);
    std::vector<float> want(static_cast<size_t>(s.rows) * s.out);
    cpu_->linear(x.data(), w.data(), s.bias ? b.data() : nullptr, want.data(), s.rows, s.in, s.out);
    DeviceArray dx(*gpu_, x), dw(*gpu_, w), db(*gpu_, b),
        dy(*gpu_, std::vector<float>(want.size(), 7.0f));
    gpu_->linear(dx.get(), dw.get(), s.bias ? db.get() : nullptr, dy.get(), s.rows, s.in, s.out);
    expect_close(
        Op::linear, dy.fetch(), want,
        std::to_string(s.rows) + "x" + std::to_string(s.in) + "->" + std::to_string(s.out));
  }
}

// The feed-forward (bf16: one GEMM with bias + GELU in its epilogue writing bf16, then a GEMM with
// the bias in its epilogue) against the CPU's three ops. Weights and biases sit at float offsets
// inside one buffer, as in a model file, so the epilogue's aligned bias copies are exercised.
TEST_P(CudaOps, FeedForward) {
  struct Shape {
    int rows, in, mid, out;
    bool second_bias;
  };
  for (const Shape s : {Shape{1, 64, 256, 64, true}, Shape{37, 48, 200, 20, true},
                        Shape{432, 128, 512, 128, false}, Shape{3, 1, 5, 4, true},
                        Shape{300, 96, 384, 96, true}}) {
    const size_t n_w1 = static_cast<size_t>(s.mid) * s.in, n_w2 = static_cast<size_t>(s.out) * s.mid;
    // [1 pad | w1 | b1 | w2 | b2]: every part at an odd float offset.
    auto params = random_values(1 + n_w1 + s.mid + n_w2 + s.out, 21);
    const float* w1 = params.data() + 1;
    const float* b1 = w1 + n_w1;
    const float* w2 = b1 + s.mid;
    const float* b2 = w2 + n_w2;
    const auto x = random_values(static_cast<size_t>(s.rows) * s.in, 22, -2.0f, 2.0f);
    std::vector<float> hidden(static_cast<size_t>(s.rows) * s.mid),
        want(static_cast<size_t>(s.rows) * s.out);
    cpu_->feed_forward(x.data(), w1, b1, w2, s.second_bias ? b2 : nullptr, hidden.data(),
                       want.data(), s.rows, s.in, s.mid, s.out);
    DeviceArray dparams(*gpu_, params), dx(*gpu_, x), dhidden(*gpu_, hidden),
        dy(*gpu_, std::vector<float>(want.size(), 7.0f));
    const float* d1 = dparams.get() + 1;
    gpu_->feed_forward(dx.get(), d1, d1 + n_w1, d1 + n_w1 + s.mid,
                       s.second_bias ? d1 + n_w1 + s.mid + n_w2 : nullptr, dhidden.get(), dy.get(),
                       s.rows, s.in, s.mid, s.out);
    expect_close(Op::feed_forward, dy.fetch(), want,
                 std::to_string(s.rows) + "x" + std::to_string(s.in) + "->" +
                     std::to_string(s.mid) + "->" + std::to_string(s.out));
  }
}

// bf16 caches converted weights by pointer: new values uploaded into the same buffer must be used.
TEST_P(CudaOps, LinearSeesWeightsRewrittenInPlace) {
  const int rows = 16, in = 32, out = 24;
  const auto x = random_values(static_cast<size_t>(rows) * in, 4);
  const auto w1 = random_values(static_cast<size_t>(out) * in, 5);
  const auto w2 = random_values(static_cast<size_t>(out) * in, 6);
  DeviceArray dx(*gpu_, x), dw(*gpu_, w1),
      dy(*gpu_, std::vector<float>(static_cast<size_t>(rows) * out));
  gpu_->linear(dx.get(), dw.get(), nullptr, dy.get(), rows, in, out);
  gpu_->upload(dw.get(), w2.data(), w2.size());
  gpu_->linear(dx.get(), dw.get(), nullptr, dy.get(), rows, in, out);
  std::vector<float> want(static_cast<size_t>(rows) * out);
  cpu_->linear(x.data(), w2.data(), nullptr, want.data(), rows, in, out);
  expect_close(Op::linear, dy.fetch(), want, "after re-upload");
}

TEST_P(CudaOps, Norms) {
  struct Shape {
    int rows, dim;
  };
  // Widths that are multiples of 4 take the kernel that keeps the row in registers (1536: 2 float4
  // a thread, 3000: 3); 30 takes the scalar kernel.
  for (const Shape s : {Shape{5, 24}, Shape{432, 128}, Shape{3, 1536}, Shape{2, 3000}, Shape{7, 30}}) {
    const size_t n = static_cast<size_t>(s.rows) * s.dim;
    // An offset mean, as activations have: the two-pass variance must not lose it.
    const auto x = random_values(n, 7, 2.0f, 5.0f);
    const auto w = random_values(static_cast<size_t>(s.dim), 8, 0.5f, 1.5f);
    const auto b = random_values(static_cast<size_t>(s.dim), 9);
    const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.dim);
    for (int variant = 0; variant < 3; ++variant) {
      const float* weight = variant < 2 ? w.data() : nullptr;
      const float* bias = variant < 1 ? b.data() : nullptr;
      std::vector<float> want(n);
      cpu_->layer_norm(x.data(), want.data(), s.rows, s.dim, weight, bias, 1e-6f);
      DeviceArray dx(*gpu_, x), dw(*gpu_, w), db(*gpu_, b);
      gpu_->layer_norm(dx.get(), dx.get(), s.rows, s.dim, weight ? dw.get() : nullptr,
                       bias ? db.get() : nullptr, 1e-6f);  // in place
      expect_close(Op::layer_norm, dx.fetch(), want, shape + " variant " + std::to_string(variant));
    }
    for (const bool weighted : {true, false}) {
      std::vector<float> want(n);
      cpu_->rms_norm(x.data(), want.data(), s.rows, s.dim, weighted ? w.data() : nullptr, 1e-6f);
      DeviceArray dx(*gpu_, x), dw(*gpu_, w), dy(*gpu_, std::vector<float>(n));
      gpu_->rms_norm(dx.get(), dy.get(), s.rows, s.dim, weighted ? dw.get() : nullptr, 1e-6f);
      expect_close(Op::rms_norm, dy.fetch(), want, shape + (weighted ? " weighted" : ""));
    }
  }
}

// rms_norm straight out of a wider matrix (the q/k parts of a fused projection): strides that allow
// 16-byte loads (the register kernel) and one that does not (the scalar kernel).
TEST_P(CudaOps, RmsNormRowsReadsAStridedInput) {
  struct Shape {
    int rows, dim, stride, offset;
  };
  for (const Shape s : {Shape{37, 128, 6 * 128 + 16, 128}, Shape{5, 24, 40, 8}, Shape{9, 24, 30, 3},
                        Shape{4680 / 36, 1536, 6192, 1536}}) {
    const auto x = random_values(static_cast<size_t>(s.rows) * s.stride + s.offset, 31, -2.0f, 3.0f);
    const auto w = random_values(static_cast<size_t>(s.dim), 32, 0.5f, 1.5f);
    std::vector<float> want(static_cast<size_t>(s.rows) * s.dim);
    cpu_->rms_norm_rows(x.data() + s.offset, s.stride, want.data(), s.rows, s.dim, w.data(), 1e-6f);
    DeviceArray dx(*gpu_, x), dw(*gpu_, w), dy(*gpu_, std::vector<float>(want.size(), 9.0f));
    gpu_->rms_norm_rows(dx.get() + s.offset, s.stride, dy.get(), s.rows, s.dim, dw.get(), 1e-6f);
    expect_close(Op::rms_norm, dy.fetch(), want,
                 std::to_string(s.rows) + "x" + std::to_string(s.dim) + " stride " +
                     std::to_string(s.stride) + " offset " + std::to_string(s.offset));
  }
}

TEST_P(CudaOps, LayerNormModulate) {
  struct Shape {
    int rows, dim, rows_per_group, group_stride;
  };
  // One group for the block (the engine), and groups of 4 rows with interleaved shift/scale rows.
  for (const Shape s : {Shape{432, 128, 432, 0}, Shape{12, 40, 4, 80}, Shape{7, 1536, 7, 0},
                        Shape{5, 30, 5, 0}, Shape{9, 64, 3, 66}}) {
    const size_t n = static_cast<size_t>(s.rows) * s.dim;
    const int groups = (s.rows + s.rows_per_group - 1) / s.rows_per_group;
    const size_t mod_count = static_cast<size_t>(groups - 1) * s.group_stride + s.dim;
    const auto x = random_values(n, 10, -3.0f, 4.0f);
    const auto shift = random_values(mod_count + s.dim, 11);
    const auto scale = random_values(mod_count + s.dim, 12);
    std::vector<float> want(n);
    cpu_->layer_norm_modulate(x.data(), want.data(), s.rows, s.dim, shift.data(), scale.data(),
                              s.rows_per_group, s.group_stride, 1e-6f);
    DeviceArray dx(*gpu_, x), dsh(*gpu_, shift), dsc(*gpu_, scale),
        dy(*gpu_, std::vector<float>(n));
    gpu_->layer_norm_modulate(dx.get(), dy.get(), s.rows, s.dim, dsh.get(), dsc.get(),
                              s.rows_per_group, s.group_stride, 1e-6f);
    expect_close(Op::layer_norm_modulate, dy.fetch(), want,
                 std::to_string(s.rows) + "x" + std::to_string(s.dim) + " groups of " +
                     std::to_string(s.rows_per_group));
  }
}

TEST_P(CudaOps, L2NormalizeHeads) {
  struct Shape {
    int rows, heads, head_dim;
  };
  // 16-byte path with 1, 2 and 4 float4 a lane (head_dim 12..512), the scalar kernel for head_dim
  // not a multiple of 4, over 512, or x one float past a 16-byte boundary (offset 1).
  struct Case {
    Shape s;
    int offset;
  };
  for (const Case c : {Case{{7, 2, 12}, 0}, Case{{432, 4, 32}, 0}, Case{{10, 12, 128}, 0},
                       Case{{3, 1, 200}, 0}, Case{{5, 3, 256}, 0}, Case{{4, 2, 512}, 0},
                       Case{{3, 2, 516}, 0}, Case{{9, 3, 30}, 0}, Case{{10, 12, 128}, 1},
                       Case{{6, 5, 4}, 0}}) {
    const Shape s = c.s;
    const auto x = random_values(c.offset + static_cast<size_t>(s.rows) * s.heads * s.head_dim, 13);
    std::vector<float> want = x;
    cpu_->l2_normalize_heads(want.data() + c.offset, s.rows, s.heads, s.head_dim, 1e-6f);
    DeviceArray dx(*gpu_, x);
    gpu_->l2_normalize_heads(dx.get() + c.offset, s.rows, s.heads, s.head_dim, 1e-6f);
    expect_close(Op::l2_normalize_heads, dx.fetch(), want,
                 std::to_string(s.rows) + "x" + std::to_string(s.heads) + "x" +
                     std::to_string(s.head_dim) + ", offset " + std::to_string(c.offset));
  }
}

TEST_P(CudaOps, Activations) {
  // n = 1003: float4 body and a 3-float tail; offset 1: x not 16-byte aligned (scalar kernel).
  struct Case {
    size_t n, offset;
  };
  for (const Case c : {Case{1, 0}, Case{1000, 0}, Case{1003, 0}, Case{1003, 1},
                       Case{size_t{1} << 20, 0}}) {
    const size_t n = c.n, offset = c.offset;
    // Wide range: large negative inputs exercise the overflow-free sigmoid forms.
    const auto x = random_values(offset + n, 14, -12.0f, 12.0f);
    for (const Op op : {Op::gelu_tanh, Op::gelu_erf, Op::silu}) {
      std::vector<float> want = x;
      DeviceArray dx(*gpu_, x);
      float* const w = want.data() + offset;
      float* const d = dx.get() + offset;
      if (op == Op::gelu_tanh) {
        cpu_->gelu_tanh(w, n);
        gpu_->gelu_tanh(d, n);
      } else if (op == Op::gelu_erf) {
        cpu_->gelu_erf(w, n);
        gpu_->gelu_erf(d, n);
      } else {
        cpu_->silu(w, n);
        gpu_->silu(d, n);
      }
      expect_close(op, dx.fetch(), want,
                   "n=" + std::to_string(n) + ", offset " + std::to_string(offset));
    }
  }
}

// Both paths of each kernel: 16-byte accesses (dims and strides multiples of 4, pointers 16-byte
// aligned) and the scalar fallback (dim 30, odd strides, pointers one float past alignment). The
// whole buffer is compared, so a write outside the rows (or into the padding) fails too.
TEST_P(CudaOps, GatedResiduals) {
  struct Case {
    const char* name;
    int rows, dim;
    bool gated;
    int rows_per_group, group_stride;
    size_t xy_offset, gate_offset;  // floats into the buffers
  };
  for (const Case c : {Case{"plain add", 30, 48, false, 30, 0, 0, 0},
                       Case{"one gate", 30, 48, true, 30, 0, 0, 0},
                       Case{"gate per 8 rows", 30, 48, true, 8, 96, 0, 0},
                       Case{"dim 30, gate per 8 rows", 30, 30, true, 8, 60, 0, 0},
                       Case{"gate stride 97", 30, 48, true, 8, 97, 0, 0},
                       Case{"x, y, gate unaligned", 30, 48, true, 8, 96, 1, 1},
                       Case{"x, y unaligned, plain add", 30, 48, false, 30, 0, 1, 0},
                       Case{"gate unaligned", 30, 48, true, 8, 96, 0, 1},
                       Case{"9 x 1536, gate per 4 rows", 9, 1536, true, 4, 1536, 0, 0},
                       Case{"9 x 1540 (385 float4 a row)", 9, 1540, true, 9, 0, 0, 0},
                       Case{"600000 rows of 4 (row loop)", 600000, 4, true, 1000, 4, 0, 0}}) {
    const size_t n = static_cast<size_t>(c.rows) * c.dim;
    const int groups = (c.rows + c.rows_per_group - 1) / c.rows_per_group;
    const size_t gate_size =
        c.gate_offset + static_cast<size_t>(groups - 1) * c.group_stride + c.dim;
    const auto x = random_values(c.xy_offset + n, 15), y = random_values(c.xy_offset + n, 16),
               gate = random_values(gate_size, 17);
    std::vector<float> want = x;
    cpu_->gated_residual(want.data() + c.xy_offset, y.data() + c.xy_offset,
                         c.gated ? gate.data() + c.gate_offset : nullptr, c.rows, c.dim,
                         c.rows_per_group, c.group_stride);
    DeviceArray dx(*gpu_, x), dy(*gpu_, y), dg(*gpu_, gate);
    gpu_->gated_residual(dx.get() + c.xy_offset, dy.get() + c.xy_offset,
                         c.gated ? dg.get() + c.gate_offset : nullptr, c.rows, c.dim,
                         c.rows_per_group, c.group_stride);
    expect_close(Op::gated_residual, dx.fetch(), want, c.name);
  }
}

// Per-head gates, rows row_stride floats apart (>= heads * head_dim: the padding must stay).
TEST_P(CudaOps, GatedResidualHeads) {
  struct Case {
    int rows, heads, head_dim, stride;
    size_t offset;  // floats into x and y
  };
  for (const Case c : {Case{30, 3, 8, 40, 0}, Case{30, 3, 6, 20, 0}, Case{30, 3, 8, 42, 0},
                       Case{30, 3, 8, 40, 1}, Case{20, 12, 128, 1536, 0},
                       Case{7, 12, 128, 1540, 0}, Case{5, 12, 128, 1536, 3}}) {
    const size_t n = c.offset + static_cast<size_t>(c.rows) * c.stride;
    const auto x = random_values(n, 18), y = random_values(n, 19);
    const auto gate = random_values(static_cast<size_t>(c.rows) * c.heads, 20);
    std::vector<float> want = x;
    cpu_->gated_residual_heads(want.data() + c.offset, y.data() + c.offset, gate.data(), c.rows,
                               c.heads, c.head_dim, c.stride);
    DeviceArray dx(*gpu_, x), dy(*gpu_, y), dg(*gpu_, gate);
    gpu_->gated_residual_heads(dx.get() + c.offset, dy.get() + c.offset, dg.get(), c.rows, c.heads,
                               c.head_dim, c.stride);
    expect_close(Op::gated_residual_heads, dx.fetch(), want,
                 std::to_string(c.rows) + " rows, " + std::to_string(c.heads) + " heads of " +
                     std::to_string(c.head_dim) + ", stride " + std::to_string(c.stride) +
                     ", offset " + std::to_string(c.offset));
  }
}

// Positions of a frames x rows x cols grid, frames numbered from t_offset.
struct RopePositions {
  std::vector<int> t, r, c;
  [[nodiscard]] int tokens() const { return static_cast<int>(t.size()); }
};
RopePositions rope_positions(int frames, int rows, int cols, int t_offset) {
  RopePositions p;
  for (int f = 0; f < frames; ++f)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        p.t.push_back(f + t_offset);
        p.r.push_back(r);
        p.c.push_back(c);
      }
  return p;
}

// Both paths: 16-byte (head_dim and stride multiples of 4, x aligned) and scalar (head_dim 10, 13,
// 2; stride 38; x one float past alignment). The padding of wider rows must stay as it was.
TEST_P(CudaOps, Rope3d) {
  struct Shape {
    int frames, rows, cols, heads, head_dim, extra_stride, t_offset;
    float theta;
    size_t offset;  // floats into x
  };
  for (const Shape s :
       {Shape{3, 9, 16, 4, 32, 0, 0, 10000.0f, 0}, Shape{3, 9, 16, 4, 32, 8, -9, 10000.0f, 0},
        Shape{2, 4, 6, 2, 128, 0, -300, 10000.0f, 0}, Shape{1, 3, 3, 1, 10, 2, 5, 10000.0f, 0},
        Shape{2, 3, 5, 3, 12, 2, 0, 10000.0f, 0}, Shape{2, 3, 5, 2, 13, 0, 4, 500.0f, 0},
        Shape{1, 2, 2, 2, 2, 0, 1, 10000.0f, 0}, Shape{1, 3, 3, 3, 4, 0, 0, 10000.0f, 0},
        Shape{1, 4, 4, 12, 128, 0, 0, 10000.0f, 1}, Shape{2, 6, 10, 12, 128, 0, -3, 10000.0f, 0},
        Shape{2, 6, 10, 12, 128, 4, 7, 500.0f, 0}}) {
    const RopePositions p = rope_positions(s.frames, s.rows, s.cols, s.t_offset);
    const int tokens = p.tokens();
    const int stride = s.heads * s.head_dim + s.extra_stride;
    const auto x = random_values(s.offset + static_cast<size_t>(tokens) * stride, 21);
    std::vector<float> want = x;
    cpu_->rope_3d(want.data() + s.offset, tokens, s.heads, s.head_dim, stride, p.t.data(),
                  p.r.data(), p.c.data(), s.theta);
    DeviceArray dx(*gpu_, x);
    gpu_->rope_3d(dx.get() + s.offset, tokens, s.heads, s.head_dim, stride, p.t.data(), p.r.data(),
                  p.c.data(), s.theta);
    expect_close(Op::rope_3d, dx.fetch(), want,
                 std::to_string(tokens) + " tokens, " + std::to_string(s.heads) + "x" +
                     std::to_string(s.head_dim) + ", stride " + std::to_string(stride) +
                     ", t from " + std::to_string(s.t_offset) + ", theta " +
                     std::to_string(static_cast<int>(s.theta)) + ", offset " +
                     std::to_string(s.offset));
  }
}

// The backend keeps each position set's angle table on the device, keyed by the position values,
// head_dim / 2 and theta: sets, thetas and head sizes used alternately (twice round, so the second
// round reads cached tables) and more thetas for one set than it keeps tables (4) must each give
// the CPU's result.
TEST_P(CudaOps, RopeAngleTablesAreKeyedByPositionsThetaAndHeadDim) {
  const RopePositions a = rope_positions(2, 3, 4, 0), b = rope_positions(2, 3, 4, -9),
                      c = rope_positions(3, 2, 4, 2);
  struct Use {
    const RopePositions* p;
    float theta;
    int head_dim;
  };
  const std::vector<Use> uses = {{&a, 10000.0f, 32}, {&b, 10000.0f, 32}, {&a, 500.0f, 32},
                                 {&b, 500.0f, 32},   {&a, 10000.0f, 16}, {&c, 10000.0f, 32},
                                 {&a, 10000.0f, 12}, {&a, 2000.0f, 32},  {&a, 50.0f, 32},
                                 {&a, 7.0f, 32},     {&a, 10000.0f, 32}};
  const int heads = 3;
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < uses.size(); ++i) {
      const Use& u = uses[i];
      const int tokens = u.p->tokens(), stride = heads * u.head_dim;
      const auto x =
          random_values(static_cast<size_t>(tokens) * stride, 40 + static_cast<uint32_t>(i));
      std::vector<float> want = x;
      cpu_->rope_3d(want.data(), tokens, heads, u.head_dim, stride, u.p->t.data(), u.p->r.data(),
                    u.p->c.data(), u.theta);
      DeviceArray dx(*gpu_, x);
      gpu_->rope_3d(dx.get(), tokens, heads, u.head_dim, stride, u.p->t.data(), u.p->r.data(),
                    u.p->c.data(), u.theta);
      const auto got = dx.fetch();
      expect_close(Op::rope_3d, got, want,
                   "round " + std::to_string(round) + ", use " + std::to_string(i));
    }
  }
}

// Equal position values uploaded again from other host arrays reuse the set and its angle table:
// the call can then be recorded (a recording cannot upload positions or make a table), while a
// theta never seen cannot (Error(unsupported), nothing recorded), and works right after.
TEST_P(CudaOps, RopeReusesTheAngleTableOfEqualPositions) {
  if (!gpu_->can_record()) GTEST_SKIP() << "this backend does not record";
  const RopePositions first = rope_positions(2, 4, 5, -2);
  const RopePositions again = first;  // same values, other host arrays
  const int tokens = first.tokens(), heads = 2, head_dim = 32, stride = heads * head_dim;
  const auto x = random_values(static_cast<size_t>(tokens) * stride, 50);
  {
    DeviceArray warm(*gpu_, x);
    gpu_->rope_3d(warm.get(), tokens, heads, head_dim, stride, first.t.data(), first.r.data(),
                  first.c.data(), 10000.0f);
  }
  std::vector<float> want = x;
  cpu_->rope_3d(want.data(), tokens, heads, head_dim, stride, again.t.data(), again.r.data(),
                again.c.data(), 10000.0f);
  DeviceArray dx(*gpu_, x);
  const uint64_t generation = gpu_->generation();
  gpu_->begin_recording();
  gpu_->rope_3d(dx.get(), tokens, heads, head_dim, stride, again.t.data(), again.r.data(),
                again.c.data(), 10000.0f);
  const auto recording = gpu_->end_recording();
  gpu_->replay(*recording);
  expect_close(Op::rope_3d, dx.fetch(), want, "recorded, positions re-uploaded");
  EXPECT_EQ(gpu_->generation(), generation);

  DeviceArray dy(*gpu_, x);
  gpu_->begin_recording();
  try {
    gpu_->rope_3d(dy.get(), tokens, heads, head_dim, stride, again.t.data(), again.r.data(),
                  again.c.data(), 321.0f);
    ADD_FAILURE() << "a new angle table was made while recording";
    gpu_->end_recording();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported) << e.what();
  }
  std::vector<float> want_new = x;
  cpu_->rope_3d(want_new.data(), tokens, heads, head_dim, stride, again.t.data(), again.r.data(),
                again.c.data(), 321.0f);
  gpu_->rope_3d(dy.get(), tokens, heads, head_dim, stride, again.t.data(), again.r.data(),
                again.c.data(), 321.0f);
  expect_close(Op::rope_3d, dy.fetch(), want_new, "theta 321 after the refused recording");
}

TEST_P(CudaOps, Attention) {
  if (skip_unsupported(Op::attention)) GTEST_SKIP() << "attention is not in this build";
  struct Shape {
    const char* name;
    int tq, tk, heads, head_dim, stride_pad;
  };
  for (const Shape s : {Shape{"hybrid intra-block (tiny model)", 432, 432, 4, 32, 0},
                        Shape{"softmax_kv, 3 cached blocks", 144, 4 * 144, 2, 64, 0},
                        Shape{"intra-block, head dim 128", 256, 256, 2, 128, 0},
                        Shape{"cross-attention to 7 text tokens", 432, 7, 4, 32, 0},
                        Shape{"text encoder (head dim 16)", 9, 9, 4, 16, 0},
                        Shape{"strided rows", 50, 70, 3, 64, 24}}) {
    const int width = s.heads * s.head_dim, stride = width + s.stride_pad;
    const auto q = random_values(static_cast<size_t>(s.tq) * stride, 22, -2.0f, 2.0f);
    const auto k = random_values(static_cast<size_t>(s.tk) * stride, 23, -2.0f, 2.0f);
    const auto v = random_values(static_cast<size_t>(s.tk) * stride, 24);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    std::vector<float> want(static_cast<size_t>(s.tq) * stride, 0.0f);
    cpu_->attention(q.data(), stride, k.data(), stride, v.data(), stride, want.data(), stride, s.tq,
                    s.tk, s.heads, s.head_dim, scale);
    DeviceArray dq(*gpu_, q), dk(*gpu_, k), dv(*gpu_, v),
        dout(*gpu_, std::vector<float>(want.size(), 0.0f));
    gpu_->attention(dq.get(), stride, dk.get(), stride, dv.get(), stride, dout.get(), stride, s.tq,
                    s.tk, s.heads, s.head_dim, scale);
    expect_close(Op::attention, dout.fetch(), want, s.name);
  }
}

TEST_P(CudaOps, GatedDeltaUpdateAndMemoryRead) {
  if (skip_unsupported(Op::gated_delta_update) || skip_unsupported(Op::memory_read)) {
    GTEST_SKIP() << "the delta rule is not in this build";
  }
  struct Shape {
    int tokens, heads, dk, stride_pad;
  };
  for (const Shape s : {Shape{432, 4, 32, 0}, Shape{100, 2, 64, 16}, Shape{257, 3, 128, 0}}) {
    const int width = s.heads * s.dk, stride = width + s.stride_pad;
    // Keys unit-norm per head (the engine l2-normalises them); alpha in (0.5, 1), beta in (0, 2).
    std::vector<float> k = random_values(static_cast<size_t>(s.tokens) * stride, 25);
    for (int t = 0; t < s.tokens; ++t) {
      cpu_->l2_normalize_heads(k.data() + static_cast<size_t>(t) * stride, 1, s.heads, s.dk, 1e-6f);
    }
    const auto v = random_values(static_cast<size_t>(s.tokens) * stride, 26);
    const auto alpha = random_values(static_cast<size_t>(s.tokens) * s.heads, 27, 0.5f, 1.0f);
    const auto beta = random_values(static_cast<size_t>(s.tokens) * s.heads, 28, 0.0f, 2.0f);
    const auto state = random_values(static_cast<size_t>(s.heads) * s.dk * s.dk, 29, -0.5f, 0.5f);
    const auto q = random_values(static_cast<size_t>(s.tokens) * stride, 30);
    const std::string shape = std::to_string(s.tokens) + " tokens, " + std::to_string(s.heads) +
                              " heads of " + std::to_string(s.dk);
    std::vector<float> want_state = state;
    cpu_->gated_delta_update(want_state.data(), k.data(), stride, v.data(), stride, alpha.data(),
                             beta.data(), s.tokens, s.heads, s.dk, s.dk);
    DeviceArray ds(*gpu_, state), dk(*gpu_, k), dv(*gpu_, v), da(*gpu_, alpha), db(*gpu_, beta);
    gpu_->gated_delta_update(ds.get(), dk.get(), stride, dv.get(), stride, da.get(), db.get(),
                             s.tokens, s.heads, s.dk, s.dk);
    const double update_err = rel_error(ds.fetch(), want_state);
    EXPECT_LE(update_err, 5e-5) << "gated_delta_update "
                                << shape;  // chunked vs chunked, other chunks
    std::printf("[ %-20s %-5s ] %-34s rel error %.3g\n", "gated_delta_update",
                bf16() ? "bf16" : "fp32", shape.c_str(), update_err);

    const float scale = 1.0f / std::sqrt(static_cast<float>(s.dk));
    std::vector<float> want(static_cast<size_t>(s.tokens) * stride, 0.0f);
    cpu_->memory_read(state.data(), q.data(), stride, want.data(), stride, s.tokens, s.heads, s.dk,
                      s.dk, scale);
    DeviceArray ds0(*gpu_, state), dq(*gpu_, q), dout(*gpu_, std::vector<float>(want.size(), 0.0f));
    gpu_->memory_read(ds0.get(), dq.get(), stride, dout.get(), stride, s.tokens, s.heads, s.dk,
                      s.dk, scale);
    expect_close(Op::memory_read, dout.fetch(), want, shape);
  }
}

// Gate projections over a wide range: both softplus branches (threshold 20) and the saturated
// tails of exp and sigmoid. fp32 in both modes (expf / log1pf, not the fast intrinsics).
TEST_P(CudaOps, MemoryGates) {
  struct Shape {
    int tokens, heads;
    float range;
  };
  for (const Shape s : {Shape{1, 1, 2.0f}, Shape{432, 4, 30.0f}, Shape{4680, 12, 60.0f}}) {
    const size_t n = static_cast<size_t>(s.tokens) * s.heads;
    const auto raw = random_values(3 * n, 31, -s.range, s.range);
    const auto a_log = random_values(static_cast<size_t>(s.heads), 32, -3.0f, 2.0f);
    const auto dt_bias = random_values(static_cast<size_t>(s.heads), 33, -4.0f, 4.0f);
    std::vector<float> alpha(n), beta(n), gamma(n);
    cpu_->memory_gates(raw.data(), a_log.data(), dt_bias.data(), alpha.data(), beta.data(),
                       gamma.data(), s.tokens, s.heads);
    // Outputs start at 7, outside every gate's range: a value left unwritten fails the check.
    DeviceArray draw(*gpu_, raw), dlog(*gpu_, a_log), dbias(*gpu_, dt_bias),
        dalpha(*gpu_, std::vector<float>(n, 7.0f)), dbeta(*gpu_, std::vector<float>(n, 7.0f)),
        dgamma(*gpu_, std::vector<float>(n, 7.0f));
    gpu_->memory_gates(draw.get(), dlog.get(), dbias.get(), dalpha.get(), dbeta.get(), dgamma.get(),
                       s.tokens, s.heads);
    const std::string shape = std::to_string(s.tokens) + " tokens, " + std::to_string(s.heads) +
                              " heads, |x| < " + std::to_string(static_cast<int>(s.range));
    const auto got_alpha = dalpha.fetch(), got_beta = dbeta.fetch(), got_gamma = dgamma.fetch();
    expect_close(Op::memory_gates, got_alpha, alpha, "alpha, " + shape);
    expect_close(Op::memory_gates, got_beta, beta, "beta, " + shape);
    expect_close(Op::memory_gates, got_gamma, gamma, "gamma, " + shape);
    // Per element too: the norm above could hide one bad gate among thousands.
    double worst = 0;
    const auto diff = [](float x, float y) {
      return std::abs(static_cast<double>(x) - static_cast<double>(y));
    };
    for (size_t i = 0; i < n; ++i) {
      worst = std::max({worst, diff(got_alpha[i], alpha[i]), diff(got_beta[i], beta[i]),
                        diff(got_gamma[i], gamma[i])});
    }
    EXPECT_LE(worst, 1e-6) << shape;
  }
}

// ---- Fused ops of the self-attention layers (Backend::qk_norm_rope, l2_normalize_heads_rows,
// memory_gates_rows): each against the CPU reference (the default composition of the separate
// ops, fp32 tolerance as every op) and against the separate GPU ops on the same device buffers.

// Floats that differ between a and b, and whether every difference is within `ulps` units in
// the last place of b (a relative bound of ulps * 2^-23, as float rounding allows).
struct UlpCompare {
  size_t differ = 0;
  bool within = true;
};
UlpCompare compare_ulps(const std::vector<float>& a, const std::vector<float>& b, double ulps) {
  UlpCompare r;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] == b[i]) continue;
    ++r.differ;
    const double bound = ulps * std::ldexp(1.0, -23) * std::abs(static_cast<double>(b[i]));
    const double diff = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(diff <= bound)) r.within = false;
  }
  return r;
}

// The fused kernel (head_dim % 4 == 0, aligned, stride % 4 == 0) and the shapes it leaves to the
// separate ops (head_dim 6, x one float past alignment, stride 2 dim + 2, width over 8192). Odd
// token counts, head_dim 64 and 128, strides wider than q | k (a fused projection's: 6192 at the
// 1.3B shape), k rotated or not, weights or none. The fused kernel repeats the separate ops'
// arithmetic (the same norm reduction per row, the same rotation): it must match them to 1 ulp
// (expected bit for bit; the test prints how many floats differ), and the CPU to 1e-5.
TEST_P(CudaOps, QkNormRope) {
  struct Case {
    int frames, rows, cols, heads, head_dim, stride_extra;  // x_stride = 2 dim + stride_extra
    size_t offset;                                           // floats into x
    bool weighted;
    float theta;
  };
  for (const Case c : {Case{3, 3, 3, 2, 64, 3 * 128 + 16, 0, true, 10000.0f},
                       Case{1, 3, 5, 12, 128, 6192 - 2 * 1536, 0, true, 10000.0f},
                       Case{2, 6, 10, 12, 128, 6192 - 2 * 1536, 1536, true, 10000.0f},
                       Case{1, 7, 7, 4, 64, 0, 0, false, 500.0f},
                       Case{1, 1, 1, 1, 4, 8, 0, true, 10000.0f},
                       Case{1, 3, 5, 3, 6, 4, 0, true, 10000.0f},       // head_dim % 4 != 0
                       Case{1, 3, 5, 2, 64, 12, 1, true, 10000.0f},     // x unaligned
                       Case{1, 3, 5, 2, 64, 2, 0, true, 10000.0f},      // stride % 4 != 0
                       Case{1, 1, 3, 3, 2736, 0, 0, true, 10000.0f}}) {  // width 8208 > 8192
    const RopePositions p = rope_positions(c.frames, c.rows, c.cols, -2);
    const int tokens = p.tokens(), dim = c.heads * c.head_dim, stride = 2 * dim + c.stride_extra;
    const size_t n = static_cast<size_t>(tokens) * dim;
    const auto x = random_values(c.offset + static_cast<size_t>(tokens) * stride, 51, -2.0f, 3.0f);
    const auto qw = random_values(static_cast<size_t>(dim), 52, 0.5f, 1.5f);
    const auto kw = random_values(static_cast<size_t>(dim), 53, 0.5f, 1.5f);
    const float* q_weight = c.weighted ? qw.data() : nullptr;
    const float* k_weight = c.weighted ? kw.data() : nullptr;
    for (const bool rope_k : {true, false}) {
      const std::string shape = std::to_string(tokens) + " tokens, " + std::to_string(c.heads) +
                                "x" + std::to_string(c.head_dim) + ", stride " +
                                std::to_string(stride) + ", offset " + std::to_string(c.offset) +
                                (c.weighted ? "" : ", no weights") +
                                (rope_k ? "" : ", k unrotated");
      std::vector<float> want_q(n), want_k(n);
      cpu_->qk_norm_rope(x.data() + c.offset, stride, want_q.data(), want_k.data(), tokens, c.heads,
                         c.head_dim, q_weight, k_weight, 1e-6f, p.t.data(), p.r.data(), p.c.data(),
                         c.theta, rope_k);
      DeviceArray dx(*gpu_, x), dqw(*gpu_, qw), dkw(*gpu_, kw),
          dq(*gpu_, std::vector<float>(n, 9.0f)), dk(*gpu_, std::vector<float>(n, 9.0f)),
          sq(*gpu_, std::vector<float>(n, 9.0f)), sk(*gpu_, std::vector<float>(n, 9.0f));
      const float* dq_weight = c.weighted ? dqw.get() : nullptr;
      const float* dk_weight = c.weighted ? dkw.get() : nullptr;
      const float* xin = dx.get() + c.offset;
      gpu_->qk_norm_rope(xin, stride, dq.get(), dk.get(), tokens, c.heads, c.head_dim, dq_weight,
                         dk_weight, 1e-6f, p.t.data(), p.r.data(), p.c.data(), c.theta, rope_k);
      // The separate ops, as the engine ran them before.
      gpu_->rms_norm_rows(xin, stride, sq.get(), tokens, dim, dq_weight, 1e-6f);
      gpu_->rms_norm_rows(xin + dim, stride, sk.get(), tokens, dim, dk_weight, 1e-6f);
      gpu_->rope_3d(sq.get(), tokens, c.heads, c.head_dim, dim, p.t.data(), p.r.data(), p.c.data(),
                    c.theta);
      if (rope_k) {
        gpu_->rope_3d(sk.get(), tokens, c.heads, c.head_dim, dim, p.t.data(), p.r.data(),
                      p.c.data(), c.theta);
      }
      const auto got_q = dq.fetch(), got_k = dk.fetch();
      expect_close(Op::qk_norm_rope, got_q, want_q, "q, " + shape);
      expect_close(Op::qk_norm_rope, got_k, want_k, "k, " + shape);
      const UlpCompare cq = compare_ulps(got_q, sq.fetch(), 1.0);
      const UlpCompare ck = compare_ulps(got_k, sk.fetch(), 1.0);
      EXPECT_TRUE(cq.within && ck.within) << "fused vs separate GPU ops over 1 ulp, " << shape;
      std::printf("[ qk_norm_rope vs separate GPU ops ] %s: %zu + %zu of %zu floats differ\n",
                  shape.c_str(), cq.differ, ck.differ, 2 * n);
      EXPECT_EQ(dx.fetch(), x) << "x must stay as it was, " << shape;
    }
  }
}

// Strided sources (x_stride > width: a fused projection's columns) into packed rows: the 16-byte
// kernel (head_dim 64, 128), the scalar one (head_dim 30; x one float past alignment). Where both
// calls take the same kernel the result must equal copy_2d + l2_normalize_heads bit for bit.
TEST_P(CudaOps, L2NormalizeHeadsRows) {
  struct Case {
    int rows, heads, head_dim, stride_extra;
    size_t offset;
  };
  for (const Case c : {Case{37, 12, 128, 6192 - 1536, 3 * 1536}, Case{9, 2, 64, 36, 0},
                       Case{5, 3, 64, 0, 0}, Case{7, 3, 30, 6, 0}, Case{11, 4, 128, 20, 1},
                       Case{3, 2, 64, 2, 0}}) {
    const int width = c.heads * c.head_dim, stride = width + c.stride_extra;
    const size_t n = static_cast<size_t>(c.rows) * width;
    const auto x = random_values(c.offset + static_cast<size_t>(c.rows) * stride, 61);
    std::vector<float> want(n);
    cpu_->l2_normalize_heads_rows(x.data() + c.offset, stride, want.data(), c.rows, c.heads,
                                  c.head_dim, 1e-6f);
    DeviceArray dx(*gpu_, x), dy(*gpu_, std::vector<float>(n, 9.0f)),
        sy(*gpu_, std::vector<float>(n, 9.0f));
    gpu_->l2_normalize_heads_rows(dx.get() + c.offset, stride, dy.get(), c.rows, c.heads,
                                  c.head_dim, 1e-6f);
    gpu_->copy_2d(sy.get(), width, dx.get() + c.offset, stride, c.rows, width);
    gpu_->l2_normalize_heads(sy.get(), c.rows, c.heads, c.head_dim, 1e-6f);
    const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.heads) + "x" +
                              std::to_string(c.head_dim) + ", stride " + std::to_string(stride) +
                              ", offset " + std::to_string(c.offset);
    const auto got = dy.fetch();
    expect_close(Op::l2_normalize_heads, got, want, shape);
    const bool same_kernel = c.head_dim % 4 != 0 || (c.offset % 4 == 0 && stride % 4 == 0);
    if (same_kernel) {
      EXPECT_EQ(got, sy.fetch()) << shape;
    } else {
      // Another summation order (scalar kernel against 16-byte): a few ulps.
      EXPECT_TRUE(compare_ulps(got, sy.fetch(), 4.0).within) << shape;
    }
    EXPECT_EQ(dx.fetch(), x) << shape;
  }
}

// The gate columns read in place from the projection rows ([a | b | g] of `heads` each at column
// `column` of rows `stride` apart): equal to copying them out then memory_gates, bit for bit, and
// to the CPU within 1e-6 per gate; the scratch is not needed (left as it was).
TEST_P(CudaOps, MemoryGatesRows) {
  struct Case {
    int tokens, heads, stride, column;
    float range;
  };
  for (const Case c : {Case{4680 / 40, 12, 6192, 4 * 1536, 30.0f}, Case{7, 3, 13, 2, 60.0f},
                       Case{1, 1, 3, 0, 2.0f}, Case{33, 4, 20, 5, 25.0f}}) {
    ASSERT_LE(c.column + 3 * c.heads, c.stride);  // the gate columns lie inside each row
    const size_t n = static_cast<size_t>(c.tokens) * c.heads;
    const auto x = random_values(static_cast<size_t>(c.tokens) * c.stride, 71, -c.range, c.range);
    const auto a_log = random_values(static_cast<size_t>(c.heads), 72, -3.0f, 2.0f);
    const auto dt_bias = random_values(static_cast<size_t>(c.heads), 73, -4.0f, 4.0f);
    std::vector<float> want(3 * n), cpu_scratch(3 * n);
    cpu_->memory_gates_rows(x.data() + c.column, c.stride, a_log.data(), dt_bias.data(),
                            want.data(), want.data() + n, want.data() + 2 * n, c.tokens, c.heads,
                            cpu_scratch.data());
    DeviceArray dx(*gpu_, x), dlog(*gpu_, a_log), dbias(*gpu_, dt_bias),
        out(*gpu_, std::vector<float>(3 * n, 7.0f)),
        scratch(*gpu_, std::vector<float>(3 * n, 5.0f)),
        sep(*gpu_, std::vector<float>(3 * n, 7.0f)), sep_raw(*gpu_, std::vector<float>(3 * n));
    float* o = out.get();
    gpu_->memory_gates_rows(dx.get() + c.column, c.stride, dlog.get(), dbias.get(), o, o + n,
                            o + 2 * n, c.tokens, c.heads, scratch.get());
    for (int g = 0; g < 3; ++g) {
      gpu_->copy_2d(sep_raw.get() + static_cast<size_t>(g) * n, c.heads,
                    dx.get() + c.column + static_cast<size_t>(g) * c.heads, c.stride, c.tokens,
                    c.heads);
    }
    gpu_->memory_gates(sep_raw.get(), dlog.get(), dbias.get(), sep.get(), sep.get() + n,
                       sep.get() + 2 * n, c.tokens, c.heads);
    const std::string shape = std::to_string(c.tokens) + " tokens, " + std::to_string(c.heads) +
                              " heads, stride " + std::to_string(c.stride);
    const auto got = out.fetch();
    EXPECT_EQ(got, sep.fetch()) << shape;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst,
                       std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
    }
    EXPECT_LE(worst, 1e-6) << shape;
    std::printf("[ memory_gates_rows %-5s ] %-34s max |diff| vs CPU %.3g\n",
                bf16() ? "bf16" : "fp32", shape.c_str(), worst);
    EXPECT_EQ(scratch.fetch(), std::vector<float>(3 * n, 5.0f)) << shape;
  }
}

// residual_norm (the residual add and the layer norm after it, one kernel) against the CPU
// reference (the default composition) and against gated_residual then layer_norm[_modulate] on
// the GPU. Shapes the fused kernel takes: the engine's three uses at width 1536 (one gate row for
// the block: norm3's affine norm after the gated attention residual, adaLN after the plain
// cross-attention residual and after the gated feed-forward one), groups of rows with strided
// gate and modulation rows, widths of 1, 3 and 8 float4 a thread, no weight or bias. Shapes left to
// the separate ops: width 30, 8196 (> 8192), a buffer one float past alignment, a group stride
// not a multiple of 4. The fused kernel repeats the separate kernels' arithmetic (the same fma
// per element, the same norm reduction per row): x and out must equal theirs bit for bit.
TEST_P(CudaOps, ResidualNorm) {
  struct Case {
    const char* name;
    int rows, dim, rows_per_group, group_stride;
    bool gate, modulate, weight, bias;
    size_t offset;  // floats into x, y and out
  };
  for (const Case c :
       {Case{"attention residual + norm3", 117, 1536, 117, 0, true, false, true, true, 0},
        Case{"cross residual + adaLN", 117, 1536, 117, 0, false, true, false, false, 0},
        Case{"ffn residual + adaLN", 117, 1536, 117, 0, true, true, false, false, 0},
        Case{"groups of 4, strided rows", 13, 3000, 4, 3004, true, true, false, false, 0},
        Case{"layer_norm, no affine", 9, 128, 9, 0, true, false, false, false, 0},
        Case{"layer_norm, weight only", 9, 128, 3, 128, true, false, true, false, 0},
        Case{"width 8192", 5, 8192, 5, 0, true, true, false, false, 0},
        Case{"width 30 (separate ops)", 7, 30, 7, 0, true, true, false, false, 0},
        Case{"width 8196 (separate ops)", 3, 8196, 3, 0, true, false, true, true, 0},
        Case{"unaligned (separate ops)", 7, 64, 7, 0, true, true, false, false, 1},
        Case{"group stride 66 (separate ops)", 9, 64, 3, 66, true, true, false, false, 0}}) {
    const int groups = (c.rows + c.rows_per_group - 1) / c.rows_per_group;
    const size_t n = static_cast<size_t>(c.rows) * c.dim;
    const size_t group_span = static_cast<size_t>(groups - 1) * c.group_stride + c.dim;
    // An offset mean, as activations have (the two-pass variance must not lose it).
    const auto x = random_values(c.offset + n, 81, 1.0f, 4.0f);
    const auto y = random_values(c.offset + n, 82, -2.0f, 2.0f);
    const auto gate = random_values(group_span, 83, -1.0f, 1.5f);
    const auto norm_a = random_values(group_span, 84, -0.5f, 1.5f);
    const auto norm_b = random_values(group_span, 85, -0.7f, 0.7f);
    const ResidualNorm norm =
        c.modulate ? ResidualNorm::layer_norm_modulate : ResidualNorm::layer_norm;
    const bool has_a = c.modulate || c.weight, has_b = c.modulate || c.bias;
    std::vector<float> want_x(x.begin() + static_cast<std::ptrdiff_t>(c.offset), x.end()),
        want_out(n);
    cpu_->residual_norm(want_x.data(), y.data() + c.offset, c.gate ? gate.data() : nullptr,
                        want_out.data(), c.rows, c.dim, c.rows_per_group, c.group_stride, norm,
                        has_a ? norm_a.data() : nullptr, has_b ? norm_b.data() : nullptr, 1e-6f);
    DeviceArray dx(*gpu_, x), dy(*gpu_, y), dg(*gpu_, gate), da(*gpu_, norm_a), db(*gpu_, norm_b),
        dout(*gpu_, std::vector<float>(c.offset + n, 9.0f)), sx(*gpu_, x),
        sout(*gpu_, std::vector<float>(c.offset + n, 9.0f));
    const float* g = c.gate ? dg.get() : nullptr;
    const float* a = has_a ? da.get() : nullptr;
    const float* b = has_b ? db.get() : nullptr;
    gpu_->residual_norm(dx.get() + c.offset, dy.get() + c.offset, g, dout.get() + c.offset, c.rows,
                        c.dim, c.rows_per_group, c.group_stride, norm, a, b, 1e-6f);
    // The separate ops, as the engine ran them before.
    gpu_->gated_residual(sx.get() + c.offset, dy.get() + c.offset, g, c.rows, c.dim,
                         c.rows_per_group, c.group_stride);
    if (c.modulate) {
      gpu_->layer_norm_modulate(sx.get() + c.offset, sout.get() + c.offset, c.rows, c.dim, a, b,
                                c.rows_per_group, c.group_stride, 1e-6f);
    } else {
      gpu_->layer_norm(sx.get() + c.offset, sout.get() + c.offset, c.rows, c.dim, a, b, 1e-6f);
    }
    const auto got_x = dx.fetch(), got_out = dout.fetch();
    const auto tail = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(c.offset), v.end());
    };
    expect_close(Op::residual_norm, tail(got_x), want_x, std::string(c.name) + ", x");
    expect_close(Op::residual_norm, tail(got_out), want_out, std::string(c.name) + ", out");
    const auto sep_x = sx.fetch(), sep_out = sout.fetch();
    const UlpCompare cx = compare_ulps(got_x, sep_x, 0.0), co = compare_ulps(got_out, sep_out, 0.0);
    EXPECT_EQ(got_x, sep_x) << "x, fused vs separate GPU ops, " << c.name;
    EXPECT_EQ(got_out, sep_out) << "out, fused vs separate GPU ops, " << c.name;
    std::printf("[ residual_norm vs separate GPU ops ] %s: %zu + %zu of %zu floats differ\n",
                c.name, cx.differ, co.differ, 2 * n);
    EXPECT_EQ(dy.fetch(), y) << "y must stay as it was, " << c.name;
  }
}

TEST_P(CudaOps, Convolutions) {
  struct Shape {
    int c_in, h, w, c_out, stride;
    bool bias;
  };
  for (const Shape s :
       {Shape{4, 9, 16, 64, 1, true}, Shape{16, 36, 64, 3, 1, true}, Shape{3, 16, 32, 8, 2, true},
        Shape{3, 15, 17, 5, 2, false}, Shape{64, 72, 128, 16, 1, true}}) {
    const int h_out = (s.h - 1) / s.stride + 1, w_out = (s.w - 1) / s.stride + 1;
    const auto in = random_values(static_cast<size_t>(s.c_in) * s.h * s.w, 31);
    const auto w = random_values(static_cast<size_t>(s.c_out) * s.c_in * 9, 32);
    const auto b = random_values(static_cast<size_t>(s.c_out), 33);
    std::vector<float> want(static_cast<size_t>(s.c_out) * h_out * w_out);
    cpu_->conv2d_3x3(in.data(), s.c_in, s.h, s.w, w.data(), s.bias ? b.data() : nullptr, s.c_out,
                     s.stride, want.data());
    DeviceArray din(*gpu_, in), dw(*gpu_, w), db(*gpu_, b),
        dout(*gpu_, std::vector<float>(want.size(), 3.0f));
    gpu_->conv2d_3x3(din.get(), s.c_in, s.h, s.w, dw.get(), s.bias ? db.get() : nullptr, s.c_out,
                     s.stride, dout.get());
    expect_close(Op::conv2d_3x3, dout.fetch(), want,
                 std::to_string(s.c_in) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) +
                     "->" + std::to_string(s.c_out) + " stride " + std::to_string(s.stride));
  }
  const int c = 3, h = 5, w = 7;
  const auto in = random_values(static_cast<size_t>(c) * h * w, 34);
  std::vector<float> want(static_cast<size_t>(c) * 4 * h * w);
  cpu_->upsample_nearest_2x(in.data(), c, h, w, want.data());
  DeviceArray din(*gpu_, in), dout(*gpu_, std::vector<float>(want.size()));
  gpu_->upsample_nearest_2x(din.get(), c, h, w, dout.get());
  EXPECT_EQ(dout.fetch(), want);
}

// Uploads and downloads through the pinned staging (larger than one staging area, odd sizes),
// device copies, and zeroed allocations.
TEST_P(CudaOps, TransfersRoundTripExactly) {
  for (const size_t n : {size_t{1}, size_t{1000}, size_t{3} << 20, (size_t{5} << 20) + 3}) {
    const auto host = random_values(n, 35);
    DeviceArray a(*gpu_, host);
    EXPECT_EQ(a.fetch(), host) << n;
    auto b = gpu_->allocate(n);
    std::vector<float> zeros(n, 1.0f);
    gpu_->download(zeros.data(), b->data(), n);
    EXPECT_TRUE(std::all_of(zeros.begin(), zeros.end(), [](float v) { return v == 0.0f; })) << n;
    gpu_->copy(b->data(), a.get(), n);
    std::vector<float> back(n);
    gpu_->download(back.data(), b->data(), n);
    EXPECT_EQ(back, host) << n;
  }
  // Many small uploads in a row (the engine's pattern) cycle the staging halves.
  auto buffer = gpu_->allocate(1 << 20);
  std::vector<float> expected(1 << 20);
  for (int i = 0; i < 200; ++i) {
    const auto chunk = random_values(100000, 36 + i);
    const size_t at = static_cast<size_t>(i) * 4999 % ((1 << 20) - chunk.size());
    gpu_->upload(buffer->data() + at, chunk.data(), chunk.size());
    std::copy(chunk.begin(), chunk.end(), expected.begin() + static_cast<std::ptrdiff_t>(at));
  }
  std::vector<float> back(1 << 20);
  gpu_->download(back.data(), buffer->data(), back.size());
  EXPECT_EQ(back, expected);
}

TEST_P(CudaOps, OutOfMemoryIsReportedAndTheBackendStaysUsable) {
  for (const size_t absurd : {size_t{1} << 40, SIZE_MAX / 2}) {
    try {
      auto huge = gpu_->allocate(absurd);
      FAIL() << "allocating " << absurd << " floats succeeded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::out_of_memory) << e.what();
      EXPECT_NE(std::string(e.what()).find("memory"), std::string::npos) << e.what();
    }
  }
  const auto host = random_values(4096, 37);
  DeviceArray a(*gpu_, host);
  gpu_->silu(a.get(), host.size());
  std::vector<float> want = host;
  cpu_->silu(want.data(), want.size());
  EXPECT_LE(rel_error(a.fetch(), want), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Precision, CudaOps,
                         ::testing::Values(ComputePrecision::fp32, ComputePrecision::bf16),
                         [](const ::testing::TestParamInfo<ComputePrecision>& param_info) {
                           return param_info.param == ComputePrecision::bf16 ? std::string("bf16")
                                                                             : std::string("fp32");
                         });

// ---- Without a GPU: the error contract.

TEST(CudaBackend, MissingDeviceIsUnsupported) {
  try {
    auto backend = make_cuda_backend(999, ComputePrecision::fp32);
    FAIL() << "device 999 exists?";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported) << e.what();
  }
  if (!have_gpu()) {
    try {
      auto backend = make_cuda_backend(0, ComputePrecision::fp32);
      FAIL() << "a CUDA backend without a GPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::unsupported) << e.what();
    }
    SessionOptions options;
    options.device = DeviceKind::cuda;
    const auto model =
        Model::load(STRAND_SOURCE_DIR "/tests/data/strand-tiny-random.safetensors");
    EXPECT_THROW({ Session session(model, options); }, Error);
  }
}

TEST(CudaBackend, MemoryUsageIsReportedForEachGpu) {
  SKIP_WITHOUT_GPU();
  const auto usage = gpu_memory_usage(0);
  ASSERT_TRUE(usage.has_value());
  EXPECT_GT(usage->total_bytes, size_t{1} << 30);
  EXPECT_LE(usage->used_bytes, usage->total_bytes);
  EXPECT_FALSE(gpu_memory_usage(999).has_value());
}

// ---- End to end: the engine on the GPU against the engine on the CPU.

constexpr const char* kModel = STRAND_SOURCE_DIR "/tests/data/strand-tiny-random.safetensors";
constexpr const char* kPrompt = "a red balloon over snowy mountains at dusk";
constexpr int kBlocks = 3;

struct Rollout {
  std::vector<BlockResult> blocks;
};

Rollout run_blocks(Session& session, int blocks) {
  Rollout run;
  for (int i = 0; i < blocks; ++i) run.blocks.push_back(session.generate_next_block());
  return run;
}

SessionOptions options_for(DeviceKind device, ComputePrecision precision) {
  SessionOptions options;
  options.seed = 42;
  options.device = device;
  options.precision = precision;
  return options;
}

// The CPU engine's blocks, computed once for the tests below (the CPU may lack OpenBLAS on a GPU
// machine, where its reference GEMMs are slow).
const Rollout& cpu_reference() {
  static const Rollout rollout = [] {
    Session cpu(Model::load(kModel), options_for(DeviceKind::cpu, ComputePrecision::fp32));
    cpu.set_prompt(kPrompt);
    return run_blocks(cpu, kBlocks);
  }();
  return rollout;
}

// Frame bytes may differ by one where a value lies on a rounding boundary; more is a real error.
void expect_frames_match(const std::vector<Frame>& got, const std::vector<Frame>& want) {
  ASSERT_EQ(got.size(), want.size());
  size_t differing = 0, total = 0;
  for (size_t f = 0; f < got.size(); ++f) {
    ASSERT_EQ(got[f].rgb.size(), want[f].rgb.size());
    for (size_t i = 0; i < got[f].rgb.size(); ++i) {
      const int d = std::abs(static_cast<int>(got[f].rgb[i]) - static_cast<int>(want[f].rgb[i]));
      ASSERT_LE(d, 1) << "frame " << f << " byte " << i;
      differing += d != 0;
      ++total;
    }
  }
  EXPECT_LE(static_cast<double>(differing) / static_cast<double>(total), 0.01);
}

TEST(CudaEndToEnd, Fp32MatchesTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto model = Model::load(kModel);
  Session cpu(model, options_for(DeviceKind::cpu, ComputePrecision::fp32));
  Session gpu(model, options_for(DeviceKind::cuda, ComputePrecision::fp32));
  gpu.set_prompt(kPrompt);
  const Rollout& want = cpu_reference();
  const Rollout got = run_blocks(gpu, kBlocks);
  for (int b = 0; b < kBlocks; ++b) {
    const double err = rel_error(got.blocks[b].latents, want.blocks[b].latents);
    std::printf("[ e2e fp32 ] block %d latents rel error %.3g (gpu %.1f ms, cpu %.1f ms)\n", b, err,
                got.blocks[b].timings.total_ms, want.blocks[b].timings.total_ms);
    EXPECT_LE(err, 1e-4) << "block " << b;
    expect_frames_match(got.blocks[b].frames, want.blocks[b].frames);
  }
  // Decoding stored latents on the GPU gives the frames the CPU decodes.
  expect_frames_match(gpu.decode_latents(want.blocks[1].latents, 0),
                      cpu.decode_latents(want.blocks[1].latents, 0));
}

// Snapshots move between devices: memory taken on the GPU continues on the CPU and vice versa.
TEST(CudaEndToEnd, SnapshotsRoundTripBetweenGpuAndCpu) {
  SKIP_WITHOUT_GPU();
  const auto model = Model::load(kModel);
  Session gpu(model, options_for(DeviceKind::cuda, ComputePrecision::fp32));
  gpu.set_prompt(kPrompt);
  gpu.generate_next_block();
  const MemoryState at_one = gpu.snapshot();
  const BlockResult gpu_next = gpu.generate_next_block();

  Session cpu(model, options_for(DeviceKind::cpu, ComputePrecision::fp32));
  cpu.restore(at_one);
  const BlockResult cpu_next = cpu.generate_next_block();
  EXPECT_LE(rel_error(gpu_next.latents, cpu_next.latents), 1e-4);
  const MemoryState cpu_after = cpu.snapshot();

  gpu.restore(at_one);  // back on the GPU: the same block again, bit for bit
  const BlockResult again = gpu.generate_next_block();
  EXPECT_EQ(again.latents, gpu_next.latents);
  const MemoryState gpu_after = gpu.snapshot();
  ASSERT_EQ(gpu_after.layers.size(), cpu_after.layers.size());
  for (size_t i = 0; i < gpu_after.layers.size(); ++i) {
    EXPECT_LE(rel_error(gpu_after.layers[i].state, cpu_after.layers[i].state), 1e-4)
        << "layer " << i;
  }
}

// bf16: reports its error against the fp32 CPU engine (the lead compares it with the PyTorch
// reference's bf16 error: the bound is 2x that). The bound here only catches breakage.
TEST(CudaEndToEnd, Bf16ErrorAgainstTheFp32Engine) {
  SKIP_WITHOUT_GPU();
  Session gpu(Model::load(kModel), options_for(DeviceKind::cuda, ComputePrecision::bf16));
  gpu.set_prompt(kPrompt);
  const Rollout& want = cpu_reference();
  const Rollout got = run_blocks(gpu, kBlocks);
  for (int b = 0; b < kBlocks; ++b) {
    const double err = rel_error(got.blocks[b].latents, want.blocks[b].latents);
    std::printf("[ e2e bf16 ] block %d latents rel error vs fp32 CPU %.4g\n", b, err);
    RecordProperty("bf16_latents_rel_error_block" + std::to_string(b), std::to_string(err));
    EXPECT_LE(err, 0.1) << "block " << b;
    EXPECT_GT(err, 1e-6) << "bf16 should not match fp32 exactly";
  }
}

// Recorded passes (CUDA graphs) against op-by-op launches on the same GPU: blocks, a branch from a
// snapshot and a prompt change give the same latents, and the recordings were really replayed.
TEST(CudaEndToEnd, RecordedPassesMatchOpByOp) {
  SKIP_WITHOUT_GPU();
  const auto model = Model::load(kModel);
  for (ComputePrecision precision : {ComputePrecision::fp32, ComputePrecision::bf16}) {
    SessionOptions plain_options = options_for(DeviceKind::cuda, precision);
    plain_options.record_passes = false;
    Session recorded(model, options_for(DeviceKind::cuda, precision));
    Session plain(model, plain_options);
    std::vector<std::vector<float>> want, got;
    MemoryState branch_point;
    for (Session* session : {&plain, &recorded}) {
      auto& out = session == &plain ? want : got;
      session->set_prompt(kPrompt);
      for (int b = 0; b < 4; ++b) {
        out.push_back(session->generate_next_block().latents);
        if (b == 1) branch_point = session->snapshot();
      }
      session->restore(branch_point);
      out.push_back(session->generate_next_block().latents);
      session->set_prompt("a green forest at dawn");
      for (int b = 0; b < 2; ++b) out.push_back(session->generate_next_block().latents);
    }
    EXPECT_EQ(plain.replayed_passes(), 0);
    EXPECT_GT(recorded.replayed_passes(), 10) << "the recordings were not replayed";
    const double bound = precision == ComputePrecision::fp32 ? 1e-5 : 1e-3;
    ASSERT_EQ(got.size(), want.size());
    for (size_t b = 0; b < want.size(); ++b) {
      const double err = rel_error(got[b], want[b]);
      std::printf("[ graphs %s ] block %zu rel error vs op by op %.3g%s\n",
                  precision == ComputePrecision::fp32 ? "fp32" : "bf16", b, err,
                  got[b] == want[b] ? " (bit-exact)" : "");
      EXPECT_LE(err, bound) << "block " << b;
    }
  }
}

}  // namespace
}  // namespace strand
