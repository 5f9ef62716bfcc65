#include "kernels/cpu/conv.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

constexpr std::ptrdiff_t kParallelMinElements = std::ptrdiff_t{32} * 1024;
// im2col scratch per band of output rows (~16 MiB): a full-frame column matrix would be
// c_in * 9 * h_out * w_out floats, 150 MB for 64 channels at 256 x 256.
constexpr std::ptrdiff_t kColumnBandElements = 4 << 20;

// cols[(ci * 9 + ky * 3 + kx), (r - r0) * w_out + c] = in[ci, r * stride + ky - 1, c * stride + kx
// - 1] (zero outside the image), for output rows r0 .. r0 + band_rows - 1.
void im2col_band(const float* in, int c_in, int h, int w, int stride, int w_out, int r0,
                 int band_rows, float* cols) {
  const int band_cols = band_rows * w_out;
  const int patch_rows = c_in * 9;
  const bool parallel = static_cast<std::ptrdiff_t>(patch_rows) * band_cols > kParallelMinElements;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int p = 0; p < patch_rows; ++p) {
    const int ci = p / 9;
    const int ky = (p % 9) / 3;
    const int kx = p % 3;
    const float* plane = in + static_cast<std::ptrdiff_t>(ci) * h * w;
    float* dst = cols + static_cast<std::ptrdiff_t>(p) * band_cols;
    // Output columns whose input column c * stride + kx - 1 lies inside [0, w).
    const int c_begin = kx == 0 ? 1 : 0;
    const int c_end = std::max(c_begin, w - kx < 0 ? 0 : std::min(w_out, (w - kx) / stride + 1));
    for (int rr = 0; rr < band_rows; ++rr) {
      const int y = (r0 + rr) * stride + ky - 1;
      float* d = dst + static_cast<std::ptrdiff_t>(rr) * w_out;
      if (y < 0 || y >= h) {
        std::fill_n(d, w_out, 0.0f);
        continue;
      }
      const float* src_row = plane + static_cast<std::ptrdiff_t>(y) * w;
      std::fill(d, d + c_begin, 0.0f);
      for (int c = c_begin; c < c_end; ++c) d[c] = src_row[c * stride + kx - 1];
      std::fill(d + c_end, d + w_out, 0.0f);
    }
  }
}

}  // namespace

void conv2d_3x3(const float* in, int c_in, int h, int w, const float* weight, const float* bias,
                int c_out, int stride, float* out) {
  const int h_out = (h + 2 - 3) / stride + 1;
  const int w_out = (w + 2 - 3) / stride + 1;
  if (c_out <= 0 || h_out <= 0 || w_out <= 0) return;
  const std::ptrdiff_t plane_out = static_cast<std::ptrdiff_t>(h_out) * w_out;
  const int patch_rows = c_in * 9;

  for (int co = 0; co < c_out; ++co) {
    std::fill_n(out + co * plane_out, plane_out, bias != nullptr ? bias[co] : 0.0f);
  }
  if (patch_rows == 0) return;

  const std::ptrdiff_t row_elements = static_cast<std::ptrdiff_t>(patch_rows) * w_out;
  const int band_rows =
      static_cast<int>(std::clamp<std::ptrdiff_t>(kColumnBandElements / row_elements, 1, h_out));
  // Reused across calls: a fresh (zero-filled, freshly mapped) buffer per convolution cost more
  // than the im2col itself. Every element used is written by im2col_band before the GEMM reads it.
  thread_local std::vector<float> cols;
  const size_t needed = static_cast<size_t>(row_elements) * static_cast<size_t>(band_rows);
  if (cols.size() < needed) cols.resize(needed);
  for (int r0 = 0; r0 < h_out; r0 += band_rows) {
    const int rows = std::min(band_rows, h_out - r0);
    im2col_band(in, c_in, h, w, stride, w_out, r0, rows, cols.data());
    // out[:, band] += weight[c_out, c_in * 9] cols[c_in * 9, rows * w_out]; the band is a column
    // range of every output plane, hence ldc = the plane size.
    gemm(weight, cols.data(), out + static_cast<std::ptrdiff_t>(r0) * w_out, c_out, rows * w_out,
         patch_rows, /*trans_b=*/false, 1.0f, 1.0f, patch_rows, rows * w_out,
         static_cast<int>(plane_out));
  }
}

void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) {
  if (c <= 0 || h <= 0 || w <= 0) return;
  const int w2 = 2 * w;
  const bool parallel = static_cast<std::ptrdiff_t>(c) * h * w * 4 > kParallelMinElements;
#pragma omp parallel for collapse(2) schedule(static) num_threads(num_threads()) if (parallel)
  for (int ch = 0; ch < c; ++ch) {
    for (int y = 0; y < h; ++y) {
      const float* src = in + (static_cast<std::ptrdiff_t>(ch) * h + y) * w;
      float* dst = out + (static_cast<std::ptrdiff_t>(ch) * 2 * h + std::ptrdiff_t{2} * y) * w2;
      for (std::ptrdiff_t x = 0; x < w; ++x) {
        dst[2 * x] = src[x];
        dst[2 * x + 1] = src[x];
      }
      std::copy(dst, dst + w2, dst + w2);
    }
  }
}

}  // namespace strand::cpu
