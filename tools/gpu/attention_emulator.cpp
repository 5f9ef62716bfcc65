// Host emulator for the kernels of kernels/cuda/attention.cu, so that their indexing (swizzle,
// ldmatrix lane addresses, mma fragments, masks, cp.async pipeline) can be checked without a GPU.
// It compiles the real kernel source (kernels.inc, sliced out of attention.cu by
// slice_attention_kernels.py) with one std::thread per CUDA thread, std::barrier for
// __syncthreads and for the warp collectives, and ldmatrix / mma.m16n8k16 / cp.async written from
// the fragment tables of the PTX ISA. cp.async copies land either at issue ("early") or as late as
// cp.async.wait_group allows ("late"): a missing wait or barrier shows up in one of the two.
// Shared memory starts as garbage (0xCD) and every access is range- and alignment-checked.
// What it cannot show: timing, bank conflicts, register spills, or a misreading of the PTX tables
// themselves (those are cross-checked by the GPU test, tests/cuda/test_cuda_attention.cpp).
// Run through tools/gpu/emulate_attention.sh.
#include <cuda_bf16.h>

#include <array>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "tools/gpu/cuda_emulation.h"

bool g_early_copies = false;  // perform cp.async at issue (true) or as late as allowed (false)

int __any_sync(unsigned, int predicate) {
  WarpCtx& w = my_warp();
  w.u[emu_lane][0] = predicate != 0;
  w.bar.arrive_and_wait();
  int any = 0;
  for (int l = 0; l < 32; ++l) any |= static_cast<int>(w.u[l][0]);
  w.bar.arrive_and_wait();
  return any;
}

uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - cta->smem.data());
}

struct PendingCopy {
  uint32_t dst;
  const void* src;
  bool valid;
};
thread_local std::vector<std::vector<PendingCopy>> copy_groups;
thread_local std::vector<PendingCopy> open_group;
void do_copy(const PendingCopy& c) {
  if (c.dst % 16 != 0 || c.dst + 16 > cta->smem.size()) {
    std::fprintf(stderr, "bad cp.async dst %u\n", c.dst);
    std::abort();
  }
  if (c.valid) {
    if (reinterpret_cast<uintptr_t>(c.src) % 16 != 0) {
      std::fprintf(stderr, "misaligned cp.async src\n");
      std::abort();
    }
    std::memcpy(cta->smem.data() + c.dst, c.src, 16);
  } else {
    std::memset(cta->smem.data() + c.dst, 0, 16);
  }
}
void cp_async_16(uint32_t dst, const void* src, bool valid) {
  if (g_early_copies)
    do_copy({dst, src, valid});
  else
    open_group.push_back({dst, src, valid});
}
void cp_async_commit() {
  copy_groups.push_back(open_group);
  open_group.clear();
}
template <int Pending>
void cp_async_wait() {
  while (copy_groups.size() > static_cast<size_t>(Pending)) {
    for (const auto& c : copy_groups.front()) do_copy(c);
    copy_groups.erase(copy_groups.begin());
  }
}

uint16_t load16(uint32_t byte_address) {
  uint16_t v;
  if (byte_address + 2 > cta->smem.size()) {
    std::fprintf(stderr, "ldmatrix out of range\n");
    std::abort();
  }
  std::memcpy(&v, cta->smem.data() + byte_address, 2);
  return v;
}

void ldmatrix_common(uint32_t (&r)[4], uint32_t address, bool trans) {
  WarpCtx& w = my_warp();
  w.u[emu_lane][0] = address;
  w.bar.arrive_and_wait();
  const int g = emu_lane / 4, t = emu_lane % 4;
  for (int m = 0; m < 4; ++m) {
    auto element = [&](int row, int col) {
      const uint32_t row_address = w.u[8 * m + row][0];
      if (row_address % 16 != 0) {
        std::fprintf(stderr, "misaligned ldmatrix row\n");
        std::abort();
      }
      return static_cast<uint32_t>(load16(row_address + 2 * col));
    };
    const uint32_t lo = trans ? element(2 * t, g) : element(g, 2 * t);
    const uint32_t hi = trans ? element(2 * t + 1, g) : element(g, 2 * t + 1);
    r[m] = lo | (hi << 16);
  }
  w.bar.arrive_and_wait();
}
void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  ldmatrix_common(r, address, false);
}
void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  ldmatrix_common(r, address, true);
}

