// Gated delta rule on the GPU. The chunked form follows kernels/cpu/delta_rule.cpp (chunk_update):
// with gamma_t = alpha_0 ... alpha_t inside a chunk, tail_t = alpha_{t+1} ... alpha_{n-1},
// A[t,i] = beta_t (gamma_t / gamma_i) (k_t . k_i) for i < t and X = (I + A)^-1,
//   U = X R,  R = diag(beta) V - diag(beta gamma) K S_0,    S_new = gamma_{n-1} S_0 + K^T
//   diag(tail) U.
// X depends only on keys and gates, so it is built for every chunk at once (prepare kernel, grid
// over chunks x heads). Only the chain S_0 -> S_new is sequential, and each column of S evolves on
// its own: the recurrence kernel runs one block per (head, 16 value columns), chunk after chunk,
// with the K S_0, X R and K^T U products on the tensor cores (mma.sync m16n8k8 TF32, split 3x for
// fp32 accuracy) and the next chunk's K, V and X prefetched with cp.async while the current one
// is computed. The grouped kernels still use WMMA m16n16k8.
// tools/gpu/slice_delta_kernels.py cuts the device code out of this file by its section comments
// (the CPU emulator of the prepare and single-pass kernels, ctest DeltaKernelsEmulated): keep them.
#include <cublas_v2.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/delta_rule.h"
#include "strand/error.h"

namespace strand::cuda {
namespace {

using namespace nvcuda;

constexpr int kChunk = kDeltaChunk;  // tokens per sub-chunk
constexpr int kTile = 16;            // value columns per recurrence block
constexpr int kThreads = 256;        // 8 warps in both chunked kernels
constexpr int kLdX = kChunk + 4;     // shared-memory row strides: +4 floats keeps rows 16-byte
constexpr int kLdT = kTile + 4;      // aligned and spreads them over the banks
constexpr int kCoefs = 4 * kChunk;   // per (head, chunk): beta*gamma, beta, tail, then the decay

static_assert(kChunk == 64, "the warp layout below assumes 4 row tiles of 16 per chunk");

template <int kKeyPad>
__host__ __device__ constexpr int ld_keys() {
  return kKeyPad + 4;
}

using FragARow = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragACol = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// ------------------------------------------------------------------------------- device helpers

// acc += a b. kExact: 3xTF32, a = a_hi + a_lo with both halves exact in TF32, and
// a b ~ a_hi b_hi + (a_hi b_lo + a_lo b_hi) with the small terms in their own accumulator `lo`
// (summed into acc by the caller): ~fp32 accuracy. Otherwise one TF32 product.
template <bool kExact, class FragA, class FragB>
__device__ __forceinline__ void mma_step(FragAcc& acc, FragAcc& lo, const FragA& a,
                                         const FragB& b) {
  FragA a_hi;
  FragB b_hi;
#pragma unroll
  for (int e = 0; e < a.num_elements; ++e) a_hi.x[e] = wmma::__float_to_tf32(a.x[e]);
#pragma unroll
  for (int e = 0; e < b.num_elements; ++e) b_hi.x[e] = wmma::__float_to_tf32(b.x[e]);
  if constexpr (kExact) {
    FragA a_lo;
    FragB b_lo;
#pragma unroll
    for (int e = 0; e < a.num_elements; ++e) a_lo.x[e] = wmma::__float_to_tf32(a.x[e] - a_hi.x[e]);
#pragma unroll
    for (int e = 0; e < b.num_elements; ++e) b_lo.x[e] = wmma::__float_to_tf32(b.x[e] - b_hi.x[e]);
    wmma::mma_sync(lo, a_lo, b_hi, lo);
    wmma::mma_sync(lo, a_hi, b_lo, lo);
  }
  wmma::mma_sync(acc, a_hi, b_hi, acc);
}

__device__ __forceinline__ void add_into(FragAcc& acc, const FragAcc& lo) {
#pragma unroll
  for (int e = 0; e < acc.num_elements; ++e) acc.x[e] += lo.x[e];
}

// Raw warp-level TF32 tensor-core products (mma.sync m16n8k8). Fragments are read straight from
// shared memory and split with integer operations: the WMMA path spent ~4x more instructions on
// generic-address loads and its TF32 rounding than on the products themselves, and cvt.rna.tf32
// compiled to several instructions each as well (ncu, H200); the chunk step is bound by instruction
// issue, not by the tensor cores.
// Fragment layout (PTX ISA, m16n8k8 .tf32), lane = 4 g + t:
//   A (16 x 8, row): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, col):  b0 (t, g), b1 (t + 4, g)
//   C (16 x 8):      c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)

// x rounded to TF32 (10-bit mantissa, ties away from zero) by adding half a unit of the 13
// dropped bits and clearing them. The inputs are finite (keys, values, state), so the carry into
// the exponent is the correct rounding.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  return (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
}

// x = hi + lo with hi exact in TF32; lo (only for the 3xTF32 products, kExact) is exact in fp32
// and passed as is: the tensor core reads a TF32 operand's top 19 bits, so lo is truncated to
// TF32 there, an error of at most 2^-10 of lo, itself at most 2^-11 of x.
template <bool kExact>
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  if constexpr (kExact) lo = __float_as_uint(x - __uint_as_float(hi));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// A product's accumulators: hi collects a_hi b_hi, lo and lo2 the two cross terms of 3xTF32 (in
// accumulators of their own, so that no two tensor-core instructions of a step wait on each other).
struct MmaAcc {
  float hi[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float lo[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float lo2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  __device__ __forceinline__ float value(int e) const { return hi[e] + (lo[e] + lo2[e]); }
};

// acc += A B for one 8-deep step from split fragments (a_hi/a_lo, b_hi/b_lo).
template <bool kExact>
__device__ __forceinline__ void mma_split(MmaAcc& acc, const uint32_t (&a_hi)[4],
                                          const uint32_t (&a_lo)[4], const uint32_t (&b_hi)[2],
                                          const uint32_t (&b_lo)[2]) {
  if constexpr (kExact) {
    mma_tf32(acc.lo, a_lo, b_hi);
    mma_tf32(acc.lo2, a_hi, b_lo);
  }
  mma_tf32(acc.hi, a_hi, b_hi);
}

// A fragment (rows [r0, r0 + 16), columns [c0, c0 + 8)) of a matrix whose element (r, c) is
// m[r * row_step + c * col_step], split.
template <bool kExact>
__device__ __forceinline__ void load_a_strided(const float* m, int row_step, int col_step, int r0,
                                               int c0, int g, int t, uint32_t (&hi)[4],
                                               uint32_t (&lo)[4]) {
  const float* p = m + (r0 + g) * row_step + (c0 + t) * col_step;
  split_tf32<kExact>(p[0], hi[0], lo[0]);
  split_tf32<kExact>(p[8 * row_step], hi[1], lo[1]);
  split_tf32<kExact>(p[4 * col_step], hi[2], lo[2]);
  split_tf32<kExact>(p[8 * row_step + 4 * col_step], hi[3], lo[3]);
}

// A fragment of row-major m (stride ld).
template <bool kExact>
__device__ __forceinline__ void load_a(const float* m, int ld, int r0, int c0, int g, int t,
                                       uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  load_a_strided<kExact>(m, ld, 1, r0, c0, g, t, hi, lo);
}

// A fragment of the transpose of row-major m (stride ld): A[r][c] = m[c][r].
template <bool kExact>
__device__ __forceinline__ void load_a_transposed(const float* m, int ld, int r0, int c0, int g,
                                                  int t, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  load_a_strided<kExact>(m, 1, ld, r0, c0, g, t, hi, lo);
}

// cp.async with zero fill: src_bytes 0 writes zeros and reads nothing (src must still be a valid
// address; callers pass one).
__device__ __forceinline__ void copy_async16(float* dst, const float* src, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_async4(float* dst, const float* src, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void copy_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void copy_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::);
}

// Per-chunk ready flags of the overlapped single pass (prepare on a second stream, beside the
// recurrence): the prepare block of (head, chunk) publishes its X and decay factors with a
// release store of 1 after a barrier (so every thread's writes come first); one recurrence thread
// waits for the flag with acquire loads, then a barrier passes the ordering to its block's copies.
__device__ __forceinline__ void publish_ready(int* flag) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(flag), "r"(1) : "memory");
}
__device__ __forceinline__ void wait_ready(const int* flag) {
  for (;;) {
    int value = 0;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(value) : "l"(flag) : "memory");
    if (value != 0) return;
    __nanosleep(64);
  }
}

// dst[row * ld + col] = src[row * src_stride + col] for row < kRows, col < kWidth, zero where
// row >= rows_valid or col >= cols_valid. vec16: 16-byte pieces (src, src_stride and cols_valid
// multiples of 4 floats); otherwise single floats. rows_valid and cols_valid are >= 1. Called by
// all kThreads threads of a block (every kernel here that uses it runs kThreads threads).
template <int kWidth, int kRows = kChunk>
__device__ __forceinline__ void load_rows_async(float* dst, int ld, const float* src,
                                                size_t src_stride, int rows_valid, int cols_valid,
                                                bool vec16) {
  if (vec16) {
    constexpr int kGroups = kWidth / 4;
#pragma unroll
    for (int idx = threadIdx.x; idx < kRows * kGroups; idx += kThreads) {
      const int row = idx / kGroups, col = (idx % kGroups) * 4;
      const bool valid = row < rows_valid && col < cols_valid;
      copy_async16(dst + row * ld + col, valid ? src + row * src_stride + col : src, valid);
    }
  } else {
    for (int idx = threadIdx.x; idx < kRows * kWidth; idx += kThreads) {
      const int row = idx / kWidth, col = idx % kWidth;
      const bool valid = row < rows_valid && col < cols_valid;
      copy_async4(dst + row * ld + col, valid ? src + row * src_stride + col : src, valid);
    }
  }
}

// The 16-byte pieces one thread copies of a kRows x kWidth tile in load_rows_async's vec16 layout,
// with the parts of their addresses that do not change from chunk to chunk worked out once: piece
// i is row row0 + i * kRowStep, columns [col, col + 4). The recurrence prefetches every chunk, and
// recomputing these addresses there cost more instructions than its tensor-core products (ncu).
template <int kWidth, int kRows = kChunk>
struct TilePieces {
  static constexpr int kGroups = kWidth / 4;
  static_assert(kThreads % kGroups == 0 && (kRows * kGroups) % kThreads == 0,
                "every thread copies the same number of pieces");
  static constexpr int kCount = kRows * kGroups / kThreads;
  static constexpr int kRowStep = kThreads / kGroups;
  int row0, col;
  __device__ explicit TilePieces(int tid) : row0(tid / kGroups), col((tid % kGroups) * 4) {}
  // dst[row * ld + col] = src[row * stride + col], zero outside rows_valid x cols_valid (src,
  // stride and cols_valid multiples of 4 floats, as load_rows_async's vec16).
  __device__ __forceinline__ void load(float* dst, int ld, const float* src, size_t stride,
                                       int rows_valid, int cols_valid) const {
    const bool col_ok = col < cols_valid;
    const float* from = src + row0 * stride + col;
    float* to = dst + row0 * ld + col;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const bool valid = col_ok && row0 + i * kRowStep < rows_valid;
      copy_async16(to + i * kRowStep * ld, valid ? from + i * kRowStep * stride : src, valid);
    }
  }
};

// ------------------------------------------------------------------------------ prepare kernel

template <int kKeyPad>
constexpr size_t prepare_smem_bytes() {
  // keys, then X over them; the gram matrix, then A, then (folding) a source tile; the decays;
  // beta gamma, beta and tail as floats (folding).
  return sizeof(float) * (kChunk * std::max(ld_keys<kKeyPad>(), kLdX) + kChunk * kLdX) +
         sizeof(double) * 2 * kChunk + sizeof(float) * 3 * kChunk;
}

// The operands of the folded recurrence, written by the prepare kernel instead of X:
//   W'[t][i]  = tail_t sum_j X[t][j] beta_j gamma_j K[j][i]   ([heads][chunks][kChunk][kKeyPad])
//   U0'[t][c] = tail_t sum_j X[t][j] beta_j V[j][c]           ([heads][chunks * kChunk][dv_pad])
// Zeros past the chunk's last token (tail is 0 there) and in the padding columns, so the
// recurrence copies whole tiles. dv_pad: dv rounded up to whole recurrence tiles (kTile).
struct FoldOutputs {
  const float* v;
  int v_stride, dv, dv_pad;
  float *w, *u;
};

