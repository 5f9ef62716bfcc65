// 2D convolution for the per-frame autoencoder: 3x3, zero padding 1, stride 1 or 2, via im2col +
// sgemm. Layout [channels, height, width], weights [out, in, 3, 3].
#pragma once

namespace strand::cpu {

// out: [c_out, h_out, w_out] with h_out = (h + 2 - 3) / stride + 1 (same for w).
void conv2d_3x3(const float* in, int c_in, int h, int w, const float* weight, const float* bias,
                int c_out, int stride, float* out);

// out: [c, 2h, 2w], nearest neighbour.
void upsample_nearest_2x(const float* in, int c, int h, int w, float* out);

}  // namespace strand::cpu
