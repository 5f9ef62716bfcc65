// The forward passes of docs/model-spec.md on a Backend. Heavy work (GEMMs, norms, attention, the
// delta rule, convolutions) runs as backend ops on device buffers; small per-token gate arithmetic
// and (un)patchify run on the host, where they cost a few microseconds per block.
#include "engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <unordered_set>

#include "decoder.h"
#include "kernels/cpu/threading.h"
#include "strand/error.h"

namespace strand {
namespace {

constexpr float kLayerNormEps = 1e-6f;
constexpr float kRmsEps = 1e-6f;
constexpr float kBertEps = 1e-12f;
constexpr float kL2Eps = 1e-6f;


// Process-wide, so that a MemoryState or TextContext passed between engines never matches
// another engine's resident copy by accident.
uint64_t next_device_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, std::unique_ptr<Backend> backend)
    : model_(std::move(model)), backend_(std::move(backend)) {
  const ModelConfig& c = model_->config();
  const int rows = c.latent_height() / c.patch, cols = c.latent_width() / c.patch;
  for (int f = 0; f < c.frames_per_block; ++f) {
    for (int r = 0; r < rows; ++r) {
      for (int col = 0; col < cols; ++col) {
        pos_t_.push_back(f);
        pos_r_.push_back(r);
        pos_c_.push_back(col);
      }
    }
  }
}

Engine::~Engine() = default;

const float* Engine::w(const std::string& name) {
  const std::vector<float>& host = model_->weight(name);
  if (backend_->device() == DeviceKind::cpu) return host.data();
  auto it = device_weights_.find(name);
  if (it == device_weights_.end()) {
    auto buffer = backend_->allocate(host.size());
    backend_->upload(buffer->data(), host.data(), host.size());
    it = device_weights_.emplace(name, std::move(buffer)).first;
  }
  return it->second->data();
}

float* Engine::buffer(const std::string& key, size_t count) {
  auto& slot = scratch_[key];
  if (!slot || slot->count() < count) slot = backend_->allocate(std::max<size_t>(count, 1));
  return slot->data();
}

float* Engine::resident_state(int layer, LayerMemory& memory) {
  if (host_backend()) return memory.state.data();
  ResidentState& resident = resident_states_[layer];
  const size_t n = memory.state.size();
  if (!resident.device || resident.device->count() < n) {
    resident.device = backend_->allocate(std::max<size_t>(n, 1));
    resident.synced.clear();
  }
  const bool in_sync =
      resident.synced.size() == n &&
      std::memcmp(resident.synced.data(), memory.state.data(), n * sizeof(float)) == 0;
  if (!in_sync) {
    backend_->upload(resident.device->data(), memory.state.data(), n);
    resident.synced = memory.state;
  }
  return resident.device->data();
}

void Engine::after_state_update(int layer, LayerMemory& memory) {
  if (host_backend()) return;
  ResidentState& resident = resident_states_.at(layer);  // dit() cleared `synced` before the pass
  backend_->download(memory.state.data(), resident.device->data(), memory.state.size());
  resident.synced = memory.state;
}

const float* Engine::resident_kv_block(KvBlock& block, bool values) {
  if (host_backend()) return values ? block.v.data() : block.k.data();
  auto it = block.device_id != 0 ? resident_kv_.find(block.device_id) : resident_kv_.end();
  if (it == resident_kv_.end()) {
    if (block.host_copy_pending()) {
      throw Error(ErrorKind::invalid_argument,
                  "a cached block's values are neither on the host nor on this device");
    }
    ResidentKv copy{take_kv_buffer(block.k.size()), take_kv_buffer(block.v.size())};
    backend_->upload(copy.k->data(), block.k.data(), block.k.size());
    backend_->upload(copy.v->data(), block.v.data(), block.v.size());
    if (block.device_id == 0) block.device_id = next_device_id();
    it = resident_kv_.insert_or_assign(block.device_id, std::move(copy)).first;
  }
  return values ? it->second.v->data() : it->second.k->data();
}

std::unique_ptr<Buffer> Engine::take_kv_buffer(size_t count) {
  auto it = std::find_if(kv_spare_.begin(), kv_spare_.end(),
                         [&](const auto& spare) { return spare->count() == count; });
  if (it == kv_spare_.end()) {
    ++kv_buffer_stats_.allocated;
    return backend_->allocate(count);
  }
  std::unique_ptr<Buffer> reused = std::move(*it);
  kv_spare_.erase(it);
  ++kv_buffer_stats_.reused;
  ++kv_reuse_epoch_;
  return reused;
}

void Engine::give_back_kv_buffer(std::unique_ptr<Buffer> buffer) {
  if (!buffer) return;
  // One clean pass takes K and V per softmax_kv layer: with that many spares, a windowed cache
  // in steady state (one block in, one out per layer) allocates nothing. More would only hold
  // device memory that the bench reports as used.
  const size_t limit = 2 * static_cast<size_t>(model_->config().softmax_layers());
  if (kv_spare_.size() < limit) {
    kv_spare_.push_back(std::move(buffer));
  } else {
    ++kv_buffer_stats_.freed;
    buffer.reset();
  }
}

Engine::KvBufferStats Engine::kv_buffer_stats() const {
  KvBufferStats stats = kv_buffer_stats_;
  stats.spare = kv_spare_.size();
  return stats;
}

void Engine::release_unused_kv_blocks(const MemoryState& memory) {
  if (resident_kv_.empty()) return;
  std::unordered_set<uint64_t> used;
  for (const MemoryState* m : {&memory, kv_kept_also_}) {
    if (m == nullptr) continue;
    for (const LayerMemory& layer : m->layers) {
      for (const KvBlock& block : layer.kv_blocks) used.insert(block.device_id);
    }
  }
  for (auto it = resident_kv_.begin(); it != resident_kv_.end();) {
    if (used.contains(it->first)) {
      ++it;
      continue;
    }
    give_back_kv_buffer(std::move(it->second.k));
    give_back_kv_buffer(std::move(it->second.v));
    it = resident_kv_.erase(it);
  }
}

void Engine::download_kv_blocks(MemoryState& memory) {
  if (host_backend()) return;
  for (LayerMemory& layer : memory.layers) {
    for (KvBlock& block : layer.kv_blocks) {
      if (!block.host_copy_pending()) continue;
      auto it = resident_kv_.find(block.device_id);
      if (it == resident_kv_.end()) {
        throw Error(ErrorKind::invalid_argument,
                    "a cached block's values are neither on the host nor on this device");
      }
      // Both halves first, so that an error leaves the block pending rather than half filled.
      const ModelConfig& c = model_->config();
      const size_t n = static_cast<size_t>(c.tokens_per_block()) * c.dim;
      std::vector<float> k(n), v(n);
      backend_->download(k.data(), it->second.k->data(), k.size());
      backend_->download(v.data(), it->second.v->data(), v.size());
      block.k = std::move(k);
      block.v = std::move(v);
    }
  }
}

const float* Engine::resident_cross(const TextContext& text, int layer, bool values) {
  const auto& host = values ? text.cross_v : text.cross_k;
  const std::vector<float>& layer_host = host[static_cast<size_t>(layer)];
  if (host_backend()) return layer_host.data();
  if (text.device_id == 0) {
    float* scratch = buffer(values ? "ca.v" : "ca.k", layer_host.size());
    backend_->upload(scratch, layer_host.data(), layer_host.size());
    return scratch;
  }
  auto it = std::find_if(resident_text_.begin(), resident_text_.end(),
                         [&](const ResidentText& r) { return r.id == text.device_id; });
  if (it == resident_text_.end()) {
    ResidentText resident;
    resident.id = text.device_id;
    for (size_t i = 0; i < text.cross_k.size(); ++i) {
      resident.k.push_back(backend_->allocate(text.cross_k[i].size()));
      backend_->upload(resident.k.back()->data(), text.cross_k[i].data(), text.cross_k[i].size());
      resident.v.push_back(backend_->allocate(text.cross_v[i].size()));
      backend_->upload(resident.v.back()->data(), text.cross_v[i].data(), text.cross_v[i].size());
    }
    // A prompt change re-caches recent blocks under the new prompt while the old one may still
    // be in use: keep the two most recent.
    if (resident_text_.size() >= 2) resident_text_.erase(resident_text_.begin());
    resident_text_.push_back(std::move(resident));
    it = resident_text_.end() - 1;
  }
  return (values ? it->v : it->k)[static_cast<size_t>(layer)]->data();
}

const float* Engine::modulation_rows(float sigma) {
  const ModelConfig& c = model_->config();
  uint32_t key = 0;
  std::memcpy(&key, &sigma, sizeof key);
  auto it = modulation_.find(key);
  if (it != modulation_.end()) return it->second->data();
  const size_t d = static_cast<size_t>(c.dim), layers = c.layers.size();
  std::vector<float> e, e0;
  time_embedding(sigma, e, e0);
  std::vector<float> rows((layers * 6 + 2) * d);
  for (size_t i = 0; i < layers; ++i) {
    const auto& modulation = model_->weight("blocks." + std::to_string(i) + ".modulation");
    for (size_t j = 0; j < 6 * d; ++j) rows[i * 6 * d + j] = modulation[j] + e0[j];
  }
  const auto& head_mod = model_->weight("head.modulation");
  for (size_t j = 0; j < 2 * d; ++j) rows[layers * 6 * d + j] = head_mod[j] + e[j % d];
  // A sampler uses a handful of sigmas; anything else (tests sweeping sigma) must not grow this.
  if (modulation_.size() >= 16) modulation_.clear();
  auto buffer = backend_->allocate(rows.size());
  backend_->upload(buffer->data(), rows.data(), rows.size());
  return modulation_.emplace(key, std::move(buffer)).first->second->data();
}

void Engine::run_recorded(const std::string& key, const std::function<void()>& pass) {
  Backend& b = *backend_;
  auto it = std::find_if(recordings_.begin(), recordings_.end(),
                         [&](const PassRecording& r) { return r.key == key; });
  if (it != recordings_.end() && it->recording && it->generation == b.generation() &&
      it->kv_reuse_epoch == kv_reuse_epoch_) {
    b.replay(*it->recording);
    ++recording_stats_.replayed;
    return;
  }
  if (it == recordings_.end()) {
    if (recordings_.size() >= kMaxRecordings) recordings_.erase(recordings_.begin());
    PassRecording fresh;
    fresh.key = key;
    recordings_.push_back(std::move(fresh));
    it = recordings_.end() - 1;
  }
  PassRecording& r = *it;
  r.recording.reset();
  // The first pass of a kind runs as it is: it makes every allocation and upload the pass needs,
  // which a recording cannot contain. The next one is recorded, then replayed.
  if (!r.seen || r.failed) {
    r.seen = true;
    ++recording_stats_.direct;
    pass();
    return;
  }
  try {
    b.begin_recording();
    r.generation = b.generation();
    r.kv_reuse_epoch = kv_reuse_epoch_;
    pass();
    r.recording = b.end_recording();
  } catch (const Error&) {
    try {
      b.end_recording();  // when the pass itself threw mid-recording
    } catch (const Error&) {
    }
    r.recording.reset();
    r.failed = true;  // not tried again for this kind of pass; nothing ran, so run it directly
    ++recording_stats_.failed;
    ++recording_stats_.direct;
    pass();
    return;
  }
  ++recording_stats_.recorded;
  b.replay(*r.recording);
  ++recording_stats_.replayed;
}

MemoryState Engine::empty_memory() const {
  const ModelConfig& c = model_->config();
  MemoryState m;
  m.model_id = model_->id();
  m.layers.resize(c.layers.size());
  const size_t dh = static_cast<size_t>(c.head_dim());
  for (size_t i = 0; i < c.layers.size(); ++i) {
    if (c.layers[i] == AttentionKind::hybrid) {
      m.layers[i].state.assign(static_cast<size_t>(c.heads) * dh * dh, 0.0f);
    }
  }
  return m;
}

std::vector<float> Engine::encode_text(const std::vector<int32_t>& ids) {
  const ModelConfig& c = model_->config();
  // A prompt is a few dozen tokens: too little work per op to split across threads, and on a
  // busy 2-core machine each fork/join can wait a whole scheduler slice (measured: 8-14 ms on one
  // thread vs 100-450 ms on two under load for MiniLM). One thread, then the previous count.
  struct SingleThreaded {
    int previous = cpu::num_threads();
    SingleThreaded() { cpu::set_num_threads(1); }
    ~SingleThreaded() { cpu::set_num_threads(previous); }
  } single_threaded;
  const int L = static_cast<int>(ids.size());
  const int dt = c.text_dim, heads = c.text_heads, inter = c.text_intermediate;
  const auto vocab = static_cast<int32_t>(model_->tokenizer().vocab().size());
  if (L > c.text_max_positions) {
    throw Error(ErrorKind::invalid_argument, "too many text tokens");
  }
  const auto& word = model_->weight("text_encoder.embeddings.word_embeddings.weight");
  const auto& pos = model_->weight("text_encoder.embeddings.position_embeddings.weight");
  const auto& type = model_->weight("text_encoder.embeddings.token_type_embeddings.weight");
  std::vector<float> host(static_cast<size_t>(L) * dt);
  for (int t = 0; t < L; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) throw Error(ErrorKind::invalid_argument, "token id out of range");
    for (int j = 0; j < dt; ++j) {
      host[static_cast<size_t>(t) * dt + j] = word[static_cast<size_t>(ids[t]) * dt + j] +
                                               pos[static_cast<size_t>(t) * dt + j] + type[j];
    }
  }
  Backend& b = *backend_;
  const size_t n = host.size();
  float* h = buffer("text.h", n);
  b.upload(h, host.data(), n);
  const std::string te = "text_encoder.";
  b.layer_norm(h, h, L, dt, w(te + "embeddings.LayerNorm.weight"), w(te + "embeddings.LayerNorm.bias"),
               kBertEps);
  float* q = buffer("text.q", n);
  float* k = buffer("text.k", n);
  float* v = buffer("text.v", n);
  float* ctx = buffer("text.ctx", n);
  float* a = buffer("text.a", n);
  float* mid = buffer("text.mid", static_cast<size_t>(L) * inter);
  const int dh = dt / heads;
  for (int i = 0; i < c.text_layers; ++i) {
    const std::string p = te + "encoder.layer." + std::to_string(i) + ".";
    b.linear(h, w(p + "attention.self.query.weight"), w(p + "attention.self.query.bias"), q, L, dt, dt);
    b.linear(h, w(p + "attention.self.key.weight"), w(p + "attention.self.key.bias"), k, L, dt, dt);
    b.linear(h, w(p + "attention.self.value.weight"), w(p + "attention.self.value.bias"), v, L, dt, dt);
    b.attention(q, dt, k, dt, v, dt, ctx, dt, L, L, heads, dh, 1.0f / std::sqrt(static_cast<float>(dh)));
    b.linear(ctx, w(p + "attention.output.dense.weight"), w(p + "attention.output.dense.bias"), a, L, dt, dt);
    b.gated_residual(a, h, nullptr, L, dt, L, 0);  // a = h + attn
    b.layer_norm(a, h, L, dt, w(p + "attention.output.LayerNorm.weight"),
                 w(p + "attention.output.LayerNorm.bias"), kBertEps);
    b.linear(h, w(p + "intermediate.dense.weight"), w(p + "intermediate.dense.bias"), mid, L, dt, inter);
    b.gelu_erf(mid, static_cast<size_t>(L) * inter);
    b.linear(mid, w(p + "output.dense.weight"), w(p + "output.dense.bias"), a, L, inter, dt);
    b.gated_residual(a, h, nullptr, L, dt, L, 0);
    b.layer_norm(a, h, L, dt, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"), kBertEps);
  }
  b.download(host.data(), h, n);
  return host;
}

TextContext Engine::encode_prompt(const std::string& prompt) {
  const ModelConfig& c = model_->config();
  TextContext text;
  text.prompt = prompt;
  text.device_id = next_device_id();
  const std::vector<int32_t> ids = model_->tokenizer().encode(prompt);
  text.tokens = static_cast<int>(ids.size());
  text.hidden = encode_text(ids);
  const int L = text.tokens, d = c.dim, dt = c.text_dim;
  Backend& b = *backend_;
  const size_t n = static_cast<size_t>(L) * d;
  float* hid = buffer("prompt.hidden", text.hidden.size());
  b.upload(hid, text.hidden.data(), text.hidden.size());
  float* mid = buffer("prompt.mid", n);
  float* ctx = buffer("prompt.ctx", n);
  b.linear(hid, w("text_embedding.0.weight"), w("text_embedding.0.bias"), mid, L, dt, d);
  b.gelu_tanh(mid, n);
  b.linear(mid, w("text_embedding.2.weight"), w("text_embedding.2.bias"), ctx, L, d, d);
  text.ctx.resize(n);
  b.download(text.ctx.data(), ctx, n);
  float* kv = buffer("prompt.kv", n);
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".cross_attn.";
    b.linear(ctx, w(p + "k.weight"), w(p + "k.bias"), kv, L, d, d);
    b.rms_norm(kv, kv, L, d, w(p + "norm_k.weight"), kRmsEps);
    text.cross_k.emplace_back(n);
    b.download(text.cross_k.back().data(), kv, n);
    b.linear(ctx, w(p + "v.weight"), w(p + "v.bias"), kv, L, d, d);
    text.cross_v.emplace_back(n);
    b.download(text.cross_v.back().data(), kv, n);
  }
  return text;
}

