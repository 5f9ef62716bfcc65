#include <cuda_bf16.h>

#include "kernels/cuda/conv.h"
#include "kernels/cuda/launch.cuh"

namespace strand::cuda {
namespace {

// cols[(ci * 9 + ky * 3 + kx), (r - r0) * w_out + c] = in[ci, r * stride + ky - 1, c * stride +
// kx - 1], zero outside the image; output rows r0 .. r0 + band_rows - 1. One thread per element,
// consecutive threads along the output row (coalesced writes).
template <typename T>
__global__ void im2col_kernel(const float* __restrict__ in, int c_in, int h, int w, int stride,
                              int w_out, int r0, int band_rows, T* __restrict__ cols) {
  const size_t band_cols = static_cast<size_t>(band_rows) * w_out;
  const size_t total = static_cast<size_t>(c_in) * 9 * band_cols;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(i / band_cols);
    const int q = static_cast<int>(i % band_cols);
    const int ci = p / 9, ky = (p % 9) / 3, kx = p % 3;
    const int y = (r0 + q / w_out) * stride + ky - 1;
    const int x = (q % w_out) * stride + kx - 1;
    float v = 0.0f;
    if (y >= 0 && y < h && x >= 0 && x < w) v = in[(static_cast<size_t>(ci) * h + y) * w + x];
    if constexpr (sizeof(T) == 2) {
      cols[i] = __float2bfloat16_rn(v);
    } else {
      cols[i] = v;
    }
  }
}

// out[co, :] = bias[co] over planes of `plane` floats.
__global__ void bias_planes_kernel(const float* __restrict__ bias, float* __restrict__ out,
                                   int c_out, size_t plane) {
  const size_t total = static_cast<size_t>(c_out) * plane;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = bias != nullptr ? bias[i / plane] : 0.0f;
  }
}

__global__ void upsample_kernel(const float* __restrict__ in, int c, int h, int w,
                                float* __restrict__ out) {
  const int w2 = 2 * w, h2 = 2 * h;
  const size_t total = static_cast<size_t>(c) * h2 * w2;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int x = static_cast<int>(i % w2);
    const size_t rest = i / w2;
    const int y = static_cast<int>(rest % h2);
    const size_t ch = rest / h2;
    out[i] = in[(ch * h + y / 2) * w + x / 2];
  }
}

int band_rows_for(int c_in, int w_out, int h_out, size_t max_elements) {
  const size_t row_elements = static_cast<size_t>(c_in) * 9 * w_out;
  if (row_elements == 0) return h_out;
  const size_t rows = max_elements / row_elements;
  return static_cast<int>(rows < 1 ? 1 : (rows > static_cast<size_t>(h_out) ? h_out : rows));
}

}  // namespace

size_t conv2d_3x3_workspace(int c_in, int h, int w, int stride, size_t max_elements) {
  const int h_out = (h + 2 - 3) / stride + 1, w_out = (w + 2 - 3) / stride + 1;
  if (h_out <= 0 || w_out <= 0) return 0;
  return static_cast<size_t>(band_rows_for(c_in, w_out, h_out, max_elements)) * c_in * 9 * w_out;
}

cublasStatus_t conv2d_3x3(cublasHandle_t handle, GemmInput input, const float* in, int c_in, int h,
                          int w, const void* weight, const float* bias, int c_out, int stride,
                          float* out, void* workspace, size_t workspace_elements,
                          cudaStream_t stream) {
  const int h_out = (h + 2 - 3) / stride + 1, w_out = (w + 2 - 3) / stride + 1;
  if (c_out <= 0 || h_out <= 0 || w_out <= 0) return CUBLAS_STATUS_SUCCESS;
  const size_t plane = static_cast<size_t>(h_out) * w_out;
  // The GEMMs accumulate onto the bias (beta = 1), as the CPU does.
  bias_planes_kernel<<<detail::grid_for(c_out * plane), detail::kThreads, 0, stream>>>(
      bias, out, c_out, plane);
  const int patch_rows = c_in * 9;
  if (patch_rows == 0) return CUBLAS_STATUS_SUCCESS;
  const int band_rows = band_rows_for(c_in, w_out, h_out, workspace_elements);
  for (int r0 = 0; r0 < h_out; r0 += band_rows) {
    const int rows = band_rows < h_out - r0 ? band_rows : h_out - r0;
    const size_t band = static_cast<size_t>(patch_rows) * rows * w_out;
    if (input == GemmInput::bf16) {
      im2col_kernel<<<detail::grid_for(band), detail::kThreads, 0, stream>>>(
          in, c_in, h, w, stride, w_out, r0, rows, static_cast<__nv_bfloat16*>(workspace));
    } else {
      im2col_kernel<<<detail::grid_for(band), detail::kThreads, 0, stream>>>(
          in, c_in, h, w, stride, w_out, r0, rows, static_cast<float*>(workspace));
    }
    // out[:, band] += weight[c_out, c_in * 9] cols[c_in * 9, rows * w_out], ldc = the plane.
    const cublasStatus_t status =
        gemm(handle, input, weight, patch_rows, workspace, rows * w_out, /*trans_b=*/false,
             out + static_cast<size_t>(r0) * w_out, static_cast<int>(plane), c_out, rows * w_out,
             patch_rows, 1.0f);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
  }
  return CUBLAS_STATUS_SUCCESS;
}

void upsample_nearest_2x(const float* in, int c, int h, int w, float* out, cudaStream_t stream) {
  if (c <= 0 || h <= 0 || w <= 0) return;
  const size_t total = static_cast<size_t>(c) * 4 * h * w;
  upsample_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(in, c, h, w, out);
}

}  // namespace strand::cuda
