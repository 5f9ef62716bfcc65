// Model loading: config parsing and validation, tensor layout checks, weights to float32.
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <new>
#include <sstream>

#include "model_layout.h"
#include "strand/error.h"
#include "strand/model.h"
#include "strand/safetensors.h"

namespace strand {
namespace {

using nlohmann::json;

[[noreturn]] void bad_config(const std::string& what) {
  throw Error(ErrorKind::invalid_file, "model config: " + what);
}

int get_int(const json& object, const char* key, int min_value, int max_value) {
  if (!object.contains(key) || !object[key].is_number_integer()) {
    bad_config(std::string("'") + key + "' must be an integer");
  }
  const auto value = object[key].get<int64_t>();
  if (value < min_value || value > max_value) {
    bad_config(std::string("'") + key + "' = " + std::to_string(value) + " out of range [" +
               std::to_string(min_value) + ", " + std::to_string(max_value) + "]");
  }
  return static_cast<int>(value);
}

const json& get_object(const json& object, const char* key) {
  if (!object.contains(key) || !object[key].is_object()) {
    bad_config(std::string("'") + key + "' must be an object");
  }
  return object[key];
}

// Floats as the doubles their shortest decimal form names (0.8333f -> 0.8333, not 0.83329999...).
std::vector<double> shortest_doubles(const std::vector<float>& values) {
  std::vector<double> out;
  for (float v : values) {
    char text[32];
    const auto end = std::to_chars(text, text + sizeof text, v).ptr;
    out.push_back(std::strtod(std::string(text, end).c_str(), nullptr));
  }
  return out;
}

constexpr const char* kTextConfigKey = "strand.text_config";
constexpr const char* kTextFormat = "strand-text-encoder";
constexpr const char* kTextPrefix = "text_encoder.";

// The BERT sizes of a "text" object (model config) or of "strand.text_config" (encoder file).
// When `optional`, absent keys stay 0 (a model whose encoder lives in another file).
void parse_text_sizes(const json& text, bool optional, ModelConfig& c) {
  auto read = [&](const char* key, int min_value, int max_value, int& out) {
    if (optional && !text.contains(key)) return;
    out = get_int(text, key, min_value, max_value);
  };
  read("dim", 2, 8192, c.text_dim);
  read("layers", 0, 64, c.text_layers);
  read("heads", 1, 128, c.text_heads);
  read("intermediate", 1, 65536, c.text_intermediate);
  read("max_positions", 3, 8192, c.text_max_positions);
  if (text.contains("lowercase") && !text["lowercase"].is_boolean()) {
    bad_config("'lowercase' must be true or false");
  }
  c.text_lowercase = text.value("lowercase", true);
  if (c.text_heads != 0 && c.text_dim % c.text_heads != 0) {
    bad_config("'text.dim' must be divisible by 'text.heads'");
  }
}

std::vector<std::string> split_vocab(const std::string& text) {
  std::vector<std::string> vocab;
  std::string token;
  std::istringstream lines(text);
  while (std::getline(lines, token, '\n')) vocab.push_back(token);
  return vocab;
}

std::string show_shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Reads the expected tensors of `file` (at `path`, for messages) into `weights` as float32.
void read_expected(const SafetensorsFile& file, const std::string& path,
                   const std::vector<ExpectedTensor>& expected,
                   std::map<std::string, std::vector<float>>& weights) {
  for (const auto& want : expected) {
    const TensorInfo* info = file.find(want.name);
    if (info == nullptr) {
      throw Error(ErrorKind::invalid_file, path + ": missing tensor '" + want.name + "'");
    }
    if (info->shape != want.shape) {
      throw Error(ErrorKind::invalid_file, path + ": tensor '" + want.name + "' has shape " +
                                               show_shape(info->shape) + ", expected " +
                                               show_shape(want.shape));
    }
    weights.emplace(want.name, file.to_f32(*info));
  }
}

std::string hex_id(const XXH128_hash_t& hash) {
  char id[33];
  std::snprintf(id, sizeof id, "%016llx%016llx", static_cast<unsigned long long>(hash.high64),
                static_cast<unsigned long long>(hash.low64));
  return id;
}

// A text-encoder file, validated: its text config (text fields only), vocabulary and weights.
struct TextEncoderFile {
  ModelConfig config;
  std::vector<std::string> vocab;
  std::map<std::string, std::vector<float>> weights;
  SafetensorsFile file;
};

std::vector<ExpectedTensor> expected_text_tensors(const ModelConfig& c, int64_t vocab_size);

TextEncoderFile load_text_encoder_file(const std::string& path) {
  SafetensorsFile file = SafetensorsFile::load(path);
  const auto& meta = file.metadata();
  const auto config_it = meta.find(kTextConfigKey);
  const auto vocab_it = meta.find("strand.vocab");
  if (config_it == meta.end() || vocab_it == meta.end()) {
    throw Error(ErrorKind::invalid_file, path + ": not a Strand text-encoder file (needs \"" +
                                             kTextConfigKey + "\" and \"strand.vocab\" metadata)");
  }
  ModelConfig config;
  try {
    json root;
    try {
      root = json::parse(config_it->second);
    } catch (const json::exception& e) {
      bad_config(std::string("text config is not valid JSON (") + e.what() + ")");
    }
    if (!root.is_object()) bad_config("text config is not a JSON object");
    if (root.contains("format") && root["format"] != kTextFormat) {
      bad_config(std::string("text config 'format' must be \"") + kTextFormat + "\"");
    }
    if (root.contains("version") && root["version"] != 1) {
      bad_config("text config version " + root["version"].dump() +
                 " is not supported (this build reads 1)");
    }
    if (root.contains("name") && root["name"].is_string()) {
      config.name = root["name"].get<std::string>();
    }
    parse_text_sizes(root, false, config);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_file, path + ": " + e.what());
  }
  std::vector<std::string> vocab = split_vocab(vocab_it->second);
  std::map<std::string, std::vector<float>> weights;
  const auto vocab_size = static_cast<int64_t>(vocab.size());
  read_expected(file, path, expected_text_tensors(config, vocab_size), weights);
  return {std::move(config), std::move(vocab), std::move(weights), std::move(file)};
}

// <source tree>/.deps/models, where ./strand setup converts pretrained encoders. The build may pass
// the tree as STRAND_SOURCE_DIR; otherwise this file's own path (<tree>/core/src/model.cpp, as
// CMake compiles it) names it. Empty when neither is known (e.g. a relocated build).
std::string source_tree_models_dir() {
#ifdef STRAND_SOURCE_DIR
  return (std::filesystem::path(STRAND_SOURCE_DIR) / ".deps" / "models").string();
#else
  const std::filesystem::path self(__FILE__);
  if (!self.is_absolute() || self.parent_path().filename() != "src" ||
      self.parent_path().parent_path().filename() != "core") {
    return {};
  }
  return (self.parent_path().parent_path().parent_path() / ".deps" / "models").string();
#endif
}

}  // namespace