// One block per (chunk, head): x_out[t][j] = X = (I + A)^-1 (unit lower triangular, zeros above the
// diagonal, identity rows and columns past the chunk's last token) and coef_out = [beta_t gamma_t,
// beta_t, tail_t, gamma_{n-1}] (zeros past the last token). Decay products in double without any
// division, in the CPU's order, so alpha == 0 (a full reset) is exact. Grid (chunks, heads); with
// ready flags (overlapped schedules) grid (heads, chunks), so that blocks start chunk by chunk,
// and each block sets ready[h * chunks + chunk] when its outputs are written. With fold.w set
// (folded schedules) it writes W' and U0' (FoldOutputs) instead of X.
template <int kKeyPad, bool kExact>
__global__ void __launch_bounds__(kThreads)
    delta_prepare_kernel(const float* __restrict__ k, int k_stride, const float* __restrict__ alpha,
                         const float* __restrict__ beta, int tokens, int heads, int dk, bool vec16,
                         int chunks, float* __restrict__ x_out, float* __restrict__ coef_out,
                         int* __restrict__ ready, FoldOutputs fold) {
  constexpr int kLdK = ld_keys<kKeyPad>();
  extern __shared__ __align__(128) float smem[];
  float* keys = smem;  // [kChunk][kLdK], later X ([kChunk][kLdX])
  float* gram = keys + kChunk * (kLdK > kLdX ? kLdK : kLdX);        // [kChunk][kLdX]: K K^T, then A
  auto* alpha_s = reinterpret_cast<double*>(gram + kChunk * kLdX);  // [kChunk]
  double* beta_s = alpha_s + kChunk;                                // [kChunk]
  auto* scale_s = reinterpret_cast<float*>(beta_s + kChunk);  // [3][kChunk]: beta gamma, beta, tail

  const int chunk = ready != nullptr ? blockIdx.y : blockIdx.x;
  const int h = ready != nullptr ? blockIdx.x : blockIdx.y, tid = threadIdx.x, warp = tid / 32;
  const int t0 = chunk * kChunk;
  const int n = min(kChunk, tokens - t0);

  load_rows_async<kKeyPad>(keys, kLdK,
                           k + static_cast<size_t>(t0) * k_stride + static_cast<size_t>(h) * dk,
                           static_cast<size_t>(k_stride), n, dk, vec16);
  copy_commit();
  for (int t = tid; t < kChunk; t += kThreads) {
    const size_t g = static_cast<size_t>(t0 + t) * heads + h;
    alpha_s[t] = t < n ? static_cast<double>(alpha[g]) : 1.0;
    beta_s[t] = t < n ? static_cast<double>(beta[g]) : 0.0;
  }
  copy_wait_all();
  __syncthreads();

  // gram = K K^T on the 20 tiles of 16 x 8 that hold the lower triangle (row tile r: column
  // tiles 0 .. 2 r + 1), 3xTF32 in kExact.
  {
    const int lane = tid % 32, g = lane / 4, t = lane % 4;
    for (int tile = warp; tile < 20; tile += kThreads / 32) {
      int r = 0, q = tile;  // tile -> (row tile r, column tile q < 2 (r + 1))
      while (q >= 2 * (r + 1)) {
        q -= 2 * (r + 1);
        ++r;
      }
      MmaAcc even, odd;
#pragma unroll
      for (int kk = 0; kk < kKeyPad; kk += 8) {
        uint32_t a_hi[4], a_lo[4], b_hi[2], b_lo[2];
        load_a<kExact>(keys, kLdK, 16 * r, kk, g, t, a_hi, a_lo);
        // B[k][n] = K[8 q + n][kk + k]: the transpose of the keys' row-major layout.
        const float* p = keys + (8 * q + g) * kLdK + kk + t;
        split_tf32<kExact>(p[0], b_hi[0], b_lo[0]);
        split_tf32<kExact>(p[4], b_hi[1], b_lo[1]);
        mma_split<kExact>((kk / 8) % 2 ? odd : even, a_hi, a_lo, b_hi, b_lo);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e)
        gram[(16 * r + g + 8 * (e >> 1)) * kLdX + 8 * q + 2 * t + (e & 1)] =
            even.value(e) + odd.value(e);
    }
  }
  __syncthreads();

  float* coef = coef_out + (static_cast<size_t>(h) * chunks + chunk) * kCoefs;
  if (tid < kChunk) {
    const int i = tid;
    // Column i of A: A[t][i] = beta_t (alpha_{i+1} ... alpha_t) gram[t][i] for i < t < n.
    double ratio = 1.0;
    for (int t = i + 1; t < n; ++t) {
      ratio *= alpha_s[t];
      gram[t * kLdX + i] *= static_cast<float>(beta_s[t] * ratio);
    }
    // Decay factors of token i.
    float beta_gamma = 0.0f, beta_f = 0.0f, tail_f = 0.0f;
    if (i < n) {
      double gamma = 1.0;
      for (int s = 0; s <= i; ++s) gamma *= alpha_s[s];
      double tail = 1.0;
      for (int s = n - 1; s > i; --s) tail *= alpha_s[s];
      beta_gamma = static_cast<float>(beta_s[i] * gamma);
      beta_f = static_cast<float>(beta_s[i]);
      tail_f = static_cast<float>(tail);
      if (i == n - 1) coef[3 * kChunk] = static_cast<float>(gamma);
    }
    coef[i] = beta_gamma;
    coef[kChunk + i] = beta_f;
    coef[2 * kChunk + i] = tail_f;
    if (i > 0) coef[3 * kChunk + i] = 0.0f;
    scale_s[i] = beta_gamma;
    scale_s[kChunk + i] = beta_f;
    scale_s[2 * kChunk + i] = tail_f;
  }
  __syncthreads();

  // X = (I + A)^-1 over 16 x 16 blocks (L = I + A is unit lower triangular):
  //   X_bb = L_bb^-1 by forward substitution, the four diagonal blocks at once (16 dependent
  //   steps instead of 64): block b = tid / 64, four lanes a column, two shuffles a row;
  //   then block row by block row, X_ij = -X_bb T_ij with T_ij = sum_{k=j}^{i-1} A_ik X_kj
  //   (j < i), one element of a 16 x 16 block a thread. X is built in shared memory over the
  //   keys (no longer needed), T_ij in X's unused upper block (j, i); then X is copied out.
  float* xs = keys;  // [kChunk][kLdX]
  {
    const int b = tid / 64, c = (tid / 4) % 16, q = tid % 4;
    float x[4] = {};  // X_bb[4 m + q][c], zero until computed (so the sums need no bounds)
#pragma unroll
    for (int t = 0; t < 16; ++t) {
      const float* row = gram + (16 * b + t) * kLdX + 16 * b + q;
      float sum = 0.0f;
#pragma unroll
      for (int m = 0; m < (t + 3) / 4; ++m) sum += row[4 * m] * x[m];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float value = t < c ? 0.0f : (t == c ? 1.0f : -sum);
      if (q == t % 4) {
        x[t / 4] = value;
        xs[(16 * b + t) * kLdX + 16 * b + c] = value;
      }
    }
  }
  __syncthreads();
  {
    const int r = tid / 16, c = tid % 16;
#pragma unroll
    for (int i = 1; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < i; ++j) {  // T_ij -> block (j, i) of xs
        float acc = 0.0f;
#pragma unroll
        for (int k = j; k < i; ++k) {
          const float* a_row = gram + (16 * i + r) * kLdX + 16 * k;
          const float* x_col = xs + 16 * k * kLdX + 16 * j + c;
#pragma unroll
          for (int m = 0; m < 16; ++m) acc += a_row[m] * x_col[m * kLdX];
        }
        xs[(16 * j + r) * kLdX + 16 * i + c] = acc;
      }
      __syncthreads();
      const float* x_row = xs + (16 * i + r) * kLdX + 16 * i;  // row r of X_ii
#pragma unroll
      for (int j = 0; j < i; ++j) {  // X_ij = -X_ii T_ij (X_ii lower triangular)
        const float* t_col = xs + 16 * j * kLdX + 16 * i + c;
        float acc = 0.0f;
#pragma unroll
        for (int m = 0; m < 16; ++m)
          if (m <= r) acc += x_row[m] * t_col[m * kLdX];
        xs[(16 * i + r) * kLdX + 16 * j + c] = -acc;
      }
      __syncthreads();
    }
  }
  if (fold.w == nullptr) {
    float* xg = x_out + (static_cast<size_t>(h) * chunks + chunk) * kChunk * kChunk;
    for (int idx = tid; idx < kChunk * kChunk; idx += kThreads) {
      const int t = idx / kChunk, j = idx % kChunk;
      xg[idx] = j / 16 > t / 16 ? 0.0f : xs[t * kLdX + j];
    }
  } else {
    // Fold X into W' and U0', 64 columns of [K | V] at a time: the source tile (scaled rows,
    // zeros past the chunk and in padding columns) in the gram matrix's space, 16 outputs a thread.
    for (int idx = tid; idx < kChunk * kChunk; idx += kThreads) {  // X's upper blocks held T_ij
      const int t = idx / kChunk, j = idx % kChunk;
      if (j / 16 > t / 16) xs[t * kLdX + j] = 0.0f;
    }
    float* src = gram;
    const int key_blocks = (kKeyPad + 63) / 64, blocks = key_blocks + (fold.dv_pad + 63) / 64;
    const int col = tid % 64, row0 = tid / 64;  // rows row0, row0 + 4, ...
    for (int b = 0; b < blocks; ++b) {
      const bool is_key = b < key_blocks;
      const int c0 = 64 * (is_key ? b : b - key_blocks);
      const int width = min(64, (is_key ? kKeyPad : fold.dv_pad) - c0);
      const int valid = min(64, (is_key ? dk : fold.dv) - c0);
      const float* scale = scale_s + (is_key ? 0 : kChunk);
      __syncthreads();  // X complete (first block); the previous block done with src
      for (int idx = tid; idx < kChunk * 64; idx += kThreads) {
        const int row = idx / 64, c = idx % 64;
        float value = 0.0f;
        if (row < n && c < valid) {
          const size_t token = static_cast<size_t>(t0 + row);
          value =
              scale[row] *
              (is_key ? k[token * k_stride + static_cast<size_t>(h) * dk + c0 + c]
                      : fold.v[token * fold.v_stride + static_cast<size_t>(h) * fold.dv + c0 + c]);
        }
        src[row * kLdX + c] = value;
      }
      __syncthreads();
      float acc[kChunk / 4] = {};
#pragma unroll 4
      for (int j = 0; j < kChunk; ++j) {
        const float x_j = src[j * kLdX + col];
#pragma unroll
        for (int m = 0; m < kChunk / 4; ++m) acc[m] += xs[(row0 + 4 * m) * kLdX + j] * x_j;
      }
      if (col < width) {
        float* out =
            is_key
                ? fold.w + (static_cast<size_t>(h) * chunks + chunk) * kChunk * kKeyPad + c0 + col
                : fold.u + (static_cast<size_t>(h) * chunks * kChunk + t0) * fold.dv_pad + c0 + col;
        const int ld = is_key ? kKeyPad : fold.dv_pad;
#pragma unroll
        for (int m = 0; m < kChunk / 4; ++m) {
          const int row = row0 + 4 * m;
          out[static_cast<size_t>(row) * ld] = scale_s[2 * kChunk + row] * acc[m];
        }
      }
    }
  }
  if (ready != nullptr) {
    __syncthreads();
    if (tid == 0) publish_ready(ready + static_cast<size_t>(h) * chunks + chunk);
  }
}

// ---------------------------------------------------------------------------- recurrence kernel

// The per-chunk inputs of a single-pass recurrence block (value columns [j0, j0 + cols) of one
// head), double-buffered in shared memory: keys [2][kChunk][kLdK], the mixing matrix
// [2][kChunk][kLdMix], values [2][kChunk][kLdV], decay coefficients [2][kCoefs]. prefetch(c)
// issues chunk c's copies as one cp.async group into buffer c & 1, which the *_of(c) accessors
// return. Unfolded (kFolded false): the mixing matrix is X and the values are V. Folded: the
// mixing matrix is W' = diag(tail) X diag(beta gamma) K ([kChunk][kKeyPad] a chunk in the
// workspace) and the values are U0' = diag(tail) X diag(beta) V ([kChunk][dv_pad] a chunk), the
// fold kernel's outputs; `x` then points at the head's W' and `v` at its U0' columns j0.
template <int kKeyPad, int kLdV, bool kFolded = false>
struct ChunkInputs {
  static constexpr int kLdK = ld_keys<kKeyPad>();
  static constexpr int kMixCols = kFolded ? kKeyPad : kChunk;
  static constexpr int kLdMix = kFolded ? kLdK : kLdX;
  float *keys, *xmat, *vals, *coef;  // both buffers of each region
  const float *k_head, *v_head, *x_head, *coef_head;
  const int* ready;  // the head's per-chunk ready flags (overlapped), or nullptr
  int k_stride, v_stride, tokens, dk, cols;
  bool vec16;
  TilePieces<kKeyPad> key_pieces;
  TilePieces<kTile> val_pieces;
  TilePieces<kMixCols> x_pieces;

