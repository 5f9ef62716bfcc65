// Project folders without Qt (see strand/project.h). Mirrors app/desktop/project_file.cpp: the
// cross test tests/app/test_project_interop.cpp holds the two to the same bytes and meanings.
#include "strand/project.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "sha256.h"
#include "strand/error.h"
#include "strand/file_io.h"

namespace strand {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kBlockCacheMagic[8] = {'S', 'T', 'R', 'N', 'B', 'L', 'K', '1'};
constexpr size_t kDigestBytes = 32;
constexpr const char* kFormat = "strand-project";
constexpr const char* kProjectFile = "project.json";
constexpr const char* kAutosaveFile = "project.autosave.json";
constexpr const char* kInitialSnapshot = "snapshots/initial.snap";

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorKind::invalid_file, message);
}

// Keys become file names: only what the app's newBlockKey() makes (hex), never a path.
bool is_valid_key(const std::string& key) {
  if (key.empty() || key.size() > 32) return false;
  return std::all_of(key.begin(), key.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string snapshot_file(const std::string& key) {
  return "snapshots/" + key + ".snap";
}
std::string cache_file(const std::string& key) {
  return "cache/" + key + ".blk";
}
std::string latents_file(const std::string& key) {
  return "cache/" + key + ".lat";
}

std::string join(const std::string& folder, const std::string& relative) {
  return (fs::path(folder) / relative).string();
}

// The app stores seeds as decimal strings (exact 64-bit).
bool parse_seed(const json& value, uint64_t* seed) {
  if (!value.is_string()) return false;
  const std::string text = value.get<std::string>();
  if (text.empty() || text.size() > 20 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long parsed = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *seed = parsed;
  return true;
}

// Integer fields: the app reads them with QJsonValue::toInt / toInteger, i.e. numbers; a
// non-integral or missing value takes the given default, as there.
int64_t int_or(const json& object, const char* key, int64_t fallback) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return fallback;
  if (it->is_number_integer()) return it->get<int64_t>();
  const double value = it->get<double>();
  return value == static_cast<double>(static_cast<int64_t>(value)) ? static_cast<int64_t>(value)
                                                                   : fallback;
}

std::string string_or_empty(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string now_iso_utc() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[96];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms));
  return text;
}

// v0 -> v1, the same step as the app's migrateV0ToV1 (see project_file.cpp for the meaning).
json migrate_v0_to_v1(const json& v0) {
  json v1 = v0;
  for (const char* key : {"version", "seed", "model", "model_id", "active", "branches"})
    v1.erase(key);
  const int64_t fpb = int_or(v0, "frames_per_block", 0);
  if (fpb <= 0) invalid("version 0 project without frames_per_block");
  const auto seed_it = v0.find("seed");
  const auto seed = static_cast<uint64_t>(
      seed_it != v0.end() && seed_it->is_number() ? seed_it->get<double>() : 0.0);
  v1["version"] = 1;
  v1["model"] = {{"path", string_or_empty(v0, "model")}, {"id", string_or_empty(v0, "model_id")}};
  v1["active_branch"] = int_or(v0, "active", 1);
  int64_t max_id = 0;
  json branches = json::array();
  const auto old_branches = v0.find("branches");
  if (old_branches != v0.end() && old_branches->is_array()) {
    for (const json& old_branch : *old_branches) {
      if (!old_branch.is_object()) continue;
      json branch = old_branch;
      branch.erase("fork_frame");
      branch.erase("blocks");
      const int64_t fork_frame = int_or(old_branch, "fork_frame", 0);
      if (fork_frame % fpb != 0)
        invalid("version 0 branch forks inside a block (frame " + std::to_string(fork_frame) + ")");
      const int64_t fork_block = fork_frame / fpb;
      branch["fork_block"] = fork_block;
      branch["seed"] = std::to_string(seed);
      branch["in"] = -1;
      branch["out"] = -1;
      json blocks = json::array();
      int64_t index = fork_block;
      const auto old_blocks = old_branch.find("blocks");
      if (old_blocks != old_branch.end() && old_blocks->is_array()) {
        for (json block : *old_blocks) {
          if (!block.is_object()) block = json::object();
          block["index"] = index++;
          block["seed"] = std::to_string(seed);
          blocks.push_back(block);
        }
      }
      branch["blocks"] = blocks;
      max_id = std::max(max_id, int_or(branch, "id", 0));
      branches.push_back(branch);
    }
  }
  v1["branches"] = branches;
  v1["next_branch_id"] = max_id + 1;
  return v1;
}