void Engine::time_embedding(float sigma, std::vector<float>& e, std::vector<float>& e0) {
  const ModelConfig& c = model_->config();
  const int half = c.freq_dim / 2, d = c.dim;
  std::vector<float> emb(static_cast<size_t>(c.freq_dim));
  const double t = static_cast<double>(sigma) * 1000.0;
  for (int i = 0; i < half; ++i) {
    const double freq = std::exp(-std::log(10000.0) * i / half);
    emb[static_cast<size_t>(i)] = static_cast<float>(std::cos(t * freq));
    emb[static_cast<size_t>(half + i)] = static_cast<float>(std::sin(t * freq));
  }
  Backend& b = *backend_;
  float* in = buffer("time.in", emb.size());
  float* mid = buffer("time.mid", static_cast<size_t>(d));
  float* out = buffer("time.e", static_cast<size_t>(d));
  float* proj = buffer("time.e0", static_cast<size_t>(6) * d);
  b.upload(in, emb.data(), emb.size());
  b.linear(in, w("time_embedding.0.weight"), w("time_embedding.0.bias"), mid, 1, c.freq_dim, d);
  b.silu(mid, static_cast<size_t>(d));
  b.linear(mid, w("time_embedding.2.weight"), w("time_embedding.2.bias"), out, 1, d, d);
  e.resize(static_cast<size_t>(d));
  b.download(e.data(), out, e.size());
  b.copy(mid, out, static_cast<size_t>(d));
  b.silu(mid, static_cast<size_t>(d));
  b.linear(mid, w("time_projection.1.weight"), w("time_projection.1.bias"), proj, 1, d, 6 * d);
  e0.resize(static_cast<size_t>(6) * d);
  b.download(e0.data(), proj, e0.size());
}

