#include "kernels/cpu/attention.h"
#include "kernels/cpu/fast_exp.h"

#include "kernels/cpu/blas.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

// Below this many multiply-adds (q k^T alone) the whole call runs on one thread.
constexpr std::ptrdiff_t kParallelMinMultiplyAdds = std::ptrdiff_t{256} * 1024;
// Query rows are processed in tiles so that the score matrix stays bounded (~4 MiB) however long
// the key sequence is, instead of tq * tk floats (100 MB at 5000 x 5000).
constexpr std::ptrdiff_t kScoreTileElements = 1 << 20;
constexpr int kLanes = 8;

// Numerically safe softmax of one row in place: subtract the max, exponentiate, normalise.
// Max and sum use kLanes explicit accumulators so the loops vectorise under strict IEEE rules.
void softmax_row(float* row, int n) {
  float lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, -std::numeric_limits<float>::infinity());
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane_max[l] = std::max(lane_max[l], row[i + l]);
  }
  for (int l = 0; i < n; ++i, ++l) lane_max[l] = std::max(lane_max[l], row[i]);
  const float row_max = *std::max_element(lane_max, lane_max + kLanes);

  for (int j = 0; j < n; ++j) {
    const float x = row[j] - row_max;
    row[j] = x < kExpMin ? kExpMin : x;
  }
  for (int j = 0; j < n; ++j) row[j] = exp_clamped(row[j]);

  float acc[kLanes] = {};
  i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += row[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += row[i];
  const float sum =
      ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  const float inv_sum = 1.0f / sum;
  for (int j = 0; j < n; ++j) row[j] *= inv_sum;
}

}  // namespace

void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale) {
  if (tq <= 0 || heads <= 0 || head_dim <= 0) return;
  if (tk <= 0) {
    // Softmax over nothing: define the result as zero rather than 0/0.
    for (int t = 0; t < tq; ++t) {
      std::fill_n(out + static_cast<std::ptrdiff_t>(t) * out_stride, heads * head_dim, 0.0f);
    }
    return;
  }
  const int threads = num_threads();
  const bool parallel = threads > 1 && static_cast<std::ptrdiff_t>(tq) * tk * heads * head_dim >
                                           kParallelMinMultiplyAdds;
  int tile_rows = static_cast<int>(std::clamp<std::ptrdiff_t>(kScoreTileElements / tk, 1, tq));
  if (parallel && heads < threads) {
    // Few heads: cut the queries finer so that every thread gets work.
    const int tiles_per_head = (threads + heads - 1) / heads;
    tile_rows = std::min(tile_rows, (tq + tiles_per_head - 1) / tiles_per_head);
  }
  const int tiles = (tq + tile_rows - 1) / tile_rows;
  const int items = heads * tiles;

  // Each (head, query tile) is independent: one OpenMP thread runs both products (single-threaded
  // OpenBLAS) and the softmax for it, so the scores stay in that core's cache.
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel && items > 1)
  for (int item = 0; item < items; ++item) {
    const int h = item / tiles;
    const int t0 = (item % tiles) * tile_rows;
    const int rows = std::min(tile_rows, tq - t0);
    const std::ptrdiff_t head_offset = static_cast<std::ptrdiff_t>(h) * head_dim;
    // Per-thread scratch reused across calls: attention runs every layer of every step.
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(tile_rows) * static_cast<size_t>(tk));
    // scores[rows, tk] = scale * q_h[t0 : t0 + rows] k_h^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, tk, head_dim, scale,
                q + static_cast<std::ptrdiff_t>(t0) * q_stride + head_offset, q_stride,
                k + head_offset, k_stride, 0.0f, scores.data(), tk);
    for (int r = 0; r < rows; ++r)
      softmax_row(scores.data() + static_cast<std::ptrdiff_t>(r) * tk, tk);
    // out_h[t0 : t0 + rows] = P v_h
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, tk, 1.0f, scores.data(),
                tk, v + head_offset, v_stride, 0.0f,
                out + static_cast<std::ptrdiff_t>(t0) * out_stride + head_offset, out_stride);
  }
}

}  // namespace strand::cpu
