// Softmax attention on the GPU (see attention.h for the contract).
//
// The kernels:
//  - flash_attention_bf16_kernel<D, BlockN>: FlashAttention-2 style. A CTA of 4 warps owns 128
//    query rows of one head (32 rows per warp, so each K/V fragment read from shared memory feeds
//    two m16 tiles); K/V tiles of BlockN keys are double-buffered with cp.async; Q K^T and P V
//    run on mma.sync m16n8k16 bf16 with fp32 accumulators; the softmax statistics stay in fp32.
//  - tuned_flash_kernel<D, BlockN, Warps, MTiles, MinBlocks>: the same method with separate K / V
//    pipeline stages, lazy rescaling and an FFMA exponent, in several CTA shapes (see its comment).
//    Which one runs is an AttentionVariant (attention.h); the defaults per shape are the
//    kDefaultVariant* constants below.
//  - attention_fp32_kernel: the exact path, a tiled online softmax with fp32 FMA and expf.
//  - on Hopper, the wgmma kernels of attention_sm90.cu (variants wgmma_*; the defaults at head
//    dim 128 there, with tuned_128x4_n32 as their fallback elsewhere).
// tools/gpu/emulate_attention.sh runs the first three kernels' source on the CPU (no GPU needed;
// it cannot emulate wgmma).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_sm90.h"
#include "strand/error.h"