Engine::Fused Engine::fused(const std::string& prefix, const std::vector<std::string>& parts) {
  std::string key = prefix;
  for (const auto& part : parts) key += "|" + part;
  auto it = fused_.find(key);
  if (it != fused_.end()) return it->second.view;
  // Rows of every part's weight [out_i, in] one after the other, then zero rows up to a multiple
  // of 16 outputs (tensor-core tiles); biases likewise, zeros for parts without one.
  const int in = model_->config().dim;
  std::vector<float> weight, bias;
  for (const auto& part : parts) {
    const std::vector<float>& wp = model_->weight(prefix + part + ".weight");
    weight.insert(weight.end(), wp.begin(), wp.end());
    const size_t out = wp.size() / static_cast<size_t>(in);
    if (model_->has_weight(prefix + part + ".bias")) {
      const std::vector<float>& bp = model_->weight(prefix + part + ".bias");
      bias.insert(bias.end(), bp.begin(), bp.end());
    } else {
      bias.insert(bias.end(), out, 0.0f);
    }
  }
  const size_t padded = (bias.size() + 15) / 16 * 16;
  weight.resize(padded * static_cast<size_t>(in), 0.0f);
  bias.resize(padded, 0.0f);
  FusedWeights entry;
  entry.view.out = static_cast<int>(padded);
  if (host_backend()) {
    entry.host_weight = std::move(weight);
    entry.host_bias = std::move(bias);
    entry.view.weight = entry.host_weight.data();
    entry.view.bias = entry.host_bias.data();
  } else {
    entry.device_weight = backend_->allocate(weight.size());
    backend_->upload(entry.device_weight->data(), weight.data(), weight.size());
    entry.device_bias = backend_->allocate(bias.size());
    backend_->upload(entry.device_bias->data(), bias.data(), bias.size());
    entry.view.weight = entry.device_weight->data();
    entry.view.bias = entry.device_bias->data();
  }
  return fused_.emplace(key, std::move(entry)).first->second.view;
}

