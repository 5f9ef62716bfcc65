// The reference BLAS routines used when OpenBLAS is absent (kernels/cpu/blas.h), checked against
// a double-precision product and, where the build has it, OpenBLAS itself.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/blas.h"

namespace {

struct Matrix {
  int rows, cols, ld;
  std::vector<float> values;
  Matrix(int r, int c, int pad, std::mt19937& rng) : rows(r), cols(c), ld(c + pad) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    values.resize(static_cast<size_t>(rows) * static_cast<size_t>(ld));
    for (float& v : values) v = u(rng);
  }
  [[nodiscard]] double at(int r, int c, bool transposed) const {
    return transposed ? values[static_cast<size_t>(c) * ld + r] : values[static_cast<size_t>(r) * ld + c];
  }
};

TEST(BlasFallback, SgemmMatchesDoubleProductForEveryTransposeCase) {
  std::mt19937 rng(7);
  const int m = 13, n = 9, k = 17;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Matrix a(ta ? k : m, ta ? m : k, 3, rng);
      Matrix b(tb ? n : k, tb ? k : n, 2, rng);
      Matrix c(m, n, 1, rng);
      const Matrix c0 = c;
      const float alpha = 0.75f, beta = -0.5f;
      strand::cpu::reference_sgemm(ta, tb, m, n, k, alpha, a.values.data(), a.ld, b.values.data(),
                                   b.ld, beta, c.values.data(), c.ld);
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          double want = 0;
          for (int p = 0; p < k; ++p) want += a.at(i, p, ta) * b.at(p, j, tb);
          want = double{alpha} * want + double{beta} * c0.at(i, j, false);
          EXPECT_NEAR(c.at(i, j, false), want, 1e-5) << ta << tb << " " << i << "," << j;
        }
      }
#if STRAND_HAVE_OPENBLAS
      Matrix d = c0;
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                  n, k, alpha, a.values.data(), a.ld, b.values.data(), b.ld, beta, d.values.data(),
                  d.ld);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) EXPECT_NEAR(c.at(i, j, false), d.at(i, j, false), 1e-5);
#endif
    }
  }
}

TEST(BlasFallback, SgemmBetaZeroIgnoresNanInOutput) {
  std::vector<float> a{1, 2}, b{3, 4}, c{NAN};
  strand::cpu::reference_sgemm(false, false, 1, 1, 2, 1.0f, a.data(), 2, b.data(), 1, 0.0f,
                               c.data(), 1);
  EXPECT_FLOAT_EQ(c[0], 11.0f);
}

TEST(BlasFallback, StrmmLowerUnitMatchesDoubleProduct) {
  std::mt19937 rng(11);
  const int m = 7, n = 5;
  for (bool lower : {true, false}) {
    for (bool ta : {false, true}) {
      for (bool unit : {true, false}) {
        Matrix a(m, m, 1, rng);
        Matrix b(m, n, 2, rng);
        const Matrix b0 = b;
        strand::cpu::reference_strmm_left(lower, ta, unit, m, n, 2.0f, a.values.data(), a.ld,
                                          b.values.data(), b.ld);
        const bool op_lower = lower != ta;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double want = 0;
            for (int p = 0; p < m; ++p) {
              if (op_lower ? p > i : p < i) continue;
              const double aip = (p == i && unit) ? 1.0 : a.at(i, p, ta);
              want += aip * b0.at(p, j, false);
            }
            EXPECT_NEAR(b.at(i, j, false), 2.0 * want, 1e-5);
          }
        }
#if STRAND_HAVE_OPENBLAS
        Matrix d = b0;
        cblas_strmm(CblasRowMajor, CblasLeft, lower ? CblasLower : CblasUpper,
                    ta ? CblasTrans : CblasNoTrans, unit ? CblasUnit : CblasNonUnit, m, n, 2.0f,
                    a.values.data(), a.ld, d.values.data(), d.ld);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) EXPECT_NEAR(b.at(i, j, false), d.at(i, j, false), 1e-5);
#endif
      }
    }
  }
}

}  // namespace