namespace strand::cuda {
namespace {

using bfloat16 = __nv_bfloat16;

[[noreturn]] void throw_cuda(ErrorKind kind, const char* what, cudaError_t status) {
  throw Error(kind, std::string("CUDA attention: ") + what + ": " + cudaGetErrorString(status));
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, what, status);
}

// Default implementation per shape (default_attention_variant). To switch after a benchmark run,
// change the one constant concerned: long key sequences at head dim 128 / 64, short ones.
// The wgmma variants fall back to tuned_128x4_n32 where they cannot run (not an sm_90 GPU).
// H200, 2026-11-28: wgmma_pipe 355.8 TFLOP/s vs 268.8 (tuned_128x4_n32) at 4680 keys; 260.8 vs
// 220.4 (baseline_n32) at 512 keys.
constexpr AttentionVariant kDefaultVariantD128 = AttentionVariant::wgmma_pipe_128x2_n128;
constexpr AttentionVariant kDefaultVariantD64 = AttentionVariant::baseline_n64;
constexpr AttentionVariant kDefaultVariantShortKeys = AttentionVariant::wgmma_pipe_128x2_n128;
constexpr int kShortKeys = 1024;  // tk at or below this counts as short (cross-attention: 512)

// ---------------------------------------------------------------------------------------------
// PTX wrappers (sm_80+ instructions, all valid on sm_90).

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global->shared copy that bypasses L1; valid == false writes 16 zero bytes instead
// (src-size 0 reads nothing), which pads partial tiles with zeros.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// d += a b for a 16x16 (row-major) bf16 A, a 16x8 (column-major) bf16 B and a 16x8 fp32 D.
__device__ __forceinline__ void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x on the special-function unit; ex2.approx(-inf) = +0, which the online softmax relies on.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats rounded to bf16 in one 32-bit register, `low` in the low half (the element with the
// smaller column index in an mma fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel.

constexpr int kFlashWarps = 4;
constexpr int kFlashThreads = kFlashWarps * 32;
constexpr int kFlashRowsPerWarp = 32;                          // two m16 tiles
constexpr int kFlashBlockM = kFlashWarps * kFlashRowsPerWarp;  // 128 query rows per CTA
// Keys per tile (BlockN): at D = 128, 32 keeps the 128 output accumulators, the 32 score
// accumulators and the fragments within 255 registers (64 spills ~150 bytes per thread; both are
// built, variants baseline_n32 / baseline_n64, so that the benchmark can compare them).

template <int D, int BlockN>
constexpr size_t flash_shared_bytes() {
  // Q [128][D] + K [2 stages][BlockN][D] + V [2 stages][BlockN][D], bf16.
  return static_cast<size_t>(kFlashBlockM + 4 * BlockN) * D * sizeof(bfloat16);
}

struct FlashParams {
  const bfloat16* q;
  const bfloat16* k;
  const bfloat16* v;
  float* out;
  int64_t q_stride, k_stride, v_stride, out_stride;  // elements between consecutive tokens
  int tq, tk;
  float scale_log2;  // scale * log2(e): the softmax runs in base 2
  bool out_pairs;    // out and out_stride allow 8-byte float2 stores
};

// Element offset of (row, 16-byte chunk) in a [rows][D] bf16 tile. The chunk index is XORed with
// the row's low 3 bits, so the 8 row addresses of one ldmatrix 8x8 matrix (same logical chunk,
// 8 consecutive rows) fall in 8 different 16-byte bank groups: no bank conflicts, for D = 64 (128-
// byte rows) as for D = 128 (256-byte rows).
template <int D>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// Starts the async copy of rows [row0, row0 + Rows) of a [tokens][D] slice (row stride `stride`)
// into a swizzled shared tile, spread over Threads threads; rows at or past `limit` become zeros.
template <int D, int Rows, int Threads>
__device__ __forceinline__ void load_rows_async(bfloat16* tile, const bfloat16* slice,
                                                int64_t stride, int row0, int limit, int thread) {
  constexpr int kChunks = D / 8;
  constexpr int kTotal = Rows * kChunks;
  static_assert(kTotal % Threads == 0, "tile chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < kTotal / Threads; ++i) {
    const int index = thread + i * Threads;
    const int row = index / kChunks;
    const int chunk = index % kChunks;
    const int token = row0 + row;
    const bool valid = token < limit;
    const bfloat16* src = valid ? slice + static_cast<int64_t>(token) * stride + chunk * 8 : slice;
    cp_async_16(shared_address(tile + swizzled<D>(row, chunk)), src, valid);
  }
}

// Byte offset of the swizzled 16-byte chunk 2 kl + bit within a 128-byte span, given
// lane_bits = bit ^ (row & 7).
__device__ __forceinline__ uint32_t chunk_swizzle(int kl, uint32_t lane_bits) {
  return ((static_cast<uint32_t>(kl) * 2u) ^ lane_bits) << 4;
}

// The CTA's dynamic shared memory: Q [BlockM][D], then K and V [2 stages][BlockN][D] each, bf16.
struct FlashTiles {
  bfloat16* q;
  bfloat16* k;
  bfloat16* v;
};

template <int D, int BlockM, int BlockN>
__device__ __forceinline__ FlashTiles flash_tiles(unsigned char* shared_raw) {
  FlashTiles tiles;
  tiles.q = reinterpret_cast<bfloat16*>(shared_raw);
  tiles.k = tiles.q + BlockM * D;
  tiles.v = tiles.k + 2 * BlockN * D;
  return tiles;
}

// What both tensor-core kernels derive from the launch: the thread's place and the head's slices.
struct FlashCta {
  int thread, warp, lane, head;
  int m0;  // first query row of the CTA
  const bfloat16* q;
  const bfloat16* k;
  const bfloat16* v;
};

template <int D, int BlockM>
__device__ __forceinline__ FlashCta flash_cta(const FlashParams& p) {
  FlashCta cta;
  cta.thread = static_cast<int>(threadIdx.x);
  cta.warp = cta.thread / 32;
  cta.lane = cta.thread % 32;
  cta.head = static_cast<int>(blockIdx.y);
  cta.m0 = static_cast<int>(blockIdx.x) * BlockM;
  cta.q = p.q + static_cast<int64_t>(cta.head) * D;
  cta.k = p.k + static_cast<int64_t>(cta.head) * D;
  cta.v = p.v + static_cast<int64_t>(cta.head) * D;
  return cta;
}

// Zeroes MTiles x Tiles mma accumulators.
template <int MTiles, int Tiles>
__device__ __forceinline__ void zero_accumulators(float (&acc)[MTiles][Tiles][4]) {
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < Tiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;
}

// Per thread: rows g and g + 8 of each m16 tile. The reference logit (the row max, or the lazy
// offset that tracks it) starts at -inf; row_sum, this thread's partial sum (the quad's total is
// taken at the end), at 0.
template <int MTiles>
__device__ __forceinline__ void init_row_stats(float (&reference)[MTiles][2],
                                               float (&row_sum)[MTiles][2]) {
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      reference[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;
    }
}

// Shared byte addresses of the lane's ldmatrix rows in the Q tile (from the warp's first row) and
// in stage 0 of the K and V tiles. Every ldmatrix row address has row % 8 == lane % 8.
// Q (A operand): lanes 0-15 rows 0-15 at dims +0..7, lanes 16-31 the same rows at dims +8..15
// (matrices a0..a3 in order). V (B operand of P V, loaded transposed): lanes 0-7 keys +0..7
// dims +0..7, lanes 8-15 keys +8..15 dims +0..7, lanes 16-31 the same at dims +8..15. Both
// take the high-chunk bit from lane / 16.
// K (B operand of Q K^T, rows = keys = n, columns = dims = k, i.e. B column-major as mma wants):
// lanes 0-7 keys +0..7 dims +0..7, lanes 8-15 keys +0..7 dims +8..15, lanes 16-23 keys +8..15
// dims +0..7, lanes 24-31 keys +8..15 dims +8..15: b0, b1 of key tile 2np, then of 2np + 1.
struct FragmentRows {
  uint32_t q, k, v;
};

template <int D>
__device__ __forceinline__ FragmentRows fragment_rows(const bfloat16* q_tile,
                                                      const bfloat16* k_tiles,
                                                      const bfloat16* v_tiles, int warp_row0,
                                                      int lane) {
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
  FragmentRows rows;
  rows.q = shared_address(q_tile) + static_cast<uint32_t>((warp_row0 + (lane & 15)) * kRowBytes);
  rows.k = shared_address(k_tiles) +
           static_cast<uint32_t>(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes);
  rows.v = shared_address(v_tiles) +
           static_cast<uint32_t>(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes);
  return rows;
}

// S = Q K^T (raw, unscaled) for the warp's MTiles m16 tiles x KeyTiles n8 key tiles. q_swizzle(kl)
// and k_swizzle(kl) give the lane's swizzled byte offset of chunk 2 kl (+ its lane bit) within a
// 128-byte span: dims kk*16.. are chunks 2kk, 2kk+1, i.e. bytes (kk / 4) * 128 plus that part.
template <int D, int MTiles, int KeyTiles, typename QSwizzle, typename KSwizzle>
__device__ __forceinline__ void qk_scores(float (&s)[MTiles][KeyTiles][4], uint32_t q_rows,
                                          uint32_t k_stage, QSwizzle q_swizzle,
                                          KSwizzle k_swizzle) {
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
  zero_accumulators(s);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t chunk_bytes = static_cast<uint32_t>((kk / 4) * 128);
    uint32_t a[MTiles][4];
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt) {
      ldmatrix_x4(a[mt], q_rows + static_cast<uint32_t>(mt * 16 * kRowBytes) + chunk_bytes +
                             q_swizzle(kk % 4));
    }
#pragma unroll
    for (int np = 0; np < KeyTiles / 2; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, k_stage + static_cast<uint32_t>(np * 16 * kRowBytes) + chunk_bytes +
                         k_swizzle(kk % 4));
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt) {
        mma_bf16_16x8x16(s[mt][2 * np], a[mt], b[0], b[1]);
        mma_bf16_16x8x16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// O += P V. The score accumulators of key tiles 2kk and 2kk+1 (probabilities by now) are exactly
// the A fragment of a 16-key step (a0: row g keys lo, a1: row g+8 keys lo, a2/a3: keys hi).
// v_swizzle as q_swizzle of qk_scores.
template <int D, int MTiles, int KeyTiles, typename VSwizzle>
__device__ __forceinline__ void accumulate_pv(float (&o)[MTiles][D / 8][4],
                                              const float (&s)[MTiles][KeyTiles][4],
                                              uint32_t v_stage, VSwizzle v_swizzle) {
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
#pragma unroll
  for (int kk = 0; kk < KeyTiles / 2; ++kk) {
    uint32_t a[MTiles][4];
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt) {
      a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
      a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
      a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
      a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_stage + static_cast<uint32_t>(kk * 16 * kRowBytes) +
                               static_cast<uint32_t>((dp / 4) * 128) + v_swizzle(dp % 4));
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt) {
        mma_bf16_16x8x16(o[mt][2 * dp], a[mt], b[0], b[1]);
        mma_bf16_16x8x16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// Normalise O by the row sums and store it as fp32. Shuffles first: every lane takes part, rows
// past tq included.
template <int D, int MTiles>
__device__ __forceinline__ void store_normalised(const FlashParams& p,
                                                 const float (&o)[MTiles][D / 8][4],
                                                 const float (&row_sum)[MTiles][2],
                                                 const FlashCta& cta, int warp_row0) {
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float total = row_sum[mt][h];
      total += __shfl_xor_sync(0xffffffffu, total, 1);
      total += __shfl_xor_sync(0xffffffffu, total, 2);
      const float inv = 1.0f / total;
      const int row = cta.m0 + warp_row0 + mt * 16 + (cta.lane >> 2) + 8 * h;
      if (row >= p.tq) continue;
      float* out_row = p.out + static_cast<int64_t>(row) * p.out_stride +
                       static_cast<int64_t>(cta.head) * D + 2 * (cta.lane & 3);
#pragma unroll
      for (int nd = 0; nd < D / 8; ++nd) {
        const float x0 = o[mt][nd][2 * h] * inv;
        const float x1 = o[mt][nd][2 * h + 1] * inv;
        if (p.out_pairs) {
          *reinterpret_cast<float2*>(out_row + nd * 8) = make_float2(x0, x1);
        } else {
          out_row[nd * 8] = x0;
          out_row[nd * 8 + 1] = x1;
        }
      }
    }
}

// Grid: x = query tile of 128 rows, y = head. Fragment layouts follow the PTX ISA for
// mma.m16n8k16: with g = lane / 4 and t = lane % 4, an accumulator holds (row g, cols 2t, 2t+1) in
// [0], [1] and (row g + 8, same cols) in [2], [3].
template <int D, int kFlashBlockN>
__global__ void __launch_bounds__(kFlashThreads, 2) flash_attention_bf16_kernel(FlashParams p) {
  static_assert(D == 64 || D == 128, "head dims 64 and 128");
  static_assert(kFlashBlockN == 32 || kFlashBlockN == 64, "key tiles of 32 or 64");
  constexpr int kDTiles = D / 8;               // n8 tiles of the output
  constexpr int kKeyTiles = kFlashBlockN / 8;  // n8 tiles of the scores
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const FlashTiles tiles = flash_tiles<D, kFlashBlockM, kFlashBlockN>(shared_raw);
  bfloat16* q_tile = tiles.q;
  bfloat16* k_tiles = tiles.k;
  bfloat16* v_tiles = tiles.v;

  const FlashCta cta = flash_cta<D, kFlashBlockM>(p);
  const int thread = cta.thread;
  const int lane = cta.lane;

  load_rows_async<D, kFlashBlockM, kFlashThreads>(q_tile, cta.q, p.q_stride, cta.m0, p.tq, thread);
  cp_async_commit();
  load_rows_async<D, kFlashBlockN, kFlashThreads>(k_tiles, cta.k, p.k_stride, 0, p.tk, thread);
  load_rows_async<D, kFlashBlockN, kFlashThreads>(v_tiles, cta.v, p.v_stride, 0, p.tk, thread);
  cp_async_commit();

  float o[2][kDTiles][4];
  zero_accumulators(o);
  // In base-2 logit units.
  float row_max[2][2], row_sum[2][2];
  init_row_stats(row_max, row_sum);

  // Fragment addresses (fragment_rows). The logical chunk of an ldmatrix row address is (an even
  // compile-time offset) | (a per-lane bit), so its swizzled position splits into a per-lane part
  // for each of the 4 values of (offset % 8), precomputed here, plus compile-time row and chunk
  // offsets that become ldmatrix immediates: 8 address registers instead of one per (step, tile)
  // pair.
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
  uint32_t lo_hi_swizzle[4];  // for Q and V: chunk bit from lane / 16
  uint32_t k_swizzle[4];      // for K: chunk bit from (lane / 8) % 2
#pragma unroll
  for (int kl = 0; kl < 4; ++kl) {
    lo_hi_swizzle[kl] = static_cast<uint32_t>((((kl * 2) | (lane >> 4)) ^ (lane & 7)) << 4);
    k_swizzle[kl] = static_cast<uint32_t>((((kl * 2) | ((lane >> 3) & 1)) ^ (lane & 7)) << 4);
  }
  const auto q_v_swizzle_of = [&](int kl) { return lo_hi_swizzle[kl]; };
  const auto k_swizzle_of = [&](int kl) { return k_swizzle[kl]; };
  const int warp_row0 = cta.warp * kFlashRowsPerWarp;
  const FragmentRows rows = fragment_rows<D>(q_tile, k_tiles, v_tiles, warp_row0, lane);
  constexpr uint32_t kStageBytes = kFlashBlockN * kRowBytes;

  const int key_tiles = (p.tk + kFlashBlockN - 1) / kFlashBlockN;
  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < key_tiles) {
      // The other stage was last read in iteration j - 1, which ended with a barrier.
      load_rows_async<D, kFlashBlockN, kFlashThreads>(k_tiles + (stage ^ 1) * kFlashBlockN * D,
                                                      cta.k, p.k_stride, (j + 1) * kFlashBlockN,
                                                      p.tk, thread);
      load_rows_async<D, kFlashBlockN, kFlashThreads>(v_tiles + (stage ^ 1) * kFlashBlockN * D,
                                                      cta.v, p.v_stride, (j + 1) * kFlashBlockN,
                                                      p.tk, thread);
      cp_async_commit();
      cp_async_wait<1>();  // everything but the prefetch just issued: Q and tile j
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t k_stage = rows.k + stage * kStageBytes;
    const uint32_t v_stage = rows.v + stage * kStageBytes;

    // S = Q K^T for the warp's 32 rows x BlockN keys.
    float s[2][kKeyTiles][4];
    qk_scores<D>(s, rows.q, k_stage, q_v_swizzle_of, k_swizzle_of);

    // Scale into base-2 units, then mask the keys past tk (zero-padded, so their dot products are
    // 0, not garbage). Scaling first keeps the mask right for any sign of scale.
    const int key0 = j * kFlashBlockN;
    const bool partial = key0 + kFlashBlockN > p.tk;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = s[mt][nt][e] * p.scale_log2;
          const int key = key0 + nt * 8 + 2 * (lane & 3) + (e & 1);
          s[mt][nt][e] = (partial && key >= p.tk) ? -INFINITY : x;
        }

        // Online softmax. Every tile holds at least one real key, so the new maximum is finite and
        // exp2(old - new) is 0 on the first tile (old = -inf), never NaN.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
          tile_max = fmaxf(tile_max, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        // The 4 threads of a quad share the row.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float new_max = fmaxf(row_max[mt][h], tile_max);
        const float correction = fast_exp2(row_max[mt][h] - new_max);
        row_max[mt][h] = new_max;
        float tile_sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            const float prob = fast_exp2(s[mt][nt][e] - new_max);
            s[mt][nt][e] = prob;
            tile_sum += prob;
          }
        row_sum[mt][h] = row_sum[mt][h] * correction + tile_sum;
#pragma unroll
        for (int nd = 0; nd < kDTiles; ++nd) {
          o[mt][nd][2 * h] *= correction;
          o[mt][nd][2 * h + 1] *= correction;
        }
      }

