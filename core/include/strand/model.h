// Model: the immutable weights and config of a Strand model (docs/model-spec.md), loaded from a
// safetensors file, and optionally a separate text-encoder file that the config names (a pretrained
// sentence encoder shared by several models). Shared read-only by any number of Sessions (per-run
// state lives in Session).
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
  // "text.encoder_file": the text encoder's weights and vocabulary live in that file (spec section
  // 2, "External text encoder"); empty when they are in the model file. As written in the config:
  // Model::text_encoder_path() gives the resolved path.
  std::string text_encoder_file;
  std::vector<float> sigmas;

  // A text-encoder-only model (Model::load_text_encoder): text fields only, no video, no layers.
  [[nodiscard]] bool text_encoder_only() const { return layers.empty(); }
  // Derived. A text-encoder-only model has zero video sizes (and no DiT: head_dim() is undefined).
  [[nodiscard]] int stages() const {
    return ae_channels.empty() ? 0 : static_cast<int>(ae_channels.size()) - 1;
  }
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
  // With "text.encoder_file" the other text keys are optional (0 when absent): Model::load takes
  // them from the encoder file and rejects any given value that differs.
  static ModelConfig from_json(const std::string& json_text);
  [[nodiscard]] std::string to_json() const;
};

class Model {
 public:
  // Loads and validates (config, every tensor's presence and shape, vocabulary).
  // Error(invalid_file) / SafetensorsError / Error(io) on failure.
  // When the config names a text.encoder_file, the text_encoder.* tensors and the vocabulary come
  // from that file (found by find_text_encoder); the model file must then hold no text_encoder.*
  // tensor, and its strand.vocab, if present, must equal the encoder's. A missing encoder file is
  // one Error(invalid_file) that names every place searched.
  static std::shared_ptr<const Model> load(const std::string& path);

  // Loads a text-encoder file alone (spec section 2: text_encoder.* tensors, "strand.text_config",
  // "strand.vocab"). The result has config().text_encoder_only(): tokenizer(), weight() and the
  // engine's text encoder work; it cannot drive a Session (no DiT, no autoencoder). Its id() is
  // the XXH3-128 of the encoder file's data buffer.
  static std::shared_ptr<const Model> load_text_encoder(const std::string& path);

  // Where an encoder_file named `name` in the config of the model at `model_path` is: `name` itself
  // if absolute; else the first existing of <model folder>/name, $STRAND_MODELS_DIR/name,
  // <source tree>/.deps/models/name. Error(invalid_file) naming each place tried if none exists.
  static std::string find_text_encoder(const std::string& name, const std::string& model_path);

  [[nodiscard]] const ModelConfig& config() const { return config_; }
  [[nodiscard]] const WordPieceTokenizer& tokenizer() const { return *tokenizer_; }
  // Hex identity of the weights: XXH3-128 of the file's tensor data buffer, continued over the
  // external text-encoder file's data buffer when there is one (so the id covers both files).
  [[nodiscard]] const std::string& id() const { return id_; }
  // Resolved path of the external text-encoder file (for load_text_encoder: the file loaded);
  // empty when the encoder is in the model file.
  [[nodiscard]] const std::string& text_encoder_path() const { return text_encoder_path_; }
  [[nodiscard]] int64_t parameter_count() const;
  // A weight by its safetensors name, as float32; throws Error(invalid_file) if absent.
  [[nodiscard]] const std::vector<float>& weight(const std::string& name) const;
  [[nodiscard]] bool has_weight(const std::string& name) const;
  // Memory-state bytes: fixed part (hybrid states) and per-block growth (softmax_kv caches).
  [[nodiscard]] size_t fixed_state_bytes() const;
  [[nodiscard]] size_t state_bytes_per_block() const;

  Model(ModelConfig config, std::map<std::string, std::vector<float>> weights,
        std::vector<std::string> vocab, std::string id, std::string text_encoder_path = {});

 private:
  ModelConfig config_;
  std::map<std::string, std::vector<float>> weights_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::string id_;
  std::string text_encoder_path_;
};

}  // namespace strand