// Parses and migrates project JSON text; returns it at kProjectFormatVersion (or newer, as is).
json parse_project_json(const std::string& text, const std::string& file, int* loaded_version) {
  json document = json::parse(text, nullptr, false);
  if (document.is_discarded() || !document.is_object()) invalid(file + " is not valid JSON");
  if (string_or_empty(document, "format") != kFormat)
    invalid(file + ": not a Strand project (\"format\" is not \"" + std::string(kFormat) + "\")");
  const auto version_it = document.find("version");
  if (version_it == document.end() || !version_it->is_number() ||
      int_or(document, "version", -1) < 0)
    invalid(file + ": the project's \"version\" is not a non-negative integer");
  *loaded_version = static_cast<int>(int_or(document, "version", -1));
  if (*loaded_version == 0) document = migrate_v0_to_v1(document);
  return document;
}

Project project_from_json(const json& document, const std::string& folder, int loaded_version) {
  Project project;
  project.folder = folder;
  project.version = loaded_version;
  const auto model = document.find("model");
  if (model != document.end() && model->is_object()) {
    project.model_path = string_or_empty(*model, "path");
    project.model_id = string_or_empty(*model, "id");
  }
  project.frames_per_block = static_cast<int>(int_or(document, "frames_per_block", 0));
  if (project.frames_per_block <= 0 || project.frames_per_block > 4096)
    invalid("frames_per_block missing or invalid");
  project.fps = static_cast<int>(std::clamp<int64_t>(int_or(document, "fps", 0), 0, 1000));
  project.active_branch = static_cast<int>(int_or(document, "active_branch", 1));
  int64_t next_id = int_or(document, "next_branch_id", 0);
  const auto branches = document.find("branches");
  if (branches != document.end() && branches->is_array()) {
    for (const json& bj : *branches) {
      if (!bj.is_object()) invalid("a branch entry is not an object");
      ProjectBranch b;
      b.id = static_cast<int>(int_or(bj, "id", 0));
      b.name = string_or_empty(bj, "name");
      b.parent_id = static_cast<int>(int_or(bj, "parent", -1));
      b.fork_block = int_or(bj, "fork_block", -1);
      b.prompt = string_or_empty(bj, "prompt");
      b.in_frame = int_or(bj, "in", -1);
      b.out_frame = int_or(bj, "out", -1);
      const auto seed = bj.find("seed");
      if (seed == bj.end() || !parse_seed(*seed, &b.seed) || b.id <= 0 || project.branch(b.id))
        invalid("branch entry " + std::to_string(b.id) + " is invalid (id or seed)");
      if (const auto recached = bj.find("recached_end"); recached != bj.end()) {
        // Optional (the app warns and drops a bad one); only a valid key names a file.
        if (recached->is_string() && is_valid_key(recached->get<std::string>()))
          b.recached_end_key = recached->get<std::string>();
      }
      const auto blocks = bj.find("blocks");
      if (blocks != bj.end() && blocks->is_array()) {
        for (const json& blj : *blocks) {
          ProjectBlock block;
          if (!blj.is_object()) invalid("branch " + std::to_string(b.id) + " has a bad block");
          block.index = int_or(blj, "index", -1);
          block.key = string_or_empty(blj, "key");
          block.prompt = string_or_empty(blj, "prompt");
          const auto block_seed = blj.find("seed");
          if (!is_valid_key(block.key) || block_seed == blj.end() ||
              !parse_seed(*block_seed, &block.seed))
            invalid("branch " + std::to_string(b.id) + " has a block with an invalid key or seed");
          b.blocks.push_back(std::move(block));
        }
      }
      project.branches.push_back(std::move(b));
    }
  }
  std::sort(project.branches.begin(), project.branches.end(),
            [](const ProjectBranch& a, const ProjectBranch& b) { return a.id < b.id; });
  for (const auto& b : project.branches) next_id = std::max<int64_t>(next_id, b.id + 1);
  project.next_branch_id = static_cast<int>(next_id);
  if (const std::string problem = project.check(); !problem.empty())
    invalid("the project is inconsistent: " + problem);
  return project;
}