  // k, v: the head's first key / value column of token 0 (folded: v is U0' as above, v_stride
  // its row stride); x, coef: the head's prepare (folded: fold) outputs.
  __device__ ChunkInputs(float* smem_keys, float* smem_xmat, float* smem_vals, float* smem_coef,
                         const float* k, int k_stride_, const float* v, int v_stride_,
                         const float* x, const float* coefs, int tokens_, int dk_, int cols_,
                         bool vec16_, const int* ready_ = nullptr)
      : keys(smem_keys),
        xmat(smem_xmat),
        vals(smem_vals),
        coef(smem_coef),
        k_head(k),
        v_head(v),
        x_head(x),
        coef_head(coefs),
        ready(ready_),
        k_stride(k_stride_),
        v_stride(v_stride_),
        tokens(tokens_),
        dk(dk_),
        cols(cols_),
        vec16(vec16_),
        key_pieces(threadIdx.x),
        val_pieces(threadIdx.x),
        x_pieces(threadIdx.x) {}

  __device__ __forceinline__ const float* keys_of(int c) const {
    return keys + (c & 1) * kChunk * kLdK;
  }
  __device__ __forceinline__ const float* xmat_of(int c) const {
    return xmat + (c & 1) * kChunk * kLdMix;
  }
  __device__ __forceinline__ const float* vals_of(int c) const {
    return vals + (c & 1) * kChunk * kLdV;
  }
  __device__ __forceinline__ const float* coef_of(int c) const { return coef + (c & 1) * kCoefs; }

  // Chunk c's inputs in shared memory.
  struct Chunk {
    const float *keys, *xmat, *vals, *coef;
  };
  // Starts chunk 0's copies (once its prepare block has finished, when overlapped). Called by all
  // threads, once, before begin_chunk(0).
  __device__ __forceinline__ void start() const {
    if (ready != nullptr) {
      if (threadIdx.x == 0) wait_ready(ready);
      __syncthreads();
    }
    prefetch(0);
  }
  // Waits until chunk c has landed for every thread, then starts chunk c + 1's copies into the
  // other buffer (every thread is done with chunk c - 1 there: the barrier orders it; when
  // overlapped, thread 0 has seen chunk c + 1's ready flag before it). Called by all threads,
  // once a chunk, after start().
  __device__ __forceinline__ Chunk begin_chunk(int c, int chunks) const {
    if (ready != nullptr && c + 1 < chunks && threadIdx.x == 0) wait_ready(ready + c + 1);
    copy_wait_all();
    __syncthreads();
    if (c + 1 < chunks) prefetch(c + 1);
    return {keys_of(c), xmat_of(c), vals_of(c), coef_of(c)};
  }

  __device__ __forceinline__ void prefetch(int c) const {
    const int buf = c & 1, t0 = c * kChunk, n = min(kChunk, tokens - t0);
    const float* k_src = k_head + static_cast<size_t>(t0) * k_stride;
    const float* v_src = v_head + static_cast<size_t>(t0) * v_stride;
    float* k_dst = keys + buf * kChunk * kLdK;
    float* v_dst = vals + buf * kChunk * kLdV;
    if (vec16) {
      key_pieces.load(k_dst, kLdK, k_src, static_cast<size_t>(k_stride), n, dk);
    } else {
      load_rows_async<kKeyPad>(k_dst, kLdK, k_src, static_cast<size_t>(k_stride), n, dk, false);
    }
    if (vec16 || kFolded) {  // U0' (padded rows and columns, zeros past the chunk) is aligned
      val_pieces.load(v_dst, kLdV, v_src, static_cast<size_t>(v_stride), n, cols);
    } else {
      load_rows_async<kTile>(v_dst, kLdV, v_src, static_cast<size_t>(v_stride), n, cols, false);
    }
    x_pieces.load(xmat + buf * kChunk * kLdMix, kLdMix,
                  x_head + static_cast<size_t>(c) * kChunk * kMixCols, kMixCols, kChunk, kMixCols);
    const int tid = threadIdx.x;
    if (tid < kCoefs / 4)
      copy_async16(coef + buf * kCoefs + 4 * tid,
                   coef_head + static_cast<size_t>(c) * kCoefs + 4 * tid, true);
    copy_commit();
  }
};

template <int kKeyPad, bool kFolded = false>
struct RecurLayout {
  static constexpr int kLdK = ld_keys<kKeyPad>();  // = 4 mod 32: A-fragment rows on all banks
  static constexpr int kLdS = kTile + 8;           // = 24: B-fragment rows t, t+1.. on all banks
  static constexpr int kLdMix = kFolded ? kLdK : kLdX;  // X, or W' (folded)
  // Offsets in floats; every region a multiple of 4 floats (16-byte cp.async). The B operands
  // (state, R, tail U) are kept split into TF32 hi and lo halves, [2][rows][kLdS], by the step
  // that writes them, so the products read them without converting. Folded: no R.
  static constexpr int keys = 0;                           // [2][kChunk][kLdK]
  static constexpr int xmat = keys + 2 * kChunk * kLdK;    // [2][kChunk][kLdMix]
  static constexpr int vals = xmat + 2 * kChunk * kLdMix;  // [2][kChunk][kLdS]: V or U0'
  static constexpr int coef = vals + 2 * kChunk * kLdS;    // [2][kCoefs]
  static constexpr int state = coef + 2 * kCoefs;          // [hi, lo][kKeyPad][kLdS]
  static constexpr int part = state + 2 * kKeyPad * kLdS;  // [2 key halves][kChunk][kLdS] K S
  static constexpr int rhs = part + 2 * kChunk * kLdS;     // [hi, lo][kChunk][kLdS] R
  static constexpr int upd = rhs + (kFolded ? 0 : 2 * kChunk * kLdS);  // [hi, lo][kChunk][kLdS]
  static constexpr int total = upd + 2 * kChunk * kLdS;
  static constexpr size_t bytes = sizeof(float) * total;
};

// Stores x split for later use as a TF32 B operand: hi at p, lo (kExact) at p + lo_offset.
template <bool kExact>
__device__ __forceinline__ void store_split(float* p, int lo_offset, float x) {
  const uint32_t hi = to_tf32(x);
  p[0] = __uint_as_float(hi);
  if constexpr (kExact) p[lo_offset] = x - __uint_as_float(hi);
}

// B fragment (rows [k0, k0 + 8), columns [n0, n0 + 8)) of a matrix stored split by store_split.
template <bool kExact>
__device__ __forceinline__ void load_b_split(const float* m, int lo_offset, int ld, int k0, int n0,
                                             int g, int t, uint32_t (&hi)[2], uint32_t (&lo)[2]) {
  const float* p = m + (k0 + t) * ld + n0 + g;
  hi[0] = __float_as_uint(p[0]);
  hi[1] = __float_as_uint(p[4 * ld]);
  if constexpr (kExact) {
    lo[0] = __float_as_uint(p[lo_offset]);
    lo[1] = __float_as_uint(p[lo_offset + 4 * ld]);
  }
}

// One block per (value tile of 16 columns, head); 8 warps. Per chunk:
//   P = K S     warp w: rows 16 (w & 3), key half w >> 2, both column tiles     -> part[2]
//   R = beta V - beta gamma (P0 + P1)                  all threads              -> rhs (split)
//   U = X R     warp w: rows 16 (w & 3), columns 8 (w >> 2); row tile r needs X columns
//               [0, 16 (r + 1));  Ud = tail U                                   -> upd (split)
//   S = decay S + K^T Ud   warp w < kKeyPad / 16: state rows 16 w, both column tiles, kept in
//               registers (fp32) and mirrored split in shared memory for the next K S
// Four barriers a chunk. Splitting K S over the key dim halves its dependent chain and shares each
// A fragment of K between the two column tiles.
// kFolded: X was folded into the chunk's operands beforehand (fold kernel), Ud = U0' - W' S with
// W' = diag(tail) X diag(beta gamma) K and U0' = diag(tail) X diag(beta) V, so a chunk is
//   P = W' S (as K S above)  ->  Ud = U0' - (P0 + P1) (all threads)  ->  S = decay S + K^T Ud:
// two products and three barriers instead of three and four, for 2 x 32 KB more loads a chunk.
// Then v is U0' ([heads][chunks * kChunk][v_stride], v_stride = dv rounded up to kTile) and x_in
// is W' ([heads][chunks][kChunk][kKeyPad]). ready (overlapped single pass, else nullptr): the
// prepare kernel's per-(head, chunk) flags; each chunk is copied only once its flag is set.
template <int kKeyPad, bool kExact, bool kFolded = false>
__global__ void __launch_bounds__(kThreads)
    delta_recur_kernel(float* __restrict__ s, const float* __restrict__ k, int k_stride,
                       const float* __restrict__ v, int v_stride, int tokens, int dk, int dv,
                       bool vec16, int chunks, const float* __restrict__ x_in,
                       const float* __restrict__ coef_in, const int* __restrict__ ready) {
  using L = RecurLayout<kKeyPad, kFolded>;
  constexpr int kLdK = L::kLdK, kLdS = L::kLdS;
  constexpr int kStateWarps = kKeyPad / 16;
  constexpr int kStateLo = kKeyPad * kLdS, kChunkLo = kChunk * kLdS;  // lo-half offsets
  extern __shared__ __align__(128) float smem[];
  float* state = smem + L::state;
  float* part = smem + L::part;
  [[maybe_unused]] float* rhs = smem + L::rhs;  // unfolded only
  float* upd = smem + L::upd;

  const int tile = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, warp = tid / 32;
  const int lane = tid % 32, g = lane / 4, t = lane % 4;
  const int j0 = tile * kTile;
  const int cols = min(kTile, dv - j0);
  float* s_head = s + static_cast<size_t>(h) * dk * dv;
  const size_t chunk_rows = static_cast<size_t>(chunks) * kChunk;
  const ChunkInputs<kKeyPad, kLdS, kFolded> in(
      smem + L::keys, smem + L::xmat, smem + L::vals, smem + L::coef,
      k + static_cast<size_t>(h) * dk, k_stride,
      v + (kFolded ? h * chunk_rows * v_stride : static_cast<size_t>(h) * dv) + j0, v_stride,
      x_in + h * chunk_rows * (kFolded ? kKeyPad : kChunk),
      coef_in + static_cast<size_t>(h) * chunks * kCoefs, tokens, dk, cols, vec16,
      ready != nullptr ? ready + static_cast<size_t>(h) * chunks : nullptr);

  in.start();
  // The state: fp32 in the registers of the warp that updates it (C-fragment order: rows
  // [16 warp, 16 warp + 16), column tiles 0 and 1), split in shared memory for K S.
  float s_reg[2][4] = {};
  // Visits this warp's state elements: f(column tile, C-fragment element, row, column).
  auto for_each_state_element = [&](auto&& f) {
#pragma unroll
    for (int ct = 0; ct < 2; ++ct)
#pragma unroll
      for (int e = 0; e < 4; ++e) f(ct, e, 16 * warp + g + 8 * (e >> 1), 8 * ct + 2 * t + (e & 1));
  };
  if (warp < kStateWarps)
    for_each_state_element([&](int ct, int e, int row, int col) {
      s_reg[ct][e] =
          row < dk && col < cols ? s_head[static_cast<size_t>(row) * dv + j0 + col] : 0.0f;
      store_split<kExact>(state + row * kLdS + col, kStateLo, s_reg[ct][e]);
    });

  const int row_tile = warp & 3, col_tile = warp >> 2, key_half = warp >> 2;
  const int out_row = 16 * row_tile + g, out_col = 8 * col_tile + 2 * t;  // C element 0
  for (int c = 0; c < chunks; ++c) {
    // The barrier in begin_chunk also makes the state written after the last chunk visible.
    const auto [keys, xmat, vals, coef] = in.begin_chunk(c, chunks);

    {  // P = K S (folded: W' S) over this warp's half of the key dim, both column tiles.
      MmaAcc acc[2];
      constexpr int kHalf = kKeyPad / 2;
      const float* key_cols = (kFolded ? xmat : keys) + key_half * kHalf;  // K[:, half]
      const float* state_rows = state + key_half * kHalf * kLdS;           // S[half, :]
#pragma unroll
      for (int kk = 0; kk < kHalf; kk += 8) {
        uint32_t a_hi[4], a_lo[4];
        load_a<kExact>(key_cols, kLdK, 16 * row_tile, kk, g, t, a_hi, a_lo);
#pragma unroll
        for (int ct = 0; ct < 2; ++ct) {
          uint32_t b_hi[2], b_lo[2];
          load_b_split<kExact>(state_rows, kStateLo, kLdS, kk, 8 * ct, g, t, b_hi, b_lo);
          mma_split<kExact>(acc[ct], a_hi, a_lo, b_hi, b_lo);
        }
      }
      float* out = part + key_half * kChunkLo;
#pragma unroll
      for (int ct = 0; ct < 2; ++ct)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          out[(out_row + 8 * (e >> 1)) * kLdS + 8 * ct + 2 * t + (e & 1)] = acc[ct].value(e);
    }
    __syncthreads();
    if constexpr (kFolded) {
#pragma unroll
      for (int idx = tid; idx < kChunk * kTile; idx += kThreads) {  // Ud = U0' - W' S
        const int o = (idx / kTile) * kLdS + idx % kTile;
        store_split<kExact>(upd + o, kChunkLo, vals[o] - (part[o] + part[kChunkLo + o]));
      }
    } else {
#pragma unroll
      for (int idx = tid; idx < kChunk * kTile; idx += kThreads) {  // R = beta V - beta gamma P
        const int row = idx / kTile, o = row * kLdS + idx % kTile;
        store_split<kExact>(
            rhs + o, kChunkLo,
            coef[kChunk + row] * vals[o] - coef[row] * (part[o] + part[kChunkLo + o]));
      }
      __syncthreads();
      // U = X R -> Ud = tail U
      MmaAcc even, odd;
#pragma unroll
      for (int kk = 0; kk < kChunk; kk += 16) {  // an even and an odd step
        if (kk > 16 * row_tile) break;           // X is lower triangular
        uint32_t a_hi[4], a_lo[4], b_hi[2], b_lo[2];
        load_a<kExact>(xmat, kLdX, 16 * row_tile, kk, g, t, a_hi, a_lo);
        load_b_split<kExact>(rhs, kChunkLo, kLdS, kk, 8 * col_tile, g, t, b_hi, b_lo);
        mma_split<kExact>(even, a_hi, a_lo, b_hi, b_lo);
        load_a<kExact>(xmat, kLdX, 16 * row_tile, kk + 8, g, t, a_hi, a_lo);
        load_b_split<kExact>(rhs, kChunkLo, kLdS, kk + 8, 8 * col_tile, g, t, b_hi, b_lo);
        mma_split<kExact>(odd, a_hi, a_lo, b_hi, b_lo);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = out_row + 8 * (e >> 1), col = out_col + (e & 1);
        const float u = even.value(e) + odd.value(e);
        store_split<kExact>(upd + row * kLdS + col, kChunkLo, coef[2 * kChunk + row] * u);
      }
    }
    __syncthreads();
    if (warp < kStateWarps) {  // S = decay S + K^T Ud
      const float decay = coef[3 * kChunk];
      MmaAcc even[2], odd[2];
#pragma unroll
      for (int kk = 0; kk < kChunk; kk += 8) {
        uint32_t a_hi[4], a_lo[4];
        load_a_transposed<kExact>(keys, kLdK, 16 * warp, kk, g, t, a_hi, a_lo);
#pragma unroll
        for (int ct = 0; ct < 2; ++ct) {
          uint32_t b_hi[2], b_lo[2];
          load_b_split<kExact>(upd, kChunkLo, kLdS, kk, 8 * ct, g, t, b_hi, b_lo);
          mma_split<kExact>((kk / 8) % 2 ? odd[ct] : even[ct], a_hi, a_lo, b_hi, b_lo);
        }
      }
      for_each_state_element([&](int ct, int e, int row, int col) {
        s_reg[ct][e] = decay * s_reg[ct][e] + (even[ct].value(e) + odd[ct].value(e));
        store_split<kExact>(state + row * kLdS + col, kStateLo, s_reg[ct][e]);
      });
    }
  }
  if (warp < kStateWarps)
    for_each_state_element([&](int ct, int e, int row, int col) {
      if (row < dk && col < cols) s_head[static_cast<size_t>(row) * dv + j0 + col] = s_reg[ct][e];
    });
}

