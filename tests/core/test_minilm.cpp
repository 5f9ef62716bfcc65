// External text encoders (docs/model-spec.md section 2, "External text encoder").
// 1. ExternalTextEncoder: the plumbing on a tiny random model split into a model file and an
//    encoder file (always runs): same outputs as the one-file model, lookup order, the id covering
//    both files, clear errors.
// 2. MiniLm: the pretrained all-MiniLM-L6-v2 converted by training/convert_minilm.py, held to
//    tests/data/minilm-golden.safetensors (Hugging Face transformers' output, written by
//    training/make_minilm_golden.py). Skipped when the converted encoder is absent.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine.h"
#include "model_layout.h"
#include "strand/error.h"
#include "strand/safetensors.h"
#include "temp_dir.h"
#include "test_support.h"

namespace strand {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using test::rel_error;

std::string join_vocab(const std::vector<std::string>& vocab) {
  std::string text;
  for (size_t i = 0; i < vocab.size(); ++i) text += (i ? "\n" : "") + vocab[i];
  return text;
}

// Writes the chosen weights of `model` (all float32) to a safetensors file.
void write_weights(const std::string& path, const Model& model, bool text_encoder_part,
                   const std::map<std::string, std::string>& metadata) {
  std::vector<TensorToWrite> tensors;
  const auto vocab_size = static_cast<int64_t>(model.tokenizer().vocab().size());
  for (const auto& t : expected_tensors(model.config(), vocab_size)) {
    const bool is_text = t.name.rfind("text_encoder.", 0) == 0;
    if (is_text != text_encoder_part) continue;
    const auto& values = model.weight(t.name);
    tensors.push_back({t.name,
                       DType::F32,
                       t.shape,
                       {reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4}});
  }
  write_safetensors(path, tensors, metadata);
}

class ExternalTextEncoder : public ::testing::Test {
 protected:
  void SetUp() override {
    full_ = test::random_model(test::tiny_config({AttentionKind::hybrid}), 11);
    const ModelConfig& c = full_->config();
    text_config_ = {{"format", "strand-text-encoder"},
                    {"version", 1},
                    {"name", "tiny-bert"},
                    {"dim", c.text_dim},
                    {"layers", c.text_layers},
                    {"heads", c.text_heads},
                    {"intermediate", c.text_intermediate},
                    {"max_positions", c.text_max_positions},
                    {"lowercase", true}};
    write_encoder(dir_.file("enc.safetensors"));
  }
  void write_encoder(const std::string& path) {
    write_weights(path, *full_, true,
                  {{"strand.text_config", text_config_.dump()},
                   {"strand.vocab", join_vocab(full_->tokenizer().vocab())}});
  }
  // The model part, whose config's text section is `text` (default: the encoder file name only).
  std::string write_model(const std::string& name,
                          json text = {{"encoder_file", "enc.safetensors"}},
                          bool with_vocab = false, bool with_text_tensors = false) {
    json config = json::parse(full_->config().to_json());
    config["text"] = std::move(text);
    std::map<std::string, std::string> meta{{"strand.config", config.dump()}};
    if (with_vocab) meta["strand.vocab"] = join_vocab(full_->tokenizer().vocab());
    const std::string path = dir_.file(name);
    write_weights(path, *full_, false, meta);
    if (with_text_tensors) {
      // Rewrite with every tensor: a model that holds its own encoder and names a file too.
      std::vector<TensorToWrite> tensors;
      const auto vocab_size = static_cast<int64_t>(full_->tokenizer().vocab().size());
      for (const auto& t : expected_tensors(full_->config(), vocab_size)) {
        const auto& values = full_->weight(t.name);
        tensors.push_back({t.name,
                           DType::F32,
                           t.shape,
                           {reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4}});
      }
      write_safetensors(path, tensors, meta);
    }
    return path;
  }
  static std::string load_error(const std::string& path) {
    try {
      Model::load(path);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_file);
      return e.what();
    }
    ADD_FAILURE() << "loading " << path << " did not fail";
    return {};
  }

  test::TempDir dir_{"strand-minilm"};
  std::shared_ptr<const Model> full_;
  json text_config_;
};

