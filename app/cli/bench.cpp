// `strand-cli bench`: times N blocks with a fixed prompt and seed (or --prompt / --seed), per
// stage, and reports the arithmetic throughput of the DiT passes. On a GPU (--device cuda) it also
// reports the device memory in use after each block; --ops adds the time of each op and shape with
// the op's least FLOPs and bytes (for roofline floors), and --max-seconds / --max-state-bytes end
// long runs early but cleanly (the JSON then says why and after how many blocks). --latents-out
// writes every generated block's clean latents (warm-up blocks included) to a safetensors file,
// for precision studies against the PyTorch reference (tools/gpu/bf16_error.py).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "cli.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threading.h"
#include "strand/error.h"
#include "strand/safetensors.h"

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

// A prompt that the model's tokenizer turns into exactly `tokens` ids ([CLS] + words + [SEP]), for
// benchmarks at a given text length (the reference shape has 512 text tokens).
std::string prompt_of_tokens(const Model& model, int64_t tokens) {
  const auto& tokenizer = model.tokenizer();
  for (const char* word : {"a", "the", "sky", "forest"}) {
    if (tokenizer.encode(word).size() != 3) continue;  // not a single vocabulary token
    std::string prompt;
    for (int64_t i = 0; i + 2 < tokens; ++i) {
      if (i > 0) prompt += ' ';
      prompt += word;
    }
    if (prompt.empty()) break;
    if (prompt.size() > kMaxPromptBytes) break;
    const auto got = static_cast<int64_t>(tokenizer.encode(prompt).size());
    if (got != tokens) {
      throw Error(ErrorKind::invalid_argument, "--prompt-tokens " + std::to_string(tokens) +
                                                   ": this model's text encoder takes " +
                                                   std::to_string(got) + " tokens at most");
    }
    return prompt;
  }
  throw Error(ErrorKind::invalid_argument,
              "--prompt-tokens " + std::to_string(tokens) +
                  ": cannot build such a prompt for this model (needs 3 or more tokens and a "
                  "one-token word such as 'a' in the vocabulary)");
}

nlohmann::json entry_to_json(const OpProfile::Entry& e) {
  return {{"ms", e.ms},
          {"calls", e.calls},
          {"flops", e.flops},
          {"bytes_f32", e.bytes},
          {"weight_bytes_f32", e.weight_bytes}};
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

// Every generated block's clean latents x0 as float32 tensors "block.N" [F, C, h, w]; the
// metadata names the inputs (prompt, seed, model id) and the device and precision they ran on.
void write_latents_file(const std::string& path, const Model& model, const DeviceChoice& device,
                        const std::string& prompt, uint64_t seed,
                        const std::vector<BlockResult>& blocks) {
  const ModelConfig& c = model.config();
  const std::vector<int64_t> shape = {c.frames_per_block, c.latent_channels, c.latent_height(),
                                      c.latent_width()};
  std::vector<TensorToWrite> tensors;
  for (const BlockResult& block : blocks) {
    tensors.push_back(
        {"block." + std::to_string(block.block_index), DType::F32, shape,
         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(block.latents.data()),
                                  block.latents.size() * sizeof(float))});
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "strand-latents"},
      {"layout", "block.N: clean latents x0 of block N, float32 [frames, channels, height, width]"},
      {"model_id", model.id()},
      {"model_name", c.name},
      {"prompt", prompt},
      {"seed", std::to_string(seed)},
      {"device", device.cuda ? "cuda" : "cpu"},
      {"precision", device.bf16 ? "bf16" : "fp32"},
      {"blocks", std::to_string(blocks.size())}};
  write_safetensors(path, tensors, metadata);
}

}  // namespace