int ModelConfig::hybrid_layers() const {
  int n = 0;
  for (auto kind : layers) n += kind == AttentionKind::hybrid ? 1 : 0;
  return n;
}
int ModelConfig::softmax_layers() const { return static_cast<int>(layers.size()) - hybrid_layers(); }

ModelConfig ModelConfig::from_json(const std::string& json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    bad_config(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) bad_config("not a JSON object");
  if (root.value("format", "") != "strand-model") bad_config("'format' must be \"strand-model\"");
  const int version = get_int(root, "version", 0, 1 << 30);
  if (version != 1) {
    bad_config("version " + std::to_string(version) + " is not supported (this build reads 1)");
  }
  ModelConfig c;
  c.name = root.value("name", "");
  const json& video = get_object(root, "video");
  c.width = get_int(video, "width", 8, 8192);
  c.height = get_int(video, "height", 8, 8192);
  c.fps = get_int(video, "fps", 1, 240);
  c.latent_channels = get_int(root, "latent_channels", 1, 256);
  const json& ae = get_object(root, "autoencoder");
  if (!ae.contains("channels") || !ae["channels"].is_array() || ae["channels"].size() < 2 ||
      ae["channels"].size() > 6) {
    bad_config("'autoencoder.channels' must be a list of 2 to 6 integers");
  }
  for (const auto& ch : ae["channels"]) {
    if (!ch.is_number_integer() || ch.get<int64_t>() < 1 || ch.get<int64_t>() > 4096) {
      bad_config("'autoencoder.channels' entries must be integers in [1, 4096]");
    }
    c.ae_channels.push_back(ch.get<int>());
  }
  const json& dit = get_object(root, "dit");
  c.dim = get_int(dit, "dim", 2, 16384);
  c.heads = get_int(dit, "heads", 1, 256);
  c.mlp_dim = get_int(dit, "mlp_dim", 1, 65536);
  c.patch = get_int(dit, "patch", 1, 16);
  c.frames_per_block = get_int(dit, "frames_per_block", 1, 64);
  c.freq_dim = get_int(dit, "freq_dim", 2, 4096);
  c.rope_theta = dit.value("rope_theta", 10000.0f);
  if (!(c.rope_theta > 1.0f)) bad_config("'rope_theta' must be > 1");
  if (!dit.contains("layers") || !dit["layers"].is_array() || dit["layers"].empty() ||
      dit["layers"].size() > 256) {
    bad_config("'dit.layers' must be a list of 1 to 256 layer kinds");
  }
  for (const auto& kind : dit["layers"]) {
    if (kind == "hybrid") {
      c.layers.push_back(AttentionKind::hybrid);
    } else if (kind == "softmax_kv") {
      c.layers.push_back(AttentionKind::softmax_kv);
    } else {
      bad_config("unknown layer kind " + kind.dump() + " (expected \"hybrid\" or \"softmax_kv\")");
    }
  }
  c.kv_window = get_int(dit, "softmax_kv_window", 0, 1 << 20);
  c.kv_sink = get_int(dit, "softmax_kv_sink", 0, 1 << 20);
  const json& text = get_object(root, "text");
  if (text.contains("encoder_file")) {
    if (!text["encoder_file"].is_string() || text["encoder_file"].get<std::string>().empty() ||
        text["encoder_file"].get<std::string>().find('\0') != std::string::npos) {
      bad_config("'text.encoder_file' must be a non-empty file name");
    }
    c.text_encoder_file = text["encoder_file"].get<std::string>();
  }
  parse_text_sizes(text, !c.text_encoder_file.empty(), c);
  const json& sampler = get_object(root, "sampler");
  if (!sampler.contains("sigmas") || !sampler["sigmas"].is_array() || sampler["sigmas"].empty() ||
      sampler["sigmas"].size() > 64) {
    bad_config("'sampler.sigmas' must be a list of 1 to 64 numbers");
  }
  for (const auto& s : sampler["sigmas"]) {
    if (!s.is_number()) bad_config("'sampler.sigmas' entries must be numbers");
    const auto sigma = s.get<float>();
    if (!(sigma > 0.0f && sigma <= 1.0f) || (!c.sigmas.empty() && !(sigma < c.sigmas.back()))) {
      bad_config("'sampler.sigmas' must be strictly decreasing within (0, 1]");
    }
    c.sigmas.push_back(sigma);
  }
  // Derived-size consistency.
  const int scale = 1 << c.stages();
  if (c.width % scale != 0 || c.height % scale != 0) {
    bad_config("video size " + std::to_string(c.width) + "x" + std::to_string(c.height) +
               " must be divisible by " + std::to_string(scale));
  }
  if (c.latent_height() % c.patch != 0 || c.latent_width() % c.patch != 0) {
    bad_config("latent size must be divisible by the patch size");
  }
  if (c.dim % c.heads != 0 || c.head_dim() % 2 != 0) {
    bad_config("'dim' must be divisible by 'heads' with an even head size");
  }
  if (c.head_dim() < 6) bad_config("head size must be at least 6 for 3D RoPE");
  if (c.freq_dim % 2 != 0) bad_config("'freq_dim' must be even");
  if (static_cast<int64_t>(c.tokens_per_block()) > 1'000'000) bad_config("blocks are too large");
  return c;
}