// ------------------------------------------------------------------------ grouped: phase 1 kernel
//
// The chunk update is affine in the state it starts from: S_new = M_c S_0 + N_c. A run ("group")
// of consecutive chunks is then affine too, S_out = M_g S_in + N_g, and each column of the state
// still evolves on its own. Phase 1 runs every group at once: group 0 carries the real state
// through its chunks; every later group g carries the augmented state [M | N] (dk x (dk + dv)),
// started at [I | 0] and fed the values [0 | V], into the workspace. Phase 2 (combine kernel)
// applies S <- M_g S + N_g for g = 1 .. G-1. Sequential depth: C / G chunk steps + G - 1 small
// products instead of C chunk steps.
//
// One block per (64 state columns, head, group); 8 warps. Per chunk, with the 64 x 64 products
// tiled 16 x 16 (4 row tiles x 4 column tiles, two tiles per warp):
//   P = K S                         -> prod
//   R = beta V - beta gamma P       -> rhs;   X <- diag(tail) X in place
//   Ud = X R                        -> prod   (Ud = diag(tail) U)
//   S = decay S + K^T Ud            (state in shared memory; warp w owns row tiles of S)

constexpr int kGroupCols = 64;                   // state columns per grouped block
constexpr int kLdG = kGroupCols + 4;             // row stride of the 64-column tiles
constexpr int kGroupColTiles = kGroupCols / 16;  // 4
constexpr int kMaxGroups = 8;                    // most groups one update is split into
constexpr int kMinChunksPerGroup = 4;            // fewer chunks per group: too little to gain
constexpr int kGroupedMinChunks = 8;             // below this many chunks: single pass
// Time of one grouped chunk step (64 + 64 state columns, WMMA) over one single-pass chunk step (16
// columns, mma.sync), measured on an H200 at 4680 x 12 x 128 (docs/performance.md run K: about 17
// vs 3.5 us in fp32, 11 vs 2.7 us in TF32). The automatic schedule weighs the group count with it.
constexpr double kGroupedStepCost = 4.0;

template <int kKeyPad>
struct GroupLayout {
  static constexpr int kLdK = ld_keys<kKeyPad>();
  // Offsets in floats; every region is a multiple of 8 floats (32 bytes, WMMA's alignment).
  static constexpr int keys = 0;                         // [2][kChunk][kLdK]
  static constexpr int xmat = keys + 2 * kChunk * kLdK;  // [2][kChunk][kLdX]
  static constexpr int vals = xmat + 2 * kChunk * kLdX;  // [2][kChunk][kLdG]
  static constexpr int coef = vals + 2 * kChunk * kLdG;  // [2][kCoefs]
  static constexpr int state = coef + 2 * kCoefs;        // [kKeyPad][kLdG]
  static constexpr int prod = state + kKeyPad * kLdG;    // [kChunk][kLdG]: K S, then Ud
  static constexpr int rhs = prod + kChunk * kLdG;       // [kChunk][kLdG]: R
  static constexpr int total = rhs + kChunk * kLdG;
  static constexpr size_t bytes = sizeof(float) * total;
};

// 3xTF32 / TF32 split of an operand fragment, done once when one operand meets several others.
template <bool kExact, class Frag>
__device__ __forceinline__ void split_tf32(const Frag& x, Frag& hi, Frag& lo) {
#pragma unroll
  for (int e = 0; e < x.num_elements; ++e) hi.x[e] = wmma::__float_to_tf32(x.x[e]);
  if constexpr (kExact) {
#pragma unroll
    for (int e = 0; e < x.num_elements; ++e) lo.x[e] = wmma::__float_to_tf32(x.x[e] - hi.x[e]);
  }
}

// acc += a b from split operands (lo parts unused unless kExact), as mma_step.
template <bool kExact, class FragA, class FragB>
__device__ __forceinline__ void mma_split(FragAcc& acc, FragAcc& lo, const FragA& a_hi,
                                          const FragA& a_lo, const FragB& b_hi, const FragB& b_lo) {
  if constexpr (kExact) {
    wmma::mma_sync(lo, a_lo, b_hi, lo);
    wmma::mma_sync(lo, a_hi, b_lo, lo);
  }
  wmma::mma_sync(acc, a_hi, b_hi, acc);
}

