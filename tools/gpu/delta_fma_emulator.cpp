// Host emulator for delta_recur_fma_kernel (kernels/cuda/delta_rule.cu), so that its indexing,
// barriers and cp.async double buffering can be checked without a GPU. It compiles the real kernel
// source (kernel.inc, sliced out by slice_delta_fma_kernel.py) with one std::thread per CUDA
// thread and std::barrier for __syncthreads. cp.async copies land either at issue ("early") or at
// cp.async.wait_group ("late"): a missing wait or barrier shows up in one of the two. Shared memory
// starts as NaNs, so a read of anything never written poisons the result.
// The kernel's inputs X = (I + A)^-1 and the decay factors come from a double-precision model of
// the prepare kernel (same definitions, kernels/cuda/delta_rule.cu); the final state is compared
// with the sequential rule in double. Run through tools/gpu/emulate_delta_fma.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cuda/delta_rule.h"

#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx, blockIdx;
Dim3 blockDim;

struct PendingCopy {
  float* dst;
  const float* src;
  int floats;
  bool valid;
};
struct CtaCtx {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<float> smem;
};
thread_local CtaCtx* cta;
thread_local std::vector<PendingCopy> pending;
bool g_early_copies = false;

unsigned char* emu_shared() {
  return reinterpret_cast<unsigned char*>(cta->smem.data());
}
void __syncthreads() {
  cta->bar->arrive_and_wait();
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

namespace emu {
using strand::cuda::kDeltaChunk;
#include "kernel.inc"
}  // namespace emu

namespace {

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

template <int kKeyPad>
void run_kernel(std::vector<float>& s, const std::vector<float>& k, int k_stride,
                const std::vector<float>& v, int v_stride, const Shape& c, bool vec16,
                const std::vector<float>& x, const std::vector<float>& coef) {
  constexpr int kTile = 16, kThreads = 256;
  const int chunks = (c.tokens + strand::cuda::kDeltaChunk - 1) / strand::cuda::kDeltaChunk;
  blockDim.x = kThreads;
  const int tiles = (c.dv + kTile - 1) / kTile;
  for (int h = 0; h < c.heads; ++h)
    for (int tile = 0; tile < tiles; ++tile) {
      CtaCtx ctx;
      ctx.bar = std::make_unique<std::barrier<>>(kThreads);
      ctx.smem.assign(emu::FmaLayout<kKeyPad>::total, std::nanf(""));
      std::vector<std::thread> pool;
      for (int t = 0; t < kThreads; ++t)
        pool.emplace_back([&, t] {
          cta = &ctx;
          pending.clear();
          threadIdx.x = static_cast<unsigned>(t);
          blockIdx.x = static_cast<unsigned>(tile);
          blockIdx.y = static_cast<unsigned>(h);
          emu::delta_recur_fma_kernel<kKeyPad>(s.data(), k.data(), k_stride, v.data(), v_stride,
                                               c.tokens, c.dk, c.dv, vec16, chunks, x.data(),
                                               coef.data());
        });
      for (std::thread& th : pool) th.join();
    }
}

double check(const Shape& c, bool early, unsigned seed) {
  g_early_copies = early;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f), gate(0.85f, 1.0f), rate(0.05f, 0.95f);
  const int k_stride = c.heads * c.dk + c.pad, v_stride = c.heads * c.dv + c.pad;
  std::vector<float> k(static_cast<size_t>(c.tokens) * k_stride), v(static_cast<size_t>(c.tokens) * v_stride);
  for (float& e : k) e = uni(rng);
  for (float& e : v) e = uni(rng);
  for (int t = 0; t < c.tokens; ++t)  // unit keys, as the engine's l2 norm makes them
    for (int h = 0; h < c.heads; ++h) {
      float* row = k.data() + t * k_stride + h * c.dk;
      double norm = 0.0;
      for (int i = 0; i < c.dk; ++i) norm += static_cast<double>(row[i]) * row[i];
      for (int i = 0; i < c.dk; ++i) row[i] = static_cast<float>(row[i] / std::sqrt(norm));
    }
  std::vector<float> alpha(static_cast<size_t>(c.tokens) * c.heads), beta(alpha.size());
  for (float& e : alpha) e = gate(rng);
  for (float& e : beta) e = rate(rng);
  if (c.resets)
    for (size_t i = 17; i < alpha.size(); i += 97) alpha[i] = 0.0f;  // full forgets mid-chunk
  std::vector<float> s0(static_cast<size_t>(c.heads) * c.dk * c.dv);
  for (float& e : s0) e = 0.5f * uni(rng);

  // Reference: the sequential rule in double.
  std::vector<double> ref(s0.begin(), s0.end());
  for (int h = 0; h < c.heads; ++h) {
    double* st = ref.data() + static_cast<size_t>(h) * c.dk * c.dv;
    for (int t = 0; t < c.tokens; ++t) {
      const float* kt = k.data() + t * k_stride + h * c.dk;
      const float* vt = v.data() + t * v_stride + h * c.dv;
      const double a = alpha[t * c.heads + h], b = beta[t * c.heads + h];
      for (int i = 0; i < c.dk * c.dv; ++i) st[i] *= a;
      for (int j = 0; j < c.dv; ++j) {
        double sk = 0.0;
        for (int i = 0; i < c.dk; ++i) sk += st[i * c.dv + j] * kt[i];
        const double u = b * (vt[j] - sk);
        for (int i = 0; i < c.dk; ++i) st[i * c.dv + j] += kt[i] * u;
      }
    }
  }

  constexpr int C = strand::cuda::kDeltaChunk;
  const int chunks = (c.tokens + C - 1) / C;
  std::vector<float> x(static_cast<size_t>(c.heads) * chunks * C * C);
  std::vector<float> coef(static_cast<size_t>(c.heads) * chunks * 4 * C);
  for (int h = 0; h < c.heads; ++h)
    for (int ch = 0; ch < chunks; ++ch)
      model_prepare(k, k_stride, alpha, beta, c, ch, h,
                    x.data() + (static_cast<size_t>(h) * chunks + ch) * C * C,
                    coef.data() + (static_cast<size_t>(h) * chunks + ch) * 4 * C);
  const bool vec16 = c.pad % 4 == 0 && c.dk % 4 == 0 && c.dv % 4 == 0;
  std::vector<float> s = s0;
  const int pad = c.dk <= 32 ? 32 : (c.dk <= 64 ? 64 : 128);
  if (pad == 32) run_kernel<32>(s, k, k_stride, v, v_stride, c, vec16, x, coef);
  if (pad == 64) run_kernel<64>(s, k, k_stride, v, v_stride, c, vec16, x, coef);
  if (pad == 128) run_kernel<128>(s, k, k_stride, v, v_stride, c, vec16, x, coef);
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double d = static_cast<double>(s[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
}

}  // namespace

int main() {
  // Tokens not a multiple of 64 (partial last chunk), one token, value tiles cut short, dk below
  // the padded width, strides that force the 4-byte copies, resets inside chunks.
  const std::vector<Shape> shapes = {
      {200, 2, 128, 32, 0, false}, {1, 1, 128, 16, 0, false}, {130, 2, 64, 40, 0, true},
      {65, 1, 32, 16, 3, false},   {150, 1, 100, 36, 1, true},
  };
  int failures = 0;
  unsigned seed = 1;
  for (const Shape& c : shapes)
    for (const bool early : {false, true}) {
      const double err = check(c, early, seed++);
      const bool ok = err < 2e-5;
      failures += ok ? 0 : 1;
      std::printf("%s T%d h%d dk%d dv%d pad%d%s, copies %s: rel error %.3g vs sequential\n",
                  ok ? "ok  " : "FAIL", c.tokens, c.heads, c.dk, c.dv, c.pad,
                  c.resets ? " resets" : "", early ? "early" : "late", err);
    }
  std::printf("%s\n", failures == 0 ? "all shapes passed" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