std::string ModelConfig::to_json() const {
  json layer_kinds = json::array();
  for (auto kind : layers) layer_kinds.push_back(kind == AttentionKind::hybrid ? "hybrid" : "softmax_kv");
  json text = {{"dim", text_dim}, {"layers", text_layers}, {"heads", text_heads},
               {"intermediate", text_intermediate}, {"max_positions", text_max_positions},
               {"lowercase", text_lowercase}};
  if (!text_encoder_file.empty()) text["encoder_file"] = text_encoder_file;
  json root = {
      {"format", "strand-model"},
      {"version", 1},
      {"name", name},
      {"video", {{"width", width}, {"height", height}, {"fps", fps}}},
      {"latent_channels", latent_channels},
      {"autoencoder", {{"channels", ae_channels}}},
      {"dit",
       {{"dim", dim}, {"heads", heads}, {"mlp_dim", mlp_dim}, {"patch", patch},
        {"frames_per_block", frames_per_block}, {"freq_dim", freq_dim}, {"rope_theta", rope_theta},
        {"layers", layer_kinds}, {"softmax_kv_window", kv_window}, {"softmax_kv_sink", kv_sink}}},
      {"text", text},
      {"sampler", {{"sigmas", shortest_doubles(sigmas)}}},
  };
  return root.dump(2);
}

