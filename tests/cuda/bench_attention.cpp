// strand-bench-attention: times the CUDA softmax attention at the 1.3B reference shape (4680-token
// blocks, 12 heads x 128, rows of width heads * head_dim as the engine lays them out) against the
// issue-6 target (>= 350 TFLOP/s on one H100 at head dim 128; PyTorch's flash backend ~300,
// cuDNN ~490). One line per configuration:
//   variant: each implementation of the tensor-core kernel alone on bf16 inputs (attention_bf16
//            with an AttentionVariant), with its error against the fp32 path; "(default)" marks
//            the one default_attention_variant() picks for the shape
//   kernel : the default implementation alone (attention_bf16, variant automatic)
//   fp32in : the whole bf16=true call from the engine's fp32 tensors (conversion + kernel)
//   fp32   : the exact fp32 path (for scale)
// TFLOP/s counts 4 * tq * tk * head_dim * heads (Q K^T and P V). Each bf16 result is also checked
// against the GPU's fp32 path (relative error, expected ~1e-3..4e-3 from bf16 rounding).
// Usage: strand-bench-attention [repeats (default 20)]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "tools/gpu/bench_timing.h"

namespace {

constexpr double kTargetTflops = 350.0;         // issue 6, head dim 128 on one H100
constexpr double kH100DenseBf16Tflops = 989.4;  // H100 SXM datasheet, dense (wgmma) peak
constexpr double kH100HbmTbps = 3.35;           // H100 SXM datasheet HBM3 bandwidth

using strand::bench::time_ms;

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  return std::sqrt(diff / std::max(ref, 1e-30));
}

struct Config {
  int tq, tk, heads, head_dim;
  const char* what;
};