float bf16_to_float(uint32_t bits16) {
  return std::bit_cast<float>(bits16 << 16);
}

void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  WarpCtx& w = my_warp();
  for (int i = 0; i < 4; ++i) w.u[emu_lane][i] = a[i];
  w.u[emu_lane][4] = b0;
  w.u[emu_lane][5] = b1;
  w.bar.arrive_and_wait();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 8; ++e) {  // PTX: a_e, register e/2, half e%2
      const int row = (e < 2 || (e >= 4 && e < 6)) ? g : g + 8;
      const int col = t * 2 + (e & 1) + (e >= 4 ? 8 : 0);
      A[row][col] = bf16_to_float((w.u[l][e / 2] >> (16 * (e % 2))) & 0xffff);
    }
    for (int e = 0; e < 4; ++e) {  // b_e
      const int row = t * 2 + (e & 1) + (e >= 2 ? 8 : 0);
      B[row][g] = bf16_to_float((w.u[l][4 + e / 2] >> (16 * (e % 2))) & 0xffff);
    }
  }
  const int g = emu_lane / 4, t = emu_lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0);
    const int col = t * 2 + (e & 1);
    float acc = d[e];
    for (int kx = 0; kx < 16; ++kx) acc += A[row][kx] * B[kx][col];
    d[e] = acc;
  }
  w.bar.arrive_and_wait();
}

float fast_exp2(float x) {
  return std::exp2(x);
}
uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  uint32_t u;
  std::memcpy(&u, &pair, 4);
  return u;
}

namespace emu {
using bfloat16 = __nv_bfloat16;
using std::fmaf;
using std::fmaxf;
using std::fminf;
#include "kernels.inc"
}  // namespace emu

template <typename Params>
void launch(void (*kernel)(Params), Params p, int grid_x, int grid_y, int threads, size_t smem) {
  // Shared memory starts as garbage (0xCD): every read must come from a write.
  emu_launch(grid_x, grid_y, threads, smem, 0xCD, [&] {
    copy_groups.clear();
    open_group.clear();
    kernel(p);
    if (!copy_groups.empty() || !open_group.empty()) {
      std::fprintf(stderr, "cp.async groups left pending\n");
      std::abort();
    }
  });
}

float round_bf16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::bit_cast<float>(bits & 0xffff0000u);
}