std::vector<uint8_t> read_or_throw(const std::string& path) {
  return read_file(path);
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string random_key() {
  static std::mt19937_64 generator{std::random_device{}()};
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(generator()));
  return text;
}

void put_u32_le(std::vector<uint8_t>& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

}  // namespace

// ---- Project queries ----------------------------------------------------------------------------

const ProjectBranch* Project::branch(int id) const {
  for (const auto& b : branches)
    if (b.id == id) return &b;
  return nullptr;
}

const ProjectBranch* Project::find_branch(const std::string& id_or_name) const {
  if (!id_or_name.empty() &&
      std::all_of(id_or_name.begin(), id_or_name.end(),
                  [](char c) { return c >= '0' && c <= '9'; }) &&
      id_or_name.size() < 10) {
    if (const ProjectBranch* b = branch(std::stoi(id_or_name))) return b;
  }
  const ProjectBranch* found = nullptr;
  for (const auto& b : branches) {
    if (b.name != id_or_name) continue;
    if (found != nullptr) return nullptr;  // ambiguous
    found = &b;
  }
  return found;
}

std::vector<int> Project::children(int id) const {
  std::vector<int> ids;
  for (const auto& b : branches)
    if (b.parent_id == id && b.id != id) ids.push_back(b.id);
  return ids;
}

int64_t Project::path_length(int id) const {
  const ProjectBranch* b = branch(id);
  return b == nullptr ? 0 : b->fork_block + static_cast<int64_t>(b->blocks.size());
}

const ProjectBlock* Project::path_block(int id, int64_t block_index) const {
  const int owner = block_owner(id, block_index);
  if (owner == 0) return nullptr;
  const ProjectBranch* b = branch(owner);
  return &b->blocks[static_cast<size_t>(block_index - b->fork_block)];
}

int Project::block_owner(int id, int64_t block_index) const {
  if (block_index < 0) return 0;
  int guard = 0;  // a cycle is refused by check(); this keeps a bad in-memory Project finite
  for (const ProjectBranch* b = branch(id); b != nullptr && guard < 100000;
       b = branch(b->parent_id), ++guard) {
    if (block_index >= b->fork_block) {
      return block_index - b->fork_block < static_cast<int64_t>(b->blocks.size()) ? b->id : 0;
    }
  }
  return 0;
}

std::vector<ProjectPromptSegment> Project::prompt_segments(int id) const {
  std::vector<ProjectPromptSegment> segments;
  const int64_t length = path_length(id);
  for (int64_t k = 0; k < length; ++k) {
    const ProjectBlock* block = path_block(id, k);
    if (block == nullptr) break;
    if (!segments.empty() && segments.back().prompt == block->prompt &&
        segments.back().last_block == k - 1) {
      segments.back().last_block = k;
      continue;
    }
    segments.push_back({k, k, block->prompt, block_owner(id, k)});
  }
  return segments;
}