    accumulate_pv<D>(o, s, v_stage, q_v_swizzle_of);
    __syncthreads();  // this stage is overwritten by the prefetch of iteration j + 1
  }

  store_normalised<D>(p, o, row_sum, cta, warp_row0);
}

// ---------------------------------------------------------------------------------------------
// Tuned tensor-core kernel: the variants of AttentionVariant other than the baseline ones.
// Same fragment layouts, swizzle and P-in-registers as flash_attention_bf16_kernel; it differs in:
//  - Shape: Warps x MTiles m16 tiles of query rows per CTA (4 x 2 = 128 rows, 32 a warp, as the
//    baseline; 8 x 1 = 128 rows, 16 a warp, half the accumulators per thread so that 64-key tiles
//    fit in registers; 4 x 1 = 64 rows for short key sequences: more CTAs, less Q per key).
//  - Pipeline: K and V of a tile are separate cp.async groups. K of tile j + 1 is requested at the
//    top of iteration j (it streams in during S and P V of tile j), V of tile j + 1 just before
//    P V of tile j (it streams in during P V of tile j and S of tile j + 1); the wait for V of
//    tile j sits after the softmax, so a warp that finished its S early does its softmax instead
//    of waiting at the barrier. Two barriers a tile, as before, and none at the end of the tile.
//  - Lazy rescaling: the per-row offset subtracted in the exponent moves only when a tile's max
//    exceeds it by more than kLazyRescaleLog2 (base 2). O and the row sum are then rescaled, which
//    a warp skips entirely (warp-uniform branch) when none of its rows moved - after the first
//    few tiles almost always. Exact: numerator and denominator use the same offsets, and
//    probabilities stay within [0, 2^8], which fp32 sums and bf16 P (relative precision) hold.
//  - One FFMA per score in the exponent: exp2(s * scale_log2 - offset) on the raw score; the row
//    max is taken on raw scores (the min for a negative scale) and scaled once.
constexpr float kLazyRescaleLog2 = 8.0f;