// aug_out: [groups - 1][heads][dk][dk + dv], the [M_g | N_g] of groups 1 .. G-1.
template <int kKeyPad, bool kExact>
__global__ void __launch_bounds__(kThreads)
    delta_group_kernel(float* __restrict__ s, const float* __restrict__ k, int k_stride,
                       const float* __restrict__ v, int v_stride, int tokens, int heads, int dk,
                       int dv, bool vec16, int chunks, int groups, const float* __restrict__ x_in,
                       const float* __restrict__ coef_in, float* __restrict__ aug_out) {
  using L = GroupLayout<kKeyPad>;
  constexpr int kLdK = L::kLdK;
  constexpr int kRowTiles = kKeyPad / 16;   // 2, 4 or 8 row tiles of the state
  constexpr int kColWarps = 8 / kRowTiles;  // warps sharing one row tile in the S update
  constexpr int kPerWarp = kGroupColTiles / kColWarps;  // state tiles per warp: 1, 2 or 4
  extern __shared__ __align__(128) float smem[];
  float* state = smem + L::state;
  float* prod = smem + L::prod;
  float* rhs = smem + L::rhs;

  const int tile = blockIdx.x, h = blockIdx.y, g = blockIdx.z, tid = threadIdx.x, warp = tid / 32;
  const bool augmented = g > 0;
  const int width = augmented ? dk + dv : dv;  // columns of this group's state
  const int j0 = tile * kGroupCols;
  if (j0 >= width) return;  // the whole block: group 0 has fewer columns than the others
  const int cols = min(kGroupCols, width - j0);
  const int value_offset = augmented ? dk : 0;  // state column j reads value column j - offset
  const int c_begin = static_cast<int>(static_cast<long long>(g) * chunks / groups);
  const int c_end = static_cast<int>(static_cast<long long>(g + 1) * chunks / groups);

  float* s_head = s + static_cast<size_t>(h) * dk * dv;
  const float* k_head = k + static_cast<size_t>(h) * dk;
  const float* v_head = v + static_cast<size_t>(h) * dv;
  const float* x_head = x_in + static_cast<size_t>(h) * chunks * kChunk * kChunk;
  const float* coef_head = coef_in + static_cast<size_t>(h) * chunks * kCoefs;

  auto prefetch = [&](int c) {
    const int buf = (c - c_begin) & 1, t0 = c * kChunk, n = min(kChunk, tokens - t0);
    load_rows_async<kKeyPad>(smem + L::keys + buf * kChunk * kLdK, kLdK,
                             k_head + static_cast<size_t>(t0) * k_stride,
                             static_cast<size_t>(k_stride), n, dk, vec16);
    // Values: state column j0 + col takes value column j0 + col - value_offset where that is in
    // [0, dv), zero elsewhere (the M columns, and columns past the state). With vec16, dk, dv
    // and j0 are multiples of 4, so a 4-column piece is wholly in or out.
    float* vdst = smem + L::vals + buf * kChunk * kLdG;
    const float* vsrc = v_head + static_cast<size_t>(t0) * v_stride;
    if (vec16) {
      for (int idx = tid; idx < kChunk * (kGroupCols / 4); idx += kThreads) {
        const int row = idx / (kGroupCols / 4), col = (idx % (kGroupCols / 4)) * 4;
        const int vcol = j0 + col - value_offset;
        const bool valid = row < n && vcol >= 0 && vcol < dv;
        copy_async16(vdst + row * kLdG + col,
                     valid ? vsrc + static_cast<size_t>(row) * v_stride + vcol : v, valid);
      }
    } else {
      for (int idx = tid; idx < kChunk * kGroupCols; idx += kThreads) {
        const int row = idx / kGroupCols, col = idx % kGroupCols;
        const int vcol = j0 + col - value_offset;
        const bool valid = row < n && vcol >= 0 && vcol < dv;
        copy_async4(vdst + row * kLdG + col,
                    valid ? vsrc + static_cast<size_t>(row) * v_stride + vcol : v, valid);
      }
    }
    load_rows_async<kChunk>(smem + L::xmat + buf * kChunk * kLdX, kLdX,
                            x_head + static_cast<size_t>(c) * kChunk * kChunk, kChunk, kChunk,
                            kChunk, true);
    const float* coef_src = coef_head + static_cast<size_t>(c) * kCoefs;
    for (int idx = tid; idx < kCoefs / 4; idx += kThreads)
      copy_async16(smem + L::coef + buf * kCoefs + 4 * idx, coef_src + 4 * idx, true);
    copy_commit();
  };

  prefetch(c_begin);
  // Starting state: the real one for group 0, [I | 0] for the others; zero past dk and width.
  for (int idx = tid; idx < kKeyPad * kGroupCols; idx += kThreads) {
    const int row = idx / kGroupCols, col = idx % kGroupCols, j = j0 + col;
    float x = 0.0f;
    if (!augmented)
      x = row < dk && col < cols ? s_head[static_cast<size_t>(row) * dv + j] : 0.0f;
    else
      x = j < dk && row == j ? 1.0f : 0.0f;
    state[row * kLdG + col] = x;
  }

  for (int c = c_begin; c < c_end; ++c) {
    const int buf = (c - c_begin) & 1;
    const float* keys = smem + L::keys + buf * kChunk * kLdK;
    float* xmat = smem + L::xmat + buf * kChunk * kLdX;
    const float* vals = smem + L::vals + buf * kChunk * kLdG;
    const float* coef = smem + L::coef + buf * kCoefs;

    copy_wait_all();
    // Chunk c has landed for every thread; every thread is done with chunk c - 1 (its buffers,
    // and the state written in its last step is visible).
    __syncthreads();
    if (c + 1 < c_end) prefetch(c + 1);

    {  // P = K S: warp w, row tile w & 3, column tiles (w >> 2) and (w >> 2) + 2.
      const int rt = warp & 3, ct0 = warp >> 2;
      FragAcc acc[2], lo[2];
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        wmma::fill_fragment(acc[q], 0.0f);
        wmma::fill_fragment(lo[q], 0.0f);
      }
#pragma unroll 4
      for (int kk = 0; kk < kKeyPad; kk += 8) {
        FragARow a, a_hi, a_lo;
        wmma::load_matrix_sync(a, keys + 16 * rt * kLdK + kk, kLdK);
        split_tf32<kExact>(a, a_hi, a_lo);
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          FragBRow b, b_hi, b_lo;
          wmma::load_matrix_sync(b, state + kk * kLdG + 16 * (ct0 + 2 * q), kLdG);
          split_tf32<kExact>(b, b_hi, b_lo);
          mma_split<kExact>(acc[q], lo[q], a_hi, a_lo, b_hi, b_lo);
        }
      }
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        add_into(acc[q], lo[q]);
        wmma::store_matrix_sync(prod + 16 * rt * kLdG + 16 * (ct0 + 2 * q), acc[q], kLdG,
                                wmma::mem_row_major);
      }
    }
    __syncthreads();
    for (int idx = tid; idx < kChunk * kGroupCols; idx += kThreads) {
      const int t = idx / kGroupCols, o = t * kLdG + idx % kGroupCols;
      rhs[o] = coef[kChunk + t] * vals[o] - coef[t] * prod[o];
    }
    // X <- diag(tail) X: then X R is already the tail-scaled U the state update needs.
    for (int idx = tid; idx < kChunk * kChunk; idx += kThreads) {
      const int t = idx / kChunk, o = t * kLdX + idx % kChunk;
      xmat[o] *= coef[2 * kChunk + t];
    }
    __syncthreads();
    // Ud = X R: warp w, tiles (row (w + i) & 3, column (w >> 2) + 2 i), i = 0, 1: every warp
    // gets two different row tiles, so the triangular work (row tile r: 2 (r + 1) steps of 8)
    // is spread evenly. Row tile r needs X columns [0, 16 (r + 1)) only.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int rt = (warp + i) & 3, ct = (warp >> 2) + 2 * i;
      FragAcc acc, lo;
      wmma::fill_fragment(acc, 0.0f);
      wmma::fill_fragment(lo, 0.0f);
      const int steps = 2 * (rt + 1);
      for (int step = 0; step < steps; ++step) {
        FragARow a;
        FragBRow b;
        wmma::load_matrix_sync(a, xmat + 16 * rt * kLdX + 8 * step, kLdX);
        wmma::load_matrix_sync(b, rhs + 8 * step * kLdG + 16 * ct, kLdG);
        mma_step<kExact>(acc, lo, a, b);
      }
      add_into(acc, lo);
      wmma::store_matrix_sync(prod + 16 * rt * kLdG + 16 * ct, acc, kLdG, wmma::mem_row_major);
    }
    __syncthreads();
    {  // S = decay S + K^T Ud: warp w, row tile w % kRowTiles, kPerWarp column tiles.
      const int rt = warp % kRowTiles, ct0 = warp / kRowTiles;
      const float decay = coef[3 * kChunk];
      FragAcc acc[kPerWarp], lo[kPerWarp];
#pragma unroll
      for (int q = 0; q < kPerWarp; ++q) {
        wmma::load_matrix_sync(acc[q], state + 16 * rt * kLdG + 16 * (ct0 + kColWarps * q), kLdG,
                               wmma::mem_row_major);
#pragma unroll
        for (int e = 0; e < acc[q].num_elements; ++e) acc[q].x[e] *= decay;
        wmma::fill_fragment(lo[q], 0.0f);
      }
#pragma unroll
      for (int kk = 0; kk < kChunk; kk += 8) {
        FragACol a, a_hi, a_lo;  // a[m][kk] = K[kk][16 rt + m]
        wmma::load_matrix_sync(a, keys + kk * kLdK + 16 * rt, kLdK);
        split_tf32<kExact>(a, a_hi, a_lo);
#pragma unroll
        for (int q = 0; q < kPerWarp; ++q) {
          FragBRow b, b_hi, b_lo;
          wmma::load_matrix_sync(b, prod + kk * kLdG + 16 * (ct0 + kColWarps * q), kLdG);
          split_tf32<kExact>(b, b_hi, b_lo);
          mma_split<kExact>(acc[q], lo[q], a_hi, a_lo, b_hi, b_lo);
        }
      }
#pragma unroll
      for (int q = 0; q < kPerWarp; ++q) {
        add_into(acc[q], lo[q]);
        wmma::store_matrix_sync(state + 16 * rt * kLdG + 16 * (ct0 + kColWarps * q), acc[q], kLdG,
                                wmma::mem_row_major);
      }
    }
  }
  __syncthreads();
  if (!augmented) {
    for (int idx = tid; idx < kKeyPad * kGroupCols; idx += kThreads) {
      const int row = idx / kGroupCols, col = idx % kGroupCols;
      if (row < dk && col < cols)
        s_head[static_cast<size_t>(row) * dv + j0 + col] = state[row * kLdG + col];
    }
  } else {
    float* out = aug_out + (static_cast<size_t>(g - 1) * heads + h) * dk * width;
    for (int idx = tid; idx < kKeyPad * kGroupCols; idx += kThreads) {
      const int row = idx / kGroupCols, col = idx % kGroupCols;
      if (row < dk && col < cols)
        out[static_cast<size_t>(row) * width + j0 + col] = state[row * kLdG + col];
    }
  }
}

// ------------------------------------------------------------------------ grouped: phase 2 kernel

template <int kKeyPad>
struct CombineLayout {
  static constexpr int kLdK = ld_keys<kKeyPad>();
  static constexpr int mats = 0;                            // [2][kKeyPad][kLdK]: M_g
  static constexpr int ntile = mats + 2 * kKeyPad * kLdK;   // [2][kKeyPad][kLdT]: N_g's columns
  static constexpr int state = ntile + 2 * kKeyPad * kLdT;  // [2][kKeyPad][kLdT]: ping-pong S
  static constexpr int total = state + 2 * kKeyPad * kLdT;
  static constexpr size_t bytes = sizeof(float) * total;
};

// One block per (16 state columns, head): S <- M_g S + N_g for g = 1 .. groups - 1, M_g and the
// block's columns of N_g prefetched one group ahead. Warp w < kKeyPad / 16 computes row tile w.
// vec16: dk and dv multiples of 4 (rows of [M | N] then start on 16-byte boundaries).
template <int kKeyPad, bool kExact>
__global__ void __launch_bounds__(kThreads)
    delta_combine_kernel(float* __restrict__ s, int heads, int dk, int dv, int groups, bool vec16,
                         const float* __restrict__ aug_in) {
  using L = CombineLayout<kKeyPad>;
  constexpr int kLdK = L::kLdK;
  extern __shared__ __align__(128) float smem[];
  const int tile = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, warp = tid / 32;
  const int j0 = tile * kTile;
  const int cols = min(kTile, dv - j0);
  const int width = dk + dv;
  float* s_head = s + static_cast<size_t>(h) * dk * dv;

  auto prefetch = [&](int g) {
    const int buf = g & 1;
    const float* aug = aug_in + (static_cast<size_t>(g - 1) * heads + h) * dk * width;
    load_rows_async<kKeyPad, kKeyPad>(smem + L::mats + buf * kKeyPad * kLdK, kLdK, aug,
                                      static_cast<size_t>(width), dk, dk, vec16);
    load_rows_async<kTile, kKeyPad>(smem + L::ntile + buf * kKeyPad * kLdT, kLdT, aug + dk + j0,
                                    static_cast<size_t>(width), dk, cols, vec16);
    copy_commit();
  };

  prefetch(1);
  float* state0 = smem + L::state;
  for (int idx = tid; idx < kKeyPad * kTile; idx += kThreads) {
    const int row = idx / kTile, col = idx % kTile;
    state0[row * kLdT + col] =
        row < dk && col < cols ? s_head[static_cast<size_t>(row) * dv + j0 + col] : 0.0f;
  }
  for (int g = 1; g < groups; ++g) {
    const int buf = g & 1;
    copy_wait_all();
    __syncthreads();  // group g's M and N have landed; step g - 1 is done everywhere
    if (g + 1 < groups) prefetch(g + 1);
    const float* m = smem + L::mats + buf * kKeyPad * kLdK;
    const float* n_tile = smem + L::ntile + buf * kKeyPad * kLdT;
    const float* s_old = smem + L::state + ((g - 1) & 1) * kKeyPad * kLdT;
    float* s_new = smem + L::state + buf * kKeyPad * kLdT;
    if (warp < kKeyPad / 16) {
      FragAcc acc, lo;
      wmma::load_matrix_sync(acc, n_tile + 16 * warp * kLdT, kLdT, wmma::mem_row_major);
      wmma::fill_fragment(lo, 0.0f);
#pragma unroll 4
      for (int kk = 0; kk < kKeyPad; kk += 8) {
        FragARow a;
        FragBRow b;
        wmma::load_matrix_sync(a, m + 16 * warp * kLdK + kk, kLdK);
        wmma::load_matrix_sync(b, s_old + kk * kLdT, kLdT);
        mma_step<kExact>(acc, lo, a, b);
      }
      add_into(acc, lo);
      wmma::store_matrix_sync(s_new + 16 * warp * kLdT, acc, kLdT, wmma::mem_row_major);
    }
  }
  __syncthreads();
  const float* result = smem + L::state + ((groups - 1) & 1) * kKeyPad * kLdT;
  for (int idx = tid; idx < kKeyPad * kTile; idx += kThreads) {
    const int row = idx / kTile, col = idx % kTile;
    if (row < dk && col < cols)
      s_head[static_cast<size_t>(row) * dv + j0 + col] = result[row * kLdT + col];
  }
}

// ------------------------------------------------------------------- FMA recurrence kernel
//
// The single pass's chunk step on the plain fp32 units instead of the tensor cores: the step is
// three small dependent products per 16 state columns (P = K S, U = X R, S += K^T Ud), where
// 3xTF32 WMMA might spend its time splitting operands and moving fragments (run H: 5.8 us a
// step, 34% SM throughput). Here each thread keeps a few outputs in registers and streams
// float4 operands from shared memory; the arithmetic is exact fp32 (no TF32 anywhere). Measured
// no faster than the tensor-core kernel (run J: 525.9 vs 505.7 us), so the step's time goes
// elsewhere (barriers, the chunk loads' latency): the next thing to profile.
// Same shared tiles and prefetch as delta_recur_kernel; three barriers a step instead of five.
// Thread t: P and U rows r = t / 4, columns 4 (t % 4) .. + 3; S rows i = t / 2, columns
// 8 (t % 2) .. + 7 (its 8 state values stay in registers from chunk to chunk).

template <int kKeyPad>
struct FmaLayout {
  static constexpr int kLdK = ld_keys<kKeyPad>();
  static constexpr int keys = 0;                         // [2][kChunk][kLdK]
  static constexpr int xmat = keys + 2 * kChunk * kLdK;  // [2][kChunk][kLdX]
  static constexpr int vals = xmat + 2 * kChunk * kLdX;  // [2][kChunk][kLdT]
  static constexpr int coef = vals + 2 * kChunk * kLdT;  // [2][kCoefs]
  static constexpr int state = coef + 2 * kCoefs;        // [kKeyPad][kLdT]
  static constexpr int rhs = state + kKeyPad * kLdT;     // [kChunk][kLdT]: R
  static constexpr int upd = rhs + kChunk * kLdT;        // [kChunk][kLdT]: tail * U
  static constexpr int total = upd + kChunk * kLdT;
  static constexpr size_t bytes = sizeof(float) * total;
};