std::string Project::check() const {
  const auto text = [](auto... parts) { return (std::string() + ... + std::string(parts)); };
  const auto n = [](int64_t v) { return std::to_string(v); };
  if (branch(1) == nullptr) return "the root branch is missing";
  if (branch(active_branch) == nullptr) return text("active branch ", n(active_branch), " missing");
  for (const auto& b : branches) {
    if (b.id >= next_branch_id)
      return text("branch id ", n(b.id), " >= next id ", n(next_branch_id));
    if (b.name.find_first_not_of(" \t\r\n") == std::string::npos)
      return text("branch ", n(b.id), " has no name");
    if (b.id == 1) {
      if (b.parent_id != -1 || b.fork_block != 0) return "root has a parent";
    } else {
      if (branch(b.parent_id) == nullptr)
        return text("branch ", n(b.id), ": parent ", n(b.parent_id), " missing");
      // Parents are older (smaller ids): this also rules out cycles.
      if (b.parent_id >= b.id) return text("branch ", n(b.id), ": parent is younger");
      if (b.fork_block < 0 || b.fork_block > path_length(b.parent_id))
        return text("branch ", n(b.id), ": fork block ", n(b.fork_block), " beyond parent path");
    }
    for (size_t i = 0; i < b.blocks.size(); ++i) {
      const int64_t expected = b.fork_block + static_cast<int64_t>(i);
      if (b.blocks[i].index != expected)
        return text("branch ", n(b.id), ": block ", n(expected), " stored as ",
                    n(b.blocks[i].index));
    }
    const int64_t frames = path_frames(b.id);
    if (b.in_frame < -1 || b.out_frame < -1 || b.in_frame >= frames || b.out_frame >= frames ||
        (b.in_frame >= 0 && b.out_frame >= 0 && b.in_frame > b.out_frame))
      return text("branch ", n(b.id), ": in/out ", n(b.in_frame), "/", n(b.out_frame),
                  " outside 0..", n(frames));
  }
  return {};
}

bool is_project_folder(const std::string& folder) {
  return file_exists(join(folder, kProjectFile));
}

bool project_has_newer_autosave(const std::string& folder) {
  std::error_code ec;
  const fs::path autosave = fs::path(folder) / kAutosaveFile;
  const fs::path saved = fs::path(folder) / kProjectFile;
  if (!fs::exists(autosave, ec)) return false;
  if (!fs::exists(saved, ec)) return true;
  return fs::last_write_time(autosave, ec) > fs::last_write_time(saved, ec);
}

Project read_project(const std::string& folder) {
  const std::string file = join(folder, kProjectFile);
  std::vector<uint8_t> bytes;
  try {
    bytes = read_or_throw(file);
  } catch (const Error& e) {
    throw Error(ErrorKind::io, "cannot read " + file + ": " + e.what());
  }
  int loaded_version = 0;
  const json document =
      parse_project_json(std::string(bytes.begin(), bytes.end()), file, &loaded_version);
  try {
    return project_from_json(document, folder, loaded_version);
  } catch (const Error& e) {
    throw Error(e.kind(), file + ": " + e.what());
  }
}

// ---- Block cache --------------------------------------------------------------------------------

std::vector<uint8_t> encode_block_cache(const std::vector<Frame>& frames,
                                        const std::vector<float>& latents) {
  const int width = frames.empty() ? 0 : frames.front().width;
  const int height = frames.empty() ? 0 : frames.front().height;
  for (const Frame& frame : frames) {
    if (frame.width != width || frame.height != height ||
        frame.rgb.size() != size_t(width) * size_t(height) * 3)
      throw Error(ErrorKind::invalid_argument, "block frames differ in size");
  }
  // Keys in this order with no spaces: the bytes QJsonDocument::Compact writes (sorted keys).
  const std::string header = json{
      {"frames", frames.size()},
      {"height", height},
      {"latents", latents.size()},
      {"width", width}}.dump();
  std::vector<uint8_t> bytes(kBlockCacheMagic, kBlockCacheMagic + 8);
  put_u32_le(bytes, static_cast<uint32_t>(header.size()));
  bytes.insert(bytes.end(), header.begin(), header.end());
  for (const Frame& frame : frames) bytes.insert(bytes.end(), frame.rgb.begin(), frame.rgb.end());
  for (float value : latents) {
    uint32_t bits = 0;
    std::memcpy(&bits, &value, 4);
    put_u32_le(bytes, bits);
  }
  const auto digest = detail::sha256(bytes);
  bytes.insert(bytes.end(), digest.begin(), digest.end());
  return bytes;
}

