#include "kernels/cpu/delta_rule.h"

#include "kernels/cpu/blas.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

// Below this many multiply-adds per call the sequential rule runs on one thread.
constexpr std::ptrdiff_t kParallelMinWork = std::ptrdiff_t{256} * 1024;
// Below this many gate values per call the gates are computed on one thread.
constexpr std::ptrdiff_t kParallelMinGates = std::ptrdiff_t{32} * 1024;

// The engine's host formulas, kept scalar: std::exp / std::log1p on floats (expf, log1pf) and no
// vector math library, so the values match the former host loop exactly.
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}
float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

// The sequential rule for one head, in the order the spec writes it:
//   S <- alpha S;  u = beta (v - S^T k);  S <- S + k u^T.
// The rank-1 update of token t and the decay and read of token t + 1 share one sweep over S
// (row <- (row + k_t[i] u_t) alpha_{t+1}, then w += row k_{t+1}[i]): the same arithmetic in the
// same order as separate passes, with half the trips through the state.
void delta_head_sequential(float* state, const float* k, int k_stride, const float* v, int v_stride,
                           const float* alpha, const float* beta, int heads, int tokens, int dk,
                           int dv) {
  std::vector<float> u(static_cast<size_t>(dv));  // pending update of the previous token
  std::vector<float> w(static_cast<size_t>(dv));  // S^T k of the current token
  const float* k_prev = nullptr;
  for (int t = 0; t < tokens; ++t) {
    const float* kt = k + static_cast<std::ptrdiff_t>(t) * k_stride;
    const float* vt = v + static_cast<std::ptrdiff_t>(t) * v_stride;
    const float a = alpha[static_cast<std::ptrdiff_t>(t) * heads];
    const float b = beta[static_cast<std::ptrdiff_t>(t) * heads];
    std::fill(w.begin(), w.end(), 0.0f);
    for (int i = 0; i < dk; ++i) {
      float* row = state + static_cast<std::ptrdiff_t>(i) * dv;
      const float ki = kt[i];
      if (k_prev != nullptr) {
        const float kp = k_prev[i];
        for (int j = 0; j < dv; ++j) {
          row[j] = (row[j] + kp * u[static_cast<size_t>(j)]) * a;
          w[static_cast<size_t>(j)] += row[j] * ki;
        }
      } else {
        for (int j = 0; j < dv; ++j) {
          row[j] *= a;
          w[static_cast<size_t>(j)] += row[j] * ki;
        }
      }
    }
    for (int j = 0; j < dv; ++j) {
      u[static_cast<size_t>(j)] = b * (vt[j] - w[static_cast<size_t>(j)]);
    }
    k_prev = kt;
  }
  for (int i = 0; i < dk; ++i) {
    float* row = state + static_cast<std::ptrdiff_t>(i) * dv;
    const float kp = k_prev[i];
    for (int j = 0; j < dv; ++j) row[j] += kp * u[static_cast<size_t>(j)];
  }
}

// Scratch for one chunk of the WY form, sized once per call.
struct ChunkScratch {
  ChunkScratch(int chunk, int dk, int dv)
      : decay_ratio(static_cast<size_t>(chunk)),
        gamma(static_cast<size_t>(chunk)),
        tail(static_cast<size_t>(chunk)),
        gram(static_cast<size_t>(chunk) * chunk),
        inverse(static_cast<size_t>(chunk) * chunk),
        rhs(static_cast<size_t>(chunk) * (dk + dv)),
        keys_decayed(static_cast<size_t>(chunk) * dk) {}
  std::vector<double> decay_ratio;  // [n] gamma_t / gamma_i for the current row t, i < t
  std::vector<double> gamma;        // [n] gamma_t = alpha_0 ... alpha_t within the chunk
  std::vector<double> tail;         // [n] gamma_{n-1} / gamma_t = alpha_{t+1} ... alpha_{n-1}
  std::vector<float> gram;          // [n, n] K K^T, then the strictly lower A
  std::vector<float> inverse;       // [n, n] (I + A)^-1, unit lower triangular
  std::vector<float> rhs;           // [n, dk + dv] [beta gamma k | beta v], then [W | U]
  std::vector<float> keys_decayed;  // [n, dk] K_dec
};

