// Engine: the forward passes of a Model on a Backend (docs/model-spec.md): text encoder, DiT
// passes (denoising and clean), autoencoder. Stateless apart from device weight copies and scratch;
// all per-run state is the MemoryState passed in. Internal to core.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strand/backend.h"
#include "strand/memory_state.h"
#include "strand/model.h"

namespace strand {

// A prompt encoded once: projected text tokens and each layer's cross-attention K/V.
struct TextContext {
  std::string prompt;
  int tokens = 0;
  std::vector<float> hidden;                  // [L, text_dim] encoder output
  std::vector<float> ctx;                     // [L, d] after text_embedding
  std::vector<std::vector<float>> cross_k;    // per layer [L, d], RMS-normalised
  std::vector<std::vector<float>> cross_v;    // per layer [L, d]
  // Identity of cross_k/cross_v for the engine's device-resident copy (0: none, upload each use).
  // encode_prompt sets a process-unique one; copies share it since the values never change.
  uint64_t device_id = 0;
};

class Decoder;

class Engine {
 public:
  Engine(std::shared_ptr<const Model> model, std::unique_ptr<Backend> backend);
  ~Engine();

  [[nodiscard]] const Model& model() const { return *model_; }
  [[nodiscard]] Backend& backend() { return *backend_; }

  // Tokenises and encodes a prompt (Error(invalid_argument) on invalid UTF-8).
  TextContext encode_prompt(const std::string& prompt);
  // BERT last hidden state for token ids, [L, text_dim].
  std::vector<float> encode_text(const std::vector<int32_t>& ids);

  // Time embedding e [d] and projected e0 [6, d] for one sigma.
  void time_embedding(float sigma, std::vector<float>& e, std::vector<float>& e0);

  // One DiT pass over a block at index `block`: x [F, C, h, w] -> velocity [F, C, h, w].
  // The memory is read; when `update` (the clean pass) each layer then writes its state / cache.
  // layer_outputs, when given, receives each layer's output tokens [T, d] (for parity tests).
  // softmax_kv layers append the block to their cache and then drop blocks outside sink + window;
  // the dropped blocks are moved into `dropped` (per layer) when given, so the caller can undo.
  std::vector<float> dit(const std::vector<float>& x, float sigma, const TextContext& text,
                         MemoryState& memory, int64_t block, bool update,
                         std::vector<std::vector<float>>* layer_outputs = nullptr,
                         std::vector<std::vector<KvBlock>>* dropped = nullptr);

  // Autoencoder, one frame: latent [C, h, w] <-> rgb [3, H, W] in [-1, 1]. decode runs a
  // Decoder (decoder.h) on this engine's backend: the code a Session decodes blocks with.
  std::vector<float> decode(const float* latent);
  std::vector<float> encode(const float* rgb);

  // A zeroed memory state with the model's layout.
  [[nodiscard]] MemoryState empty_memory() const;

  // Softmax_kv cache blocks on a GPU. A clean pass leaves each new block on the device only
  // (KvBlock::host_copy_pending): the passes never need it on the host, and a 1.3B-shape block is
  // 57 MB per layer. This fills the host k and v of every pending block of `memory`, one download
  // each; call it before anything reads or copies the host MemoryState (Session::snapshot does).
  // No-op on the CPU, where the host copy is the data. Error(invalid_argument) if a pending block
  // has no device copy here (it was copied away from the memory and its device copy released).
  void download_kv_blocks(MemoryState& memory);
  // Releases the device copies of cache blocks that neither `memory` nor the memory named by
  // keep_kv_blocks_of holds (a clean pass does this at its end). Their buffers go to a spare pool
  // that the next new blocks and uploads take from; spares beyond one clean pass's worth are freed.
  void release_unused_kv_blocks(const MemoryState& memory);
  // While set, the device copies of `also`'s cache blocks are kept even when the memory the passes
  // run on no longer holds them, so that a copy with pending host copies can be put back (a
  // re-cache that fails midway). nullptr: only the passes' memory counts. `also` must outlive it.
  void keep_kv_blocks_of(const MemoryState* also) { kv_kept_also_ = also; }
  struct KvBufferStats {
    int64_t allocated = 0;  // device buffers allocated for cache blocks
    int64_t reused = 0;     // taken from the spare pool instead
    int64_t freed = 0;      // freed because the pool was full
    size_t spare = 0;       // in the pool now
  };
  [[nodiscard]] KvBufferStats kv_buffer_stats() const;

