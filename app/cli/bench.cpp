// `strand-cli bench`: times N blocks with a fixed prompt and seed, per stage, and reports the
// arithmetic throughput of the DiT passes.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include <iostream>
#include <numeric>

#include "cli.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threading.h"
#include "strand/error.h"

namespace strand::cli {
namespace {

constexpr const char* kBenchPrompt = "a red fox running through a snowy forest at dawn";
constexpr uint64_t kBenchSeed = 1234;

// FLOPs of one DiT pass over one block, counted analytically from the config (docs/model-spec.md
// section 4), at 2 FLOPs per multiply-add. Counted: every matrix product, i.e. the linear layers
// (patch embedding, q/k/v/o, memory projections, cross-attention q/o, FFN, head, time embedding),
// the attention products q k^T and p v, the memory read S^T q and, on the clean pass, the
// delta-rule update (decay dh^2 + S^T k 2 dh^2 + rank-1 update 2 dh^2 per token and head).
// Not counted: elementwise work (norms, RoPE, activations, softmax, modulation) and the
// cross-attention k/v of the prompt (computed once per prompt, not per pass). The result is
// therefore a slight under-count of the work done, never an over-count.
//   T tokens per block, d dim, m mlp_dim, H heads, dh head dim, L text tokens, P = C p^2,
//   Tk keys seen by self-attention (T, plus the cached blocks' tokens for softmax_kv layers).
double dit_pass_flops(const ModelConfig& c, int64_t text_tokens, int64_t block_index,
                      bool clean_pass) {
  const double T = c.tokens_per_block(), d = c.dim, m = c.mlp_dim, H = c.heads, dh = c.head_dim();
  const double L = static_cast<double>(text_tokens);
  const double P = static_cast<double>(c.latent_channels) * c.patch * c.patch;
  const double fd = c.freq_dim;

  double flops = 2 * T * P * d                        // patch embedding
                 + 2 * T * d * P                      // head
                 + 2 * (fd * d + d * d + 6 * d * d);  // time embedding + projection (once per pass)
  // softmax_kv layers see the cached blocks: all earlier ones, or sink + window when limited.
  const int64_t earlier = block_index;
  const int64_t cached =
      c.kv_window > 0 ? std::min<int64_t>(earlier, c.kv_window + c.kv_sink) : earlier;
  for (const AttentionKind kind : c.layers) {
    const double Tk = kind == AttentionKind::softmax_kv ? T * static_cast<double>(1 + cached) : T;
    flops += 4 * 2 * T * d * d;   // q, k, v, o
    flops += 2 * 2 * T * Tk * d;  // q k^T and p v over all heads
    if (kind == AttentionKind::hybrid) {
      flops += 3 * 2 * T * d * d;               // mem_q, mem_k, mem_v
      flops += 3 * 2 * T * d * H;               // mem_a, mem_b, mem_g
      flops += 2 * T * d * dh;                  // read: S_h^T q per head (H * dh^2 = d * dh)
      if (clean_pass) flops += 5 * T * d * dh;  // delta-rule update
    }
    flops += 2 * 2 * T * d * d;  // cross-attention q, o
    flops += 2 * 2 * T * L * d;  // cross-attention q k^T, p v
    flops += 2 * 2 * T * d * m;  // FFN
  }
  return flops;
}

// Resident set size now, from /proc/self/statm (0 where unavailable).
uint64_t current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size_pages = 0, resident_pages = 0;
  const int read = std::fscanf(f, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(f);
  return read == 2 ? resident_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// OpenBLAS sgemm throughput (through cpu::gemm, same threads) on the DiT's FFN product shape
// [T, d] x [m, d]^T: the yardstick for "what fraction of sgemm speed do the DiT passes reach".
double sgemm_gflops(const ModelConfig& c) {
  const int m = c.tokens_per_block(), n = c.mlp_dim, k = c.dim;
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(n) * k, 0.25f),
      out(static_cast<size_t>(m) * n);
  strand::cpu::gemm(a.data(), b.data(), out.data(), m, n, k, true);  // warm up
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const auto start = std::chrono::steady_clock::now();
    int reps = 0;
    double seconds = 0;
    while (seconds < 0.05) {
      strand::cpu::gemm(a.data(), b.data(), out.data(), m, n, k, true);
      ++reps;
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    best = std::max(best, 2.0 * m * n * k * reps / seconds / 1e9);
  }
  return best;
}

}  // namespace

int run_bench(std::span<const std::string> args) {
  const Options options(args, {{"model"}, {"blocks"}, {"threads"}, {"json"}, {"ops", false}});
  const int64_t blocks =
      options.has("blocks") ? parse_int(*options.get("blocks"), "blocks", 1, 100000) : 6;
  const int threads = options.has("threads")
                          ? static_cast<int>(parse_int(*options.get("threads"), "threads", 1, 4096))
                          : 0;
  const std::optional<std::string> json_path = options.get("json");
  const std::string model_path = model_path_or_default(options.get("model"));
  const std::shared_ptr<const Model> model = load_model(model_path);
  if (json_path) prepare_output_file(*json_path, "--json");
  const ModelConfig& c = model->config();

  strand::cpu::set_num_threads(threads);  // 0: hardware default
  SessionOptions session_options;
  session_options.seed = kBenchSeed;
  OpProfile profile;
  const bool profile_ops = options.has("ops");
  if (profile_ops) session_options.op_profile = &profile;
  Session session(model, session_options);
  session.set_prompt(kBenchPrompt);
  const auto text_tokens = static_cast<int64_t>(model->tokenizer().encode(kBenchPrompt).size());
  const int denoise_passes = static_cast<int>(c.sigmas.size());

  std::printf(
      "model %s (%lld parameters), %d threads, %lld blocks of %d frames, %d denoising passes + 1 "
      "clean\n",
      c.name.c_str(), static_cast<long long>(model->parameter_count()), strand::cpu::num_threads(),
      static_cast<long long>(blocks), c.frames_per_block, denoise_passes);
  std::printf("%5s %11s %9s %10s %8s %9s %10s %12s\n", "block", "denoise_ms", "clean_ms",
              "decode_ms", "text_ms", "total_ms", "dit_gflops", "state_bytes");

  InterruptGuard interrupt(session);
  nlohmann::json rows = nlohmann::json::array();
  double sum_dit_flops = 0, sum_dit_ms = 0;
  BlockTimings totals;
  for (int64_t i = 0; i < blocks; ++i) {
    const BlockResult result = session.generate_next_block();
    const BlockTimings& t = result.timings;
    const double flops =
        denoise_passes * dit_pass_flops(c, text_tokens, result.block_index, false) +
        dit_pass_flops(c, text_tokens, result.block_index, true);
    const double dit_ms = t.denoise_ms + t.clean_ms;
    const double gflops = dit_ms > 0 ? flops / (dit_ms * 1e6) : 0.0;
    const size_t state_bytes = session.memory_state_bytes();
    const uint64_t rss = current_rss_bytes();
    std::printf("%5lld %11.2f %9.2f %10.2f %8.2f %9.2f %10.2f %12zu\n",
                static_cast<long long>(result.block_index), t.denoise_ms, t.clean_ms, t.decode_ms,
                t.text_ms, t.total_ms, gflops, state_bytes);
    std::fflush(stdout);
    sum_dit_flops += flops;
    sum_dit_ms += dit_ms;
    totals.denoise_ms += t.denoise_ms;
    totals.clean_ms += t.clean_ms;
    totals.decode_ms += t.decode_ms;
    totals.text_ms += t.text_ms;
    totals.recache_ms += t.recache_ms;
    totals.total_ms += t.total_ms;
    rows.push_back({{"block", result.block_index},
                    {"ms", timings_to_json(t)},
                    {"dit_flops", flops},
                    {"dit_gflops_per_s", gflops},
                    {"memory_state_bytes", state_bytes},
                    {"rss_bytes", rss}});
  }
  if (interrupt.interrupted()) throw Error(ErrorKind::cancelled, "cancelled");

  const double mean_gflops = sum_dit_ms > 0 ? sum_dit_flops / (sum_dit_ms * 1e6) : 0.0;
  const double sgemm = sgemm_gflops(c);
  const int64_t frames = blocks * c.frames_per_block;
  const double fps =
      totals.total_ms > 0 ? static_cast<double>(frames) / (totals.total_ms / 1000.0) : 0.0;
  std::printf("total: %.1f ms for %lld frames (%.2f frames/s); DiT %.2f GFLOP/s over all passes\n",
              totals.total_ms, static_cast<long long>(frames), fps, mean_gflops);
  std::printf("sgemm [%d x %d] x [%d x %d]^T: %.2f GFLOP/s; the DiT passes reach %.0f%% of it\n",
              c.tokens_per_block(), c.dim, c.mlp_dim, c.dim, sgemm,
              sgemm > 0 ? 100.0 * mean_gflops / sgemm : 0.0);
  std::printf("memory state: %zu bytes fixed + %zu bytes per block; peak RSS %llu bytes\n",
              model->fixed_state_bytes(), model->state_bytes_per_block(),
              static_cast<unsigned long long>(peak_rss_bytes()));

  nlohmann::json ops = nlohmann::json::object();
  if (profile_ops) {
    double op_total = 0;
    for (const auto& entry : profile.ops) op_total += entry.ms;
    std::printf("time by op (synchronised after each op; %.1f ms in ops of %.1f ms in all):\n",
                op_total, totals.total_ms);
    for (int op = 0; op < static_cast<int>(Op::count); ++op) {
      const auto& entry = profile.ops[op];
      if (entry.calls == 0) continue;
      const std::string name(op_name(static_cast<Op>(op)));
      std::printf("  %-22s %9.1f ms %6.1f%% %8lld calls\n", name.c_str(), entry.ms,
                  100.0 * entry.ms / std::max(totals.total_ms, 1e-9),
                  static_cast<long long>(entry.calls));
      ops[name] = {{"ms", entry.ms}, {"calls", entry.calls}};
    }
  }
  if (json_path) {
    write_json_file(*json_path,
                    {{"model", {{"name", c.name}, {"id", model->id()}, {"path", model_path}}},
                     {"threads", strand::cpu::num_threads()},
                     {"prompt", kBenchPrompt},
                     {"seed", kBenchSeed},
                     {"text_tokens", text_tokens},
                     {"blocks", rows},
                     {"totals_ms", timings_to_json(totals)},
                     {"frames_per_second", fps},
                     {"dit_gflops_per_s", mean_gflops},
                     {"sgemm_gflops_per_s", sgemm},
                     {"flops_counting", "analytic: matrix products only, 2 FLOPs per multiply-add"},
                     {"memory_state_bytes_fixed", model->fixed_state_bytes()},
                     {"memory_state_bytes_per_block_growth", model->state_bytes_per_block()},
                     {"peak_rss_bytes", peak_rss_bytes()},
                     {"ops_ms", ops}});
  }
  return 0;
}

}  // namespace strand::cli