float* Engine::project(const std::string& prefix, const std::vector<std::string>& parts,
                       const float* a, int* stride) {
  const ModelConfig& c = model_->config();
  const int T = c.tokens_per_block(), d = c.dim;
  const Fused f = fused(prefix, parts);
  float* out = buffer("sa.projected." + std::to_string(parts.size()),
                      static_cast<size_t>(T) * static_cast<size_t>(f.out));
  backend_->linear(a, f.weight, f.bias, out, T, d, f.out);
  *stride = f.out;
  return out;
}

void Engine::self_attention_hybrid(int layer, const float* a, float* y, LayerMemory& memory,
                                   bool update) {
  const ModelConfig& c = model_->config();
  const int T = c.tokens_per_block(), d = c.dim, H = c.heads, dh = c.head_dim();
  const size_t n = static_cast<size_t>(T) * d;
  const std::string p = "blocks." + std::to_string(layer) + ".self_attn.";
  Backend& b = *backend_;
  float* q = buffer("sa.q", n);
  float* k = buffer("sa.k", n);
  float* o = buffer("sa.o", n);
  float* qm = buffer("sa.qm", n);
  float* km = buffer("sa.km", n);
  float* om = buffer("sa.om", n);
  float* gates = buffer("sa.gates", static_cast<size_t>(3) * T * H);
  // Every projection of the block's tokens that a pass needs, as one GEMM (one bf16 conversion
  // of `a`, one launch, a wide and efficient matrix): [q | k | v | mem_q | mem_a | mem_b | mem_g].
  int ps = 0;
  const float* projected = project(p, {"q", "k", "v", "mem_q", "mem_a", "mem_b", "mem_g"}, a, &ps);
  // 1. Intra-block softmax attention (v is read in place); q and k normalised and rotated
  // straight out of the projection, in one op.
  b.qk_norm_rope(projected, ps, q, k, T, H, dh, w(p + "norm_q.weight"), w(p + "norm_k.weight"),
                 kRmsEps, pos_t_.data(), pos_r_.data(), pos_c_.data(), c.rope_theta,
                 /*rope_k=*/true);
  const float* v = projected + 2 * static_cast<size_t>(d);
  b.attention(q, d, k, d, v, ps, o, d, T, T, H, dh, 1.0f / std::sqrt(static_cast<float>(dh)));
  // 2. Memory branch: block-level read of the pre-update state.
  b.l2_normalize_heads_rows(projected + 3 * static_cast<size_t>(d), ps, qm, T, H, dh, kL2Eps);
  // dit() made the state resident before the pass (and, for a clean pass, marked it changing).
  float* s = host_backend() ? memory.state.data() : resident_states_.at(layer).device->data();
  b.memory_read(s, qm, d, om, d, T, H, dh, dh, 1.0f / std::sqrt(static_cast<float>(dh)));
  const size_t per_gate = static_cast<size_t>(T) * H;
  float* gate_values = buffer("sa.gate_values", 3 * per_gate);
  float* alpha = gate_values;
  float* beta = gate_values + per_gate;
  float* gamma = gate_values + 2 * per_gate;
  // Gate columns a, b, g ([T, H] each) read from the projection (`gates`: the default's scratch).
  b.memory_gates_rows(projected + 4 * static_cast<size_t>(d), ps, w(p + "mem_A_log"),
                      w(p + "mem_dt_bias"), alpha, beta, gamma, T, H, gates);
  // 3. o = o_softmax + gamma * o_mem (per token and head).
  b.gated_residual_heads(o, om, gamma, T, H, dh, d);
  b.linear(o, w(p + "o.weight"), w(p + "o.bias"), y, T, d, d);
  // 4. Clean pass: fold the block into the state, after the read.
  if (update) {
    int ms = 0;
    const float* memory_kv = project(p, {"mem_k", "mem_v"}, a, &ms);
    b.l2_normalize_heads_rows(memory_kv, ms, km, T, H, dh, kL2Eps);
    const float* vm = memory_kv + d;
    // (dit cleared the layer's synced copy before the pass: the device state changes here.)
    b.gated_delta_update(s, km, d, vm, ms, alpha, beta, T, H, dh, dh);
    // The host copy is brought up to date once, after the last layer (dit).
  }
}

