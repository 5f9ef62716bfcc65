// Host emulator for the delta rule's kernels (kernels/cuda/delta_rule.cu): the prepare kernel,
// the tensor-core single-pass recurrence (unfolded, and folded: prepare writing W' and U0') and
// the FMA recurrence run on the CPU, so that their indexing, fragment layouts, barriers and cp.async double buffering can be checked without a
// GPU. It compiles the real kernel source (kernels.inc, sliced out by slice_delta_kernels.py) with
// one std::thread per CUDA thread, std::barrier for __syncthreads, and per-warp barriers for the
// warp-wide operations: mma.sync m16n8k8 TF32 (operands truncated to TF32 as the tensor cores
// read them, each lane's outputs from the PTX fragment layout) and __shfl_xor_sync. cp.async
// copies land either at issue ("early") or at cp.async.wait_group ("late"): a missing wait or
// barrier shows up in one of the two. Shared memory starts as NaNs, so a read of anything never
// written poisons the result.
// Checks, per shape and copy mode: the emulated prepare kernel's X = (I + A)^-1 and decay factors
// against a double-precision model of their definitions; the tensor-core recurrence fed by the
// emulated prepare (fp32 = 3xTF32, and TF32 on one shape), the folded recurrence after a folding
// prepare (W' and U0' start as NaNs: all must be written), both overlapped (ready flags, bitwise
// the same as in order), and the FMA
// recurrence fed by the model, each against the sequential rule in double. Run through
// tools/gpu/emulate_delta_rule.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cuda/delta_rule.h"

#include "tools/gpu/cuda_emulation.h"

struct PendingCopy {
  float* dst;
  const float* src;
  int floats;
  bool valid;
};
thread_local std::vector<PendingCopy> pending;
bool g_early_copies = false;

inline uint32_t __float_as_uint(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, d += A B over the warp. Fragments (PTX ISA),
// lane = 4 g + t: A a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); B b0 (t, g),
// b1 (t + 4, g); C c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1). Operands are
// read as TF32 (the low 13 mantissa bits dropped).
void emu_mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  WarpCtx& w = my_warp();
  std::memcpy(w.u[emu_lane], a, 4 * sizeof(uint32_t));  // u[lane][0..3]: A, [4..5]: B
  std::memcpy(w.u[emu_lane] + 4, b, 2 * sizeof(uint32_t));
  w.bar.arrive_and_wait();
  auto tf32 = [](uint32_t bits) { return __uint_as_float(bits & 0xffffe000u); };
  auto a_at = [&](int r, int k) { return tf32(w.u[(r % 8) * 4 + k % 4][(r >= 8) + 2 * (k >= 4)]); };
  auto b_at = [&](int k, int n) { return tf32(w.u[n * 4 + k % 4][4 + (k >= 4)]); };
  const int g = emu_lane / 4, t = emu_lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int r = g + 8 * (e >> 1), n = 2 * t + (e & 1);
    float sum = 0.0f;
    for (int k = 0; k < 8; ++k) sum += a_at(r, k) * b_at(k, n);
    d[e] += sum;
  }
  w.bar.arrive_and_wait();
}
inline int min(int a, int b) {
  return a < b ? a : b;
}
void land(const PendingCopy& c) {
  for (int i = 0; i < c.floats; ++i) c.dst[i] = c.valid ? c.src[i] : 0.0f;
}
void copy_async(float* dst, const float* src, int floats, bool valid) {
  const PendingCopy c{dst, src, floats, valid};
  if (g_early_copies) {
    land(c);
  } else {
    pending.push_back(c);
  }
}
inline void copy_async16(float* dst, const float* src, bool valid) {
  copy_async(dst, src, 4, valid);
}
inline void copy_async4(float* dst, const float* src, bool valid) {
  copy_async(dst, src, 1, valid);
}
inline void copy_commit() {}
inline void copy_wait_all() {
  for (const PendingCopy& c : pending) land(c);
  pending.clear();
}

