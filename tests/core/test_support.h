// Test helpers: a small random-weight model built in memory (no file, no Python), so engine and
// session behaviour can be tested independently of the golden files.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model_layout.h"
#include "parity.h"
#include "strand/model.h"

namespace strand::test {


inline ModelConfig tiny_config(std::vector<AttentionKind> layers, int window = 0, int sink = 0) {
  ModelConfig c;
  c.name = "test-tiny";
  c.width = 32;
  c.height = 16;
  c.fps = 8;
  c.latent_channels = 2;
  c.ae_channels = {4, 4, 4};
  c.dim = 24;
  c.heads = 2;
  c.mlp_dim = 32;
  c.patch = 1;
  c.frames_per_block = 2;
  c.freq_dim = 16;
  c.layers = std::move(layers);
  c.kv_window = window;
  c.kv_sink = sink;
  c.text_dim = 16;
  c.text_layers = 1;
  c.text_heads = 2;
  c.text_intermediate = 16;
  c.text_max_positions = 16;
  c.sigmas = {1.0f, 0.5f};
  return c;
}

inline std::vector<std::string> tiny_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a",     "red",  "balloon", "over", "snowy",
          "mountains", "at", "dusk", "birds", "green", "forest", "dawn", "sea", ",", "."};
}

inline std::shared_ptr<const Model> random_model(const ModelConfig& config, uint32_t seed,
                                                 const std::string& id = "test-model") {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::map<std::string, std::vector<float>> weights;
  const auto vocab = tiny_vocab();
  for (const auto& t : expected_tensors(config, static_cast<int64_t>(vocab.size()))) {
    size_t count = 1;
    for (auto d : t.shape) count *= static_cast<size_t>(d);
    const int64_t fan_in = t.shape.size() >= 2 ? t.shape[1] * (t.shape.size() == 4 ? 9 : 1) : 1;
    const float scale = t.shape.size() >= 2 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.1f;
    std::vector<float> values(count);
    for (auto& v : values) v = normal(rng) * scale;
    if (t.name.find("LayerNorm.weight") != std::string::npos ||
        t.name.find("norm_q.weight") != std::string::npos ||
        t.name.find("norm_k.weight") != std::string::npos ||
        t.name.find("norm3.weight") != std::string::npos) {
      for (auto& v : values) v = 1.0f + 0.1f * v;
    }
    if (t.name.find("mem_A_log") != std::string::npos) {
      for (auto& v : values) v = std::log(2.0f + std::fabs(v));
    }
    weights.emplace(t.name, std::move(values));
  }
  return std::make_shared<const Model>(config, std::move(weights), vocab, id);
}

}  // namespace strand::test
