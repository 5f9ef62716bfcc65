// Session: the sampling loop of docs/model-spec.md section 5 over an Engine, with snapshots,
// prompt switches (optionally re-cached), cancellation and an undo log of clean passes.
#include "strand/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <utility>

#include "decoder.h"
#include "engine.h"
#include "rng.h"
#include "strand/error.h"

namespace strand {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}


// Everything needed to undo one clean pass and to replay it under another prompt.
struct CleanPassRecord {
  int64_t block = 0;
  std::vector<float> latents;                      // the block's clean x0
  std::vector<std::vector<float>> hybrid_before;   // per layer: state before the pass (or empty)
  std::vector<size_t> kv_size_before;              // per layer: cache length before the pass
  std::vector<std::vector<KvBlock>> kv_dropped;    // per layer: blocks the pass dropped
};

uint8_t to_byte(float v) {
  const float scaled = std::clamp((v + 1.0f) * 127.5f, 0.0f, 255.0f);
  return static_cast<uint8_t>(std::floor(scaled + 0.5f));  // half away from zero (non-negative)
}

}  // namespace

void validate_prompt(std::string_view prompt) {
  if (prompt.size() > kMaxPromptBytes) {
    throw Error(ErrorKind::invalid_argument, "prompt is too long (" + std::to_string(prompt.size()) +
                                                 " bytes; the limit is 4096)");
  }
  if (!is_valid_utf8(prompt)) throw Error(ErrorKind::invalid_argument, "prompt is not valid UTF-8");
  const bool blank = std::all_of(prompt.begin(), prompt.end(), [](char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
  });
  if (blank) throw Error(ErrorKind::invalid_argument, "prompt is empty");
}

std::unique_ptr<Backend> make_backend(const SessionOptions& options) {
  auto backend = make_dispatch_backend(options.device == DeviceKind::cuda
                                           ? make_cuda_backend(options.device_index, options.precision)
                                           : make_cpu_backend());
  if (options.op_profile != nullptr) return make_profiling_backend(std::move(backend), options.op_profile);
  return backend;
}

namespace {
// A session given its backend decodes on it: make_backend(options) would not make a second one of
// its kind, and frames must not depend on the overlap.
SessionOptions serial_decode(SessionOptions options) {
  options.overlap_decode = false;
  return options;
}
}  // namespace

struct Session::Impl {
  std::shared_ptr<const Model> model;
  Engine engine;
  SessionOptions options;
  MemoryState memory;
  TextContext text;  // encoded active prompt (empty prompt: none yet)
  std::deque<CleanPassRecord> history;
  // On the engine's backend, or (overlap_decode) on one of its own, driven by decode_thread while
  // the clean pass runs on the engine. Declared after the engine, whose backend it may borrow.
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<DecodeThread> decode_thread;  // null unless overlapped
  std::atomic<bool> cancel_requested{false};
  ProgressCallback progress;
  double pending_text_ms = 0, pending_recache_ms = 0;  // reported with the next block

  Impl(std::shared_ptr<const Model> m, SessionOptions o, std::unique_ptr<Backend> backend)
      : model(m), engine(m, std::move(backend)), options(o) {
    memory = engine.empty_memory();
    memory.seed = options.seed;
    engine.set_pass_recording(options.record_passes);
    const bool overlap = options.op_profile == nullptr &&
                         options.overlap_decode.value_or(options.device == DeviceKind::cuda);
    if (overlap) {
      std::unique_ptr<Backend> own = make_backend(options);  // op_profile is null here
      if (options.wrap_decoder_backend) own = options.wrap_decoder_backend(std::move(own));
      decoder = std::make_unique<Decoder>(model, std::move(own));
      decode_thread = std::make_unique<DecodeThread>();
    } else {
      decoder = std::make_unique<Decoder>(model, engine.backend());
    }
  }