namespace {

// The text encoder's tensors (BERT, all named text_encoder.*).
std::vector<ExpectedTensor> expected_text_tensors(const ModelConfig& c, int64_t vocab_size) {
  std::vector<ExpectedTensor> t;
  const int64_t dt = c.text_dim;
  auto lin = [&](const std::string& name, int64_t out, int64_t in) {
    t.push_back({name + ".weight", {out, in}});
    t.push_back({name + ".bias", {out}});
  };
  const std::string te = kTextPrefix;
  t.push_back({te + "embeddings.word_embeddings.weight", {vocab_size, dt}});
  t.push_back({te + "embeddings.position_embeddings.weight", {c.text_max_positions, dt}});
  t.push_back({te + "embeddings.token_type_embeddings.weight", {2, dt}});
  t.push_back({te + "embeddings.LayerNorm.weight", {dt}});
  t.push_back({te + "embeddings.LayerNorm.bias", {dt}});
  for (int i = 0; i < c.text_layers; ++i) {
    const std::string p = te + "encoder.layer." + std::to_string(i) + ".";
    lin(p + "attention.self.query", dt, dt);
    lin(p + "attention.self.key", dt, dt);
    lin(p + "attention.self.value", dt, dt);
    lin(p + "attention.output.dense", dt, dt);
    t.push_back({p + "attention.output.LayerNorm.weight", {dt}});
    t.push_back({p + "attention.output.LayerNorm.bias", {dt}});
    lin(p + "intermediate.dense", c.text_intermediate, dt);
    lin(p + "output.dense", dt, c.text_intermediate);
    t.push_back({p + "output.LayerNorm.weight", {dt}});
    t.push_back({p + "output.LayerNorm.bias", {dt}});
  }
  return t;
}

}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c, int64_t vocab_size) {
  std::vector<ExpectedTensor> t = expected_text_tensors(c, vocab_size);
  const int64_t d = c.dim, dt = c.text_dim, h = c.heads;
  const int64_t cpp = static_cast<int64_t>(c.latent_channels) * c.patch * c.patch;
  auto lin = [&](const std::string& name, int64_t out, int64_t in, bool bias = true) {
    t.push_back({name + ".weight", {out, in}});
    if (bias) t.push_back({name + ".bias", {out}});
  };
  auto conv = [&](const std::string& name, int64_t out, int64_t in) {
    t.push_back({name + ".weight", {out, in, 3, 3}});
    t.push_back({name + ".bias", {out}});
  };
  // Text projection.
  lin("text_embedding.0", d, dt);
  lin("text_embedding.2", d, d);
  // DiT.
  lin("patch_embedding", d, cpp);
  lin("time_embedding.0", d, c.freq_dim);
  lin("time_embedding.2", d, d);
  lin("time_projection.1", 6 * d, d);
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    t.push_back({p + "modulation", {6, d}});
    t.push_back({p + "norm3.weight", {d}});
    t.push_back({p + "norm3.bias", {d}});
    for (const char* m : {"self_attn", "cross_attn"}) {
      const std::string a = p + m + ".";
      lin(a + "q", d, d);
      lin(a + "k", d, d);
      lin(a + "v", d, d);
      lin(a + "o", d, d);
      t.push_back({a + "norm_q.weight", {d}});
      t.push_back({a + "norm_k.weight", {d}});
    }
    if (c.layers[i] == AttentionKind::hybrid) {
      const std::string a = p + "self_attn.";
      lin(a + "mem_q", d, d, false);
      lin(a + "mem_k", d, d, false);
      lin(a + "mem_v", d, d, false);
      lin(a + "mem_a", h, d, false);
      lin(a + "mem_b", h, d, false);
      lin(a + "mem_g", h, d, false);
      t.push_back({a + "mem_dt_bias", {h}});
      t.push_back({a + "mem_A_log", {h}});
    }
    lin(p + "ffn.0", c.mlp_dim, d);
    lin(p + "ffn.2", d, c.mlp_dim);
  }
  t.push_back({"head.modulation", {2, d}});
  lin("head.head", cpp, d);
  // Autoencoder.
  const int s = c.stages();
  const auto& ch = c.ae_channels;
  conv("encoder.conv_in", ch[0], 3);
  for (int i = 0; i < s; ++i) conv("encoder.down." + std::to_string(i) + ".conv", ch[i + 1], ch[i]);
  conv("encoder.conv_out", c.latent_channels, ch[s]);
  conv("decoder.conv_in", ch[s], c.latent_channels);
  for (int i = 0; i < s; ++i) {
    conv("decoder.up." + std::to_string(i) + ".conv", ch[s - i - 1], ch[s - i]);
  }
  conv("decoder.conv_out", 3, ch[0]);
  return t;
}