// Chunk of tokens t = 0 .. n-1 (n <= chunk) for one head. With gamma_t = alpha_0 ... alpha_t and
// S_0 the state before the chunk, unrolling the rule gives the state after token t
//   S(t) = gamma_t S_0 + sum_{i<=t} (gamma_t / gamma_i) k_i u_i^T,
//   u_t  = beta_t (v_t - gamma_t S_0^T k_t - sum_{i<t} (gamma_t / gamma_i) (k_t . k_i) u_i).
// In matrix form (rows = tokens): (I + A) U = diag(beta) V - diag(beta gamma) K S_0 with
// A[t, i] = beta_t (gamma_t / gamma_i) (k_t . k_i) for i < t. So, with X = (I + A)^-1,
//   W = X diag(beta gamma) K,  U~ = X diag(beta) V,  U = U~ - W S_0,
//   S(n-1) = gamma_{n-1} S_0 + K_dec^T U,  K_dec = diag(gamma_{n-1} / gamma) K.
// Every decay factor is a product of alphas over a token range, accumulated in double without any
// division, so a vanishing gamma (alpha == 0 is a full reset) cannot produce 0/0.
void chunk_update(float* state, const float* k, int k_stride, const float* v, int v_stride,
                  const float* alpha, const float* beta, int heads, int n, int dk, int dv,
                  ChunkScratch& scratch) {
  double* ratio = scratch.decay_ratio.data();
  double* gamma = scratch.gamma.data();
  double* tail = scratch.tail.data();
  float* gram = scratch.gram.data();
  float* inv = scratch.inverse.data();
  float* rhs = scratch.rhs.data();
  float* keys_decayed = scratch.keys_decayed.data();
  const int rhs_ld = dk + dv;
  const auto alpha_at = [&](int t) {
    return static_cast<double>(alpha[static_cast<std::ptrdiff_t>(t) * heads]);
  };

  double running = 1.0;
  for (int t = 0; t < n; ++t) gamma[t] = running *= alpha_at(t);
  running = 1.0;
  for (int t = n - 1; t >= 0; --t) {
    tail[t] = running;
    running *= alpha_at(t);
  }

  // gram = K K^T, then A[t, i] = beta_t (gamma_t / gamma_i) gram[t, i] on the strictly lower part.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, dk, 1.0f, k, k_stride, k, k_stride,
              0.0f, gram, n);
  for (int t = 0; t < n; ++t) {
    // Row t of the ratios from row t - 1: gamma_t / gamma_i = alpha_t (gamma_{t-1} / gamma_i).
    const double a = alpha_at(t);
    for (int i = 0; i + 1 < t; ++i) ratio[i] *= a;
    if (t > 0) ratio[t - 1] = a;
    const double b = static_cast<double>(beta[static_cast<std::ptrdiff_t>(t) * heads]);
    float* row = gram + static_cast<std::ptrdiff_t>(t) * n;
    for (int i = 0; i < t; ++i) row[i] *= static_cast<float>(b * ratio[i]);
  }

  // X = (I + A)^-1 by forward substitution, row by row: X_t = e_t - sum_{i<t} A[t, i] X_i.
  // Only the strictly lower part is written; strmm below treats the diagonal as unit.
  for (int t = 0; t < n; ++t) {
    float* xt = inv + static_cast<std::ptrdiff_t>(t) * n;
    const float* at = gram + static_cast<std::ptrdiff_t>(t) * n;
    std::fill_n(xt, t, 0.0f);
    for (int i = 0; i < t; ++i) {
      const float* xi = inv + static_cast<std::ptrdiff_t>(i) * n;
      const float a = at[i];
      xt[i] -= a;  // X_i has a unit diagonal entry at column i
      for (int j = 0; j < i; ++j) xt[j] -= a * xi[j];
    }
  }

  // rhs = [diag(beta gamma) K | diag(beta) V] and K_dec.
  for (int t = 0; t < n; ++t) {
    const double b = static_cast<double>(beta[static_cast<std::ptrdiff_t>(t) * heads]);
    const auto bg = static_cast<float>(b * gamma[t]);
    const auto bf = static_cast<float>(b);
    const auto tf = static_cast<float>(tail[t]);
    const float* kt = k + static_cast<std::ptrdiff_t>(t) * k_stride;
    const float* vt = v + static_cast<std::ptrdiff_t>(t) * v_stride;
    float* rt = rhs + static_cast<std::ptrdiff_t>(t) * rhs_ld;
    float* kd = keys_decayed + static_cast<std::ptrdiff_t>(t) * dk;
    for (int i = 0; i < dk; ++i) rt[i] = bg * kt[i];
    for (int j = 0; j < dv; ++j) rt[dk + j] = bf * vt[j];
    for (int i = 0; i < dk; ++i) kd[i] = tf * kt[i];
  }
  // [W | U~] = X rhs (triangular multiply: half the work of a full GEMM).
  cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, n, rhs_ld, 1.0f, inv,
              n, rhs, rhs_ld);
  // U = U~ - W S_0.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dv, dk, -1.0f, rhs, rhs_ld, state, dv,
              1.0f, rhs + dk, rhs_ld);
  // S = gamma_{n-1} S_0 + K_dec^T U.
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dk, dv, n, 1.0f, keys_decayed, dk, rhs + dk,
              rhs_ld, static_cast<float>(gamma[n - 1]), state, dv);
}

}  // namespace