  // One block's latents [F, C, h, w] to RGB8 frames numbered from first_frame; before_frame runs
  // before each frame's decode (cancellation).
  std::vector<Frame> decode_frames(const float* latents, int64_t first_frame,
                                   const std::function<void()>& before_frame) {
    const ModelConfig& c = model->config();
    const std::vector<float> rgb = decoder->decode(latents, c.frames_per_block, before_frame);
    const size_t pixels = static_cast<size_t>(c.width) * c.height;
    std::vector<Frame> frames(static_cast<size_t>(c.frames_per_block));
    for (size_t f = 0; f < frames.size(); ++f) {
      Frame& frame = frames[f];
      const float* planes = rgb.data() + f * 3 * pixels;
      frame.width = c.width;
      frame.height = c.height;
      frame.index = first_frame + static_cast<int64_t>(f);
      frame.rgb.resize(pixels * 3);
      for (size_t p = 0; p < pixels; ++p) {
        for (size_t ch = 0; ch < 3; ++ch) frame.rgb[p * 3 + ch] = to_byte(planes[ch * pixels + p]);
      }
    }
    return frames;
  }

  void check_cancel() {
    if (cancel_requested.exchange(false)) {
      throw Error(ErrorKind::cancelled, "cancelled; the memory is at the last committed block");
    }
  }

  // Runs the clean pass of `latents` at `block` on `memory`, returning its undo record. On any
  // error the memory is rolled back before the error propagates.
  CleanPassRecord clean_pass(const std::vector<float>& latents, int64_t block, const TextContext& ctx) {
    CleanPassRecord record;
    record.block = block;
    record.latents = latents;
    for (const auto& layer : memory.layers) {
      record.hybrid_before.push_back(layer.state);
      record.kv_size_before.push_back(layer.kv_blocks.size());
    }
    try {
      engine.dit(latents, 0.0f, ctx, memory, block, /*update=*/true, nullptr, &record.kv_dropped);
    } catch (...) {
      undo(record);
      throw;
    }
    return record;
  }

  // Undoes a clean pass, also a partial one (an error mid-pass): a softmax_kv layer that ran
  // appended its block last and moved the blocks outside sink + window into kv_dropped.
  void undo(CleanPassRecord& record) {
    const size_t sink = static_cast<size_t>(model->config().kv_sink);
    for (size_t i = 0; i < memory.layers.size(); ++i) {
      LayerMemory& layer = memory.layers[i];
      layer.state = record.hybrid_before[i];
      auto& cache = layer.kv_blocks;
      std::vector<KvBlock>* dropped = i < record.kv_dropped.size() ? &record.kv_dropped[i] : nullptr;
      const bool ran = (dropped != nullptr && !dropped->empty()) ||
                       cache.size() == record.kv_size_before[i] + 1;
      if (!ran) continue;
      cache.pop_back();
      if (dropped != nullptr && !dropped->empty()) {
        const auto at = cache.begin() + static_cast<std::ptrdiff_t>(std::min(sink, cache.size()));
        cache.insert(at, std::make_move_iterator(dropped->begin()),
                     std::make_move_iterator(dropped->end()));
        dropped->clear();
      }
    }
  }
};

Session::Session(std::shared_ptr<const Model> model, SessionOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), options, make_backend(options))) {}

Session::Session(std::shared_ptr<const Model> model, SessionOptions options,
                 std::unique_ptr<Backend> backend)
    : impl_(std::make_unique<Impl>(std::move(model), serial_decode(std::move(options)),
                                   std::move(backend))) {}

Session::~Session() = default;