Model::Model(ModelConfig config, std::map<std::string, std::vector<float>> weights,
             std::vector<std::string> vocab, std::string id, std::string text_encoder_path)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      tokenizer_(std::make_unique<WordPieceTokenizer>(std::move(vocab), config_.text_lowercase,
                                                      config_.text_max_positions)),
      id_(std::move(id)),
      text_encoder_path_(std::move(text_encoder_path)) {}

std::string Model::find_text_encoder(const std::string& name, const std::string& model_path) {
  namespace fs = std::filesystem;
  const fs::path file(name);
  std::vector<fs::path> candidates;
  if (file.is_absolute()) {
    candidates.push_back(file);
  } else {
    candidates.push_back(fs::path(model_path).parent_path() / file);
    if (const char* dir = std::getenv("STRAND_MODELS_DIR"); dir != nullptr && *dir != '\0') {
      candidates.push_back(fs::path(dir) / file);
    }
    if (const std::string dir = source_tree_models_dir(); !dir.empty()) {
      candidates.push_back(fs::path(dir) / file);
    }
  }
  std::string tried;
  for (const auto& candidate : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
    tried += (tried.empty() ? "" : ", ") + candidate.string();
  }
  throw Error(ErrorKind::invalid_file,
              model_path + ": text encoder file '" + name + "' not found (looked in: " + tried +
                  "); run ./strand setup to convert the pretrained encoder, or set "
                  "STRAND_MODELS_DIR");
}

std::shared_ptr<const Model> Model::load_text_encoder(const std::string& path) {
  TextEncoderFile encoder = load_text_encoder_file(path);
  const auto data = encoder.file.data_buffer();
  std::string id = hex_id(XXH3_128bits(data.data(), data.size()));
  try {
    return std::make_shared<const Model>(std::move(encoder.config), std::move(encoder.weights),
                                         std::move(encoder.vocab), std::move(id), path);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_file, path + ": " + e.what());
  }
}