void gated_delta_update_sequential(float* s, const float* k, int k_stride, const float* v,
                                   int v_stride, const float* alpha, const float* beta, int tokens,
                                   int heads, int dk, int dv) {
  if (tokens <= 0 || heads <= 0 || dk <= 0 || dv <= 0) return;
  const bool parallel =
      heads > 1 && static_cast<std::ptrdiff_t>(tokens) * heads * dk * dv > kParallelMinWork;
  // Heads are independent: one thread per head, each walking the tokens in order.
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int h = 0; h < heads; ++h) {
    delta_head_sequential(s + static_cast<std::ptrdiff_t>(h) * dk * dv,
                          k + static_cast<std::ptrdiff_t>(h) * dk, k_stride,
                          v + static_cast<std::ptrdiff_t>(h) * dv, v_stride, alpha + h, beta + h,
                          heads, tokens, dk, dv);
  }
}

void gated_delta_update_chunked(float* s, const float* k, int k_stride, const float* v,
                                int v_stride, const float* alpha, const float* beta, int tokens,
                                int heads, int dk, int dv, int chunk) {
  if (tokens <= 0 || heads <= 0 || dk <= 0 || dv <= 0) return;
  chunk = std::clamp(chunk, 1, tokens);
  const bool parallel =
      heads > 1 && static_cast<std::ptrdiff_t>(tokens) * heads * dk * dv > kParallelMinWork;
  // One OpenMP thread per head; the chunk products inside run on single-threaded OpenBLAS.
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
    ChunkScratch scratch(chunk, dk, dv);
#pragma omp for schedule(static)
    for (int h = 0; h < heads; ++h) {
      float* state = s + static_cast<std::ptrdiff_t>(h) * dk * dv;
      for (int t0 = 0; t0 < tokens; t0 += chunk) {
        const int n = std::min(chunk, tokens - t0);
        const std::ptrdiff_t th = static_cast<std::ptrdiff_t>(t0) * heads + h;
        chunk_update(
            state,
            k + static_cast<std::ptrdiff_t>(t0) * k_stride + static_cast<std::ptrdiff_t>(h) * dk,
            k_stride,
            v + static_cast<std::ptrdiff_t>(t0) * v_stride + static_cast<std::ptrdiff_t>(h) * dv,
            v_stride, alpha + th, beta + th, heads, n, dk, dv, scratch);
      }
    }
  }
}