void Session::set_prompt(std::string_view prompt, int recache_blocks) {
  validate_prompt(prompt);
  if (recache_blocks < 0) throw Error(ErrorKind::invalid_argument, "re-cache blocks must be >= 0");
  Impl& s = *impl_;
  const auto start = Clock::now();
  TextContext text = s.engine.encode_prompt(std::string(prompt));
  const double text_ms = ms_since(start);
  const size_t k = std::min(static_cast<size_t>(recache_blocks), s.history.size());
  if (k > 0) {
    // Undo the last k clean passes (newest first), then replay them under the new prompt.
    const MemoryState saved = s.memory;
    const std::deque<CleanPassRecord> saved_history = s.history;
    // `saved` may hold cache blocks whose values are only on the device (host copy pending): the
    // replay must not release those device copies, or a failure could not put them back.
    struct KeepSaved {
      Engine& engine;
      ~KeepSaved() { engine.keep_kv_blocks_of(nullptr); }
    } keep_saved{s.engine};
    s.engine.keep_kv_blocks_of(&saved);
    try {
      for (size_t i = 0; i < k; ++i) s.undo(s.history[s.history.size() - 1 - i]);
      std::vector<CleanPassRecord> replayed;
      for (size_t i = s.history.size() - k; i < s.history.size(); ++i) {
        replayed.push_back(s.clean_pass(s.history[i].latents, s.history[i].block, text));
      }
      for (size_t i = 0; i < k; ++i) s.history[s.history.size() - k + i] = std::move(replayed[i]);
    } catch (...) {
      s.memory = saved;
      s.history = saved_history;
      throw;
    }
  }
  s.text = std::move(text);
  s.memory.prompt = std::string(prompt);
  s.pending_text_ms += text_ms;
  if (k > 0) s.pending_recache_ms += ms_since(start) - text_ms;
}

const std::string& Session::prompt() const { return impl_->memory.prompt; }

BlockResult Session::generate_next_block() {
  Impl& s = *impl_;
  if (s.text.tokens == 0) throw Error(ErrorKind::invalid_argument, "no prompt set");
  const ModelConfig& c = s.model->config();
  const auto start = Clock::now();
  const int64_t n = s.memory.next_block;
  const size_t count = static_cast<size_t>(c.frames_per_block) * c.latent_channels *
                       c.latent_height() * c.latent_width();
  const int steps = static_cast<int>(c.sigmas.size());
  BlockResult result;
  result.block_index = n;

  std::vector<float> x(count), noise(count), x0(count);
  fill_noise(x.data(), count, s.memory.seed, static_cast<uint32_t>(n), 0);
  auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    s.check_cancel();
    const float sigma = c.sigmas[static_cast<size_t>(i)];
    const std::vector<float> v = s.engine.dit(x, sigma, s.text, s.memory, n, /*update=*/false);
    for (size_t j = 0; j < count; ++j) x0[j] = x[j] - sigma * v[j];
    if (i + 1 < steps) {
      const float next = c.sigmas[static_cast<size_t>(i + 1)];
      fill_noise(noise.data(), count, s.memory.seed, static_cast<uint32_t>(n),
                 static_cast<uint32_t>(i + 1));
      for (size_t j = 0; j < count; ++j) x[j] = (1.0f - next) * x0[j] + next * noise[j];
    }
    if (s.progress) s.progress(i + 1, steps + 1);
  }
  result.timings.denoise_ms = ms_since(t0);

  // Decode and clean pass: independent (both only read x0, the prompt and the model; the clean
  // pass alone writes the memory). Overlapped, the block commits only once both succeeded.
  const int64_t first_frame = n * c.frames_per_block;
  const std::function<void()> check_cancel = [&s] { s.check_cancel(); };
  CleanPassRecord record;
  if (!s.decode_thread) {
    t0 = Clock::now();
    result.frames = s.decode_frames(x0.data(), first_frame, check_cancel);
    result.timings.decode_ms = ms_since(t0);
    s.check_cancel();
    t0 = Clock::now();
    record = s.clean_pass(x0, n, s.text);
    result.timings.clean_ms = ms_since(t0);
  } else {
    s.check_cancel();  // before starting either stage, as the serial order checks before the decode
    double decode_ms = 0;
    s.decode_thread->run([&] {  // x0, result.frames and decode_ms outlive the job: waited below
      const auto decode_start = Clock::now();
      result.frames = s.decode_frames(x0.data(), first_frame, check_cancel);
      decode_ms = ms_since(decode_start);
    });
    t0 = Clock::now();
    try {
      record = s.clean_pass(x0, n, s.text);  // rolls itself back on error
    } catch (...) {
      try {
        s.decode_thread->wait();
      } catch (...) {  // the block is abandoned: its frames or decode error go with it
      }
      throw;
    }
    result.timings.clean_ms = ms_since(t0);
    try {
      s.decode_thread->wait();
    } catch (...) {
      s.undo(record);  // nothing committed: back to the last committed block
      throw;
    }
    result.timings.decode_ms = decode_ms;
  }
  s.memory.next_block = n + 1;
  s.cancel_requested.store(false);  // nothing left to cancel: the block is committed
  if (s.options.recache_history > 0) {
    s.history.push_back(std::move(record));
    while (s.history.size() > static_cast<size_t>(s.options.recache_history)) s.history.pop_front();
  }
  if (s.progress) s.progress(steps + 1, steps + 1);
  result.latents = std::move(x0);
  result.timings.text_ms = std::exchange(s.pending_text_ms, 0.0);
  result.timings.recache_ms = std::exchange(s.pending_recache_ms, 0.0);
  result.timings.total_ms = ms_since(start);
  return result;
}