TEST_F(ExternalTextEncoder, SplitModelEncodesLikeTheOneFileModel) {
  const auto model = Model::load(write_model("model.safetensors"));
  EXPECT_EQ(model->text_encoder_path(), dir_.file("enc.safetensors"));
  EXPECT_EQ(model->config().text_dim, full_->config().text_dim);
  EXPECT_EQ(model->config().text_layers, full_->config().text_layers);
  EXPECT_EQ(model->config().text_encoder_file, "enc.safetensors");
  EXPECT_EQ(model->tokenizer().vocab(), full_->tokenizer().vocab());
  EXPECT_EQ(model->parameter_count(), full_->parameter_count());
  Engine split(model, make_cpu_backend());
  Engine whole(full_, make_cpu_backend());
  const TextContext a = split.encode_prompt("a red balloon over snowy mountains, at dusk");
  const TextContext b = whole.encode_prompt("a red balloon over snowy mountains, at dusk");
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.ctx, b.ctx);
  // The config keeps naming the file, and round-trips.
  const ModelConfig again = ModelConfig::from_json(model->config().to_json());
  EXPECT_EQ(again.text_encoder_file, "enc.safetensors");
  EXPECT_EQ(again.text_dim, model->config().text_dim);
}

TEST_F(ExternalTextEncoder, EncoderAloneLoadsAndEncodes) {
  const auto encoder = Model::load_text_encoder(dir_.file("enc.safetensors"));
  EXPECT_TRUE(encoder->config().text_encoder_only());
  EXPECT_EQ(encoder->config().name, "tiny-bert");
  Engine alone(encoder, make_cpu_backend());
  Engine whole(full_, make_cpu_backend());
  const auto ids = encoder->tokenizer().encode("birds over a green forest at dawn.");
  EXPECT_EQ(ids, full_->tokenizer().encode("birds over a green forest at dawn."));
  EXPECT_EQ(alone.encode_text(ids), whole.encode_text(ids));
}

TEST_F(ExternalTextEncoder, IdCoversBothFiles) {
  const std::string path = write_model("model.safetensors");
  const std::string id = Model::load(path)->id();
  EXPECT_EQ(Model::load(path)->id(), id);
  EXPECT_NE(id, full_->id());
  // Same model file, different encoder weights: a different id.
  auto config = test::tiny_config({AttentionKind::hybrid});
  full_ = test::random_model(config, 12);
  write_encoder(dir_.file("enc.safetensors"));
  EXPECT_NE(Model::load(path)->id(), id);
}

TEST_F(ExternalTextEncoder, LookupOrder) {
  // Next to the model file first.
  const auto model_dir = dir_.path() / "models";
  const auto env_dir = dir_.path() / "env";
  fs::create_directories(model_dir);
  fs::create_directories(env_dir);
  fs::copy_file(dir_.file("enc.safetensors"), env_dir / "enc.safetensors");
  fs::rename(dir_.file("enc.safetensors"), model_dir / "enc.safetensors");
  const std::string model_path = (model_dir / "m.safetensors").string();
  fs::rename(write_model("m.safetensors"), model_path);
  ::setenv("STRAND_MODELS_DIR", env_dir.c_str(), 1);
  EXPECT_EQ(Model::find_text_encoder("enc.safetensors", model_path),
            (model_dir / "enc.safetensors").string());
  // Then $STRAND_MODELS_DIR.
  fs::remove(model_dir / "enc.safetensors");
  EXPECT_EQ(Model::load(model_path)->text_encoder_path(), (env_dir / "enc.safetensors").string());
  // An absolute name is used as is.
  const std::string absolute = (env_dir / "enc.safetensors").string();
  EXPECT_EQ(Model::find_text_encoder(absolute, "/nowhere/m.safetensors"), absolute);
  // Missing everywhere: one error naming each place searched.
  fs::remove(env_dir / "enc.safetensors");
  const std::string message = load_error(model_path);
  ::unsetenv("STRAND_MODELS_DIR");
  EXPECT_NE(message.find("'enc.safetensors' not found"), std::string::npos) << message;
  EXPECT_NE(message.find((model_dir / "enc.safetensors").string()), std::string::npos) << message;
  EXPECT_NE(message.find((env_dir / "enc.safetensors").string()), std::string::npos) << message;
  EXPECT_NE(message.find(".deps/models/enc.safetensors"), std::string::npos) << message;
}