template <int D, int BlockN, int Warps, int MTiles>
struct TunedShape {
  static constexpr int kThreads = Warps * 32;
  static constexpr int kRowsPerWarp = MTiles * 16;
  static constexpr int kBlockM = Warps * kRowsPerWarp;
  // Q [BlockM][D] + K [2 stages][BlockN][D] + V [2 stages][BlockN][D], bf16.
  static constexpr size_t kSharedBytes =
      static_cast<size_t>(kBlockM + 4 * BlockN) * D * sizeof(bfloat16);
};

template <int D, int BlockN, int Warps, int MTiles, int MinBlocks>
__global__ void __launch_bounds__(Warps * 32, MinBlocks) tuned_flash_kernel(FlashParams p) {
  static_assert(D == 64 || D == 128, "head dims 64 and 128");
  static_assert(BlockN == 32 || BlockN == 64, "key tiles of 32 or 64");
  static_assert(MTiles == 1 || MTiles == 2, "16 or 32 query rows a warp");
  using Shape = TunedShape<D, BlockN, Warps, MTiles>;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kBlockM = Shape::kBlockM;
  constexpr int kDTiles = D / 8;         // n8 tiles of the output
  constexpr int kKeyTiles = BlockN / 8;  // n8 tiles of the scores
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const FlashTiles tiles = flash_tiles<D, kBlockM, BlockN>(shared_raw);
  bfloat16* q_tile = tiles.q;
  bfloat16* k_tiles = tiles.k;
  bfloat16* v_tiles = tiles.v;

  const FlashCta cta = flash_cta<D, kBlockM>(p);
  const int thread = cta.thread;
  const int lane = cta.lane;

  // cp.async groups, oldest first: [Q, K0], [V0], then two per iteration j, [K j+1] and
  // [V j+1] (empty past the last tile, so that the wait counts are constants).
  load_rows_async<D, kBlockM, kThreads>(q_tile, cta.q, p.q_stride, cta.m0, p.tq, thread);
  load_rows_async<D, BlockN, kThreads>(k_tiles, cta.k, p.k_stride, 0, p.tk, thread);
  cp_async_commit();
  load_rows_async<D, BlockN, kThreads>(v_tiles, cta.v, p.v_stride, 0, p.tk, thread);
  cp_async_commit();

  float o[MTiles][kDTiles][4];
  zero_accumulators(o);
  // offset: the base-2 logit subtracted in the exponent (lazily tracks the row max).
  float offset[MTiles][2], row_sum[MTiles][2];
  init_row_stats(offset, row_sum);

  // Fragment addresses: as in flash_attention_bf16_kernel, except that the swizzled chunk offset
  // ((2 kl) | bit) ^ (lane & 7) = (2 kl) ^ (bit ^ (lane & 7)) (2 kl has a clear low bit) is formed
  // where it is used from one per-lane value: 2 registers instead of 8 (fewer spills at 128
  // registers).
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
  const uint32_t q_v_bits = static_cast<uint32_t>((lane >> 4) ^ (lane & 7));
  const uint32_t k_bits = static_cast<uint32_t>(((lane >> 3) & 1) ^ (lane & 7));
  const auto q_v_swizzle_of = [&](int kl) { return chunk_swizzle(kl, q_v_bits); };
  const auto k_swizzle_of = [&](int kl) { return chunk_swizzle(kl, k_bits); };
  const int warp_row0 = cta.warp * Shape::kRowsPerWarp;
  const FragmentRows rows = fragment_rows<D>(q_tile, k_tiles, v_tiles, warp_row0, lane);
  constexpr uint32_t kStageBytes = BlockN * kRowBytes;

  // Scale 0 (uniform weights) runs as the smallest normal float: the masked -inf stays -inf
  // (-inf * 0 would be NaN) and exp2 of every real logit, below 2^-100, is exactly 1.
  const float scale_log2 = p.scale_log2 == 0.0f ? 1.17549435e-38f : p.scale_log2;
  const bool positive_scale = scale_log2 > 0.0f;
  // A raw score that becomes -inf once scaled.
  const float masked_score = positive_scale ? -INFINITY : INFINITY;

  const int key_tiles = (p.tk + BlockN - 1) / BlockN;
  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j & 1;
    const bool more = j + 1 < key_tiles;
    // K stage ^ 1 held tile j - 1, whose S every warp finished before the second barrier of
    // iteration j - 1.
    if (more) {
      load_rows_async<D, BlockN, kThreads>(k_tiles + (stage ^ 1) * BlockN * D, cta.k, p.k_stride,
                                           (j + 1) * BlockN, p.tk, thread);
    }
    cp_async_commit();
    cp_async_wait<2>();  // all but [V j] and [K j+1]: K of tile j is in
    __syncthreads();
    const uint32_t k_stage = rows.k + stage * kStageBytes;
    const uint32_t v_stage = rows.v + stage * kStageBytes;

    // S = Q K^T (raw, unscaled) for the warp's rows x BlockN keys.
    float s[MTiles][kKeyTiles][4];
    qk_scores<D>(s, rows.q, k_stage, q_v_swizzle_of, k_swizzle_of);

    // Keys past tk (zero-padded rows) only occur in the last tile.
    const int key0 = j * BlockN;
    if (key0 + BlockN > p.tk) {
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = key0 + nt * 8 + 2 * (lane & 3) + (e & 1);
            if (key >= p.tk) s[mt][nt][e] = masked_score;
          }
    }

    // Online softmax with lazy offsets. Every tile holds a real key, so tile_max is finite.
    float correction[MTiles][2];
    bool moved = false;
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float extreme = s[mt][0][2 * h];
        if (positive_scale) {
#pragma unroll
          for (int nt = 0; nt < kKeyTiles; ++nt)
            extreme = fmaxf(extreme, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        } else {
#pragma unroll
          for (int nt = 0; nt < kKeyTiles; ++nt)
            extreme = fminf(extreme, fminf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        }
        float tile_max = extreme * scale_log2;
        // The 4 threads of a quad share the row.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const bool move = tile_max > offset[mt][h] + kLazyRescaleLog2;  // always on tile 0
        // Exactly 1 when the offset stays (O is then left as it is).
        correction[mt][h] = move ? fast_exp2(offset[mt][h] - tile_max) : 1.0f;
        if (move) offset[mt][h] = tile_max;
        moved = moved || move;
        const float minus_offset = -offset[mt][h];
        float tile_sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            const float prob = fast_exp2(fmaf(s[mt][nt][e], scale_log2, minus_offset));
            s[mt][nt][e] = prob;
            tile_sum += prob;
          }
        row_sum[mt][h] = row_sum[mt][h] * correction[mt][h] + tile_sum;
      }
    if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
        for (int nd = 0; nd < kDTiles; ++nd)