int run_bench(std::span<const std::string> args) {
  std::vector<OptionSpec> specs = {
      {"model"},         {"blocks"}, {"threads"},     {"json"},
      {"ops", false},    {"warmup"}, {"max-seconds"}, {"max-state-bytes"},
      {"prompt-tokens"}, {"prompt"}, {"seed"},        {"latents-out"},
      {"no-graphs", false}, {"no-overlap", false}};
  for (auto& spec : device_option_specs()) specs.push_back(std::move(spec));
  const Options options(args, specs);
  const int64_t blocks =
      options.has("blocks") ? parse_int(*options.get("blocks"), "blocks", 1, 100000) : 6;
  const int64_t warmup =
      options.has("warmup") ? parse_int(*options.get("warmup"), "warmup", 0, 1000) : 0;
  const int threads = options.has("threads")
                          ? static_cast<int>(parse_int(*options.get("threads"), "threads", 1, 4096))
                          : 0;
  // Whole seconds of generation (warm-up included) after which no further block is started.
  const int64_t max_seconds =
      options.has("max-seconds") ? parse_int(*options.get("max-seconds"), "max-seconds", 1, 1 << 30)
                                 : 0;
  // No block is started whose memory state would pass this (a full softmax_kv cache at real
  // scale outgrows host or device memory long before a long run ends).
  const uint64_t max_state_bytes =
      options.has("max-state-bytes") ? parse_u64(*options.get("max-state-bytes"), "max-state-bytes")
                                     : 0;
  const DeviceChoice device = parse_device_options(options);
  if (options.has("prompt") && options.has("prompt-tokens"))
    throw Error(ErrorKind::invalid_argument, "--prompt and --prompt-tokens exclude each other");
  if (const auto prompt = options.get("prompt")) validate_prompt(*prompt, "--prompt");
  const uint64_t seed = options.has("seed") ? parse_u64(*options.get("seed"), "seed") : kBenchSeed;
  const std::optional<std::string> json_path = options.get("json");
  const std::optional<std::string> latents_path = options.get("latents-out");
  const std::string model_path = model_path_or_default(options.get("model"));
  const std::shared_ptr<const Model> model = load_model(model_path);
  if (json_path) prepare_output_file(*json_path, "--json");
  if (latents_path) prepare_output_file(*latents_path, "--latents-out");
  const ModelConfig& c = model->config();
  const std::string prompt =
      options.has("prompt-tokens")
          ? prompt_of_tokens(*model, parse_int(*options.get("prompt-tokens"), "prompt-tokens", 3,
                                               static_cast<int64_t>(kMaxPromptBytes)))
          : options.get("prompt").value_or(kBenchPrompt);

  strand::cpu::set_num_threads(threads);  // 0: hardware default
  SessionOptions session_options;
  session_options.seed = seed;
  apply_device(device, session_options);
  session_options.record_passes = !options.has("no-graphs");
  if (options.has("no-overlap")) session_options.overlap_decode = false;
  OpProfile profile;
  const bool profile_ops = options.has("ops");
  if (profile_ops) {
    profile.record_shapes = true;
    session_options.op_profile = &profile;
  }
  const auto load_start = std::chrono::steady_clock::now();
  Session session(model, session_options);
  session.set_prompt(prompt);
  const double setup_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start)
          .count();
  const auto text_tokens = static_cast<int64_t>(model->tokenizer().encode(prompt).size());
  const int denoise_passes = static_cast<int>(c.sigmas.size());
  const std::optional<uint64_t> device_memory_at_start = device_memory_used_bytes(device);

  std::printf(
      "model %s (%lld parameters) on %s, %d CPU threads, %lld blocks of %d frames (+%lld warm-up), "
      "%d denoising passes + 1 clean, %lld text tokens%s\n",
      c.name.c_str(), static_cast<long long>(model->parameter_count()), device.describe().c_str(),
      strand::cpu::num_threads(), static_cast<long long>(blocks), c.frames_per_block,
      static_cast<long long>(warmup), denoise_passes, static_cast<long long>(text_tokens),
      session.overlaps_decode() ? ", decode beside the clean pass" : "");
  std::printf("%5s %11s %9s %10s %8s %9s %10s %12s %12s\n", "block", "denoise_ms", "clean_ms",
              "decode_ms", "text_ms", "total_ms", "dit_gflops", "state_bytes", "device_bytes");

  InterruptGuard interrupt(session);
  nlohmann::json rows = nlohmann::json::array();
  double sum_dit_flops = 0, sum_dit_ms = 0;
  BlockTimings totals;
  std::string stopped;  // why the run ended before `blocks` timed blocks, if it did
  uint64_t peak_device_bytes = device_memory_at_start.value_or(0);
  std::vector<BlockResult> generated;  // kept for --latents-out only (frames dropped)
  const auto run_start = std::chrono::steady_clock::now();
  int64_t timed = 0;
  for (int64_t i = 0; i < warmup + blocks; ++i) {
    const double elapsed_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    if (max_seconds > 0 && elapsed_s >= static_cast<double>(max_seconds)) {
      stopped = "time budget of " + std::to_string(max_seconds) + " s reached";
      break;
    }
    if (max_state_bytes > 0 &&
        session.memory_state_bytes() + model->state_bytes_per_block() > max_state_bytes) {
      stopped = "memory state would pass --max-state-bytes " + std::to_string(max_state_bytes);
      break;
    }
    BlockResult result;
    try {
      result = session.generate_next_block();
    } catch (const Error& e) {
      // Out of memory ends the run but not the report: the session is still at its last block.
      if (e.kind() != ErrorKind::out_of_memory) throw;
      stopped = std::string("out of memory: ") + e.what();
    } catch (const std::bad_alloc&) {
      stopped = "out of host memory";
    }
    if (!stopped.empty()) break;
    if (latents_path) {
      BlockResult kept;
      kept.block_index = result.block_index;
      kept.latents = std::move(result.latents);  // not used below
      generated.push_back(std::move(kept));
    }
    if (i == warmup - 1 && profile_ops) {
      profile = OpProfile{};  // the warm-up's op times are not reported
      profile.record_shapes = true;
    }
    if (i < warmup) continue;
    ++timed;
    const BlockTimings& t = result.timings;
    const double flops =
        denoise_passes * dit_pass_flops(c, text_tokens, result.block_index, false) +
        dit_pass_flops(c, text_tokens, result.block_index, true);
    const double dit_ms = t.denoise_ms + t.clean_ms;
    const double gflops = dit_ms > 0 ? flops / (dit_ms * 1e6) : 0.0;
    const size_t state_bytes = session.memory_state_bytes();
    const uint64_t rss = current_rss_bytes();
    const std::optional<uint64_t> device_bytes = device_memory_used_bytes(device);
    if (device_bytes) peak_device_bytes = std::max(peak_device_bytes, *device_bytes);
    std::printf("%5lld %11.2f %9.2f %10.2f %8.2f %9.2f %10.2f %12zu %12llu\n",
                static_cast<long long>(result.block_index), t.denoise_ms, t.clean_ms, t.decode_ms,
                t.text_ms, t.total_ms, gflops, state_bytes,
                static_cast<unsigned long long>(device_bytes.value_or(0)));
    std::fflush(stdout);
    sum_dit_flops += flops;
    sum_dit_ms += dit_ms;
    totals.denoise_ms += t.denoise_ms;
    totals.clean_ms += t.clean_ms;
    totals.decode_ms += t.decode_ms;
    totals.text_ms += t.text_ms;
    totals.recache_ms += t.recache_ms;
    totals.total_ms += t.total_ms;
    nlohmann::json row = {
        {"block", result.block_index}, {"ms", timings_to_json(t)},          {"dit_flops", flops},
        {"dit_gflops_per_s", gflops},  {"memory_state_bytes", state_bytes}, {"rss_bytes", rss}};
    if (device_bytes) row["device_memory_used_bytes"] = *device_bytes;
    rows.push_back(std::move(row));
  }
  if (interrupt.interrupted()) throw Error(ErrorKind::cancelled, "cancelled");
  if (!stopped.empty()) {
    std::printf("stopped after %lld timed blocks: %s\n", static_cast<long long>(timed),
                stopped.c_str());
  }

  const double mean_gflops = sum_dit_ms > 0 ? sum_dit_flops / (sum_dit_ms * 1e6) : 0.0;
  // The CPU sgemm yardstick means nothing for a GPU run (and without OpenBLAS it takes minutes at
  // real scale): GPU roofline probes are tools/gpu/roofline.py's job.
  const double sgemm = device.cuda ? 0.0 : sgemm_gflops(c);
  const int64_t frames = timed * c.frames_per_block;
  const double fps =
      totals.total_ms > 0 ? static_cast<double>(frames) / (totals.total_ms / 1000.0) : 0.0;
  std::printf("total: %.1f ms for %lld frames (%.2f frames/s); DiT %.2f GFLOP/s over all passes\n",
              totals.total_ms, static_cast<long long>(frames), fps, mean_gflops);
  if (!device.cuda) {
    std::printf("sgemm [%d x %d] x [%d x %d]^T: %.2f GFLOP/s; the DiT passes reach %.0f%% of it\n",
                c.tokens_per_block(), c.dim, c.mlp_dim, c.dim, sgemm,
                sgemm > 0 ? 100.0 * mean_gflops / sgemm : 0.0);
  }
  std::printf("memory state: %zu bytes fixed + %zu bytes per block; peak RSS %llu bytes\n",
              model->fixed_state_bytes(), model->state_bytes_per_block(),
              static_cast<unsigned long long>(peak_rss_bytes()));
  if (device.cuda) {
    std::printf(
        "GPU memory in use: %llu bytes before the first block, %llu at most after a block\n",
        static_cast<unsigned long long>(device_memory_at_start.value_or(0)),
        static_cast<unsigned long long>(peak_device_bytes));
  }

  nlohmann::json ops = nlohmann::json::object();
  nlohmann::json op_shapes = nlohmann::json::object();
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
      ops[name] = entry_to_json(entry);
    }
    for (const auto& [shape, entry] : profile.by_shape) op_shapes[shape] = entry_to_json(entry);
  }
  if (latents_path) write_latents_file(*latents_path, *model, device, prompt, seed, generated);
  if (json_path) {
    nlohmann::json report = {
        {"model", {{"name", c.name}, {"id", model->id()}, {"path", model_path}}},
        {"parameters", model->parameter_count()},
        {"device", device.cuda ? "cuda" : "cpu"},
        {"device_index", device.index},
        {"precision", device.bf16 ? "bf16" : "fp32"},
        {"recorded_passes", session_options.record_passes && device.cuda && !profile_ops},
        {"overlapped_decode", session.overlaps_decode()},
        {"threads", strand::cpu::num_threads()},
        {"prompt", prompt},
        {"seed", seed},
        {"text_tokens", text_tokens},
        {"tokens_per_block", c.tokens_per_block()},
        {"frames_per_block", c.frames_per_block},
        {"denoise_passes", denoise_passes},
        {"warmup_blocks", warmup},
        {"blocks_requested", blocks},
        {"blocks_timed", timed},
        {"stopped", stopped.empty() ? nlohmann::json(nullptr) : nlohmann::json(stopped)},
        {"setup_ms", setup_ms},
        {"blocks", rows},
        {"totals_ms", timings_to_json(totals)},
        {"frames_per_second", fps},
        {"dit_gflops_per_s", mean_gflops},
        {"sgemm_gflops_per_s", device.cuda ? nlohmann::json(nullptr) : nlohmann::json(sgemm)},
        {"flops_counting", "analytic: matrix products only, 2 FLOPs per multiply-add"},
        {"memory_state_bytes_fixed", model->fixed_state_bytes()},
        {"memory_state_bytes_per_block_growth", model->state_bytes_per_block()},
        {"peak_rss_bytes", peak_rss_bytes()},
        {"ops_ms", ops},
        {"ops_by_shape", op_shapes}};
    if (device.cuda) {
      report["device_memory_used_bytes_at_start"] = device_memory_at_start
                                                        ? nlohmann::json(*device_memory_at_start)
                                                        : nlohmann::json(nullptr);
      report["device_memory_used_bytes_peak_after_block"] = peak_device_bytes;
    }
    write_json_file(*json_path, report);
  }
  return 0;
}

}  // namespace strand::cli