// Ready flags of the overlapped single pass. The emulator runs one kernel after the other, so a
// recurrence block that finds a chunk's flag unset would wait forever on a GPU too if the prepare
// kernel never set it: that is reported (and the wait skipped) instead of hanging.
std::atomic<int> g_unready_waits{0};
inline void publish_ready(int* flag) {
  std::atomic_ref<int>(*flag).store(1, std::memory_order_release);
}
inline void wait_ready(const int* flag) {
  if (std::atomic_ref<const int>(*flag).load(std::memory_order_acquire) == 0) ++g_unready_waits;
}

namespace emu {
using strand::cuda::kDeltaChunk;
#include "kernels.inc"
}  // namespace emu

namespace {

using strand::cuda::kDeltaChunk;

struct Shape {
  int tokens, heads, dk, dv, pad;
  bool resets;
};

// The prepare kernel's outputs for one (chunk, head), in double, as floats: X (kChunk x kChunk,
// identity past the chunk's last token) and the coefficients [beta gamma, beta, tail, decay].
void model_prepare(const std::vector<float>& k, int k_stride, const std::vector<float>& alpha,
                   const std::vector<float>& beta, const Shape& c, int chunk, int h, float* x,
                   float* coef) {
  constexpr int C = strand::cuda::kDeltaChunk;
  const int t0 = chunk * C, n = std::min(C, c.tokens - t0);
  auto key = [&](int t, int i) { return static_cast<double>(k[(t0 + t) * k_stride + h * c.dk + i]); };
  auto al = [&](int t) { return static_cast<double>(alpha[(t0 + t) * c.heads + h]); };
  auto be = [&](int t) { return static_cast<double>(beta[(t0 + t) * c.heads + h]); };
  std::vector<double> a(C * C, 0.0), xd(C * C, 0.0);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < t; ++i) {
      double dot = 0.0, ratio = 1.0;
      for (int d = 0; d < c.dk; ++d) dot += key(t, d) * key(i, d);
      for (int s = i + 1; s <= t; ++s) ratio *= al(s);
      a[t * C + i] = be(t) * ratio * dot;
    }
  for (int j = 0; j < C; ++j)  // forward substitution, column by column
    for (int t = 0; t < C; ++t) {
      double sum = 0.0;
      for (int i = 0; i < t; ++i) sum += a[t * C + i] * xd[i * C + j];
      xd[t * C + j] = t < j ? 0.0 : (t == j ? 1.0 : -sum);
    }
  for (int i = 0; i < C * C; ++i) x[i] = static_cast<float>(xd[i]);
  std::fill(coef, coef + 4 * C, 0.0f);
  for (int i = 0; i < n; ++i) {
    double gamma = 1.0, tail = 1.0;
    for (int s = 0; s <= i; ++s) gamma *= al(s);
    for (int s = n - 1; s > i; --s) tail *= al(s);
    coef[i] = static_cast<float>(be(i) * gamma);
    coef[C + i] = static_cast<float>(be(i));
    coef[2 * C + i] = static_cast<float>(tail);
    if (i == n - 1) coef[3 * C] = static_cast<float>(gamma);
  }
}

// Runs the kernel call `body` as a grid of 256-thread CTAs with smem_floats of shared memory that
// start as NaNs (all bits set).
void launch(int grid_x, int grid_y, size_t smem_floats, const std::function<void()>& body) {
  emu_launch(grid_x, grid_y, 256, smem_floats * sizeof(float), 0xff, [&] {
    pending.clear();
    body();
  });
}

struct Problem {
  Shape c;
  int k_stride, v_stride, chunks;
  bool vec16;
  std::vector<float> k, v, alpha, beta, s0;
  std::vector<double> ref;  // the sequential rule in double
};