std::vector<Frame> Session::decode_latents(const std::vector<float>& latents, int64_t first_frame) {
  const ModelConfig& c = impl_->model->config();
  const size_t frame_latent =
      static_cast<size_t>(c.latent_channels) * c.latent_height() * c.latent_width();
  if (latents.size() != frame_latent * static_cast<size_t>(c.frames_per_block)) {
    throw Error(ErrorKind::invalid_argument, "latents do not hold one block of this model");
  }
  return impl_->decode_frames(latents.data(), first_frame, {});
}

void Session::cancel() { impl_->cancel_requested.store(true); }

MemoryState Session::snapshot() const {
  // Logically const: the host copy of pending cache blocks is filled in, the memory is unchanged.
  impl_->engine.download_kv_blocks(impl_->memory);
  return impl_->memory;
}

size_t Session::memory_state_bytes() const {
  // Blocks whose host copy is pending hold the same bytes, on the device.
  const ModelConfig& c = impl_->model->config();
  const size_t block_bytes = 2 * static_cast<size_t>(c.tokens_per_block()) * c.dim * sizeof(float);
  size_t total = impl_->memory.size_bytes();
  for (const LayerMemory& layer : impl_->memory.layers) {
    for (const KvBlock& block : layer.kv_blocks) {
      if (block.host_copy_pending()) total += block_bytes;
    }
  }
  return total;
}
bool Session::overlaps_decode() const { return impl_->decode_thread != nullptr; }
int64_t Session::replayed_passes() const { return impl_->engine.recording_stats().replayed; }

void Session::restore(const MemoryState& state) {
  Impl& s = *impl_;
  if (!state.model_id.empty() && state.model_id != s.model->id()) {
    throw Error(ErrorKind::model_mismatch,
                "snapshot was made by another model (" + state.model_id + ", this is " +
                    s.model->id() + ")");
  }
  const MemoryState empty = s.engine.empty_memory();
  bool layout_ok = state.layers.size() == empty.layers.size() && state.next_block >= 0;
  for (size_t i = 0; layout_ok && i < state.layers.size(); ++i) {
    layout_ok = state.layers[i].state.size() == empty.layers[i].state.size();
    const size_t n = static_cast<size_t>(s.model->config().tokens_per_block()) * s.model->config().dim;
    for (const auto& kv : state.layers[i].kv_blocks) {
      layout_ok = layout_ok && kv.k.size() == n && kv.v.size() == n;
    }
  }
  if (!layout_ok) throw Error(ErrorKind::model_mismatch, "snapshot layout does not match the model");
  TextContext text;
  if (!state.prompt.empty()) {
    validate_prompt(state.prompt);
    text = s.engine.encode_prompt(state.prompt);
  }
  s.memory = state;
  s.memory.model_id = s.model->id();
  s.text = std::move(text);
  s.history.clear();
  // The device copies of blocks the old memory alone held become spares for the restored ones.
  s.engine.release_unused_kv_blocks(s.memory);
  s.cancel_requested.store(false);
}

void Session::set_seed(uint64_t seed) { impl_->memory.seed = seed; }
uint64_t Session::seed() const { return impl_->memory.seed; }
int64_t Session::next_block() const { return impl_->memory.next_block; }
int64_t Session::next_frame() const {
  return impl_->memory.next_block * impl_->model->config().frames_per_block;
}
const Model& Session::model() const { return *impl_->model; }
void Session::set_progress_callback(ProgressCallback callback) { impl_->progress = std::move(callback); }

}  // namespace strand
