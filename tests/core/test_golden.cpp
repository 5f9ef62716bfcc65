// Parity with the PyTorch reference (training/strand_ref): golden tensors made by
// training/make_golden.py from tests/data/golden-model.safetensors. Every module and a 4-block
// rollout (prompt switch with re-cache, snapshot restore) within float32 relative error 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "engine.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/rope.h"
#include "rng.h"
#include "strand/safetensors.h"
#include "strand/session.h"
#include "test_support.h"

namespace strand {
namespace {

constexpr double kTolerance = 1e-4;

using test::rel_error;

class Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(std::string(STRAND_TEST_DATA) + "/golden-model.safetensors");
    modules_ = std::make_unique<SafetensorsFile>(
        SafetensorsFile::load(std::string(STRAND_TEST_DATA) + "/golden-modules.safetensors"));
    rollout_ = std::make_unique<SafetensorsFile>(
        SafetensorsFile::load(std::string(STRAND_TEST_DATA) + "/golden-rollout.safetensors"));
  }
  static void TearDownTestSuite() {
    modules_.reset();
    rollout_.reset();
    model_.reset();
  }
  static std::vector<float> get(const SafetensorsFile& f, const std::string& name) {
    const TensorInfo* info = f.find(name);
    if (info == nullptr) throw std::runtime_error("golden tensor missing: " + name);
    return f.to_f32(*info);
  }
  static std::vector<int32_t> ids(const SafetensorsFile& f, const std::string& name) {
    const TensorInfo* info = f.find(name);
    if (info == nullptr || info->dtype != DType::I32) throw std::runtime_error("bad ids: " + name);
    const auto bytes = f.data(*info);
    std::vector<int32_t> out(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  static std::vector<float> slice(const std::vector<float>& v, size_t index, size_t count) {
    return {v.begin() + static_cast<std::ptrdiff_t>(index * count),
            v.begin() + static_cast<std::ptrdiff_t>((index + 1) * count)};
  }
  // The golden DiT inputs: non-zero hybrid states and a cache holding blocks 0 and 1.
  static MemoryState golden_memory(Engine& engine) {
    MemoryState m = engine.empty_memory();
    const auto& c = model_->config();
    const size_t n = static_cast<size_t>(c.tokens_per_block()) * c.dim;
    for (size_t i = 0; i < c.layers.size(); ++i) {
      if (c.layers[i] == AttentionKind::hybrid) {
        m.layers[i].state = get(*modules_, "dit.state_in." + std::to_string(i));
      } else {
        const auto k = get(*modules_, "dit.kv_in." + std::to_string(i) + ".k");
        const auto v = get(*modules_, "dit.kv_in." + std::to_string(i) + ".v");
        for (int b = 0; b < 2; ++b) m.layers[i].kv_blocks.push_back({b, slice(k, b, n), slice(v, b, n)});
      }
    }
    return m;
  }

  static inline std::shared_ptr<const Model> model_;
  static inline std::unique_ptr<SafetensorsFile> modules_;
  static inline std::unique_ptr<SafetensorsFile> rollout_;
};

TEST_F(Golden, TokenizerAndTextEncoder) {
  Engine engine(model_, make_cpu_backend());
  const std::string prompt = modules_->metadata().at("prompt");
  EXPECT_EQ(model_->tokenizer().encode(prompt), ids(*modules_, "prompt.ids"));
  EXPECT_LT(rel_error(engine.encode_text(ids(*modules_, "prompt.ids")), get(*modules_, "text.hidden")), kTolerance);
  EXPECT_LT(rel_error(engine.encode_prompt(prompt).ctx, get(*modules_, "text.ctx")), kTolerance);
}

TEST_F(Golden, TimeEmbedding) {
  Engine engine(model_, make_cpu_backend());
  std::vector<float> e, e0;
  engine.time_embedding(std::stof(modules_->metadata().at("time.sigma")), e, e0);
  EXPECT_LT(rel_error(e, get(*modules_, "time.e")), kTolerance);
  EXPECT_LT(rel_error(e0, get(*modules_, "time.e0")), kTolerance);
}

TEST_F(Golden, Autoencoder) {
  Engine engine(model_, make_cpu_backend());
  EXPECT_LT(rel_error(engine.decode(get(*modules_, "ae.decode.in").data()), get(*modules_, "ae.decode.out")), kTolerance);
  EXPECT_LT(rel_error(engine.encode(get(*modules_, "ae.encode.in").data()), get(*modules_, "ae.encode.out")), kTolerance);
}

TEST_F(Golden, Noise) {
  const uint64_t seed = std::stoull(modules_->metadata().at("noise.seed"));
  for (auto [block, step] : {std::pair{0u, 0u}, {3u, 2u}, {70000u, 1u}}) {
    const auto expected = get(*modules_, "noise.b" + std::to_string(block) + ".s" + std::to_string(step));
    std::vector<float> z(expected.size());
    fill_noise(z.data(), z.size(), seed, block, step);
    EXPECT_LT(rel_error(z, expected), 1e-6) << block << "/" << step;
  }
}

TEST_F(Golden, RopeAndDeltaRuleKernels) {
  auto x = get(*modules_, "rope.in");
  const auto pos = ids(*modules_, "rope.pos");  // [tokens, 3]: t, r, c
  const int tokens = static_cast<int>(pos.size() / 3), heads = 4, dh = 16;
  std::vector<int> pt, pr, pc;
  for (int t = 0; t < tokens; ++t) {
    pt.push_back(pos[static_cast<size_t>(t) * 3]);
    pr.push_back(pos[static_cast<size_t>(t) * 3 + 1]);
    pc.push_back(pos[static_cast<size_t>(t) * 3 + 2]);
  }
  cpu::rope_3d(x.data(), tokens, heads, dh, heads * dh, pt.data(), pr.data(), pc.data(),
               model_->config().rope_theta);
  EXPECT_LT(rel_error(x, get(*modules_, "rope.out")), kTolerance);

  const auto k = get(*modules_, "delta.k"), v = get(*modules_, "delta.v");
  const auto alpha = get(*modules_, "delta.alpha"), beta = get(*modules_, "delta.beta");
  const int T = static_cast<int>(alpha.size() / 4);
  for (bool chunked : {false, true}) {
    auto s = get(*modules_, "delta.s_in");
    if (chunked) {
      cpu::gated_delta_update_chunked(s.data(), k.data(), 64, v.data(), 64, alpha.data(), beta.data(), T, 4, 16, 16);
    } else {
      cpu::gated_delta_update_sequential(s.data(), k.data(), 64, v.data(), 64, alpha.data(), beta.data(), T, 4, 16, 16);
    }
    EXPECT_LT(rel_error(s, get(*modules_, "delta.s_out")), kTolerance) << "chunked=" << chunked;
  }
}

TEST_F(Golden, DitPassAndCleanPass) {
  Engine engine(model_, make_cpu_backend());
  const auto& meta = modules_->metadata();
  const TextContext text = engine.encode_prompt(meta.at("prompt"));
  const int64_t block = std::stoll(meta.at("dit.block"));
  MemoryState memory = golden_memory(engine);
  const MemoryState before = memory;
  std::vector<std::vector<float>> layers;
  const auto v = engine.dit(get(*modules_, "dit.x"), std::stof(meta.at("dit.sigma")), text, memory, block, false, &layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_LT(rel_error(layers[i], get(*modules_, "dit.layer" + std::to_string(i) + ".out")), kTolerance) << i;
  }
  EXPECT_LT(rel_error(v, get(*modules_, "dit.v")), kTolerance);
  EXPECT_EQ(memory, before);  // denoising passes only read the memory

  layers.clear();
  engine.dit(get(*modules_, "dit.x0"), 0.0f, text, memory, block, true, &layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_LT(rel_error(layers[i], get(*modules_, "dit.clean.layer" + std::to_string(i) + ".out")), kTolerance) << i;
  }
  const auto& c = model_->config();
  const size_t n = static_cast<size_t>(c.tokens_per_block()) * c.dim;
  const auto kept = nlohmann::json::parse(meta.at("dit.clean.kv_out_blocks")).get<std::vector<int64_t>>();
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const std::string id = std::to_string(i);
    if (c.layers[i] == AttentionKind::hybrid) {
      EXPECT_LT(rel_error(memory.layers[i].state, get(*modules_, "dit.clean.state_out." + id)), kTolerance);
      continue;
    }
    ASSERT_EQ(memory.layers[i].kv_blocks.size(), kept.size());
    const auto k = get(*modules_, "dit.clean.kv_out." + id + ".k");
    const auto vv = get(*modules_, "dit.clean.kv_out." + id + ".v");
    for (size_t b = 0; b < kept.size(); ++b) {
      EXPECT_EQ(memory.layers[i].kv_blocks[b].block_index, kept[b]);
      EXPECT_LT(rel_error(memory.layers[i].kv_blocks[b].k, slice(k, b, n)), kTolerance);
      EXPECT_LT(rel_error(memory.layers[i].kv_blocks[b].v, slice(vv, b, n)), kTolerance);
    }
  }
}

// Frames: the session's 8-bit output must be the 8-bit conversion of the reference's float
// frames, give or take one step where rounding falls differently.
void expect_frames_match(const BlockResult& r, const std::vector<float>& golden) {
  ASSERT_FALSE(r.frames.empty());
  const size_t pixels = static_cast<size_t>(r.frames[0].width) * r.frames[0].height;
  int worst = 0;
  for (size_t f = 0; f < r.frames.size(); ++f) {
    for (size_t p = 0; p < pixels; ++p) {
      for (size_t ch = 0; ch < 3; ++ch) {
        const float g = golden[(f * 3 + ch) * pixels + p];
        const int expected = static_cast<int>(std::floor(std::clamp((g + 1.0f) * 127.5f, 0.0f, 255.0f) + 0.5f));
        worst = std::max(worst, std::abs(expected - r.frames[f].rgb[p * 3 + ch]));
      }
    }
  }
  EXPECT_LE(worst, 1);
}

TEST_F(Golden, RolloutWithPromptSwitchRecacheAndRestore) {
  const auto& meta = rollout_->metadata();
  const uint64_t seed = std::stoull(meta.at("seed"));
  Session run1(model_, {.seed = seed});
  run1.set_prompt(meta.at("prompt_a"));
  std::vector<BlockResult> blocks;
  blocks.push_back(run1.generate_next_block());
  blocks.push_back(run1.generate_next_block());
  const MemoryState snap = run1.snapshot();
  run1.set_prompt(meta.at("prompt_b"), 1);
  blocks.push_back(run1.generate_next_block());
  blocks.push_back(run1.generate_next_block());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const std::string p = "run1.b" + std::to_string(b);
    EXPECT_LT(rel_error(blocks[b].latents, get(*rollout_, p + ".latents")), kTolerance) << p;
    expect_frames_match(blocks[b], get(*rollout_, p + ".frames"));
  }
  const MemoryState final_state = run1.snapshot();
  const auto& c = model_->config();
  const size_t n = static_cast<size_t>(c.tokens_per_block()) * c.dim;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    if (c.layers[i] == AttentionKind::hybrid) {
      EXPECT_LT(rel_error(final_state.layers[i].state, get(*rollout_, "run1.final.state." + std::to_string(i))), kTolerance);
    } else {
      const auto k = get(*rollout_, "run1.final.kv." + std::to_string(i) + ".k");
      ASSERT_EQ(final_state.layers[i].kv_blocks.size(), 2u);
      for (size_t b = 0; b < 2; ++b) EXPECT_LT(rel_error(final_state.layers[i].kv_blocks[b].k, slice(k, b, n)), kTolerance);
    }
  }

  Session run2(model_, {.seed = 0});
  run2.restore(snap);
  run2.set_prompt(meta.at("prompt_b"), 0);
  const BlockResult b2 = run2.generate_next_block();
  EXPECT_LT(rel_error(b2.latents, get(*rollout_, "run2.b2.latents")), kTolerance);
  expect_frames_match(b2, get(*rollout_, "run2.b2.frames"));
  // The re-cached run and the hard switch differ: re-cache changed what the memory holds.
  EXPECT_GT(rel_error(b2.latents, blocks[2].latents), 1e-6);
}

}  // namespace
}  // namespace strand
