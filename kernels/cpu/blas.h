// The BLAS the CPU kernels call: OpenBLAS's cblas when the build found it (STRAND_HAVE_OPENBLAS),
// otherwise a small reference implementation of the two routines used (sgemm, strmm), row-major
// only. The fallback exists so that core and strand-cli still build on machines without OpenBLAS
// (the GPU benchmark machine, where the CPU backend only serves as the parity reference); it is
// correct but unblocked and single-threaded, so CPU performance figures always come from OpenBLAS.
#pragma once

namespace strand::cpu {
// Reference row-major routines (always built; tested against OpenBLAS where it exists).
// c = alpha op(a) op(b) + beta c; beta 0 ignores c's old content (NaN included), as BLAS does.
void reference_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                     int lda, const float* b, int ldb, float beta, float* c, int ldc);
// b = alpha op(a) b, a triangular [m, m] (lower when `lower`, before op), unit diagonal if `unit`.
void reference_strmm_left(bool lower, bool trans_a, bool unit, int m, int n, float alpha,
                          const float* a, int lda, float* b, int ldb);
}  // namespace strand::cpu

#if STRAND_HAVE_OPENBLAS
#include <cblas.h>
#else
#include <cstdlib>

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
enum CBLAS_UPLO { CblasUpper = 121, CblasLower = 122 };
enum CBLAS_DIAG { CblasNonUnit = 131, CblasUnit = 132 };
enum CBLAS_SIDE { CblasLeft = 141, CblasRight = 142 };

// The cblas subset the kernels use, row-major only (anything else is a programming error).
inline void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int m,
                        int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                        float beta, float* c, int ldc) {
  if (order != CblasRowMajor) std::abort();
  strand::cpu::reference_sgemm(trans_a == CblasTrans, trans_b == CblasTrans, m, n, k, alpha, a, lda,
                               b, ldb, beta, c, ldc);
}
inline void cblas_strmm(CBLAS_ORDER order, CBLAS_SIDE side, CBLAS_UPLO uplo,
                        CBLAS_TRANSPOSE trans_a, CBLAS_DIAG diag, int m, int n, float alpha,
                        const float* a, int lda, float* b, int ldb) {
  if (order != CblasRowMajor || side != CblasLeft) std::abort();
  strand::cpu::reference_strmm_left(uplo == CblasLower, trans_a == CblasTrans, diag == CblasUnit, m,
                                    n, alpha, a, lda, b, ldb);
}
#endif