void gated_delta_update_grouped(float* s, const float* k, int k_stride, const float* v,
                                int v_stride, const float* alpha, const float* beta, int tokens,
                                int heads, int dk, int dv, int groups, int chunk) {
  if (tokens <= 0 || heads <= 0 || dk <= 0 || dv <= 0) return;
  chunk = std::clamp(chunk, 1, tokens);
  const int chunks = (tokens + chunk - 1) / chunk;
  groups = std::clamp(groups, 1, chunks);
  const int width = dk + dv;  // augmented state [M | N]
  const bool parallel =
      heads > 1 && static_cast<std::ptrdiff_t>(tokens) * heads * dk * width > kParallelMinWork;
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
    ChunkScratch scratch(chunk, dk, dv);
    ChunkScratch scratch_aug(chunk, dk, width);
    std::vector<float> aug(static_cast<size_t>(dk) * width);
    std::vector<float> values_aug(static_cast<size_t>(chunk) * width);
    std::vector<float> next(static_cast<size_t>(dk) * dv);
#pragma omp for schedule(static)
    for (int h = 0; h < heads; ++h) {
      float* state = s + static_cast<std::ptrdiff_t>(h) * dk * dv;
      const auto run_chunk = [&](int c, float* st, const float* vals, int vals_stride, int cols,
                                 ChunkScratch& scr) {
        const int t0 = c * chunk;
        const int n = std::min(chunk, tokens - t0);
        const std::ptrdiff_t th = static_cast<std::ptrdiff_t>(t0) * heads + h;
        chunk_update(
            st, k + static_cast<std::ptrdiff_t>(t0) * k_stride + static_cast<std::ptrdiff_t>(h) * dk,
            k_stride, vals, vals_stride, alpha + th, beta + th, heads, n, dk, cols, scr);
      };
      for (int g = 0; g < groups; ++g) {
        const int c_begin = static_cast<int>(static_cast<long long>(g) * chunks / groups);
        const int c_end = static_cast<int>(static_cast<long long>(g + 1) * chunks / groups);
        if (g == 0) {
          for (int c = c_begin; c < c_end; ++c)
            run_chunk(c, state,
                      v + static_cast<std::ptrdiff_t>(c) * chunk * v_stride +
                          static_cast<std::ptrdiff_t>(h) * dv,
                      v_stride, dv, scratch);
          continue;
        }
        // [M | N] from [I | 0]: the first dk columns see no values, the last dv the real ones.
        std::fill(aug.begin(), aug.end(), 0.0f);
        for (int i = 0; i < dk; ++i) aug[static_cast<size_t>(i) * width + i] = 1.0f;
        for (int c = c_begin; c < c_end; ++c) {
          const int t0 = c * chunk;
          const int n = std::min(chunk, tokens - t0);
          for (int t = 0; t < n; ++t) {
            float* row = values_aug.data() + static_cast<std::ptrdiff_t>(t) * width;
            const float* vt = v + static_cast<std::ptrdiff_t>(t0 + t) * v_stride +
                              static_cast<std::ptrdiff_t>(h) * dv;
            std::fill_n(row, dk, 0.0f);
            std::copy_n(vt, dv, row + dk);
          }
          run_chunk(c, aug.data(), values_aug.data(), width, width, scratch_aug);
        }
        // S <- M S + N.
        for (int i = 0; i < dk; ++i)
          std::copy_n(aug.data() + static_cast<std::ptrdiff_t>(i) * width + dk, dv,
                      next.data() + static_cast<std::ptrdiff_t>(i) * dv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dk, dv, dk, 1.0f, aug.data(), width,
                    state, dv, 1.0f, next.data(), dv);
        std::copy(next.begin(), next.end(), state);
      }
    }
  }
}

void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                 int tokens, int heads, int dk, int dv, float scale) {
  if (tokens <= 0 || heads <= 0 || dv <= 0) return;
  const bool parallel =
      heads > 1 && static_cast<std::ptrdiff_t>(tokens) * heads * dk * dv > kParallelMinWork;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int h = 0; h < heads; ++h) {
    // out_h[T, dv] = scale * q_h[T, dk] S_h[dk, dv]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, dv, dk, scale,
                q + static_cast<std::ptrdiff_t>(h) * dk, q_stride,
                s + static_cast<std::ptrdiff_t>(h) * dk * dv, dv, 0.0f,
                out + static_cast<std::ptrdiff_t>(h) * dv, out_stride);
  }
}

void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                  float* beta, float* gamma, int tokens, int heads) {
  if (tokens <= 0 || heads <= 0) return;
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(tokens) * heads;
  const float* a = raw;
  const float* b = raw + n;
  const float* g = raw + 2 * n;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (n > kParallelMinGates)
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(t) * heads + h;
      const float decay = -std::exp(a_log[h]) * softplus(a[i] + dt_bias[h]);
      alpha[i] = std::exp(decay);
      beta[i] = 2.0f * sigmoid(b[i]);
      gamma[i] = sigmoid(g[i]);
    }
  }
}

}  // namespace strand::cpu