Problem make_problem(const Shape& c, unsigned seed) {
  Problem p{c, c.heads * c.dk + c.pad, c.heads * c.dv + c.pad, 0, false, {}, {}, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f), gate(0.85f, 1.0f), rate(0.05f, 0.95f);
  p.k.resize(static_cast<size_t>(c.tokens) * p.k_stride);
  p.v.resize(static_cast<size_t>(c.tokens) * p.v_stride);
  for (float& e : p.k) e = uni(rng);
  for (float& e : p.v) e = uni(rng);
  for (int t = 0; t < c.tokens; ++t)  // unit keys, as the engine's l2 norm makes them
    for (int h = 0; h < c.heads; ++h) {
      float* row = p.k.data() + t * p.k_stride + h * c.dk;
      double norm = 0.0;
      for (int i = 0; i < c.dk; ++i) norm += static_cast<double>(row[i]) * row[i];
      for (int i = 0; i < c.dk; ++i) row[i] = static_cast<float>(row[i] / std::sqrt(norm));
    }
  p.alpha.resize(static_cast<size_t>(c.tokens) * c.heads);
  p.beta.resize(p.alpha.size());
  for (float& e : p.alpha) e = gate(rng);
  for (float& e : p.beta) e = rate(rng);
  if (c.resets)
    for (size_t i = 17; i < p.alpha.size(); i += 97) p.alpha[i] = 0.0f;  // full forgets mid-chunk
  p.s0.resize(static_cast<size_t>(c.heads) * c.dk * c.dv);
  for (float& e : p.s0) e = 0.5f * uni(rng);
  p.ref.assign(p.s0.begin(), p.s0.end());
  for (int h = 0; h < c.heads; ++h) {
    double* st = p.ref.data() + static_cast<size_t>(h) * c.dk * c.dv;
    for (int t = 0; t < c.tokens; ++t) {
      const float* kt = p.k.data() + t * p.k_stride + h * c.dk;
      const float* vt = p.v.data() + t * p.v_stride + h * c.dv;
      const double a = p.alpha[t * c.heads + h], b = p.beta[t * c.heads + h];
      for (int i = 0; i < c.dk * c.dv; ++i) st[i] *= a;
      for (int j = 0; j < c.dv; ++j) {
        double sk = 0.0;
        for (int i = 0; i < c.dk; ++i) sk += st[i * c.dv + j] * kt[i];
        const double u = b * (vt[j] - sk);
        for (int i = 0; i < c.dk; ++i) st[i * c.dv + j] += kt[i] * u;
      }
    }
  }
  p.chunks = (c.tokens + kDeltaChunk - 1) / kDeltaChunk;
  p.vec16 = c.pad % 4 == 0 && c.dk % 4 == 0 && c.dv % 4 == 0;
  return p;
}

double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
}

struct Results {
  double prepare_x, prepare_coef, tensor_core, fma, folded;
  bool overlapped_same;  // overlapped prepare + recurrence: every flag set, bitwise the single pass
};