void Engine::self_attention_kv(int layer, const float* a, float* y, LayerMemory& memory,
                               int64_t block, bool update, std::vector<KvBlock>* dropped) {
  const ModelConfig& c = model_->config();
  const int T = c.tokens_per_block(), d = c.dim, H = c.heads, dh = c.head_dim();
  const int F = c.frames_per_block;
  const size_t n = static_cast<size_t>(T) * d;
  const std::string p = "blocks." + std::to_string(layer) + ".self_attn.";
  Backend& b = *backend_;
  float* q = buffer("sa.q", n);
  float* k = buffer("sa.k", n);
  float* v = buffer("sa.v", n);
  float* o = buffer("sa.o", n);
  int ps = 0;
  const float* projected = project(p, {"q", "k", "v"}, a, &ps);
  // k stays unrotated here: it is cached so, and rotated below relative to each block.
  b.qk_norm_rope(projected, ps, q, k, T, H, dh, w(p + "norm_q.weight"), w(p + "norm_k.weight"),
                 kRmsEps, pos_t_.data(), pos_r_.data(), pos_c_.data(), c.rope_theta,
                 /*rope_k=*/false);
  b.copy_2d(v, d, projected + 2 * static_cast<size_t>(d), ps, T, d);  // cached contiguous
  // Keys: cached blocks then the current one, rotated with positions relative to this block.
  const size_t blocks = memory.kv_blocks.size() + 1;
  float* k_all = buffer("kv.k_all", blocks * n);
  float* v_all = buffer("kv.v_all", blocks * n);
  std::vector<int> rel_t(static_cast<size_t>(T));
  for (size_t i = 0; i < blocks; ++i) {
    const bool current = i + 1 == blocks;
    const int64_t age = current ? 0 : block - memory.kv_blocks[i].block_index;
    for (int t = 0; t < T; ++t) {
      rel_t[static_cast<size_t>(t)] = pos_t_[static_cast<size_t>(t)] - static_cast<int>(age * F);
    }
    float* kd = k_all + i * n;
    if (current) {
      b.copy(kd, k, n);
      b.copy(v_all + i * n, v, n);
    } else {
      b.copy(kd, resident_kv_block(memory.kv_blocks[i], false), n);
      b.copy(v_all + i * n, resident_kv_block(memory.kv_blocks[i], true), n);
    }
    b.rope_3d(kd, T, H, dh, d, rel_t.data(), pos_r_.data(), pos_c_.data(), c.rope_theta);
  }
  b.attention(q, d, k_all, d, v_all, d, o, d, T, static_cast<int>(blocks) * T, H, dh,
              1.0f / std::sqrt(static_cast<float>(dh)));
  b.linear(o, w(p + "o.weight"), w(p + "o.bias"), y, T, d, d);
  if (update) {
    KvBlock entry{block, {}, {}};  // k unrotated, as cached
    if (host_backend()) {
      entry.k.resize(n);
      entry.v.resize(n);
      b.download(entry.k.data(), k, n);
      b.download(entry.v.data(), v, n);
    } else {
      // Kept on the device only, in the buffers dit() took before the pass: the host copy stays
      // pending until something reads the host memory (download_kv_blocks).
      ResidentKv& fresh = new_kv_.at(static_cast<size_t>(layer));
      b.copy(fresh.k->data(), k, n);
      b.copy(fresh.v->data(), v, n);
      entry.device_id = next_device_id();
      resident_kv_.insert_or_assign(entry.device_id, std::move(fresh));
    }
    memory.kv_blocks.push_back(std::move(entry));
    // Keep the `sink` oldest blocks and the `window` newest (window 0: keep everything).
    if (c.kv_window > 0) {
      auto& cache = memory.kv_blocks;
      const size_t keep_head = static_cast<size_t>(c.kv_sink);
      const size_t keep_tail = static_cast<size_t>(c.kv_window);
      if (cache.size() > keep_head + keep_tail) {
        const auto first = cache.begin() + static_cast<std::ptrdiff_t>(keep_head);
        const auto last = cache.end() - static_cast<std::ptrdiff_t>(keep_tail);
        if (dropped != nullptr) dropped->insert(dropped->end(), std::make_move_iterator(first), std::make_move_iterator(last));
        cache.erase(cache.begin() + static_cast<std::ptrdiff_t>(keep_head),
                    cache.end() - static_cast<std::ptrdiff_t>(keep_tail));
      }
    }
  }
}

