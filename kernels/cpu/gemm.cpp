#include "kernels/cpu/gemm.h"

#include "kernels/cpu/blas.h"

#include <algorithm>
#include <cstddef>

#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

// Below this many flops one single-threaded call beats forking (~10 us of work at 100 GFLOP/s).
constexpr double kParallelMinFlops = 4.0e6;
// Blocks are multiples of this so that OpenBLAS's micro-kernels see full panels.
constexpr int kBlockAlign = 16;

void sgemm(const float* a, const float* b, float* c, int m, int n, int k, bool trans_b, float alpha,
           float beta, int lda, int ldb, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
              lda, b, ldb, beta, c, ldc);
}

}  // namespace

void gemm(const float* a, const float* b, float* c, int m, int n, int k, bool trans_b, float alpha,
          float beta, int lda, int ldb, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (lda == 0) lda = k;
  if (ldb == 0) ldb = trans_b ? k : n;
  if (ldc == 0) ldc = n;
  // BLAS requires leading dimensions >= 1 even when k == 0 (then c = beta c, a and b unread).
  lda = std::max(lda, 1);
  ldb = std::max(ldb, 1);

  // OpenBLAS runs single-threaded (threading.cpp); large products are split here into blocks of
  // rows of c (or of columns, for wide and short c), one per OpenMP thread.
  const int threads = num_threads();
  const double flops = 2.0 * m * n * std::max(k, 1);
  const bool split_rows = m >= n;
  const int extent = split_rows ? m : n;
  int block = (extent + threads - 1) / threads;
  block = (block + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
  const int parts = (extent + block - 1) / block;
  if (threads == 1 || parts == 1 || flops < kParallelMinFlops) {
    sgemm(a, b, c, m, n, k, trans_b, alpha, beta, lda, ldb, ldc);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int p = 0; p < parts; ++p) {
    const int begin = p * block;
    const int size = std::min(block, extent - begin);
    if (split_rows) {
      sgemm(a + static_cast<std::ptrdiff_t>(begin) * lda, b,
            c + static_cast<std::ptrdiff_t>(begin) * ldc, size, n, k, trans_b, alpha, beta, lda,
            ldb, ldc);
    } else {
      const float* b_block = trans_b ? b + static_cast<std::ptrdiff_t>(begin) * ldb : b + begin;
      sgemm(a, b_block, c + begin, m, size, k, trans_b, alpha, beta, lda, ldb, ldc);
    }
  }
}

void linear(const float* x, const float* w, const float* bias, float* y, int rows, int in,
            int out) {
  if (rows <= 0 || out <= 0) return;
  float beta = 0.0f;
  if (bias != nullptr) {
    // Seed y with the bias and let the GEMM accumulate onto it (one pass over y, not two).
    for (int r = 0; r < rows; ++r) {
      std::copy(bias, bias + out, y + static_cast<std::ptrdiff_t>(r) * out);
    }
    beta = 1.0f;
  }
  gemm(x, w, y, rows, out, in, /*trans_b=*/true, 1.0f, beta);
}

}  // namespace strand::cpu