template <int kKeyPad>
__global__ void __launch_bounds__(kThreads)
    delta_recur_fma_kernel(float* __restrict__ s, const float* __restrict__ k, int k_stride,
                           const float* __restrict__ v, int v_stride, int tokens, int dk, int dv,
                           bool vec16, int chunks, const float* __restrict__ x_in,
                           const float* __restrict__ coef_in) {
  static_assert(kTile == 16 && kThreads == 256, "thread mapping: 64 x 16 and kKeyPad x 16 tiles");
  static_assert(kKeyPad <= 128, "S rows: two threads a row, 256 threads");
  using L = FmaLayout<kKeyPad>;
  constexpr int kLdK = L::kLdK;
  extern __shared__ __align__(128) float smem[];
  float* state = smem + L::state;
  float* rhs = smem + L::rhs;
  float* upd = smem + L::upd;

  const int tile = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const int j0 = tile * kTile;
  const int cols = min(kTile, dv - j0);
  float* s_head = s + static_cast<size_t>(h) * dk * dv;
  const ChunkInputs<kKeyPad, kLdT> in(
      smem + L::keys, smem + L::xmat, smem + L::vals, smem + L::coef,
      k + static_cast<size_t>(h) * dk, k_stride, v + static_cast<size_t>(h) * dv + j0, v_stride,
      x_in + static_cast<size_t>(h) * chunks * kChunk * kChunk,
      coef_in + static_cast<size_t>(h) * chunks * kCoefs, tokens, dk, cols, vec16);

  in.start();
  // The state tile: rows past dk and columns past cols are zeros (they meet zero keys / are not
  // stored), in shared memory for P and in registers (8 values a thread, rows < kKeyPad) for S.
  const int s_row = tid / 2, s_col = 8 * (tid % 2);
  float s_reg[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int col = s_col + e;
    s_reg[e] = s_row < dk && col < cols ? s_head[static_cast<size_t>(s_row) * dv + j0 + col] : 0.0f;
  }
  if (s_row < kKeyPad) {
    *reinterpret_cast<float4*>(state + s_row * kLdT + s_col) =
        make_float4(s_reg[0], s_reg[1], s_reg[2], s_reg[3]);
    *reinterpret_cast<float4*>(state + s_row * kLdT + s_col + 4) =
        make_float4(s_reg[4], s_reg[5], s_reg[6], s_reg[7]);
  }

  const int r = tid / 4, c4 = 4 * (tid % 4);
  // X is unit lower triangular with zeros above the diagonal: rows of warp w (8 w .. 8 w + 7)
  // need its columns below 8 w + 8 only.
  const int x_cols = (r | 7) + 1;
  for (int c = 0; c < chunks; ++c) {
    // The barrier in begin_chunk also orders rhs, upd and the shared state between chunks.
    const auto [keys, xmat, vals, coef] = in.begin_chunk(c, chunks);

    // P = K S (row r, 4 columns), then R = beta V - beta gamma P.
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 8
    for (int kk = 0; kk < kKeyPad; kk += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(keys + r * kLdK + kk);
      const float kv[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float4 s4 = *reinterpret_cast<const float4*>(state + (kk + e) * kLdT + c4);
        acc[0] = fmaf(kv[e], s4.x, acc[0]);
        acc[1] = fmaf(kv[e], s4.y, acc[1]);
        acc[2] = fmaf(kv[e], s4.z, acc[2]);
        acc[3] = fmaf(kv[e], s4.w, acc[3]);
      }
    }
    {
      const float4 v4 = *reinterpret_cast<const float4*>(vals + r * kLdT + c4);
      const float b = coef[kChunk + r], bg = coef[r];
      *reinterpret_cast<float4*>(rhs + r * kLdT + c4) =
          make_float4(b * v4.x - bg * acc[0], b * v4.y - bg * acc[1], b * v4.z - bg * acc[2],
                      b * v4.w - bg * acc[3]);
    }
    __syncthreads();

    // U = X R (row r), then Ud = tail U.
    float u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < x_cols; i += 4) {
      const float4 x4 = *reinterpret_cast<const float4*>(xmat + r * kLdX + i);
      const float xv[4] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float4 r4 = *reinterpret_cast<const float4*>(rhs + (i + e) * kLdT + c4);
        u[0] = fmaf(xv[e], r4.x, u[0]);
        u[1] = fmaf(xv[e], r4.y, u[1]);
        u[2] = fmaf(xv[e], r4.z, u[2]);
        u[3] = fmaf(xv[e], r4.w, u[3]);
      }
    }
    {
      const float t = coef[2 * kChunk + r];
      *reinterpret_cast<float4*>(upd + r * kLdT + c4) =
          make_float4(t * u[0], t * u[1], t * u[2], t * u[3]);
    }
    __syncthreads();

    // S = decay S + K^T Ud (row s_row, 8 columns), kept in registers; a copy for the next P.
    if (s_row < kKeyPad) {
      const float decay = coef[3 * kChunk];
#pragma unroll
      for (int e = 0; e < 8; ++e) s_reg[e] *= decay;
#pragma unroll 4
      for (int t = 0; t < kChunk; ++t) {
        const float kt = keys[t * kLdK + s_row];
        const float4 a = *reinterpret_cast<const float4*>(upd + t * kLdT + s_col);
        const float4 b = *reinterpret_cast<const float4*>(upd + t * kLdT + s_col + 4);
        s_reg[0] = fmaf(kt, a.x, s_reg[0]);
        s_reg[1] = fmaf(kt, a.y, s_reg[1]);
        s_reg[2] = fmaf(kt, a.z, s_reg[2]);
        s_reg[3] = fmaf(kt, a.w, s_reg[3]);
        s_reg[4] = fmaf(kt, b.x, s_reg[4]);
        s_reg[5] = fmaf(kt, b.y, s_reg[5]);
        s_reg[6] = fmaf(kt, b.z, s_reg[6]);
        s_reg[7] = fmaf(kt, b.w, s_reg[7]);
      }
      *reinterpret_cast<float4*>(state + s_row * kLdT + s_col) =
          make_float4(s_reg[0], s_reg[1], s_reg[2], s_reg[3]);
      *reinterpret_cast<float4*>(state + s_row * kLdT + s_col + 4) =
          make_float4(s_reg[4], s_reg[5], s_reg[6], s_reg[7]);
    }
  }
  if (s_row < dk) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int col = s_col + e;
      if (col < cols) s_head[static_cast<size_t>(s_row) * dv + j0 + col] = s_reg[e];
    }
  }
}

// --------------------------------------------------------------------------- sequential kernel

// One thread per state column j (a warp per 32 columns of one head): the column lives in
// registers; keys, values and gates come through shared memory 32 tokens at a time.
template <int kKeyPad>
__global__ void __launch_bounds__(32)
    delta_sequential_kernel(float* __restrict__ s, const float* __restrict__ k, int k_stride,
                            const float* __restrict__ v, int v_stride,
                            const float* __restrict__ alpha, const float* __restrict__ beta,
                            int tokens, int heads, int dk, int dv) {
  constexpr int kBatch = 32;
  __shared__ float keys[kBatch][kKeyPad];
  __shared__ float vals[kBatch][32];
  __shared__ float gates[2][kBatch];
  const int lane = threadIdx.x, h = blockIdx.y, j = blockIdx.x * 32 + lane;
  const bool active = j < dv;
  float* s_head = s + static_cast<size_t>(h) * dk * dv;
  float col[kKeyPad];
#pragma unroll
  for (int i = 0; i < kKeyPad; ++i)
    col[i] = active && i < dk ? s_head[static_cast<size_t>(i) * dv + j] : 0.0f;

  for (int t0 = 0; t0 < tokens; t0 += kBatch) {
    const int n = min(kBatch, tokens - t0);
    __syncwarp();  // the previous batch is no longer read
    for (int idx = lane; idx < kBatch * kKeyPad; idx += 32) {
      const int r = idx / kKeyPad, c = idx % kKeyPad;
      keys[r][c] = r < n && c < dk
                       ? k[static_cast<size_t>(t0 + r) * k_stride + static_cast<size_t>(h) * dk + c]
                       : 0.0f;
    }
    for (int r = 0; r < n; ++r)
      vals[r][lane] =
          active ? v[static_cast<size_t>(t0 + r) * v_stride + static_cast<size_t>(h) * dv + j]
                 : 0.0f;
    if (lane < n) {
      gates[0][lane] = alpha[static_cast<size_t>(t0 + lane) * heads + h];
      gates[1][lane] = beta[static_cast<size_t>(t0 + lane) * heads + h];
    }
    __syncwarp();
    for (int r = 0; r < n; ++r) {
      const float a = gates[0][r], b = gates[1][r];
      float w0 = 0.0f, w1 = 0.0f, w2 = 0.0f, w3 = 0.0f;
#pragma unroll
      for (int i = 0; i < kKeyPad; i += 4) {
        col[i] *= a;
        col[i + 1] *= a;
        col[i + 2] *= a;
        col[i + 3] *= a;
        w0 += col[i] * keys[r][i];
        w1 += col[i + 1] * keys[r][i + 1];
        w2 += col[i + 2] * keys[r][i + 2];
        w3 += col[i + 3] * keys[r][i + 3];
      }
      const float u = b * (vals[r][lane] - ((w0 + w1) + (w2 + w3)));
#pragma unroll
      for (int i = 0; i < kKeyPad; ++i) col[i] += keys[r][i] * u;
    }
  }
  if (active) {
#pragma unroll
    for (int i = 0; i < kKeyPad; ++i)
      if (i < dk) s_head[static_cast<size_t>(i) * dv + j] = col[i];
  }
}

// ------------------------------------------------------------------------------------ host side

[[noreturn]] void fail(ErrorKind kind, const std::string& what) {
  throw Error(kind, what);
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(ErrorKind::device, std::string(what) + ": " + cudaGetErrorString(e));
}

int chunk_count(int tokens) {
  return (tokens + kChunk - 1) / kChunk;
}

// Common checks of the update's arguments; false when there is nothing to do.
bool check_update_args(const char* op, const float* s, const float* k, int k_stride, const float* v,
                       int v_stride, const float* alpha, const float* beta, int tokens, int heads,
                       int dk, int dv) {
  if (tokens < 0 || heads < 0 || dk < 0 || dv < 0)
    fail(ErrorKind::invalid_argument, std::string(op) + ": negative size");
  if (tokens == 0 || heads == 0 || dk == 0 || dv == 0) return false;
  if (dk > kDeltaMaxKeyDim)
    fail(ErrorKind::unsupported, std::string(op) + ": key dim " + std::to_string(dk) + " above " +
                                     std::to_string(kDeltaMaxKeyDim));
  if (k_stride < heads * dk || v_stride < heads * dv)
    fail(ErrorKind::invalid_argument, std::string(op) + ": row stride shorter than heads * dim");
  if (s == nullptr || k == nullptr || v == nullptr || alpha == nullptr || beta == nullptr)
    fail(ErrorKind::invalid_argument, std::string(op) + ": null pointer");
  return true;
}

int key_pad(int dk) {
  return dk <= 32 ? 32 : (dk <= 64 ? 64 : 128);
}

// Calls f(std::integral_constant<int, P>{}) with P = key_pad(dk), the padded key width the
// kernels are compiled for.
template <class F>
void with_key_pad(int dk, F&& f) {
  switch (key_pad(dk)) {
    case 32:
      return f(std::integral_constant<int, 32>{});
    case 64:
      return f(std::integral_constant<int, 64>{});
    default:
      return f(std::integral_constant<int, 128>{});
  }
}

size_t x_floats(int tokens, int heads) {
  return static_cast<size_t>(heads) * chunk_count(tokens) * kChunk * kChunk;
}

bool can_vec16(const float* k, int k_stride, const float* v, int v_stride, int dk, int dv) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return aligned16(k) && aligned16(v) && k_stride % 4 == 0 && v_stride % 4 == 0 && dk % 4 == 0 &&
         dv % 4 == 0;
}

// ready: per-(head, chunk) flags the blocks set when done (overlapped schedules; the grid is
// then chunk-major), or nullptr. fold.w set: W' and U0' instead of X (folded schedules).
template <int kKeyPad, bool kExact>
void launch_prepare(const float* k, int k_stride, const float* alpha, const float* beta, int tokens,
                    int heads, int dk, bool vec16, float* x_ws, float* coef_ws, cudaStream_t stream,
                    int* ready = nullptr, FoldOutputs fold = {}) {
  const int chunks = chunk_count(tokens);
  constexpr size_t prep_bytes = prepare_smem_bytes<kKeyPad>();
  auto* prep = delta_prepare_kernel<kKeyPad, kExact>;
  cudaFuncSetAttribute(prep, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(prep_bytes));
  const auto c = static_cast<unsigned>(chunks), h = static_cast<unsigned>(heads);
  prep<<<ready != nullptr ? dim3(h, c) : dim3(c, h), kThreads, prep_bytes, stream>>>(
      k, k_stride, alpha, beta, tokens, heads, dk, vec16, chunks, x_ws, coef_ws, ready, fold);
  check_launch("gated_delta_update (prepare)");
}

