// GEMMs on the CPU through OpenBLAS (cblas_sgemm). Row-major float32.
#pragma once

namespace strand::cpu {

// c[m, n] = alpha * a[m, k] * op(b) + beta * c, where op(b) = b^T with b stored [n, k] when
// trans_b (the layout of nn.Linear weights), else b stored [k, n]. lda/ldb/ldc are row strides in
// elements; 0 means the packed width (k, k or n, n).
void gemm(const float* a, const float* b, float* c, int m, int n, int k, bool trans_b,
          float alpha = 1.0f, float beta = 0.0f, int lda = 0, int ldb = 0, int ldc = 0);

// y[rows, out] = x[rows, in] w[out, in]^T + bias[out] (bias may be null).
void linear(const float* x, const float* w, const float* bias, float* y, int rows, int in, int out);

}  // namespace strand::cpu
