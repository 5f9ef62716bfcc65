#include "kernels/cpu/activation.h"

#include <cmath>
#include <cstddef>

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

}  // namespace

// Both GELUs are evaluated in forms without the cancellation in 1 + tanh(z) / 1 + erf(z) for
// negative inputs (where float would keep only a few digits of a small result):
//   1 + tanh(z) = 2 / (1 + exp(-2z))  and  1 + erf(z) = erfc(-z).
void gelu_tanh(float* x, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  constexpr float kCubic = 0.044715f;
  apply_elementwise(x, n, [](float v) {
    const float inner = kSqrt2OverPi * (v + kCubic * v * v * v);
    return v / (1.0f + std::exp(-2.0f * inner));
  });
}

void gelu_erf(float* x, size_t n) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  apply_elementwise(x, n, [](float v) { return 0.5f * v * std::erfc(-v * kInvSqrt2); });
}

void silu(float* x, size_t n) {
  // For very negative v, exp(-v) overflows to inf and v / inf = -0: the correct limit.
  apply_elementwise(x, n, [](float v) { return v / (1.0f + std::exp(-v)); });
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