void check_call(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(ErrorKind::device, std::string(what) + ": " + cudaGetErrorString(e));
}

// The helper stream and fork/join events of the overlapped single pass, one set per thread and
// device, created on first use and kept for the thread's life (as the cuBLAS handle below). The
// helper stream has the highest priority, so prepare blocks are dispatched ahead of any waiting.
struct OverlapStreams {
  cudaStream_t aux = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};
const OverlapStreams& overlap_streams() {
  int device = 0;
  check_call(cudaGetDevice(&device), "gated_delta_update (overlapped): no device");
  thread_local std::vector<OverlapStreams> per_device;
  if (static_cast<size_t>(device) >= per_device.size())
    per_device.resize(static_cast<size_t>(device) + 1);
  OverlapStreams& o = per_device[static_cast<size_t>(device)];
  if (o.aux == nullptr) {
    int least = 0, greatest = 0;
    check_call(cudaDeviceGetStreamPriorityRange(&least, &greatest), "stream priorities");
    check_call(cudaStreamCreateWithPriority(&o.aux, cudaStreamNonBlocking, greatest),
               "gated_delta_update (overlapped): helper stream");
    check_call(cudaEventCreateWithFlags(&o.fork, cudaEventDisableTiming), "fork event");
    check_call(cudaEventCreateWithFlags(&o.join, cudaEventDisableTiming), "join event");
  }
  return o;
}

// Whether the overlapped single pass can run `blocks` recurrence blocks: all of them resident at
// once with a multiprocessor left free for prepare blocks (waiting recurrence blocks must never
// keep the prepare blocks they wait for from starting). With blocks <= multiprocessors - 1, some
// multiprocessor holds no recurrence block whatever their occupancy.
bool overlap_fits(long long blocks) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return blocks <= sms - 1;
}

// Runs prepare(on_stream, ready) and then recurrence(ready) for one update. In order on `stream`
// (ready nullptr), or overlapped where ready_ws is set and overlap_fits(blocks): the `flags`
// ready flags reset on `stream`, prepare forked onto the helper stream, the recurrence on
// `stream` beside it (copying each chunk once its flag is set), and `stream` joined to the helper
// after both.
template <class Prepare, class Recurrence>
void run_prepare_and_recurrence(cudaStream_t stream, int* ready_ws, size_t flags, long long blocks,
                                Prepare&& prepare, Recurrence&& recurrence) {
  if (ready_ws == nullptr || !overlap_fits(blocks)) {
    prepare(stream, nullptr);
    recurrence(nullptr);
    return;
  }
  const OverlapStreams& o = overlap_streams();
  check_call(cudaMemsetAsync(ready_ws, 0, sizeof(int) * flags, stream),
             "gated_delta_update (ready flags)");
  check_call(cudaEventRecord(o.fork, stream), "gated_delta_update (fork)");
  check_call(cudaStreamWaitEvent(o.aux, o.fork, 0), "gated_delta_update (fork)");
  prepare(o.aux, ready_ws);
  check_call(cudaEventRecord(o.join, o.aux), "gated_delta_update (join)");
  recurrence(ready_ws);
  check_call(cudaStreamWaitEvent(stream, o.join, 0), "gated_delta_update (join)");
}

// ready_ws: heads x chunks flags (the overlapped single pass), or nullptr.
template <int kKeyPad, bool kExact>
void launch_chunked(float* s, const float* k, int k_stride, const float* v, int v_stride,
                    const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                    float* x_ws, float* coef_ws, cudaStream_t stream, int* ready_ws = nullptr) {
  const int chunks = chunk_count(tokens);
  const bool vec16 = can_vec16(k, k_stride, v, v_stride, dk, dv);
  constexpr size_t recur_bytes = RecurLayout<kKeyPad>::bytes;
  auto* recur = delta_recur_kernel<kKeyPad, kExact>;
  cudaFuncSetAttribute(recur, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(recur_bytes));
  const dim3 grid(static_cast<unsigned>((dv + kTile - 1) / kTile), static_cast<unsigned>(heads));
  run_prepare_and_recurrence(
      stream, ready_ws, static_cast<size_t>(heads) * chunks, static_cast<long long>(grid.x) * heads,
      [&](cudaStream_t on, int* ready) {
        launch_prepare<kKeyPad, kExact>(k, k_stride, alpha, beta, tokens, heads, dk, vec16, x_ws,
                                        coef_ws, on, ready);
      },
      [&](const int* ready) {
        recur<<<grid, kThreads, recur_bytes, stream>>>(s, k, k_stride, v, v_stride, tokens, dk, dv,
                                                       vec16, chunks, x_ws, coef_ws, ready);
        check_launch("gated_delta_update (recurrence)");
      });
}

template <bool kExact>
void dispatch_chunked(float* s, const float* k, int k_stride, const float* v, int v_stride,
                      const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                      float* x_ws, float* coef_ws, cudaStream_t stream, int* ready_ws) {
  with_key_pad(dk, [&](auto pad) {
    launch_chunked<decltype(pad)::value, kExact>(s, k, k_stride, v, v_stride, alpha, beta, tokens,
                                                 heads, dk, dv, x_ws, coef_ws, stream, ready_ws);
  });
}

template <int kKeyPad>
void launch_fma(float* s, const float* k, int k_stride, const float* v, int v_stride,
                const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                float* x_ws, float* coef_ws, cudaStream_t stream) {
  const int chunks = chunk_count(tokens);
  const bool vec16 = can_vec16(k, k_stride, v, v_stride, dk, dv);
  // The gram matrix in 3xTF32: the whole update stays at fp32 accuracy.
  launch_prepare<kKeyPad, true>(k, k_stride, alpha, beta, tokens, heads, dk, vec16, x_ws, coef_ws,
                                stream);
  constexpr size_t bytes = FmaLayout<kKeyPad>::bytes;
  auto* recur = delta_recur_fma_kernel<kKeyPad>;
  cudaFuncSetAttribute(recur, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  const unsigned tiles = static_cast<unsigned>((dv + kTile - 1) / kTile);
  recur<<<dim3(tiles, static_cast<unsigned>(heads)), kThreads, bytes, stream>>>(
      s, k, k_stride, v, v_stride, tokens, dk, dv, vec16, chunks, x_ws, coef_ws);
  check_launch("gated_delta_update (FMA recurrence)");
}

void dispatch_fma(float* s, const float* k, int k_stride, const float* v, int v_stride,
                  const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                  float* x_ws, float* coef_ws, cudaStream_t stream) {
  with_key_pad(dk, [&](auto pad) {
    launch_fma<decltype(pad)::value>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk,
                                     dv, x_ws, coef_ws, stream);
  });
}

// Value columns of U0' in the folded workspace: dv rounded up to whole recurrence tiles.
int folded_dv_pad(int dv) {
  return (dv + kTile - 1) / kTile * kTile;
}

// Floats of W' and U0' behind the base workspace (folded single pass).
size_t folded_floats(int tokens, int heads, int dk, int dv) {
  return static_cast<size_t>(heads) * chunk_count(tokens) * kChunk *
         (static_cast<size_t>(key_pad(dk)) + folded_dv_pad(dv));
}

// Folded single pass: prepare writes W' and U0' (no X), then the folded recurrence. ready_ws:
// as launch_chunked's (the overlapped folded schedule), or nullptr.
template <int kKeyPad, bool kExact>
void launch_folded(float* s, const float* k, int k_stride, const float* v, int v_stride,
                   const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                   float* coef_ws, float* fold_ws, cudaStream_t stream, int* ready_ws) {
  const int chunks = chunk_count(tokens);
  const bool vec16 = can_vec16(k, k_stride, v, v_stride, dk, dv);
  const int dv_pad = folded_dv_pad(dv);
  float* w_ws = fold_ws;
  float* u_ws = fold_ws + static_cast<size_t>(heads) * chunks * kChunk * kKeyPad;
  const FoldOutputs fold{v, v_stride, dv, dv_pad, w_ws, u_ws};
  constexpr size_t recur_bytes = RecurLayout<kKeyPad, true>::bytes;
  auto* recur = delta_recur_kernel<kKeyPad, kExact, true>;
  cudaFuncSetAttribute(recur, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(recur_bytes));
  const dim3 grid(static_cast<unsigned>(dv_pad / kTile), static_cast<unsigned>(heads));
  run_prepare_and_recurrence(
      stream, ready_ws, static_cast<size_t>(heads) * chunks, static_cast<long long>(grid.x) * heads,
      [&](cudaStream_t on, int* ready) {
        launch_prepare<kKeyPad, kExact>(k, k_stride, alpha, beta, tokens, heads, dk, vec16, nullptr,
                                        coef_ws, on, ready, fold);
      },
      [&](const int* ready) {
        recur<<<grid, kThreads, recur_bytes, stream>>>(s, k, k_stride, u_ws, dv_pad, tokens, dk, dv,
                                                       vec16, chunks, w_ws, coef_ws, ready);
        check_launch("gated_delta_update (folded recurrence)");
      });
}

template <bool kExact>
void dispatch_folded(float* s, const float* k, int k_stride, const float* v, int v_stride,
                     const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                     float* coef_ws, float* fold_ws, cudaStream_t stream, int* ready_ws) {
  with_key_pad(dk, [&](auto pad) {
    launch_folded<decltype(pad)::value, kExact>(s, k, k_stride, v, v_stride, alpha, beta, tokens,
                                                heads, dk, dv, coef_ws, fold_ws, stream, ready_ws);
  });
}

int group_tiles(int width) {
  return (width + kGroupCols - 1) / kGroupCols;
}

template <int kKeyPad, bool kExact>
void launch_grouped(float* s, const float* k, int k_stride, const float* v, int v_stride,
                    const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                    int groups, float* x_ws, float* coef_ws, float* aug_ws, cudaStream_t stream) {
  const int chunks = chunk_count(tokens);
  const bool vec16 = can_vec16(k, k_stride, v, v_stride, dk, dv);
  launch_prepare<kKeyPad, kExact>(k, k_stride, alpha, beta, tokens, heads, dk, vec16, x_ws, coef_ws,
                                  stream);

  constexpr size_t group_bytes = GroupLayout<kKeyPad>::bytes;
  auto* group = delta_group_kernel<kKeyPad, kExact>;
  cudaFuncSetAttribute(group, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(group_bytes));
  const int tiles = group_tiles(groups > 1 ? dk + dv : dv);
  group<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(heads),
               static_cast<unsigned>(groups)),
          kThreads, group_bytes, stream>>>(s, k, k_stride, v, v_stride, tokens, heads, dk, dv,
                                           vec16, chunks, groups, x_ws, coef_ws, aug_ws);
  check_launch("gated_delta_update (groups)");
  if (groups < 2) return;

  constexpr size_t combine_bytes = CombineLayout<kKeyPad>::bytes;
  auto* combine = delta_combine_kernel<kKeyPad, kExact>;
  cudaFuncSetAttribute(combine, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(combine_bytes));
  const unsigned combine_tiles = static_cast<unsigned>((dv + kTile - 1) / kTile);
  combine<<<dim3(combine_tiles, static_cast<unsigned>(heads)), kThreads, combine_bytes, stream>>>(
      s, heads, dk, dv, groups, dk % 4 == 0 && dv % 4 == 0, aug_ws);
  check_launch("gated_delta_update (combine)");
}

template <bool kExact>
void dispatch_grouped(float* s, const float* k, int k_stride, const float* v, int v_stride,
                      const float* alpha, const float* beta, int tokens, int heads, int dk, int dv,
                      int groups, float* x_ws, float* coef_ws, float* aug_ws, cudaStream_t stream) {
  with_key_pad(dk, [&](auto pad) {
    launch_grouped<decltype(pad)::value, kExact>(s, k, k_stride, v, v_stride, alpha, beta, tokens,
                                                 heads, dk, dv, groups, x_ws, coef_ws, aug_ws,
                                                 stream);
  });
}