  // Recorded passes (CUDA graphs): on a backend that can record, a DiT pass is recorded the
  // second time a pass of its kind runs (same clean/denoise kind, prompt and softmax_kv cache
  // layout) and replayed from then on, while the backend's memory generation holds. Same
  // results as running it op by op. On by default; off runs every pass op by op.
  void set_pass_recording(bool on) { record_passes_ = on; }
  struct RecordingStats {
    int64_t direct = 0, recorded = 0, replayed = 0, failed = 0;
  };
  [[nodiscard]] const RecordingStats& recording_stats() const { return recording_stats_; }

 private:
  struct Scratch;
  const float* w(const std::string& name);  // device pointer of a weight
  // Several projections of the same input as one matrix: the weights `prefix + part + ".weight"`
  // stacked (and biases, zeros where a part has none), zero-padded to a multiple of 16 outputs.
  struct Fused {
    const float* weight = nullptr;
    const float* bias = nullptr;
    int out = 0;  // padded output count
  };
  Fused fused(const std::string& prefix, const std::vector<std::string>& parts);
  // a [T, d] times the fused parts: returns [T, *stride] with part i at its column offset.
  float* project(const std::string& prefix, const std::vector<std::string>& parts, const float* a,
                 int* stride);
  void self_attention_hybrid(int layer, const float* a, float* y, LayerMemory& memory, bool update);
  void self_attention_kv(int layer, const float* a, float* y, LayerMemory& memory, int64_t block,
                         bool update, std::vector<KvBlock>* dropped);
  void cross_attention(int layer, const float* a, float* y, const TextContext& text);
  float* buffer(const std::string& key, size_t count);  // reusable device scratch

  // Device-resident memory (GPU backends): a hybrid layer's state stays on the device between
  // passes, uploaded only when the host copy differs from what was last synced (a restore, an
  // undo, another branch); softmax_kv blocks and prompt K/V are kept by their device_id.
  // Per sigma, each layer's six adaLN rows (modulation + e0) then the head's two (modulation +
  // e), [(layers * 6 + 2), d] on the backend: computed once, since weights never change.
  const float* modulation_rows(float sigma);
  float* resident_state(int layer, LayerMemory& memory);
  void run_recorded(const std::string& key, const std::function<void()>& pass);
  void after_state_update(int layer, LayerMemory& memory);
  const float* resident_kv_block(KvBlock& block, bool values);
  std::unique_ptr<Buffer> take_kv_buffer(size_t count);
  void give_back_kv_buffer(std::unique_ptr<Buffer> buffer);
  const float* resident_cross(const TextContext& text, int layer, bool values);
  [[nodiscard]] bool host_backend() const { return backend_->device() == DeviceKind::cpu; }

  struct ResidentState {
    std::unique_ptr<Buffer> device;
    std::vector<float> synced;  // what `device` holds; empty when unknown (mid-update)
  };
  struct ResidentKv {
    std::unique_ptr<Buffer> k, v;
  };
  struct ResidentText {
    uint64_t id = 0;
    std::vector<std::unique_ptr<Buffer>> k, v;  // per layer
  };

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Backend> backend_;
  std::map<std::string, std::unique_ptr<Buffer>> device_weights_;
  struct FusedWeights {
    Fused view;
    std::vector<float> host_weight, host_bias;         // CPU backend
    std::unique_ptr<Buffer> device_weight, device_bias;  // other backends
  };
  std::map<std::string, FusedWeights> fused_;
  std::map<uint32_t, std::unique_ptr<Buffer>> modulation_;  // by the bits of sigma
  std::map<int, ResidentState> resident_states_;
  std::map<uint64_t, ResidentKv> resident_kv_;
  // Per layer, a clean pass's new cache entry: taken before the pass, filled inside it.
  std::vector<ResidentKv> new_kv_;
  std::vector<std::unique_ptr<Buffer>> kv_spare_;  // released cache buffers, for reuse
  // Moves on whenever a spare is reused: its address then holds another block's values, which a
  // recording made before may read (the backend's generation only moves when memory is freed).
  uint64_t kv_reuse_epoch_ = 0;
  const MemoryState* kv_kept_also_ = nullptr;
  KvBufferStats kv_buffer_stats_;
  std::vector<ResidentText> resident_text_;  // the two most recently used prompts
  struct PassRecording {
    std::string key;
    bool seen = false, failed = false;
    uint64_t generation = 0, kv_reuse_epoch = 0;
    std::unique_ptr<Recording> recording;
  };
  static constexpr size_t kMaxRecordings = 8;
  std::vector<PassRecording> recordings_;  // oldest first
  bool record_passes_ = true;
  RecordingStats recording_stats_;
  std::map<std::string, std::unique_ptr<Buffer>> scratch_;
  std::vector<int> pos_t_, pos_r_, pos_c_;  // RoPE positions of a block's tokens
  std::unique_ptr<Decoder> decoder_;         // made on first decode()
};

}  // namespace strand
