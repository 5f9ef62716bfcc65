#include "kernels/cpu/norm.h"

#include <cmath>
#include <cstddef>

#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

constexpr std::ptrdiff_t kParallelMinElements = std::ptrdiff_t{32} * 1024;

// Sum of f(x[i]) in float with kLanes independent accumulators. Strict IEEE semantics
// (no -ffast-math) forbid the compiler from reordering a single running sum, so the lanes make the
// reduction order explicit: vectorisable, and deterministic regardless of the thread count.
constexpr int kLanes = 8;

template <typename F>
float lane_sum(const float* x, int n, F f) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += f(x[i + l]);
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += f(x[i]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

struct MeanInvStd {
  float mean;
  float inv_std;
};

// Two-pass mean and variance: accurate even when |mean| >> std.
MeanInvStd moments(const float* x, int dim, float eps) {
  const float mean = lane_sum(x, dim, [](float v) { return v; }) / static_cast<float>(dim);
  const float var = lane_sum(x, dim, [mean](float v) { return (v - mean) * (v - mean); }) /
                    static_cast<float>(dim);
  return {mean, 1.0f / std::sqrt(var + eps)};
}

bool worth_parallel(int rows, int dim) {
  return rows > 1 && static_cast<std::ptrdiff_t>(rows) * dim > kParallelMinElements;
}

}  // namespace

void layer_norm(const float* x, float* y, int rows, int dim, const float* weight, const float* bias,
                float eps) {
  if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (worth_parallel(rows, dim))
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<std::ptrdiff_t>(r) * dim;
    float* yr = y + static_cast<std::ptrdiff_t>(r) * dim;
    const auto [mean, inv_std] = moments(xr, dim, eps);
    // Branch per row, not per element, so each inner loop stays a plain vector loop.
    if (weight != nullptr && bias != nullptr) {
      for (int j = 0; j < dim; ++j) yr[j] = (xr[j] - mean) * inv_std * weight[j] + bias[j];
    } else if (weight != nullptr) {
      for (int j = 0; j < dim; ++j) yr[j] = (xr[j] - mean) * inv_std * weight[j];
    } else if (bias != nullptr) {
      for (int j = 0; j < dim; ++j) yr[j] = (xr[j] - mean) * inv_std + bias[j];
    } else {
      for (int j = 0; j < dim; ++j) yr[j] = (xr[j] - mean) * inv_std;
    }
  }
}

void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                         const float* scale, int rows_per_group, int group_stride, float eps) {
  if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (worth_parallel(rows, dim))
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<std::ptrdiff_t>(r) * dim;
    float* yr = y + static_cast<std::ptrdiff_t>(r) * dim;
    const std::ptrdiff_t group_offset =
        static_cast<std::ptrdiff_t>(r / rows_per_group) * group_stride;
    const float* sh = shift + group_offset;
    const float* sc = scale + group_offset;
    const auto [mean, inv_std] = moments(xr, dim, eps);
    for (int j = 0; j < dim; ++j) yr[j] = (xr[j] - mean) * inv_std * (1.0f + sc[j]) + sh[j];
  }
}

void rms_norm(const float* x, float* y, int rows, int dim, const float* weight, float eps) {
  if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (worth_parallel(rows, dim))
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<std::ptrdiff_t>(r) * dim;
    float* yr = y + static_cast<std::ptrdiff_t>(r) * dim;
    const float mean_sq =
        lane_sum(xr, dim, [](float v) { return v * v; }) / static_cast<float>(dim);
    const float inv_rms = 1.0f / std::sqrt(mean_sq + eps);
    if (weight != nullptr) {
      for (int j = 0; j < dim; ++j) yr[j] = xr[j] * inv_rms * weight[j];
    } else {
      for (int j = 0; j < dim; ++j) yr[j] = xr[j] * inv_rms;
    }
  }
}

void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps) {
  if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
  const int width = heads * head_dim;
#pragma omp parallel for schedule(static) \
    num_threads(num_threads()) if (worth_parallel(rows, width))
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      float* v =
          x + static_cast<std::ptrdiff_t>(r) * width + static_cast<std::ptrdiff_t>(h) * head_dim;
      const float sum_sq = lane_sum(v, head_dim, [](float e) { return e * e; });
      const float inv_norm = 1.0f / std::sqrt(sum_sq + eps);
      for (int j = 0; j < head_dim; ++j) v[j] *= inv_norm;
    }
  }
}

}  // namespace strand::cpu