BlockCache decode_block_cache(std::span<const uint8_t> bytes) {
  const size_t fixed = 8 + 4 + kDigestBytes;
  if (bytes.size() < fixed || std::memcmp(bytes.data(), kBlockCacheMagic, 8) != 0)
    invalid("not a block cache file");
  const std::span<const uint8_t> body = bytes.first(bytes.size() - kDigestBytes);
  const auto digest = detail::sha256(body);
  if (std::memcmp(digest.data(), bytes.data() + body.size(), kDigestBytes) != 0)
    invalid("checksum mismatch (damaged file)");
  uint32_t header_size = 0;
  for (int i = 0; i < 4; ++i) header_size |= uint32_t(body[8 + i]) << (8 * i);
  if (header_size > body.size() - 12) invalid("header length beyond the file");
  const json header =
      json::parse(body.begin() + 12, body.begin() + 12 + header_size, nullptr, false);
  if (header.is_discarded() || !header.is_object()) invalid("block cache header is not JSON");
  const int64_t count = int_or(header, "frames", -1);
  const int64_t width = int_or(header, "width", -1);
  const int64_t height = int_or(header, "height", -1);
  const int64_t latent_count = int_or(header, "latents", -1);
  const auto payload = static_cast<int64_t>(body.size() - 12 - header_size);
  constexpr int64_t kMaxSide = 1 << 15;
  if (count < 0 || count > 4096 || width < 0 || width > kMaxSide || height < 0 ||
      height > kMaxSide || latent_count < 0 ||
      count * width * height * 3 + latent_count * 4 != payload)
    invalid("sizes in the header do not match the file");
  BlockCache cache;
  cache.width = static_cast<int>(width);
  cache.height = static_cast<int>(height);
  const uint8_t* cursor = body.data() + 12 + header_size;
  const auto frame_bytes = static_cast<size_t>(width * height * 3);
  for (int64_t f = 0; f < count; ++f) {
    Frame frame;
    frame.width = cache.width;
    frame.height = cache.height;
    frame.index = f;
    frame.rgb.assign(cursor, cursor + frame_bytes);
    cursor += frame_bytes;
    cache.frames.push_back(std::move(frame));
  }
  cache.latents.resize(static_cast<size_t>(latent_count));
  for (auto& value : cache.latents) {
    const uint32_t bits = uint32_t(cursor[0]) | (uint32_t(cursor[1]) << 8) |
                          (uint32_t(cursor[2]) << 16) | (uint32_t(cursor[3]) << 24);
    std::memcpy(&value, &bits, 4);
    cursor += 4;
  }
  return cache;
}

// ---- Frames -------------------------------------------------------------------------------------

ProjectFrameReader::ProjectFrameReader(const Project& project, DecoderProvider decoder)
    : project_(project), decoder_(std::move(decoder)) {}

std::vector<Frame> ProjectFrameReader::block_frames(const ProjectBlock& block) {
  const int fpb = project_.frames_per_block;
  const int64_t first = block.index * fpb;
  std::string cache_problem;
  std::vector<float> cache_latents;
  try {
    BlockCache cache = decode_block_cache(read_file(join(project_.folder, cache_file(block.key))));
    if (static_cast<int>(cache.frames.size()) != fpb) {
      cache_problem = "holds " + std::to_string(cache.frames.size()) + " frames, expected " +
                      std::to_string(fpb);
    } else {
      for (auto& frame : cache.frames) frame.index += first;
      return std::move(cache.frames);
    }
  } catch (const Error& e) {
    cache_problem = e.what();
  }
  // Latents: their own file, or inside the frame cache of projects saved before .lat existed
  // (that file is damaged here, so only .lat can help).
  std::vector<float> latents;
  std::string latents_problem = "no latents file";
  if (file_exists(join(project_.folder, latents_file(block.key)))) {
    try {
      BlockCache lat =
          decode_block_cache(read_file(join(project_.folder, latents_file(block.key))));
      if (!lat.frames.empty()) throw Error(ErrorKind::invalid_file, "not a latents file");
      latents = std::move(lat.latents);
      latents_problem.clear();
      if (latents.empty()) latents_problem = "no latents stored";
    } catch (const Error& e) {
      latents_problem = e.what();
    }
  }
  const std::string where =
      "block " + std::to_string(block.index) + " (cache/" + block.key + ".blk)";
  if (!latents_problem.empty())
    invalid("frames of " + where + " are damaged (" + cache_problem +
            ") and cannot be rebuilt: " + latents_problem);
  Session* session = decoder_ ? decoder_() : nullptr;
  if (session == nullptr)
    invalid("frames of " + where + " are damaged (" + cache_problem +
            "); rebuilding them from the stored latents needs the project's model");
  std::vector<Frame> frames = session->decode_latents(latents, first);
  if (static_cast<int>(frames.size()) != fpb)
    invalid("latents of " + where + " decode to " + std::to_string(frames.size()) + " frames");
  ++decoded_;
  return frames;
}