// Resident grouped blocks per multiprocessor (shared memory bounds it: one at dk 128).
template <int kKeyPad, bool kExact>
int group_blocks_per_sm() {
  auto* group = delta_group_kernel<kKeyPad, kExact>;
  constexpr size_t bytes = GroupLayout<kKeyPad>::bytes;
  int blocks = 0;
  if (cudaFuncSetAttribute(group, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, group, kThreads, bytes) !=
          cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return std::max(blocks, 1);
}

int group_blocks_per_sm(int dk, bool exact) {
  switch (key_pad(dk)) {
    case 32:
      return exact ? group_blocks_per_sm<32, true>() : group_blocks_per_sm<32, false>();
    case 64:
      return exact ? group_blocks_per_sm<64, true>() : group_blocks_per_sm<64, false>();
    default:
      return exact ? group_blocks_per_sm<128, true>() : group_blocks_per_sm<128, false>();
  }
}

// The most groups the automatic schedule uses for `chunks` chunks (1: single pass only).
int max_auto_groups(int chunks) {
  if (chunks < kGroupedMinChunks) return 1;
  return std::min(kMaxGroups, chunks / kMinChunksPerGroup);
}

// Groups actually run for a requested count (<= 0: the automatic maximum).
int clamp_groups(int groups, int chunks) {
  if (groups <= 0) return max_auto_groups(chunks);
  return std::clamp(groups, 1, std::min(chunks, 1024));
}

size_t base_workspace_floats(int tokens, int heads) {
  return x_floats(tokens, heads) + static_cast<size_t>(heads) * chunk_count(tokens) * kCoefs;
}

size_t aug_floats(int heads, int dk, int dv, int groups) {
  return static_cast<size_t>(groups - 1) * heads * dk * (static_cast<size_t>(dk) + dv);
}

// One cuBLAS handle per thread and device, created on first use and kept for the life of the
// thread (never destroyed: destroying at static-destruction time can outlive the CUDA runtime).
cublasHandle_t thread_cublas_handle() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) fail(ErrorKind::device, "memory_read: no CUDA device");
  thread_local std::vector<cublasHandle_t> handles;
  if (static_cast<size_t>(device) >= handles.size())
    handles.resize(static_cast<size_t>(device) + 1, nullptr);
  cublasHandle_t& handle = handles[static_cast<size_t>(device)];
  if (handle == nullptr && cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    handle = nullptr;
    fail(ErrorKind::device, "memory_read: cublasCreate failed");
  }
  return handle;
}

}  // namespace

size_t gated_delta_workspace_bytes(int tokens, int heads, int dk, int dv, int groups) {
  if (tokens <= 0 || heads <= 0) return 0;
  const int g = clamp_groups(groups, chunk_count(tokens));
  return sizeof(float) * (base_workspace_floats(tokens, heads) +
                          aug_floats(heads, std::max(dk, 0), std::max(dv, 0), g));
}

size_t gated_delta_workspace_bytes(int tokens, int heads) {
  return gated_delta_workspace_bytes(tokens, heads, kDeltaMaxKeyDim, kDeltaMaxKeyDim, 0);
}

size_t gated_delta_workspace_bytes(DeltaSchedule schedule, int tokens, int heads, int dk, int dv,
                                   int groups) {
  if (tokens <= 0 || heads <= 0) return 0;
  const size_t single = gated_delta_workspace_bytes(tokens, heads, dk, dv, 1);
  switch (schedule) {
    case DeltaSchedule::folded_single_pass:
      return single +
             sizeof(float) * folded_floats(tokens, heads, std::max(dk, 0), std::max(dv, 0));
    case DeltaSchedule::overlapped_single_pass:
      return single + sizeof(int) * static_cast<size_t>(heads) * chunk_count(tokens);
    case DeltaSchedule::overlapped_folded_single_pass:
      return single +
             sizeof(float) * folded_floats(tokens, heads, std::max(dk, 0), std::max(dv, 0)) +
             sizeof(int) * static_cast<size_t>(heads) * chunk_count(tokens);
    case DeltaSchedule::single_pass:
    case DeltaSchedule::fma_single_pass:
      return single;
    case DeltaSchedule::grouped:
    case DeltaSchedule::automatic:
      break;
  }
  return gated_delta_workspace_bytes(tokens, heads, dk, dv, groups);
}

int gated_delta_groups(int tokens, int heads, int dk, int dv, DeltaPrecision precision) {
  if (tokens <= 0 || heads <= 0 || dk <= 0 || dv <= 0 || dk > kDeltaMaxKeyDim) return 1;
  const int chunks = chunk_count(tokens);
  const int cap = max_auto_groups(chunks);
  if (cap < 2) return 1;
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  const long long slots =
      static_cast<long long>(sms) * group_blocks_per_sm(dk, precision == DeltaPrecision::fp32);
  // Cost in single-pass chunk steps: waves of blocks x chunks per group x kGroupedStepCost (+ half
  // a step per combine step). The single pass runs one 16-column block per (head, tile), one per
  // multiprocessor at dk 128.
  const long long single_blocks = static_cast<long long>(heads) * ((dv + kTile - 1) / kTile);
  const double single_cost =
      static_cast<double>((single_blocks + sms - 1) / std::max(sms, 1)) * chunks;
  const long long first = static_cast<long long>(heads) * group_tiles(dv);
  const long long per_group = static_cast<long long>(heads) * group_tiles(dk + dv);
  int best = 1;
  double best_cost = single_cost;
  for (int g = 2; g <= cap; ++g) {
    const long long blocks = first + (g - 1) * per_group;
    const long long waves = (blocks + slots - 1) / slots;
    const double cost =
        static_cast<double>(waves) * ((chunks + g - 1) / g) * kGroupedStepCost + 0.5 * (g - 1);
    if (cost < best_cost) {
      best = g;
      best_cost = cost;
    }
  }
  return best;
}

void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                        DeltaPrecision precision, DeltaSchedule schedule, int groups) {
  if (!check_update_args("gated_delta_update", s, k, k_stride, v, v_stride, alpha, beta, tokens,
                         heads, dk, dv))
    return;
  const int chunks = chunk_count(tokens);
  int run_groups = 1;  // 1: single pass
  if (schedule == DeltaSchedule::grouped) {
    run_groups = groups > 0 ? clamp_groups(groups, chunks)
                            : gated_delta_groups(tokens, heads, dk, dv, precision);
  } else if (schedule == DeltaSchedule::automatic) {
    run_groups = gated_delta_groups(tokens, heads, dk, dv, precision);
    // A workspace sized for less (an older size, or dv above kDeltaMaxKeyDim): fewer groups.
    while (run_groups > 1 &&
           workspace_bytes < gated_delta_workspace_bytes(tokens, heads, dk, dv, run_groups))
      --run_groups;
  }
  const bool use_grouped = schedule == DeltaSchedule::grouped || run_groups > 1;
  const bool grouping = schedule == DeltaSchedule::grouped || schedule == DeltaSchedule::automatic;
  const size_t need = grouping ? gated_delta_workspace_bytes(tokens, heads, dk, dv, run_groups)
                               : gated_delta_workspace_bytes(schedule, tokens, heads, dk, dv, 1);
  if (workspace == nullptr || workspace_bytes < need ||
      reinterpret_cast<uintptr_t>(workspace) % 256 != 0)
    fail(ErrorKind::invalid_argument, "gated_delta_update: workspace missing, short or unaligned");
  auto* x_ws = static_cast<float*>(workspace);
  float* coef_ws = x_ws + x_floats(tokens, heads);
  float* aug_ws = x_ws + base_workspace_floats(tokens, heads);
  const bool exact = precision == DeltaPrecision::fp32;
  if (schedule == DeltaSchedule::fma_single_pass) {
    dispatch_fma(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv, x_ws, coef_ws,
                 stream);
  } else if (schedule == DeltaSchedule::folded_single_pass ||
             schedule == DeltaSchedule::overlapped_folded_single_pass) {
    // W' and U0' where the grouped schedule keeps its augmented states, then the ready flags.
    int* ready_ws = schedule == DeltaSchedule::overlapped_folded_single_pass
                        ? reinterpret_cast<int*>(aug_ws + folded_floats(tokens, heads, dk, dv))
                        : nullptr;
    if (exact)
      dispatch_folded<true>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv,
                            coef_ws, aug_ws, stream, ready_ws);
    else
      dispatch_folded<false>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv,
                             coef_ws, aug_ws, stream, ready_ws);
  } else if (use_grouped) {
    if (exact)
      dispatch_grouped<true>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv,
                             run_groups, x_ws, coef_ws, aug_ws, stream);
    else
      dispatch_grouped<false>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv,
                              run_groups, x_ws, coef_ws, aug_ws, stream);
  } else {
    // Overlapped: the ready flags where the grouped schedule keeps its augmented states.
    int* ready_ws = schedule == DeltaSchedule::overlapped_single_pass
                        ? reinterpret_cast<int*>(aug_ws)
                        : nullptr;
    if (exact)
      dispatch_chunked<true>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv, x_ws,
                             coef_ws, stream, ready_ws);
    else
      dispatch_chunked<false>(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv, x_ws,
                              coef_ws, stream, ready_ws);
  }
}

void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                        const float* alpha, const float* beta, int tokens, int heads, int dk,
                        int dv, cudaStream_t stream, DeltaPrecision precision,
                        DeltaSchedule schedule, int groups) {
  if (!check_update_args("gated_delta_update", s, k, k_stride, v, v_stride, alpha, beta, tokens,
                         heads, dk, dv))
    return;
  const int chunks = chunk_count(tokens);
  int need_groups = 1;
  if (schedule == DeltaSchedule::grouped)
    need_groups = groups > 0 ? clamp_groups(groups, chunks)
                             : gated_delta_groups(tokens, heads, dk, dv, precision);
  else if (schedule == DeltaSchedule::automatic)
    need_groups = gated_delta_groups(tokens, heads, dk, dv, precision);
  const bool grouping = schedule == DeltaSchedule::grouped || schedule == DeltaSchedule::automatic;
  const size_t bytes = grouping ? gated_delta_workspace_bytes(tokens, heads, dk, dv, need_groups)
                                : gated_delta_workspace_bytes(schedule, tokens, heads, dk, dv, 1);
  void* workspace = nullptr;
  if (cudaMallocAsync(&workspace, bytes, stream) != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorKind::out_of_memory,
         "gated_delta_update: cannot allocate " + std::to_string(bytes >> 20) + " MiB of scratch");
  }
  try {
    gated_delta_update(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv, workspace,
                       bytes, stream, precision, schedule, need_groups);
  } catch (...) {
    cudaFreeAsync(workspace, stream);
    throw;
  }
  if (cudaFreeAsync(workspace, stream) != cudaSuccess) check_launch("gated_delta_update (free)");
}

void gated_delta_update_sequential(float* s, const float* k, int k_stride, const float* v,
                                   int v_stride, const float* alpha, const float* beta, int tokens,
                                   int heads, int dk, int dv, cudaStream_t stream) {
  if (!check_update_args("gated_delta_update_sequential", s, k, k_stride, v, v_stride, alpha, beta,
                         tokens, heads, dk, dv))
    return;
  const dim3 grid(static_cast<unsigned>((dv + 31) / 32), static_cast<unsigned>(heads));
  switch (key_pad(dk)) {
    case 32:
      delta_sequential_kernel<32><<<grid, 32, 0, stream>>>(s, k, k_stride, v, v_stride, alpha, beta,
                                                           tokens, heads, dk, dv);
      break;
    case 64:
      delta_sequential_kernel<64><<<grid, 32, 0, stream>>>(s, k, k_stride, v, v_stride, alpha, beta,
                                                           tokens, heads, dk, dv);
      break;
    default:
      delta_sequential_kernel<128><<<grid, 32, 0, stream>>>(s, k, k_stride, v, v_stride, alpha,
                                                            beta, tokens, heads, dk, dv);
      break;
  }
  check_launch("gated_delta_update_sequential");
}

void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                 int tokens, int heads, int dk, int dv, float scale, cudaStream_t stream,
                 DeltaPrecision precision) {
  if (tokens < 0 || heads < 0 || dk < 0 || dv < 0)
    fail(ErrorKind::invalid_argument, "memory_read: negative size");
  if (tokens == 0 || heads == 0 || dv == 0) return;
  if (q_stride < heads * dk || out_stride < heads * dv || q_stride < 1)
    fail(ErrorKind::invalid_argument, "memory_read: row stride shorter than heads * dim");
  if (s == nullptr || q == nullptr || out == nullptr)
    fail(ErrorKind::invalid_argument, "memory_read: null pointer");
  cublasHandle_t handle = thread_cublas_handle();
  // Column-major view: out_h^T [dv x tokens] = S_h^T [dv x dk] q_h^T [dk x tokens]; S_h stored
  // row-major [dk x dv] is S_h^T column-major with ld dv. Heads are the batch.
  if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS ||
      cublasSetMathMode(handle, precision == DeltaPrecision::tf32
                                    ? CUBLAS_TF32_TENSOR_OP_MATH
                                    : CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
    fail(ErrorKind::device, "memory_read: cuBLAS setup failed");
  const float zero = 0.0f;
  const cublasStatus_t status = cublasSgemmStridedBatched(
      handle, CUBLAS_OP_N, CUBLAS_OP_N, dv, tokens, dk, &scale, s, dv,
      static_cast<long long>(dk) * dv, q, q_stride, dk, &zero, out, out_stride, dv, heads);
  if (status != CUBLAS_STATUS_SUCCESS)
    fail(ErrorKind::device,
         std::string("memory_read: cuBLAS SGEMM failed: ") + cublasGetStatusString(status));
}

}  // namespace strand::cuda