#pragma unroll
          for (int e = 0; e < 4; ++e) o[mt][nd][e] *= correction[mt][e / 2];
    }

    // V stage ^ 1 held tile j - 1, whose P V every warp finished before the first barrier above.
    if (more) {
      load_rows_async<D, BlockN, kThreads>(v_tiles + (stage ^ 1) * BlockN * D, cta.v, p.v_stride,
                                           (j + 1) * BlockN, p.tk, thread);
    }
    cp_async_commit();
    cp_async_wait<2>();  // all but [K j+1] and [V j+1]: V of tile j is in
    __syncthreads();

    accumulate_pv<D>(o, s, v_stage, q_v_swizzle_of);
  }
  cp_async_wait<0>();  // the trailing groups are empty; nothing is left in flight at exit

  store_normalised<D>(p, o, row_sum, cta, warp_row0);
}

// Launches a tensor-core kernel of Threads threads a CTA over its query tiles of BlockM rows x
// heads. Above 48 KB dynamic shared memory must be opted into; the carveout hint lets two CTAs
// share an SM (2 x 96 KB for D = 128 and 128 rows). (Host code starts here: the emulator's slice
// of the device code, tools/gpu/slice_attention_kernels.py, ends before the first launch_flash*.)
template <int Threads, int BlockM>
void launch_flash_kernel(void (*kernel)(FlashParams), size_t shared_bytes,
                         const FlashParams& params, int heads, cudaStream_t stream) {
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(shared_bytes));
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory opt-in", status);
  status = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                cudaSharedmemCarveoutMaxShared);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory carveout", status);
  const dim3 grid(static_cast<unsigned>((params.tq + BlockM - 1) / BlockM),
                  static_cast<unsigned>(heads));
  kernel<<<grid, Threads, shared_bytes, stream>>>(params);
  check_launch("flash attention launch");
}

template <int D, int BlockN>
void launch_flash(const FlashParams& params, int heads, cudaStream_t stream) {
  launch_flash_kernel<kFlashThreads, kFlashBlockM>(flash_attention_bf16_kernel<D, BlockN>,
                                                   flash_shared_bytes<D, BlockN>(), params, heads,
                                                   stream);
}

template <int D, int BlockN, int Warps, int MTiles, int MinBlocks>
void launch_tuned(const FlashParams& params, int heads, cudaStream_t stream) {
  using Shape = TunedShape<D, BlockN, Warps, MTiles>;
  launch_flash_kernel<Shape::kThreads, Shape::kBlockM>(
      tuned_flash_kernel<D, BlockN, Warps, MTiles, MinBlocks>, Shape::kSharedBytes, params, heads,
      stream);
}