Frame ProjectFrameReader::path_frame(int branch_id, int64_t path_frame) {
  const int fpb = project_.frames_per_block;
  const ProjectBlock* block =
      path_frame < 0 ? nullptr : project_.path_block(branch_id, path_frame / fpb);
  if (block == nullptr)
    throw Error(ErrorKind::invalid_argument, "frame " + std::to_string(path_frame) +
                                                 " is not on the path of branch " +
                                                 std::to_string(branch_id));
  if (cached_key_ != block->key) {
    cached_frames_ = block_frames(*block);
    cached_key_ = block->key;
  }
  return cached_frames_[static_cast<size_t>(path_frame % fpb)];
}

MemoryState load_project_snapshot(const Project& project, const std::string& key) {
  const std::string relative = key == "initial" ? kInitialSnapshot : snapshot_file(key);
  if (key != "initial" && !is_valid_key(key)) invalid("invalid snapshot key '" + key + "'");
  return load_snapshot(join(project.folder, relative), project.model_id);
}

// ---- Writer -------------------------------------------------------------------------------------

ProjectWriter ProjectWriter::create(const std::string& folder, NewProject info,
                                    NewProjectBranch root) {
  if (folder.empty()) throw Error(ErrorKind::invalid_argument, "the project folder is empty");
  if (info.frames_per_block <= 0 || info.frames_per_block > 4096)
    throw Error(ErrorKind::invalid_argument, "frames_per_block must be 1..4096");
  if (root.name.find_first_not_of(" \t\r\n") == std::string::npos)
    throw Error(ErrorKind::invalid_argument, "the branch name is blank");
  if (info.initial_state.next_block != 0)
    throw Error(ErrorKind::invalid_argument, "the initial state is not at block 0");
  std::error_code ec;
  ProjectWriter writer;
  writer.folder_ = folder;
  if (fs::exists(folder, ec)) {
    if (!fs::is_directory(folder, ec) || !fs::is_empty(folder, ec))
      throw Error(ErrorKind::invalid_argument,
                  folder + " exists and is not an empty folder (nor a project)");
  } else {
    fs::create_directories(folder, ec);
    if (ec) throw Error(ErrorKind::io, "cannot create " + folder + ": " + ec.message());
    writer.created_folder_ = true;
  }
  writer.active_ = true;
  for (const char* sub : {"snapshots", "cache"}) {
    fs::create_directories(join(folder, sub), ec);
    if (ec) throw Error(ErrorKind::io, "cannot create " + join(folder, sub) + ": " + ec.message());
    writer.made_dirs_.push_back(join(folder, sub));
  }
  Project& project = writer.project_;
  project.folder = folder;
  project.model_path = info.model_path.empty()
                           ? std::string()
                           : fs::absolute(info.model_path, ec).lexically_normal().string();
  project.model_id = info.model_id;
  project.frames_per_block = info.frames_per_block;
  project.fps = info.fps;
  project.next_branch_id = 2;
  project.active_branch = 1;
  ProjectBranch branch;
  branch.id = 1;
  branch.name = root.name;
  branch.seed = root.seed;
  branch.prompt = root.prompt;
  project.branches.push_back(branch);
  writer.branch_id_ = 1;
  const std::string initial = join(folder, kInitialSnapshot);
  writer.written_.push_back(initial);
  save_snapshot(initial, info.initial_state);
  return writer;
}