void Engine::cross_attention(int layer, const float* a, float* y, const TextContext& text) {
  const ModelConfig& c = model_->config();
  const int T = c.tokens_per_block(), d = c.dim, H = c.heads, dh = c.head_dim(), L = text.tokens;
  const size_t n = static_cast<size_t>(T) * d;
  const std::string p = "blocks." + std::to_string(layer) + ".cross_attn.";
  Backend& b = *backend_;
  float* q = buffer("ca.q", n);
  float* o = buffer("ca.o", n);
  const float* k = resident_cross(text, layer, false);
  const float* v = resident_cross(text, layer, true);
  b.linear(a, w(p + "q.weight"), w(p + "q.bias"), q, T, d, d);
  b.rms_norm(q, q, T, d, w(p + "norm_q.weight"), kRmsEps);
  b.attention(q, d, k, d, v, d, o, d, T, L, H, dh, 1.0f / std::sqrt(static_cast<float>(dh)));
  b.linear(o, w(p + "o.weight"), w(p + "o.bias"), y, T, d, d);
}

std::vector<float> Engine::dit(const std::vector<float>& x, float sigma, const TextContext& text,
                               MemoryState& memory, int64_t block, bool update,
                               std::vector<std::vector<float>>* layer_outputs,
                               std::vector<std::vector<KvBlock>>* dropped) {
  const ModelConfig& c = model_->config();
  const int F = c.frames_per_block, C = c.latent_channels, P = c.patch;
  const int lh = c.latent_height(), lw = c.latent_width(), rows = lh / P, cols = lw / P;
  const int T = c.tokens_per_block(), d = c.dim, cpp = C * P * P;
  const size_t n = static_cast<size_t>(T) * d;
  if (x.size() != static_cast<size_t>(F) * C * lh * lw) {
    throw Error(ErrorKind::invalid_argument, "latent block has the wrong size");
  }
  if (memory.layers.size() != c.layers.size()) {
    throw Error(ErrorKind::model_mismatch, "memory state does not match the model's layers");
  }
  if (dropped != nullptr) dropped->assign(c.layers.size(), {});
  // Patchify: token (f, r, col) gathers latent[f, ci, r*P+pr, col*P+pc].
  std::vector<float> tokens(static_cast<size_t>(T) * cpp);
  for (int f = 0; f < F; ++f) {
    for (int r = 0; r < rows; ++r) {
      for (int col = 0; col < cols; ++col) {
        float* dst = tokens.data() + (static_cast<size_t>(f * rows + r) * cols + col) * cpp;
        for (int ci = 0; ci < C; ++ci) {
          for (int pr = 0; pr < P; ++pr) {
            for (int pc = 0; pc < P; ++pc) {
              dst[(ci * P + pr) * P + pc] =
                  x[((static_cast<size_t>(f) * C + ci) * lh + r * P + pr) * lw + col * P + pc];
            }
          }
        }
      }
    }
  }
  Backend& b = *backend_;
  float* tok = buffer("dit.tokens", tokens.size());
  b.upload(tok, tokens.data(), tokens.size());
  float* h = buffer("dit.h", n);
  float* a = buffer("dit.a", n);
  float* y = buffer("dit.y", n);
  float* mlp = buffer("dit.mlp", static_cast<size_t>(T) * c.mlp_dim);
  // This sigma's modulation rows, copied on the device into one place, so that every pass of a
  // block reads them from the same address (what lets a recorded pass serve them all).
  const size_t modulation_count = (c.layers.size() * 6 + 2) * static_cast<size_t>(d);
  float* modulation = buffer("dit.modulation", modulation_count);
  b.copy(modulation, modulation_rows(sigma), modulation_count);
  // Everything the pass reads from memory and prompt goes to the device now, outside the pass:
  // inside, the lookups find it there (which a recording requires).
  std::string recording_key = update ? "clean" : "denoise";
  recording_key += " text " + std::to_string(text.device_id);
  if (update && !host_backend()) new_kv_.resize(c.layers.size());
  for (size_t i = 0; i < c.layers.size(); ++i) {
    LayerMemory& layer = memory.layers[i];
    if (c.layers[i] == AttentionKind::hybrid) {
      resident_state(static_cast<int>(i), layer);
      if (update && !host_backend()) resident_states_.at(static_cast<int>(i)).synced.clear();
    }
    recording_key += " |";
    for (KvBlock& kv : layer.kv_blocks) {
      resident_kv_block(kv, false);
      recording_key += " " + std::to_string(kv.device_id) + "@" + std::to_string(block - kv.block_index);
    }
    if (update && !host_backend() && c.layers[i] == AttentionKind::softmax_kv) {
      // The buffers of this layer's new cache entry (kept from a pass that failed, if any).
      ResidentKv& fresh = new_kv_[i];
      if (!fresh.k) fresh.k = take_kv_buffer(n);
      if (!fresh.v) fresh.v = take_kv_buffer(n);
    }
    resident_cross(text, static_cast<int>(i), false);
  }

  // The pass proper, from the patch embedding to the head: no transfers inside, so that a
  // recording can capture it whole.
  auto run_layers_and_head = [&] {
    b.linear(tok, w("patch_embedding.weight"), w("patch_embedding.bias"), h, T, cpp, d);
    // Layer i's six modulation rows, then the head's two (after the last layer's).
    auto rows_of = [&](size_t layer) { return modulation + layer * 6 * static_cast<size_t>(d); };
    const float* m = rows_of(0);
    auto row = [&](int i) { return m + static_cast<size_t>(i) * d; };
    // All frames of a block share sigma, so one modulation row serves every token (group = block).
    // Each residual add runs with the norm that follows it (residual_norm: one pass over h
    // instead of two); the feed-forward's, with the next layer's first norm or the head's. So
    // `a` holds the next sublayer's input when a layer begins, and h is final when downloaded.
    b.layer_norm_modulate(h, a, T, d, row(0), row(1), T, 0, kLayerNormEps);
    for (size_t i = 0; i < c.layers.size(); ++i) {
      const std::string p = "blocks." + std::to_string(i) + ".";
      m = rows_of(i);
      if (c.layers[i] == AttentionKind::hybrid) {
        self_attention_hybrid(static_cast<int>(i), a, y, memory.layers[i], update);
      } else {
        self_attention_kv(static_cast<int>(i), a, y, memory.layers[i], block, update,
                          dropped != nullptr ? &(*dropped)[i] : nullptr);
      }
      b.residual_norm(h, y, row(2), a, T, d, T, 0, ResidualNorm::layer_norm, w(p + "norm3.weight"),
                      w(p + "norm3.bias"), kLayerNormEps);
      cross_attention(static_cast<int>(i), a, y, text);
      b.residual_norm(h, y, nullptr, a, T, d, T, 0, ResidualNorm::layer_norm_modulate, row(3),
                      row(4), kLayerNormEps);
      b.feed_forward(a, w(p + "ffn.0.weight"), w(p + "ffn.0.bias"), w(p + "ffn.2.weight"),
                     w(p + "ffn.2.bias"), mlp, y, T, d, c.mlp_dim, d);
      const float* next = rows_of(i + 1);  // the next layer's shift and scale rows, or the head's
      b.residual_norm(h, y, row(5), a, T, d, T, 0, ResidualNorm::layer_norm_modulate, next,
                      next + d, kLayerNormEps);
      if (layer_outputs != nullptr) {
        layer_outputs->emplace_back(n);
        b.download(layer_outputs->back().data(), h, n);
      }
    }
    // Head (its norm ran with the last residual add, or above when there are no layers).
    b.linear(a, w("head.head.weight"), w("head.head.bias"), tok, T, d, cpp);
  };
  // A softmax_kv layer's clean pass appends to the host list of cache blocks inside the pass, and
  // its key (the cache layout) is new every block, so a recording of it would never be replayed:
  // it runs as it is.
  const bool recordable = record_passes_ && b.can_record() && layer_outputs == nullptr &&
                          (!update || c.softmax_layers() == 0);
  if (recordable) {
    run_recorded(recording_key, run_layers_and_head);
  } else {
    run_layers_and_head();
  }

  if (update && !host_backend()) {
    // Bring the host copy of the hybrid states up to date (small; undo records copy them): the
    // first download waits for the pass, the rest only copy. The new cache blocks stay pending.
    for (size_t i = 0; i < c.layers.size(); ++i) {
      if (c.layers[i] == AttentionKind::hybrid) {
        after_state_update(static_cast<int>(i), memory.layers[i]);
      }
    }
    // Blocks the window dropped leave the memory, so their device copies are released below:
    // the caller who keeps them (for undo) gets their values on the host first.
    if (dropped != nullptr) {
      for (std::vector<KvBlock>& layer_dropped : *dropped) {
        for (KvBlock& kv : layer_dropped) {
          if (!kv.host_copy_pending()) continue;
          const ResidentKv& copy = resident_kv_.at(kv.device_id);
          std::vector<float> k(n), v(n);
          b.download(k.data(), copy.k->data(), n);
          b.download(v.data(), copy.v->data(), n);
          kv.k = std::move(k);
          kv.v = std::move(v);
        }
      }
    }
    release_unused_kv_blocks(memory);
  }
  b.download(tokens.data(), tok, tokens.size());
  // Unpatchify.
  std::vector<float> out(x.size());
  for (int f = 0; f < F; ++f) {
    for (int r = 0; r < rows; ++r) {
      for (int col = 0; col < cols; ++col) {
        const float* src = tokens.data() + (static_cast<size_t>(f * rows + r) * cols + col) * cpp;
        for (int ci = 0; ci < C; ++ci) {
          for (int pr = 0; pr < P; ++pr) {
            for (int pc = 0; pc < P; ++pc) {
              out[((static_cast<size_t>(f) * C + ci) * lh + r * P + pr) * lw + col * P + pc] =
                  src[(ci * P + pr) * P + pc];
            }
          }
        }
      }
    }
  }
  return out;
}