template <int D>
void launch_variant(AttentionVariant variant, const FlashParams& params, int heads,
                    cudaStream_t stream) {
  // MinBlocks (CTAs an SM must hold): 2 everywhere (2 x 96 KB of shared memory at D = 128 and
  // 128 rows), except 64-row CTAs with 32-key tiles (48 KB): 4, which caps them at 128 registers.
  switch (variant) {
    case AttentionVariant::baseline_n32:
      launch_flash<D, 32>(params, heads, stream);
      break;
    case AttentionVariant::baseline_n64:
      launch_flash<D, 64>(params, heads, stream);
      break;
    case AttentionVariant::tuned_128x4_n32:
      launch_tuned<D, 32, 4, 2, 2>(params, heads, stream);
      break;
    case AttentionVariant::tuned_128x4_n64:
      launch_tuned<D, 64, 4, 2, 2>(params, heads, stream);
      break;
    case AttentionVariant::tuned_128x8_n64:
      launch_tuned<D, 64, 8, 1, 2>(params, heads, stream);
      break;
    case AttentionVariant::tuned_128x8_n32:
      launch_tuned<D, 32, 8, 1, 2>(params, heads, stream);
      break;
    case AttentionVariant::tuned_64x4_n64:
      launch_tuned<D, 64, 4, 1, 2>(params, heads, stream);
      break;
    case AttentionVariant::tuned_64x4_n32:
      launch_tuned<D, 32, 4, 1, 4>(params, heads, stream);
      break;
    case AttentionVariant::wgmma_128x2_n128:
    case AttentionVariant::wgmma_pipe_128x2_n128:
      if (D == 128 && params.scale_log2 > 0.0f && sm90::wgmma_attention_available()) {
        sm90::WgmmaAttentionParams w{};
        w.q = params.q;
        w.k = params.k;
        w.v = params.v;
        w.out = params.out;
        w.q_stride = params.q_stride;
        w.k_stride = params.k_stride;
        w.v_stride = params.v_stride;
        w.out_stride = params.out_stride;
        w.tq = params.tq;
        w.tk = params.tk;
        w.scale_log2 = params.scale_log2;
        w.out_pairs = params.out_pairs;
        sm90::launch_wgmma_attention(
            w, heads, variant == AttentionVariant::wgmma_pipe_128x2_n128, stream);
      } else if (D == 128) {
        launch_tuned<D, 32, 4, 2, 2>(params, heads, stream);  // tuned_128x4_n32
      } else {
        launch_flash<D, 64>(params, heads, stream);  // baseline_n64, the head-dim-64 default
      }
      break;
    case AttentionVariant::automatic:
      break;  // resolved by the caller
  }
}

// ---------------------------------------------------------------------------------------------
// Exact fp32 kernel: any head dim that fits in shared memory.

constexpr int kExactRows = 32;  // query rows per CTA
constexpr int kExactKeys = 32;  // keys per tile: one per lane, so row softmax is a warp reduction
constexpr int kExactWarps = 8;  // warp w owns rows w, w + 8, w + 16, w + 24
constexpr int kExactThreads = kExactWarps * 32;
constexpr int kExactRowsPerWarp = kExactRows / kExactWarps;

size_t exact_shared_bytes(int head_dim) {
  // Q, V, O [32][D]; K [32][D + 1] (the pad puts lane c's K row in its own bank); P [32][32].
  return (static_cast<size_t>(kExactRows) * head_dim * 3 +
          static_cast<size_t>(kExactKeys) * (head_dim + 1) +
          static_cast<size_t>(kExactRows) * kExactKeys) *
         sizeof(float);
}

struct ExactParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t q_stride, k_stride, v_stride, out_stride;
  int tq, tk, head_dim;
  float scale;
};

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__global__ void __launch_bounds__(kExactThreads) attention_fp32_kernel(ExactParams p) {
  extern __shared__ float shared[];
  const int D = p.head_dim;
  const int k_pitch = D + 1;
  float* q_tile = shared;
  float* k_tile = q_tile + kExactRows * D;
  float* v_tile = k_tile + kExactKeys * k_pitch;
  float* o_tile = v_tile + kExactKeys * D;
  float* p_tile = o_tile + kExactRows * D;

  const int thread = static_cast<int>(threadIdx.x);
  const int warp = thread / 32;
  const int lane = thread % 32;
  const int head = static_cast<int>(blockIdx.y);
  const int m0 = static_cast<int>(blockIdx.x) * kExactRows;
  const int64_t head_offset = static_cast<int64_t>(head) * D;

  for (int i = thread; i < kExactRows * D; i += kExactThreads) {
    const int row = m0 + i / D;
    q_tile[i] = row < p.tq ? p.q[row * p.q_stride + head_offset + i % D] : 0.0f;
    o_tile[i] = 0.0f;
  }
  float row_max[kExactRowsPerWarp], row_sum[kExactRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kExactRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }

  for (int key0 = 0; key0 < p.tk; key0 += kExactKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int i = thread; i < kExactKeys * D; i += kExactThreads) {
      const int key = key0 + i / D;
      const int d = i % D;
      const bool valid = key < p.tk;
      k_tile[(i / D) * k_pitch + d] = valid ? p.k[key * p.k_stride + head_offset + d] : 0.0f;
      v_tile[i] = valid ? p.v[key * p.v_stride + head_offset + d] : 0.0f;
    }
    __syncthreads();

    const bool key_valid = key0 + lane < p.tk;
    float correction[kExactRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kExactRowsPerWarp; ++r) {
      const int row = warp + r * kExactWarps;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot = fmaf(q_tile[row * D + d], k_tile[lane * k_pitch + d], dot);
      const float logit = key_valid ? dot * p.scale : -INFINITY;
      const float new_max = fmaxf(row_max[r], warp_max(logit));  // finite: lane 0's key is real
      correction[r] = expf(row_max[r] - new_max);
      const float prob = key_valid ? expf(logit - new_max) : 0.0f;
      row_sum[r] = row_sum[r] * correction[r] + warp_sum(prob);
      row_max[r] = new_max;
      p_tile[row * kExactKeys + lane] = prob;
    }
    __syncwarp();  // a warp reads back only the P rows it wrote
#pragma unroll
    for (int r = 0; r < kExactRowsPerWarp; ++r) {
      const int row = warp + r * kExactWarps;
      for (int d = lane; d < D; d += 32) {
        float acc = o_tile[row * D + d] * correction[r];
        for (int c = 0; c < kExactKeys; ++c)
          acc = fmaf(p_tile[row * kExactKeys + c], v_tile[c * D + d], acc);
        o_tile[row * D + d] = acc;
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < kExactRowsPerWarp; ++r) {
    const int row = warp + r * kExactWarps;
    if (m0 + row >= p.tq) continue;
    const float inv = 1.0f / row_sum[r];
    float* out_row = p.out + (m0 + row) * p.out_stride + head_offset;
    for (int d = lane; d < D; d += 32) out_row[d] = o_tile[row * D + d] * inv;
  }
}

void launch_exact(const ExactParams& params, int heads, cudaStream_t stream) {
  const size_t shared_bytes = exact_shared_bytes(params.head_dim);
  int device = 0;
  int limit = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess)
    status = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "device query", status);
  if (shared_bytes > static_cast<size_t>(limit)) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention: head_dim " +
                                                 std::to_string(params.head_dim) +
                                                 " needs more shared memory than the device has");
  }
  status = cudaFuncSetAttribute(attention_fp32_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(shared_bytes));
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory opt-in", status);
  const dim3 grid(static_cast<unsigned>((params.tq + kExactRows - 1) / kExactRows),
                  static_cast<unsigned>(heads));
  attention_fp32_kernel<<<grid, kExactThreads, shared_bytes, stream>>>(params);
  check_launch("fp32 attention launch");
}