ProjectWriter ProjectWriter::append_branch(const std::string& folder, NewProjectBranch info) {
  ProjectWriter writer;
  writer.folder_ = folder;
  const std::string file = join(folder, kProjectFile);
  const std::vector<uint8_t> bytes = read_file(file);
  writer.json_text_.assign(bytes.begin(), bytes.end());
  writer.project_ = read_project(folder);
  Project& project = writer.project_;
  if (project.version > kProjectFormatVersion)
    throw Error(ErrorKind::invalid_argument,
                folder + " was made by a newer Strand (project version " +
                    std::to_string(project.version) + "); it can be read but not extended");
  if (project_has_newer_autosave(folder))
    throw Error(ErrorKind::invalid_argument,
                folder +
                    " has an autosave newer than project.json; open it in Strand and save "
                    "first");
  if (info.name.find_first_not_of(" \t\r\n") == std::string::npos)
    throw Error(ErrorKind::invalid_argument, "the branch name is blank");
  if (project.branch(info.parent_id) == nullptr)
    throw Error(ErrorKind::invalid_argument,
                "the project has no branch " + std::to_string(info.parent_id));
  if (info.fork_block < 0 || info.fork_block > project.path_length(info.parent_id))
    throw Error(ErrorKind::invalid_argument,
                "block " + std::to_string(info.fork_block) + " is outside branch " +
                    std::to_string(info.parent_id) + " (0.." +
                    std::to_string(project.path_length(info.parent_id)) + ")");
  ProjectBranch branch;
  branch.id = project.next_branch_id;
  branch.name = info.name;
  branch.parent_id = info.parent_id;
  branch.fork_block = info.fork_block;
  branch.seed = info.seed;
  branch.prompt = info.prompt;
  project.branches.push_back(branch);
  project.next_branch_id = branch.id + 1;
  project.active_branch = branch.id;
  writer.branch_id_ = branch.id;
  writer.active_ = true;
  std::error_code ec;
  for (const char* sub : {"snapshots", "cache"}) {
    if (!fs::exists(join(folder, sub), ec)) {
      fs::create_directories(join(folder, sub), ec);
      if (ec)
        throw Error(ErrorKind::io, "cannot create " + join(folder, sub) + ": " + ec.message());
      writer.made_dirs_.push_back(join(folder, sub));
    }
  }
  return writer;
}

ProjectWriter::ProjectWriter(ProjectWriter&& other) noexcept
    : folder_(std::move(other.folder_)),
      json_text_(std::move(other.json_text_)),
      created_folder_(other.created_folder_),
      committed_(other.committed_),
      active_(other.active_),
      project_(std::move(other.project_)),
      branch_id_(other.branch_id_),
      written_(std::move(other.written_)),
      made_dirs_(std::move(other.made_dirs_)),
      previous_backup_(std::move(other.previous_backup_)),
      wrote_project_json_(other.wrote_project_json_) {
  other.active_ = false;
}

ProjectWriter::~ProjectWriter() {
  abort();
}

int64_t ProjectWriter::next_block_index() const {
  return project_.path_length(branch_id_);
}

void ProjectWriter::add_block(const NewProjectBlock& block) {
  if (!active_ || committed_) throw Error(ErrorKind::invalid_argument, "the writer is closed");
  const int64_t index = next_block_index();
  if (static_cast<int>(block.frames.size()) != project_.frames_per_block)
    throw Error(ErrorKind::invalid_argument, "a block has " + std::to_string(block.frames.size()) +
                                                 " frames, expected " +
                                                 std::to_string(project_.frames_per_block));
  if (block.state_after.next_block != index + 1)
    throw Error(ErrorKind::invalid_argument, "the state after block " + std::to_string(index) +
                                                 " is at block " +
                                                 std::to_string(block.state_after.next_block));
  if (!project_.model_id.empty() && block.state_after.model_id != project_.model_id)
    throw Error(ErrorKind::model_mismatch,
                "the block was made by another model than the project's");
  std::string key = random_key();
  while (file_exists(join(folder_, snapshot_file(key)))) key = random_key();
  // Snapshot first: loading a block needs it, and its frames are only useful with it.
  const std::string snap = join(folder_, snapshot_file(key));
  written_.push_back(snap);
  save_snapshot(snap, block.state_after);
  const std::string cache = join(folder_, cache_file(key));
  written_.push_back(cache);
  write_file_atomic(cache, encode_block_cache(block.frames, {}));
  if (!block.latents.empty()) {
    const std::string lat = join(folder_, latents_file(key));
    written_.push_back(lat);
    write_file_atomic(lat, encode_block_cache({}, block.latents));
  }
  for (auto& b : project_.branches) {
    if (b.id != branch_id_) continue;
    b.blocks.push_back({index, key, block.prompt, block.seed});
  }
}