TEST_F(ExternalTextEncoder, RejectsInconsistentFiles) {
  // Sizes given in the model config must match the encoder file.
  EXPECT_NE(
      load_error(write_model("dim.safetensors", {{"encoder_file", "enc.safetensors"}, {"dim", 32}}))
          .find("text.dim = 32"),
      std::string::npos);
  // Text encoder tensors in both places.
  EXPECT_NE(load_error(
                write_model("both.safetensors", {{"encoder_file", "enc.safetensors"}}, false, true))
                .find("keep text_encoder.* in one place"),
            std::string::npos);
  // A model vocabulary that differs from the encoder's.
  auto config = json::parse(full_->config().to_json());
  const std::string path = write_model("vocab.safetensors", {{"encoder_file", "enc.safetensors"}});
  {
    std::vector<std::string> other = full_->tokenizer().vocab();
    other.back() = "!";
    config["text"] = {{"encoder_file", "enc.safetensors"}};
    write_weights(path, *full_, false,
                  {{"strand.config", config.dump()}, {"strand.vocab", join_vocab(other)}});
  }
  EXPECT_NE(load_error(path).find("strand.vocab differs"), std::string::npos);
  // The same vocabulary is accepted.
  EXPECT_NO_THROW(
      Model::load(write_model("same.safetensors", {{"encoder_file", "enc.safetensors"}}, true)));
  // Not an encoder file.
  write_weights(dir_.file("enc.safetensors"), *full_, true, {{"strand.vocab", "x"}});
  EXPECT_NE(load_error(path).find("not a Strand text-encoder file"), std::string::npos);
}

// ---- the pretrained encoder ----

constexpr const char* kMiniLmFile = "text-encoder-minilm-l6-v2.safetensors";

// Where ./strand setup puts the converted encoder ($STRAND_MODELS_DIR first, as the engine looks).
std::string minilm_path() {
  if (const char* dir = std::getenv("STRAND_MODELS_DIR"); dir != nullptr && *dir != '\0') {
    const auto path = fs::path(dir) / kMiniLmFile;
    if (fs::exists(path)) return path.string();
  }
  const auto path = fs::path(STRAND_SOURCE_DIR) / ".deps" / "models" / kMiniLmFile;
  return fs::exists(path) ? path.string() : std::string();
}

std::vector<float> l2_normalised(std::vector<float> v) {
  double norm = 0;
  for (const double x : v) norm += x * x;
  const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (float& x : v) x *= scale;
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

std::vector<int32_t> golden_ints(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.find(name);
  if (info == nullptr || info->dtype != DType::I32)
    throw std::runtime_error("bad golden ids " + name);
  std::vector<int32_t> out(info->element_count());
  std::memcpy(out.data(), file.data(*info).data(), out.size() * 4);
  return out;
}

class MiniLm : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = minilm_path();
    if (path_.empty()) {
      GTEST_SKIP() << "converted all-MiniLM-L6-v2 not found in $STRAND_MODELS_DIR or "
                   << STRAND_SOURCE_DIR << "/.deps/models (run ./strand setup, or "
                   << "python3 training/convert_minilm.py)";
    }
    model_ = Model::load_text_encoder(path_);
    golden_ = std::make_unique<SafetensorsFile>(
        SafetensorsFile::load(std::string(STRAND_TEST_DATA) + "/minilm-golden.safetensors"));
  }
  std::string path_;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<SafetensorsFile> golden_;
};