std::shared_ptr<const Model> Model::load(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::load(path);
  const auto& meta = file.metadata();
  const auto config_it = meta.find("strand.config");
  if (config_it == meta.end()) {
    throw Error(ErrorKind::invalid_file,
                path + ": not a Strand model (no \"strand.config\" in the file's metadata)");
  }
  ModelConfig config;
  try {
    config = ModelConfig::from_json(config_it->second);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_file, path + ": " + e.what());
  }
  const auto vocab_it = meta.find("strand.vocab");
  std::map<std::string, std::vector<float>> weights;
  std::vector<std::string> vocab;
  std::string encoder_path;
  std::string id;
  const auto data = file.data_buffer();
  if (config.text_encoder_file.empty()) {
    id = hex_id(XXH3_128bits(data.data(), data.size()));
    if (vocab_it == meta.end()) {
      throw Error(ErrorKind::invalid_file, path + ": no \"strand.vocab\" in the file's metadata");
    }
    vocab = split_vocab(vocab_it->second);
    const auto vocab_size = static_cast<int64_t>(vocab.size());
    read_expected(file, path, expected_tensors(config, vocab_size), weights);
  } else {
    // The encoder's weights and vocabulary come from its own file; the model keeps the rest.
    for (const auto& info : file.tensors()) {
      if (info.name.rfind(kTextPrefix, 0) == 0) {
        throw Error(ErrorKind::invalid_file,
                    path + ": tensor '" + info.name +
                        "' in a model whose text encoder is the file '" +
                        config.text_encoder_file + "' (keep text_encoder.* in one place)");
      }
    }
    encoder_path = find_text_encoder(config.text_encoder_file, path);
    TextEncoderFile encoder = load_text_encoder_file(encoder_path);
    const ModelConfig& e = encoder.config;
    const json given = json::parse(config_it->second)["text"];
    auto check = [&](const char* key, int& value, int actual) {
      if (value != 0 && value != actual) {
        throw Error(ErrorKind::invalid_file,
                    path + ": text." + key + " = " + std::to_string(value) +
                        " but the encoder file " + encoder_path + " has " + std::to_string(actual));
      }
      value = actual;
    };
    check("dim", config.text_dim, e.text_dim);
    check("layers", config.text_layers, e.text_layers);
    check("heads", config.text_heads, e.text_heads);
    check("intermediate", config.text_intermediate, e.text_intermediate);
    check("max_positions", config.text_max_positions, e.text_max_positions);
    if (given.contains("lowercase") && config.text_lowercase != e.text_lowercase) {
      throw Error(ErrorKind::invalid_file,
                  path + ": text.lowercase differs from the encoder file " + encoder_path);
    }
    config.text_lowercase = e.text_lowercase;
    if (vocab_it != meta.end() && split_vocab(vocab_it->second) != encoder.vocab) {
      throw Error(ErrorKind::invalid_file,
                  path + ": its strand.vocab differs from the vocabulary of the encoder file " +
                      encoder_path);
    }
    vocab = std::move(encoder.vocab);
    for (const auto& want : expected_tensors(config, static_cast<int64_t>(vocab.size()))) {
      if (want.name.rfind(kTextPrefix, 0) == 0) continue;
      read_expected(file, path, {want}, weights);
    }
    weights.merge(encoder.weights);
    // The id covers both files: XXH3-128 streamed over the model's data buffer, then the encoder's.
    const auto encoder_data = encoder.file.data_buffer();
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                   XXH3_freeState);
    if (!state) throw std::bad_alloc();
    XXH3_128bits_reset(state.get());
    XXH3_128bits_update(state.get(), data.data(), data.size());
    XXH3_128bits_update(state.get(), encoder_data.data(), encoder_data.size());
    id = hex_id(XXH3_128bits_digest(state.get()));
  }
  try {
    return std::make_shared<const Model>(std::move(config), std::move(weights), std::move(vocab),
                                         std::move(id), std::move(encoder_path));
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_file, path + ": " + e.what());
  }
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, values] : weights_) n += static_cast<int64_t>(values.size());
  return n;
}

const std::vector<float>& Model::weight(const std::string& name) const {
  const auto it = weights_.find(name);
  if (it == weights_.end()) throw Error(ErrorKind::invalid_file, "missing weight '" + name + "'");
  return it->second;
}

bool Model::has_weight(const std::string& name) const { return weights_.count(name) != 0; }

size_t Model::fixed_state_bytes() const {
  const size_t dh = static_cast<size_t>(config_.head_dim());
  return static_cast<size_t>(config_.hybrid_layers()) * static_cast<size_t>(config_.heads) * dh *
         dh * sizeof(float);
}

size_t Model::state_bytes_per_block() const {
  // Each softmax_kv layer caches k and v for every token of the block (unless windowed).
  return static_cast<size_t>(config_.softmax_layers()) * 2 *
         static_cast<size_t>(config_.tokens_per_block()) * static_cast<size_t>(config_.dim) *
         sizeof(float);
}

}  // namespace strand