// ---------------------------------------------------------------------------------------------
// fp32 -> bf16 conversion.

__global__ void convert_rows_vec4_kernel(const float* src, int64_t src_stride, bfloat16* dst,
                                         int64_t rows, int width) {
  const int quads = width / 4;
  const int64_t total = rows * quads;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / quads;
    const int col = static_cast<int>(i % quads) * 4;
    const float4 x = *reinterpret_cast<const float4*>(src + row * src_stride + col);
    __nv_bfloat162 pair[2] = {__floats2bfloat162_rn(x.x, x.y), __floats2bfloat162_rn(x.z, x.w)};
    *reinterpret_cast<uint2*>(dst + row * width + col) = *reinterpret_cast<const uint2*>(pair);
  }
}

__global__ void convert_rows_scalar_kernel(const float* src, int64_t src_stride, bfloat16* dst,
                                           int64_t rows, int width) {
  const int64_t total = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / width;
    const int col = static_cast<int>(i % width);
    dst[i] = __float2bfloat16_rn(src[row * src_stride + col]);
  }
}

bool aligned_to(const void* pointer, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

void check_sizes(int q_stride, int k_stride, int v_stride, int out_stride, int tq, int tk,
                 int heads, int head_dim) {
  if (tq < 0 || tk < 0 || heads < 0 || head_dim < 0) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention: negative size");
  }
  if (heads > 65535) throw Error(ErrorKind::invalid_argument, "CUDA attention: over 65535 heads");
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  if (q_stride < width || out_stride < width ||
      (tk > 0 && (k_stride < width || v_stride < width))) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention: a row stride is smaller than heads * head_dim");
  }
}

// Softmax over no keys: the output rows are zeros, as on the CPU.
void zero_output(float* out, int out_stride, int tq, int heads, int head_dim, cudaStream_t stream) {
  const cudaError_t status =
      cudaMemset2DAsync(out, static_cast<size_t>(out_stride) * sizeof(float), 0,
                        static_cast<size_t>(heads) * head_dim * sizeof(float), tq, stream);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "zero fill", status);
}