template <int kKeyPad, bool kExact>
Results run_all(const Problem& p) {
  const Shape& c = p.c;
  constexpr int C = kDeltaChunk;
  const size_t x_size = static_cast<size_t>(c.heads) * p.chunks * C * C;
  const size_t coef_size = static_cast<size_t>(c.heads) * p.chunks * 4 * C;
  // The double model of the prepare kernel.
  std::vector<float> x_model(x_size), coef_model(coef_size);
  for (int h = 0; h < c.heads; ++h)
    for (int ch = 0; ch < p.chunks; ++ch)
      model_prepare(p.k, p.k_stride, p.alpha, p.beta, c, ch, h,
                    x_model.data() + (static_cast<size_t>(h) * p.chunks + ch) * C * C,
                    coef_model.data() + (static_cast<size_t>(h) * p.chunks + ch) * 4 * C);
  // The prepare kernel.
  std::vector<float> x(x_size, std::nanf("")), coef(coef_size, std::nanf(""));
  launch(p.chunks, c.heads, emu::prepare_smem_bytes<kKeyPad>() / sizeof(float) + 1, [&] {
    emu::delta_prepare_kernel<kKeyPad, kExact>(p.k.data(), p.k_stride, p.alpha.data(),
                                               p.beta.data(), c.tokens, c.heads, c.dk, p.vec16,
                                               p.chunks, x.data(), coef.data(), nullptr,
                                               emu::FoldOutputs{});
  });
  Results r{};
  r.prepare_x = rel_error(x, std::vector<double>(x_model.begin(), x_model.end()));
  r.prepare_coef = rel_error(coef, std::vector<double>(coef_model.begin(), coef_model.end()));
  // The tensor-core recurrence on the prepare kernel's outputs.
  constexpr int kTile = 16;
  const int tiles = (c.dv + kTile - 1) / kTile;
  std::vector<float> s = p.s0;
  launch(tiles, c.heads, emu::RecurLayout<kKeyPad>::total, [&] {
    emu::delta_recur_kernel<kKeyPad, kExact>(s.data(), p.k.data(), p.k_stride, p.v.data(),
                                             p.v_stride, c.tokens, c.dk, c.dv, p.vec16, p.chunks,
                                             x.data(), coef.data(), nullptr);
  });
  r.tensor_core = rel_error(s, p.ref);
  // The overlapped single pass: prepare with ready flags (grid heads x chunks), then the
  // recurrence waiting on them; the same arithmetic, so bitwise the same outputs.
  {
    std::vector<int> ready(static_cast<size_t>(c.heads) * p.chunks, 0);
    std::vector<float> x2(x_size, std::nanf("")), coef2(coef_size, std::nanf(""));
    launch(c.heads, p.chunks, emu::prepare_smem_bytes<kKeyPad>() / sizeof(float) + 1, [&] {
      emu::delta_prepare_kernel<kKeyPad, kExact>(p.k.data(), p.k_stride, p.alpha.data(),
                                                 p.beta.data(), c.tokens, c.heads, c.dk, p.vec16,
                                                 p.chunks, x2.data(), coef2.data(), ready.data(),
                                                 emu::FoldOutputs{});
    });
    const int unready_before = g_unready_waits.load();
    std::vector<float> s2 = p.s0;
    launch(tiles, c.heads, emu::RecurLayout<kKeyPad>::total, [&] {
      emu::delta_recur_kernel<kKeyPad, kExact>(s2.data(), p.k.data(), p.k_stride, p.v.data(),
                                               p.v_stride, c.tokens, c.dk, c.dv, p.vec16, p.chunks,
                                               x2.data(), coef2.data(), ready.data());
    });
    r.overlapped_same = std::all_of(ready.begin(), ready.end(), [](int f) { return f == 1; }) &&
                        g_unready_waits.load() == unready_before &&
                        std::memcmp(x2.data(), x.data(), x.size() * sizeof(float)) == 0 &&
                        std::memcmp(coef2.data(), coef.data(), coef.size() * sizeof(float)) == 0 &&
                        std::memcmp(s2.data(), s.data(), s.size() * sizeof(float)) == 0;
  }
  // The folded schedule: prepare writes W' and U0' (no X), then the folded recurrence; once in
  // order and once overlapped (ready flags), which must agree bitwise. W' and U0' start as NaNs:
  // every element the recurrence reads must have been written.
  const int dv_pad = tiles * kTile;
  auto run_folded = [&](bool overlapped) {
    std::vector<float> w(static_cast<size_t>(c.heads) * p.chunks * C * kKeyPad, std::nanf("")),
        u(static_cast<size_t>(c.heads) * p.chunks * C * dv_pad, std::nanf("")),
        coef3(coef_size, std::nanf(""));
    std::vector<int> ready(static_cast<size_t>(c.heads) * p.chunks, 0);
    int* flags = overlapped ? ready.data() : nullptr;
    const emu::FoldOutputs fold{p.v.data(), p.v_stride, c.dv, dv_pad, w.data(), u.data()};
    launch(overlapped ? c.heads : p.chunks, overlapped ? p.chunks : c.heads,
           emu::prepare_smem_bytes<kKeyPad>() / sizeof(float) + 1, [&] {
             emu::delta_prepare_kernel<kKeyPad, kExact>(
                 p.k.data(), p.k_stride, p.alpha.data(), p.beta.data(), c.tokens, c.heads, c.dk,
                 p.vec16, p.chunks, nullptr, coef3.data(), flags, fold);
           });
    const int unready_before = g_unready_waits.load();
    std::vector<float> out = p.s0;
    launch(tiles, c.heads, emu::RecurLayout<kKeyPad, true>::total, [&] {
      emu::delta_recur_kernel<kKeyPad, kExact, true>(out.data(), p.k.data(), p.k_stride, u.data(),
                                                     dv_pad, c.tokens, c.dk, c.dv, p.vec16,
                                                     p.chunks, w.data(), coef3.data(), flags);
    });
    const bool flags_ok =
        !overlapped || (std::all_of(ready.begin(), ready.end(), [](int f) { return f == 1; }) &&
                        g_unready_waits.load() == unready_before);
    return std::make_pair(out, flags_ok);
  };
  const auto [s_folded, folded_flags_ok] = run_folded(false);
  const auto [s_folded2, overlapped_flags_ok] = run_folded(true);
  r.folded = rel_error(s_folded, p.ref);
  r.overlapped_same = r.overlapped_same && folded_flags_ok && overlapped_flags_ok &&
                      std::memcmp(s_folded.data(), s_folded2.data(), s.size() * sizeof(float)) == 0;
  // The FMA recurrence (exact fp32 whatever kExact) on the model's outputs.
  std::vector<float> s_fma = p.s0;
  launch(tiles, c.heads, emu::FmaLayout<kKeyPad>::total, [&] {
    emu::delta_recur_fma_kernel<kKeyPad>(s_fma.data(), p.k.data(), p.k_stride, p.v.data(),
                                         p.v_stride, c.tokens, c.dk, c.dv, p.vec16, p.chunks,
                                         x_model.data(), coef_model.data());
  });
  r.fma = rel_error(s_fma, p.ref);
  return r;
}

