#include "kernels/cpu/blas.h"

#include <cstddef>
#include <vector>

namespace strand::cpu {
namespace {

float element(const float* m, int ld, bool transposed, int row, int col) {
  return transposed ? m[static_cast<std::ptrdiff_t>(col) * ld + row]
                    : m[static_cast<std::ptrdiff_t>(row) * ld + col];
}

}  // namespace

void reference_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                     int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  std::vector<float> row(static_cast<size_t>(n));
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) row[static_cast<size_t>(j)] = 0.0f;
    for (int p = 0; p < k; ++p) {
      const float aip = element(a, lda, trans_a, i, p);
      for (int j = 0; j < n; ++j) row[static_cast<size_t>(j)] += aip * element(b, ldb, trans_b, p, j);
    }
    float* ci = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (int j = 0; j < n; ++j) {
      const float prior = beta == 0.0f ? 0.0f : beta * ci[j];
      ci[j] = alpha * row[static_cast<size_t>(j)] + prior;
    }
  }
}

void reference_strmm_left(bool lower, bool trans_a, bool unit, int m, int n, float alpha,
                          const float* a, int lda, float* b, int ldb) {
  // op(a) is lower triangular when exactly one of (stored lower, transposed) holds.
  const bool op_lower = lower != trans_a;
  std::vector<float> out(static_cast<size_t>(m) * static_cast<size_t>(n));
  for (int i = 0; i < m; ++i) {
    const int p_begin = op_lower ? 0 : i;
    const int p_end = op_lower ? i + 1 : m;
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int p = p_begin; p < p_end; ++p) {
        const float aip = (p == i && unit) ? 1.0f : element(a, lda, trans_a, i, p);
        sum += aip * b[static_cast<std::ptrdiff_t>(p) * ldb + j];
      }
      out[static_cast<size_t>(i) * static_cast<size_t>(n) + static_cast<size_t>(j)] = alpha * sum;
    }
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      b[static_cast<std::ptrdiff_t>(i) * ldb + j] =
          out[static_cast<size_t>(i) * static_cast<size_t>(n) + static_cast<size_t>(j)];
}

}  // namespace strand::cpu