// Stream-ordered scratch memory, freed (stream-ordered) on every exit path.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    const cudaError_t status = cudaMallocAsync(&memory_, bytes, stream);
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw_cuda(ErrorKind::out_of_memory, "scratch allocation", status);
    }
  }
  ~StreamScratch() { cudaFreeAsync(memory_, stream_); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  [[nodiscard]] void* get() const { return memory_; }

 private:
  void* memory_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

void convert_rows_to_bf16(const float* src, int src_stride, __nv_bfloat16* dst, int rows, int width,
                          cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return;
  constexpr int kThreads = 256;
  const bool vec4 =
      width % 4 == 0 && src_stride % 4 == 0 && aligned_to(src, 16) && aligned_to(dst, 8);
  const int64_t items = static_cast<int64_t>(rows) * (vec4 ? width / 4 : width);
  // Enough blocks to fill the device several times over; the grid-stride loop does the rest.
  const int blocks = static_cast<int>(std::min<int64_t>((items + kThreads - 1) / kThreads, 4096));
  if (vec4) {
    convert_rows_vec4_kernel<<<blocks, kThreads, 0, stream>>>(src, src_stride, dst, rows, width);
  } else {
    convert_rows_scalar_kernel<<<blocks, kThreads, 0, stream>>>(src, src_stride, dst, rows, width);
  }
  check_launch("bf16 conversion launch");
}

const char* attention_variant_name(AttentionVariant variant) {
  switch (variant) {
    case AttentionVariant::automatic:
      return "automatic";
    case AttentionVariant::baseline_n32:
      return "baseline_n32";
    case AttentionVariant::baseline_n64:
      return "baseline_n64";
    case AttentionVariant::tuned_128x4_n32:
      return "tuned_128x4_n32";
    case AttentionVariant::tuned_128x4_n64:
      return "tuned_128x4_n64";
    case AttentionVariant::tuned_128x8_n64:
      return "tuned_128x8_n64";
    case AttentionVariant::tuned_128x8_n32:
      return "tuned_128x8_n32";
    case AttentionVariant::tuned_64x4_n64:
      return "tuned_64x4_n64";
    case AttentionVariant::tuned_64x4_n32:
      return "tuned_64x4_n32";
    case AttentionVariant::wgmma_128x2_n128:
      return "wgmma_128x2_n128";
    case AttentionVariant::wgmma_pipe_128x2_n128:
      return "wgmma_pipe_128x2_n128";
  }
  return "unknown";
}

namespace {

// STRAND_ATTENTION_VARIANTS="d128=NAME,d64=NAME,short=NAME" (any subset; NAME as
// attention_variant_name prints it) replaces the kDefaultVariant* constants for this process.
// tools/gpu/parallel_run.sh sets it from the microbenchmark's fastest variants, so that one GPU
// run measures the engine with them before they become the constants. Unknown names are ignored.
struct VariantDefaults {
  AttentionVariant d128 = kDefaultVariantD128, d64 = kDefaultVariantD64,
                   short_keys = kDefaultVariantShortKeys;
  VariantDefaults() {
    const char* env = std::getenv("STRAND_ATTENTION_VARIANTS");
    if (env == nullptr) return;
    std::string text(env);
    size_t start = 0;
    while (start <= text.size()) {
      const size_t end = std::min(text.find(',', start), text.size());
      const std::string item = text.substr(start, end - start);
      const size_t eq = item.find('=');
      if (eq != std::string::npos) {
        const std::string key = item.substr(0, eq), name = item.substr(eq + 1);
        for (int i = 1; i < kAttentionVariantCount; ++i) {
          const auto v = static_cast<AttentionVariant>(i);
          if (name != attention_variant_name(v)) continue;
          if (key == "d128") d128 = v;
          if (key == "d64") d64 = v;
          if (key == "short") short_keys = v;
        }
      }
      start = end + 1;
    }
  }
};

const VariantDefaults& variant_defaults() {
  static const VariantDefaults defaults;
  return defaults;
}

}  // namespace

bool attention_wgmma_available() { return sm90::wgmma_attention_available(); }

AttentionVariant default_attention_variant(int /*tq*/, int tk, int /*heads*/, int head_dim) {
  const VariantDefaults& d = variant_defaults();
  if (tk <= kShortKeys && head_dim == 128) return d.short_keys;
  return head_dim == 64 ? d.d64 : d.d128;
}

void attention_bf16(const __nv_bfloat16* q, int q_stride, const __nv_bfloat16* k, int k_stride,
                    const __nv_bfloat16* v, int v_stride, float* out, int out_stride, int tq,
                    int tk, int heads, int head_dim, float scale, cudaStream_t stream,
                    AttentionVariant variant) {
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  const int variant_index = static_cast<int>(variant);
  if (variant_index < 0 || variant_index >= kAttentionVariantCount) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention_bf16: unknown variant " + std::to_string(variant_index));
  }
  if (head_dim != 64 && head_dim != 128) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention_bf16: head_dim must be 64 or 128");
  }
  if (!aligned_to(q, 16) || !aligned_to(k, 16) || !aligned_to(v, 16) || q_stride % 8 != 0 ||
      k_stride % 8 != 0 || v_stride % 8 != 0) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention_bf16: q, k, v need 16-byte alignment and strides that are "
                "multiples of 8");
  }
  if (tq == 0 || heads == 0) return;
  if (tk == 0) {
    zero_output(out, out_stride, tq, heads, head_dim, stream);
    return;
  }
  FlashParams params{};
  params.q = q;
  params.k = k;
  params.v = v;
  params.out = out;
  params.q_stride = q_stride;
  params.k_stride = k_stride;
  params.v_stride = v_stride;
  params.out_stride = out_stride;
  params.tq = tq;
  params.tk = tk;
  params.scale_log2 = scale * 1.44269504088896341f;
  params.out_pairs = out_stride % 2 == 0 && aligned_to(out, 8);
  if (variant == AttentionVariant::automatic)
    variant = default_attention_variant(tq, tk, heads, head_dim);
  if (head_dim == 64) {
    launch_variant<64>(variant, params, heads, stream);
  } else {
    launch_variant<128>(variant, params, heads, stream);
  }
}

size_t attention_workspace_bytes(int tq, int tk, int heads, int head_dim, bool bf16) {
  if (!bf16 || (head_dim != 64 && head_dim != 128) || tq <= 0 || tk <= 0 || heads <= 0) return 0;
  const size_t width = static_cast<size_t>(heads) * head_dim;
  return (static_cast<size_t>(tq) + 2 * static_cast<size_t>(tk)) * width * sizeof(bfloat16);
}

void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, cudaStream_t stream) {
  const size_t bytes = attention_workspace_bytes(tq, tk, heads, head_dim, bf16);
  if (bytes == 0) {
    attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk, heads, head_dim,
              scale, bf16, nullptr, 0, stream);
    return;
  }
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  StreamScratch scratch(bytes, stream);
  attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk, heads, head_dim, scale,
            bf16, scratch.get(), bytes, stream);
}

void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, void* workspace, size_t workspace_bytes,
               cudaStream_t stream) {
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  if (tq == 0 || heads == 0 || head_dim == 0) return;
  if (tk == 0) {
    zero_output(out, out_stride, tq, heads, head_dim, stream);
    return;
  }
  if (bf16 && (head_dim == 64 || head_dim == 128)) {
    // Packed bf16 copies (row stride = width, a multiple of 64, so 16-byte aligned rows).
    const int width = heads * head_dim;
    const size_t q_elems = static_cast<size_t>(tq) * width;
    const size_t kv_elems = static_cast<size_t>(tk) * width;
    if (workspace == nullptr ||
        workspace_bytes < attention_workspace_bytes(tq, tk, heads, head_dim, bf16) ||
        !aligned_to(workspace, 16)) {
      throw Error(ErrorKind::invalid_argument,
                  "CUDA attention: the bf16 path needs a 16-byte aligned workspace of "
                  "attention_workspace_bytes()");
    }
    auto* q16 = static_cast<bfloat16*>(workspace);
    bfloat16* k16 = q16 + q_elems;
    bfloat16* v16 = k16 + kv_elems;
    convert_rows_to_bf16(q, q_stride, q16, tq, width, stream);
    convert_rows_to_bf16(k, k_stride, k16, tk, width, stream);
    convert_rows_to_bf16(v, v_stride, v16, tk, width, stream);
    attention_bf16(q16, width, k16, width, v16, width, out, out_stride, tq, tk, heads, head_dim,
                   scale, stream);
    return;
  }
  ExactParams params{};
  params.q = q;
  params.k = k;
  params.v = v;
  params.out = out;
  params.q_stride = q_stride;
  params.k_stride = k_stride;
  params.v_stride = v_stride;
  params.out_stride = out_stride;
  params.tq = tq;
  params.tk = tk;
  params.head_dim = head_dim;
  params.scale = scale;
  launch_exact(params, heads, stream);
}

}  // namespace strand::cuda