std::vector<float> Engine::decode(const float* latent) {
  if (!decoder_) decoder_ = std::make_unique<Decoder>(model_, *backend_);
  return decoder_->decode(latent, 1);
}

std::vector<float> Engine::encode(const float* rgb) {
  const ModelConfig& c = model_->config();
  const int S = c.stages();
  const auto& ch = c.ae_channels;
  int h = c.height, wd = c.width;
  Backend& b = *backend_;
  const size_t max_count = static_cast<size_t>(*std::max_element(ch.begin(), ch.end())) *
                           static_cast<size_t>(c.width) * c.height;
  float* in = buffer("ae.rgb", static_cast<size_t>(3) * h * wd);
  b.upload(in, rgb, static_cast<size_t>(3) * h * wd);
  float* x = buffer("ae.x", max_count);
  float* y = buffer("ae.up", max_count);
  b.conv2d_3x3(in, 3, h, wd, w("encoder.conv_in.weight"), w("encoder.conv_in.bias"), ch[0], 1, x);
  b.silu(x, static_cast<size_t>(ch[0]) * h * wd);
  for (int s = 0; s < S; ++s) {
    const std::string p = "encoder.down." + std::to_string(s) + ".conv.";
    b.conv2d_3x3(x, ch[s], h, wd, w(p + "weight"), w(p + "bias"), ch[s + 1], 2, y);
    h = (h - 1) / 2 + 1;
    wd = (wd - 1) / 2 + 1;
    b.silu(y, static_cast<size_t>(ch[s + 1]) * h * wd);
    std::swap(x, y);
  }
  std::vector<float> latent(static_cast<size_t>(c.latent_channels) * h * wd);
  float* out = buffer("ae.in", latent.size());
  b.conv2d_3x3(x, ch[S], h, wd, w("encoder.conv_out.weight"), w("encoder.conv_out.bias"),
               c.latent_channels, 1, out);
  b.download(latent.data(), out, latent.size());
  return latent;
}

}  // namespace strand