// The ~100 prompts of training/make_minilm_golden.py: the engine's tokenizer gives the original's
// ids (HF BertTokenizer) for each.
TEST_F(MiniLm, TokenIdsMatchTransformers) {
  const auto prompts =
      json::parse(golden_->metadata().at("tokenizer_prompts")).get<std::vector<std::string>>();
  const auto lengths = golden_ints(*golden_, "tok.lengths");
  const auto all_ids = golden_ints(*golden_, "tok.ids");
  ASSERT_EQ(prompts.size(), lengths.size());
  ASSERT_GE(prompts.size(), 100u);
  size_t offset = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto length = static_cast<size_t>(lengths[i]);
    ASSERT_LE(offset + length, all_ids.size());
    const std::vector<int32_t> want(all_ids.begin() + static_cast<std::ptrdiff_t>(offset),
                                    all_ids.begin() + static_cast<std::ptrdiff_t>(offset + length));
    EXPECT_EQ(model_->tokenizer().encode(prompts[i]), want) << "prompt " << i << ": " << prompts[i];
    offset += length;
  }
  EXPECT_EQ(offset, all_ids.size());
}

TEST_F(MiniLm, MatchesTransformersGolden) {
  const std::shared_ptr<const Model>& model = model_;
  const SafetensorsFile& golden = *golden_;
  const std::string& path = path_;
  const ModelConfig& c = model->config();
  ASSERT_EQ(c.text_dim, 384);
  ASSERT_EQ(c.text_layers, 6);
  ASSERT_EQ(model->tokenizer().vocab().size(), 30522u);
  // F32 weights give the original's numbers; F16 weights (convert_minilm.py --f16) round every
  // weight to 11 bits, measured at ~1e-3 relative error on the hidden states.
  const SafetensorsFile file = SafetensorsFile::load(path);
  const TensorInfo* word = file.find("text_encoder.embeddings.word_embeddings.weight");
  ASSERT_NE(word, nullptr);
  const double tolerance = word->dtype == DType::F32 ? 1e-4 : 5e-3;

  const auto prompts = json::parse(golden.metadata().at("prompts")).get<std::vector<std::string>>();
  ASSERT_GE(prompts.size(), 3u);
  Engine engine(model, make_cpu_backend());
  std::vector<std::vector<float>> pooled;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(prompts[i]);
    const std::string n = std::to_string(i);
    const std::vector<int32_t> want_ids = golden_ints(golden, "ids." + n);
    const std::vector<int32_t> ids = model->tokenizer().encode(prompts[i]);
    const std::vector<float> hidden = engine.encode_text(ids);
    ASSERT_EQ(ids, want_ids);
    const size_t L = ids.size(), dt = 384;
    std::vector<float> rows;
    for (size_t r : {size_t{0}, L / 2, L - 1}) {
      rows.insert(rows.end(), hidden.begin() + r * dt, hidden.begin() + (r + 1) * dt);
    }
    std::vector<float> mean(dt, 0.0f);
    for (size_t t = 0; t < L; ++t) {
      for (size_t j = 0; j < dt; ++j) mean[j] += hidden[t * dt + j] / static_cast<float>(L);
    }
    EXPECT_LE(rel_error(rows, golden.to_f32(*golden.find("rows." + n))), tolerance);
    EXPECT_LE(rel_error(mean, golden.to_f32(*golden.find("mean." + n))), tolerance);
    pooled.push_back(l2_normalised(mean));
  }
  // Meaning, not keywords: the paraphrase (prompt 1) is closer to prompt 0 than the unrelated
  // prompt 2, although neither shares a word with it.
  const double close = dot(pooled[0], pooled[1]), far = dot(pooled[0], pooled[2]);
  // Encode time per prompt (tokenizer + encoder, warm buffers): reported, not asserted.
  const auto start = std::chrono::steady_clock::now();
  for (const auto& prompt : prompts) (void)engine.encode_text(model->tokenizer().encode(prompt));
  const double encode_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ minilm   ] cos(twilight/frozen pines, dusk/snowy forest) = %.4f, "
      "cos(.., red car/desert) = %.4f; encode %.1f ms per prompt (%s weights)\n",
      close, far, encode_ms / static_cast<double>(prompts.size()),
      word->dtype == DType::F32 ? "F32" : "F16");
  EXPECT_GT(close, far + 0.1);
}

}  // namespace
}  // namespace strand