template <bool kExact>
Results run_padded(const Problem& p) {
  const int dk = p.c.dk;
  if (dk <= 32) return run_all<32, kExact>(p);
  if (dk <= 64) return run_all<64, kExact>(p);
  return run_all<128, kExact>(p);
}

}  // namespace

int main() {
  // Tokens not a multiple of 64 (partial last chunk), one token, value tiles cut short, dk below
  // the padded width, strides that force the 4-byte copies, resets inside chunks. The last shape
  // also runs the TF32 (one product a multiply) variants.
  const std::vector<Shape> shapes = {
      {200, 2, 128, 32, 0, false}, {1, 1, 128, 16, 0, false}, {130, 2, 64, 40, 0, true},
      {65, 1, 32, 16, 3, false},   {150, 1, 100, 36, 1, true},
  };
  int failures = 0;
  unsigned seed = 1;
  auto report = [&](const char* what, double err, double limit, const Shape& c, bool early) {
    const bool ok = err < limit;
    failures += ok ? 0 : 1;
    std::printf("%s %-26s T%d h%d dk%d dv%d pad%d%s, copies %s: rel error %.3g (limit %.0e)\n",
                ok ? "ok  " : "FAIL", what, c.tokens, c.heads, c.dk, c.dv, c.pad,
                c.resets ? " resets" : "", early ? "early" : "late", err, limit);
  };
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& c = shapes[i];
    const Problem p = make_problem(c, seed++);
    for (const bool early : {false, true}) {
      g_early_copies = early;
      const Results r = run_padded<true>(p);
      report("prepare X vs model", r.prepare_x, 1e-5, c, early);
      report("prepare decays vs model", r.prepare_coef, 1e-6, c, early);
      report("tensor-core pass (3xTF32)", r.tensor_core, 2e-5, c, early);
      report("FMA pass", r.fma, 2e-5, c, early);
      report("folded pass (3xTF32)", r.folded, 2e-5, c, early);
      report("overlapped = in order", r.overlapped_same ? 0.0 : 1.0, 0.5, c, early);
      if (i + 1 == shapes.size()) {
        const Results t = run_padded<false>(p);
        report("tensor-core pass (TF32)", t.tensor_core, 2e-2, c, early);
        report("folded pass (TF32)", t.folded, 2e-2, c, early);
      }
    }
  }
  std::printf("%s\n", failures == 0 ? "all checks passed" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