// Exact attention in double on the given (already rounded) inputs.
std::vector<double> reference(const std::vector<float>& q, int qs, const std::vector<float>& k,
                              int ks, const std::vector<float>& v, int vs, int tq, int tk,
                              int heads, int D, float scale) {
  std::vector<double> out(static_cast<size_t>(tq) * heads * D);
  std::vector<double> s(tk);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < tq; ++i) {
      double mx = -INFINITY;
      for (int j = 0; j < tk; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += double(q[i * qs + h * D + d]) * k[j * ks + h * D + d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (int j = 0; j < tk; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (int j = 0; j < tk; ++j) acc += s[j] * v[j * vs + h * D + d];
        out[(static_cast<size_t>(i) * heads + h) * D + d] = acc / sum;
      }
    }
  return out;
}

struct Case {
  int tq, tk, heads, D, pad, out_pad;
  float scale_factor, amp;
  bool ramp = false;  // key j scaled by 0.2 + 2 j / tk: the row max keeps growing over the tiles
};

// The kernel variants of kernels/cuda/attention.h (AttentionVariant 1..8), by their template
// arguments: the baseline kernel <D, BlockN>, the tuned one <D, BlockN, Warps, MTiles, MinBlocks>.
struct Variant {
  const char* name;
  bool tuned;
  int block_n, warps, m_tiles, min_blocks;
};
const Variant kVariants[] = {
    {"baseline_n32", false, 32, 4, 2, 2},   {"baseline_n64", false, 64, 4, 2, 2},
    {"tuned_128x4_n32", true, 32, 4, 2, 2}, {"tuned_128x4_n64", true, 64, 4, 2, 2},
    {"tuned_128x8_n64", true, 64, 8, 1, 2}, {"tuned_128x8_n32", true, 32, 8, 1, 2},
    {"tuned_64x4_n64", true, 64, 4, 1, 2},  {"tuned_64x4_n32", true, 32, 4, 1, 4},
};

template <int D, int BN, int W, int MT, int MB>
void launch_tuned(const emu::FlashParams& p, int heads) {
  using Shape = emu::TunedShape<D, BN, W, MT>;
  launch(&emu::tuned_flash_kernel<D, BN, W, MT, MB>, p,
         (p.tq + Shape::kBlockM - 1) / Shape::kBlockM, heads, Shape::kThreads, Shape::kSharedBytes);
}

template <int D>
void launch_variant(const Variant& v, const emu::FlashParams& p, int heads) {
  if (!v.tuned) {
    const int grid_x = (p.tq + emu::kFlashBlockM - 1) / emu::kFlashBlockM;
    if (v.block_n == 32)
      launch(&emu::flash_attention_bf16_kernel<D, 32>, p, grid_x, heads, emu::kFlashThreads,
             emu::flash_shared_bytes<D, 32>());
    else
      launch(&emu::flash_attention_bf16_kernel<D, 64>, p, grid_x, heads, emu::kFlashThreads,
             emu::flash_shared_bytes<D, 64>());
    return;
  }
  const int key = v.block_n * 1000 + v.warps * 100 + v.m_tiles * 10 + v.min_blocks;
  switch (key) {
    case 32422:
      launch_tuned<D, 32, 4, 2, 2>(p, heads);
      break;
    case 64422:
      launch_tuned<D, 64, 4, 2, 2>(p, heads);
      break;
    case 64812:
      launch_tuned<D, 64, 8, 1, 2>(p, heads);
      break;
    case 32812:
      launch_tuned<D, 32, 8, 1, 2>(p, heads);
      break;
    case 64412:
      launch_tuned<D, 64, 4, 1, 2>(p, heads);
      break;
    case 32414:
      launch_tuned<D, 32, 4, 1, 4>(p, heads);
      break;
    default:
      std::fprintf(stderr, "no such variant\n");
      std::abort();
  }
}

int run_case(const Case& c, const Variant* variant) {
  const bool flash = variant != nullptr;
  const int width = c.heads * c.D, qs = width + c.pad, ks = width + 2 * c.pad, vs = width + c.pad,
            os = width + c.out_pad;
  std::mt19937 rng(c.tq * 7 + c.tk);
  std::uniform_real_distribution<float> u(-c.amp, c.amp);
  auto fill = [&](int rows, int stride) {
    std::vector<float> x(static_cast<size_t>(rows) * stride);
    for (auto& e : x) e = round_bf16(u(rng));
    return x;
  };
  auto q = fill(c.tq, qs), k = fill(c.tk, ks), v = fill(c.tk, vs);
  if (c.ramp)
    for (int j = 0; j < c.tk; ++j)
      for (int x = 0; x < ks; ++x)
        k[static_cast<size_t>(j) * ks + x] =
            round_bf16(k[static_cast<size_t>(j) * ks + x] * (0.2f + 2.0f * j / c.tk));
  const float scale = c.scale_factor / std::sqrt(float(c.D));
  std::vector<float> out(static_cast<size_t>(c.tq) * os, 777.0f);
  if (flash) {
    auto to16 = [](const std::vector<float>& x) {
      std::vector<__nv_bfloat16> y(x.size());
      for (size_t i = 0; i < x.size(); ++i) y[i] = __float2bfloat16_rn(x[i]);
      return y;
    };
    auto q16 = to16(q), k16 = to16(k), v16 = to16(v);
    emu::FlashParams p{};
    p.q = q16.data();
    p.k = k16.data();
    p.v = v16.data();
    p.out = out.data();
    p.q_stride = qs;
    p.k_stride = ks;
    p.v_stride = vs;
    p.out_stride = os;
    p.tq = c.tq;
    p.tk = c.tk;
    p.scale_log2 = scale * 1.44269504088896341f;
    p.out_pairs = os % 2 == 0;
    if (c.D == 64)
      launch_variant<64>(*variant, p, c.heads);
    else
      launch_variant<128>(*variant, p, c.heads);
  } else {
    emu::ExactParams p{};
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.q_stride = qs;
    p.k_stride = ks;
    p.v_stride = vs;
    p.out_stride = os;
    p.tq = c.tq;
    p.tk = c.tk;
    p.head_dim = c.D;
    p.scale = scale;
    const int grid_x = (c.tq + emu::kExactRows - 1) / emu::kExactRows;
    launch(&emu::attention_fp32_kernel, p, grid_x, c.heads, emu::kExactThreads,
           emu::exact_shared_bytes(c.D));
  }
  const auto ref = reference(q, qs, k, ks, v, vs, c.tq, c.tk, c.heads, c.D, scale);
  double diff = 0, norm = 0;
  int pad_touched = 0, nonfinite = 0;
  for (int i = 0; i < c.tq; ++i) {
    for (int x = 0; x < width; ++x) {
      const double g = out[static_cast<size_t>(i) * os + x],
                   r = ref[static_cast<size_t>(i) * width + x];
      if (!std::isfinite(g)) ++nonfinite;
      diff += (g - r) * (g - r);
      norm += r * r;
    }
    for (int x = width; x < os; ++x) pad_touched += out[static_cast<size_t>(i) * os + x] != 777.0f;
  }
  const double err = std::sqrt(diff / norm);
  const bool ok = nonfinite == 0 && pad_touched == 0 && err < (flash ? 4e-3 : 1e-5);
  std::printf(
      "%s %-15s tq=%d tk=%d heads=%d D=%d pad=%d out_pad=%d scale*%g amp=%g%s copies=%s: "
      "rel_err %.2e nonfinite %d pad_touched %d\n",
      ok ? "OK  " : "FAIL", flash ? variant->name : "fp32", c.tq, c.tk, c.heads, c.D, c.pad,
      c.out_pad, c.scale_factor, c.amp, c.ramp ? " ramp" : "", g_early_copies ? "early" : "late",
      err, nonfinite, pad_touched);
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  // Usage: attention_emulator [quick | variant-name...]: quick runs one shape per variant; names
  // restrict the run to those variants.
  const bool quick = argc > 1 && std::strcmp(argv[1], "quick") == 0;
  std::vector<const Variant*> selected;
  for (const Variant& v : kVariants) {
    bool wanted = argc == 1 || quick;
    for (int i = 1; i < argc; ++i) wanted = wanted || std::strcmp(argv[i], v.name) == 0;
    if (wanted) selected.push_back(&v);
  }
  int failures = 0;
  // Tile edges: tq past a 64- or 128-row CTA, tk not a key-tile multiple, tk = 1, strided rows
  // (pad) and odd output strides, head dims 64 and 128, peaked softmaxes (scale*4, amp 3), a
  // growing row max (ramp: the lazy offsets move several times), negative and zero scales.
  const std::vector<Case> cases = {
      {130, 65, 1, 128, 8, 3, 1, 1},       {77, 100, 2, 64, 8, 0, 1, 1},
      {1, 1, 1, 64, 0, 1, 1, 1},           {129, 200, 1, 64, 0, 2, 4, 3},
      {40, 97, 1, 128, 16, 0, 4, 3},       {70, 1, 1, 128, 8, 1, 1, 1},
      {66, 230, 1, 128, 0, 0, 6, 3, true}, {50, 90, 1, 64, 8, 2, -3, 2},
      {20, 40, 1, 128, 0, 0, 0, 1},
  };
  for (const Variant* v : selected)
    for (bool early : {false, true}) {
      g_early_copies = early;
      // Early copies (no pipelining hazards visible) on the first two shapes only: the late
      // mode is the one that catches a missing wait or barrier.
      const size_t count = quick ? 1 : early ? 2 : cases.size();
      for (size_t i = 0; i < count; ++i) failures += run_case(cases[i], v);
    }
  g_early_copies = false;
  if (argc == 1) {
    failures += run_case({45, 70, 2, 32, 1, 1, 1, 1}, nullptr);
    failures += run_case({33, 40, 1, 80, 3, 2, 4, 3}, nullptr);
    failures += run_case({40, 65, 1, 128, 0, 0, 1, 1}, nullptr);
  }
  std::printf("%d failures\n", failures);
  return failures != 0;
}
