#include "kernels/cpu/activation.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr std::ptrdiff_t kParallelMinElements = std::ptrdiff_t{32} * 1024;

// Applies f to every element; OpenMP splits large arrays across threads.
template <typename F>
void apply_elementwise(float* x, size_t n, F f) {
  const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) \
    num_threads(num_threads()) if (count > kParallelMinElements)
  for (std::ptrdiff_t i = 0; i < count; ++i) x[i] = f(x[i]);
}

// x * sigmoid(scale * g(x)) in chunks, vectorised: sigmoid(a) = 1 / (1 + e) for a >= 0 and
// e / (1 + e) otherwise, with e = exp(-|a|) <= 1 from exp_clamped (no overflow, no cancellation).
// `pre` maps x to a (the sigmoid's argument). Chunks of 256 keep the temporaries on the stack.
template <typename Pre>
void times_sigmoid(float* x, size_t n, Pre pre) {
  constexpr std::ptrdiff_t kChunk = 256;
  const auto count = static_cast<std::ptrdiff_t>(n);
  const std::ptrdiff_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) \
    num_threads(num_threads()) if (count > kParallelMinElements)
  for (std::ptrdiff_t c = 0; c < chunks; ++c) {
    float* v = x + c * kChunk;
    const auto len = static_cast<int>(std::min(kChunk, count - c * kChunk));
    float a[kChunk], e[kChunk];
    for (int i = 0; i < len; ++i) a[i] = pre(v[i]);
    for (int i = 0; i < len; ++i) {
      const float neg = -std::fabs(a[i]);
      e[i] = neg < kExpMin ? kExpMin : neg;
    }
    for (int i = 0; i < len; ++i) e[i] = exp_clamped(e[i]);
    for (int i = 0; i < len; ++i) {
      const float numerator = a[i] >= 0.0f ? 1.0f : e[i];
      v[i] = v[i] * (numerator / (1.0f + e[i]));
    }
  }
}

}  // namespace

// gelu_tanh(x) = 0.5 x (1 + tanh(z)) = x sigmoid(2z), z = sqrt(2/pi) (x + 0.044715 x^3): the
// sigmoid form has no cancellation in 1 + tanh(z) for negative x. gelu_erf uses erfc for the same
// reason: 1 + erf(z) = erfc(-z).
void gelu_tanh(float* x, size_t n) {
  constexpr float kTwoSqrt2OverPi = 2.0f * 0.7978845608028654f;
  constexpr float kCubic = 0.044715f;
  times_sigmoid(x, n, [](float v) { return kTwoSqrt2OverPi * (v + kCubic * v * v * v); });
}

void gelu_erf(float* x, size_t n) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  apply_elementwise(x, n, [](float v) { return 0.5f * v * std::erfc(-v * kInvSqrt2); });
}

void silu(float* x, size_t n) { times_sigmoid(x, n, [](float v) { return v; }); }

void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                          int head_dim, int row_stride) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const bool parallel = static_cast<std::ptrdiff_t>(rows) * heads * head_dim > kParallelMinElements;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int r = 0; r < rows; ++r) {
    float* xr = x + static_cast<std::ptrdiff_t>(r) * row_stride;
    const float* yr = y + static_cast<std::ptrdiff_t>(r) * row_stride;
    for (int h = 0; h < heads; ++h) {
      const float g = gate[static_cast<std::ptrdiff_t>(r) * heads + h];
      float* xh = xr + static_cast<std::ptrdiff_t>(h) * head_dim;
      const float* yh = yr + static_cast<std::ptrdiff_t>(h) * head_dim;
      for (int j = 0; j < head_dim; ++j) xh[j] += g * yh[j];
    }
  }
}

void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                    int rows_per_group, int group_stride) {
  if (rows <= 0 || dim <= 0) return;
  const bool parallel = static_cast<std::ptrdiff_t>(rows) * dim > kParallelMinElements;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int r = 0; r < rows; ++r) {
    float* xr = x + static_cast<std::ptrdiff_t>(r) * dim;
    const float* yr = y + static_cast<std::ptrdiff_t>(r) * dim;
    if (gate == nullptr) {
      for (int j = 0; j < dim; ++j) xr[j] += yr[j];
    } else {
      const float* g = gate + static_cast<std::ptrdiff_t>(r / rows_per_group) * group_stride;
      for (int j = 0; j < dim; ++j) xr[j] += g[j] * yr[j];
    }
  }
}

}  // namespace strand::cpu