void run(const Config& c, int repeats, cudaStream_t stream, bool with_fp32) {
  const int width = c.heads * c.head_dim;
  const size_t q_elems = static_cast<size_t>(c.tq) * width;
  const size_t kv_elems = static_cast<size_t>(c.tk) * width;
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);  // q, k as after the engine's RMSNorm
  std::vector<float> host(q_elems + 2 * kv_elems);
  for (float& x : host) x = normal(rng);

  float *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *out_ref = nullptr;
  __nv_bfloat16* packed = nullptr;
  CHECK_CUDA(cudaMalloc(&q, host.size() * sizeof(float)));
  k = q + q_elems;
  v = k + kv_elems;
  CHECK_CUDA(cudaMalloc(&out, q_elems * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&out_ref, q_elems * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&packed, host.size() * sizeof(__nv_bfloat16)));
  CHECK_CUDA(cudaMemcpy(q, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  __nv_bfloat16* q16 = packed;
  __nv_bfloat16* k16 = q16 + q_elems;
  __nv_bfloat16* v16 = k16 + kv_elems;
  strand::cuda::convert_rows_to_bf16(q, width, q16, c.tq, width, stream);
  strand::cuda::convert_rows_to_bf16(k, width, k16, c.tk, width, stream);
  strand::cuda::convert_rows_to_bf16(v, width, v16, c.tk, width, stream);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const double tflop = 4.0 * c.tq * static_cast<double>(c.tk) * c.head_dim * c.heads * 1e-12;

  // Reference first (fp32 path), then the bf16 result to check against it.
  strand::cuda::attention(q, width, k, width, v, width, out_ref, width, c.tq, c.tk, c.heads,
                          c.head_dim, scale, false, stream);
  strand::cuda::attention_bf16(q16, width, k16, width, v16, width, out, width, c.tq, c.tk, c.heads,
                               c.head_dim, scale, stream);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::vector<float> got(q_elems), want(q_elems);
  CHECK_CUDA(cudaMemcpy(got.data(), out, q_elems * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(want.data(), out_ref, q_elems * sizeof(float), cudaMemcpyDeviceToHost));
  const double err = rel_error(got, want);

  // Every implementation alone (automatic = the default attention() uses), each checked against
  // the fp32 path too: one line per variant, for choosing the defaults in attention.cu.
  for (int index = 1; index < strand::cuda::kAttentionVariantCount; ++index) {
    const auto variant = static_cast<strand::cuda::AttentionVariant>(index);
    CHECK_CUDA(cudaMemset(out, 0, q_elems * sizeof(float)));
    strand::cuda::attention_bf16(q16, width, k16, width, v16, width, out, width, c.tq, c.tk,
                                 c.heads, c.head_dim, scale, stream, variant);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    std::vector<float> variant_out(q_elems);
    CHECK_CUDA(
        cudaMemcpy(variant_out.data(), out, q_elems * sizeof(float), cudaMemcpyDeviceToHost));
    const double variant_ms = time_ms(stream, repeats, [&] {
      strand::cuda::attention_bf16(q16, width, k16, width, v16, width, out, width, c.tq, c.tk,
                                   c.heads, c.head_dim, scale, stream, variant);
    });
    const bool is_default =
        variant == strand::cuda::default_attention_variant(c.tq, c.tk, c.heads, c.head_dim);
    std::printf(
        "variant %-14s tq=%d tk=%d heads=%d dh=%d | %-16s %.3f ms %6.1f TFLOP/s | rel_err vs fp32 "
        "%.2e%s\n",
        c.what, c.tq, c.tk, c.heads, c.head_dim, strand::cuda::attention_variant_name(variant),
        variant_ms, tflop / (variant_ms * 1e-3), rel_error(variant_out, want),
        is_default ? " (default)" : "");
  }
  const double kernel_ms = time_ms(stream, repeats, [&] {
    strand::cuda::attention_bf16(q16, width, k16, width, v16, width, out, width, c.tq, c.tk,
                                 c.heads, c.head_dim, scale, stream);
  });
  const double full_ms = time_ms(stream, repeats, [&] {
    strand::cuda::attention(q, width, k, width, v, width, out, width, c.tq, c.tk, c.heads,
                            c.head_dim, scale, true, stream);
  });
  const double convert_ms = time_ms(stream, repeats, [&] {
    strand::cuda::convert_rows_to_bf16(q, width, q16, c.tq, width, stream);
    strand::cuda::convert_rows_to_bf16(k, width, k16, c.tk, width, stream);
    strand::cuda::convert_rows_to_bf16(v, width, v16, c.tk, width, stream);
  });
  const double kernel_tflops = tflop / (kernel_ms * 1e-3);
  // Roofline floors of the kernel alone: bf16 Q, K, V read once, fp32 out written once.
  const double min_bytes = 2.0 * (q_elems + 2 * kv_elems) + 4.0 * q_elems;
  const double compute_floor_ms = tflop / kH100DenseBf16Tflops * 1e3;
  const double memory_floor_ms = min_bytes / (kH100HbmTbps * 1e12) * 1e3;
  const char* verdict =
      c.head_dim == 128 ? (kernel_tflops >= kTargetTflops ? "MEETS" : "BELOW") : "n/a";
  std::printf(
      "attention %-14s tq=%d tk=%d heads=%d dh=%d | kernel %.3f ms %.1f TFLOP/s (%s; %.0f%% of "
      "dense bf16 peak; target %.0f: %s) | fp32in %.3f ms %.1f TFLOP/s (convert %.3f ms) | bf16 vs "
      "fp32 rel_err %.2e\n",
      c.what, c.tq, c.tk, c.heads, c.head_dim, kernel_ms, kernel_tflops,
      strand::cuda::attention_variant_name(
          strand::cuda::default_attention_variant(c.tq, c.tk, c.heads, c.head_dim)),
      100.0 * kernel_tflops / kH100DenseBf16Tflops, kTargetTflops, verdict, full_ms,
      tflop / (full_ms * 1e-3), convert_ms, err);
  std::printf(
      "attention %-14s roofline floors (H100 SXM datasheet): compute %.3f ms, memory %.3f ms\n",
      c.what, compute_floor_ms, memory_floor_ms);
  if (with_fp32) {
    const double fp32_ms = time_ms(stream, 2, [&] {
      strand::cuda::attention(q, width, k, width, v, width, out_ref, width, c.tq, c.tk, c.heads,
                              c.head_dim, scale, false, stream);
    });
    std::printf("attention %-14s tq=%d tk=%d heads=%d dh=%d | fp32 path %.3f ms %.1f TFLOP/s\n",
                c.what, c.tq, c.tk, c.heads, c.head_dim, fp32_ms, tflop / (fp32_ms * 1e-3));
  }
  std::fflush(stdout);
  cudaFree(q);
  cudaFree(out);
  cudaFree(out_ref);
  cudaFree(packed);
}

}  // namespace

int main(int argc, char** argv) {
  if (strand::cuda::device_count() == 0) {
    std::printf("strand-bench-attention: no CUDA device\n");
    return 0;
  }
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  std::printf("device: %s; repeats %d; wgmma kernel: %s\n",
              strand::cuda::device_description(0).c_str(), repeats,
              strand::cuda::attention_wgmma_available() ? "available" : "not available (falls back)");
  cudaStream_t stream = nullptr;
  CHECK_CUDA(cudaStreamCreate(&stream));
  const Config configs[] = {
      {4680, 4680, 12, 128, "hybrid-block"},  // the issue-6 target shape
      {4680, 4680, 12, 64, "hybrid-dh64"},
      {4680, 4680, 24, 64, "hybrid-24x64"},   // same width 1536 with dh 64
      {4680, 14040, 12, 128, "kv-3-blocks"},  // softmax_kv layer, 2 cached blocks + current
      {1560, 1560, 12, 128, "small-block"},   // shorter blocks: wave-quantisation check
      {4680, 512, 12, 128, "cross-prompt"},   // cross-attention to 512 prompt tokens
  };
  bool first = true;
  for (const Config& c : configs) {
    run(c, repeats, stream, first);
    first = false;
  }
  cudaStreamDestroy(stream);
  return 0;
}