void ProjectWriter::set_next(uint64_t seed, const std::string& prompt) {
  for (auto& b : project_.branches) {
    if (b.id != branch_id_) continue;
    b.seed = seed;
    b.prompt = prompt;
  }
}

void ProjectWriter::commit() {
  if (!active_ || committed_) throw Error(ErrorKind::invalid_argument, "the writer is closed");
  const ProjectBranch& branch = *project_.branch(branch_id_);
  json block_array = json::array();
  for (const auto& block : branch.blocks) {
    block_array.push_back({{"index", block.index},
                           {"key", block.key},
                           {"prompt", block.prompt},
                           {"seed", std::to_string(block.seed)}});
  }
  json branch_json = {{"id", branch.id},
                      {"name", branch.name},
                      {"parent", branch.parent_id},
                      {"fork_block", branch.fork_block},
                      {"seed", std::to_string(branch.seed)},
                      {"prompt", branch.prompt},
                      {"in", -1},
                      {"out", -1},
                      {"blocks", block_array}};
  json document;
  if (json_text_.empty()) {
    document = {{"format", kFormat},
                {"version", kProjectFormatVersion},
                {"model", {{"path", project_.model_path}, {"id", project_.model_id}}},
                {"frames_per_block", project_.frames_per_block},
                {"initial_state", kInitialSnapshot},
                {"prompt_history", json::array()},
                {"branches", json::array()}};
    if (project_.fps > 0) document["fps"] = project_.fps;
    if (!branch.prompt.empty()) document["prompt_history"].push_back(branch.prompt);
  } else {
    int version = 0;
    // Everything we do not set is kept as it was, unknown fields included.
    document = parse_project_json(json_text_, join(folder_, kProjectFile), &version);
    if (!document.contains("branches") || !document["branches"].is_array())
      document["branches"] = json::array();
  }
  document["version"] = kProjectFormatVersion;
  document["saved_at"] = now_iso_utc();
  document["next_branch_id"] = project_.next_branch_id;
  document["active_branch"] = branch.id;
  document["branches"].push_back(branch_json);
  const std::string text = document.dump(4);
  const std::string target = join(folder_, kProjectFile);
  if (!json_text_.empty()) {
    // The previous project.json, as the app keeps it on every save.
    const std::string backup = target + ".bak";
    const bool had_backup = file_exists(backup);
    if (had_backup) previous_backup_ = read_file(backup);
    write_file_atomic(backup,
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json_text_.data()),
                                               json_text_.size()));
    if (!had_backup) written_.push_back(backup);
  }
  wrote_project_json_ = true;
  write_file_atomic(
      target, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  // Read back before claiming success (as the app's save does).
  const std::vector<uint8_t> back = read_file(target);
  if (std::string(back.begin(), back.end()) != text)
    throw Error(ErrorKind::io, target + " did not read back identically");
  committed_ = true;
  active_ = false;
}

void ProjectWriter::abort() noexcept {
  if (!active_ || committed_) return;
  active_ = false;
  std::error_code ec;
  if (created_folder_) {
    fs::remove_all(folder_, ec);
    return;
  }
  // Put back what commit() replaced before it failed, so the folder is as it was.
  const auto restore = [](const std::string& path, std::span<const uint8_t> bytes) {
    try {
      write_file_atomic(path, bytes);
    } catch (...) {
    }
  };
  if (wrote_project_json_) {
    restore(join(folder_, kProjectFile),
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json_text_.data()),
                                     json_text_.size()));
  }
  if (previous_backup_) restore(join(folder_, kProjectFile) + ".bak", *previous_backup_);
  for (auto it = written_.rbegin(); it != written_.rend(); ++it) fs::remove(*it, ec);
  for (auto it = made_dirs_.rbegin(); it != made_dirs_.rend(); ++it)
    fs::remove(*it, ec);  // if empty
}

}  // namespace strand
