// Model: the immutable weights and config of a Strand model (docs/model-spec.md), loaded from a
// safetensors file. Shared read-only by any number of Sessions (per-run state lives in Session).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strand/tokenizer.h"

namespace strand {

enum class AttentionKind { hybrid = 1, softmax_kv };

struct ModelConfig {
  std::string name;
  int width = 0, height = 0, fps = 0;
  int latent_channels = 0;
  std::vector<int> ae_channels;  // autoencoder.channels
  int dim = 0, heads = 0, mlp_dim = 0, patch = 1, frames_per_block = 1, freq_dim = 0;
  float rope_theta = 10000.0f;
  std::vector<AttentionKind> layers;
  int kv_window = 0, kv_sink = 0;
  int text_dim = 0, text_layers = 0, text_heads = 0, text_intermediate = 0, text_max_positions = 0;
  bool text_lowercase = true;
  std::vector<float> sigmas;

  // Derived.
  [[nodiscard]] int stages() const { return static_cast<int>(ae_channels.size()) - 1; }
  [[nodiscard]] int latent_height() const { return height >> stages(); }
  [[nodiscard]] int latent_width() const { return width >> stages(); }
  [[nodiscard]] int head_dim() const { return dim / heads; }
  [[nodiscard]] int tokens_per_frame() const {
    return (latent_height() / patch) * (latent_width() / patch);
  }
  [[nodiscard]] int tokens_per_block() const { return frames_per_block * tokens_per_frame(); }
  [[nodiscard]] int hybrid_layers() const;
  [[nodiscard]] int softmax_layers() const;
  // Parses and validates the JSON of __metadata__["strand.config"]; Error(invalid_file) on failure.
  static ModelConfig from_json(const std::string& json_text);
  [[nodiscard]] std::string to_json() const;
};

class Model {
 public:
  // Loads and validates (config, every tensor's presence and shape, vocabulary).
  // Error(invalid_file) / SafetensorsError / Error(io) on failure.
  static std::shared_ptr<const Model> load(const std::string& path);

  [[nodiscard]] const ModelConfig& config() const { return config_; }
  [[nodiscard]] const WordPieceTokenizer& tokenizer() const { return *tokenizer_; }
  // Hex identity of the weights: XXH3-128 of the file's tensor data buffer.
  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] int64_t parameter_count() const;
  // A weight by its safetensors name, as float32; throws Error(invalid_file) if absent.
  [[nodiscard]] const std::vector<float>& weight(const std::string& name) const;
  [[nodiscard]] bool has_weight(const std::string& name) const;
  // Memory-state bytes: fixed part (hybrid states) and per-block growth (softmax_kv caches).
  [[nodiscard]] size_t fixed_state_bytes() const;
  [[nodiscard]] size_t state_bytes_per_block() const;

  Model(ModelConfig config, std::map<std::string, std::vector<float>> weights,
        std::vector<std::string> vocab, std::string id);

 private:
  ModelConfig config_;
  std::map<std::string, std::vector<float>> weights_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::string id_;
};

}  // namespace strand
