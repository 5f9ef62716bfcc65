// Prompt schedules for `strand-cli render --schedule`: [{"frame": 0, "prompt": "..."}, ...].
#include <cstdint>
#include <string>

#include "cli.h"
#include "strand/error.h"
#include "strand/file_io.h"

namespace strand::cli {

std::vector<ScheduleEntry> load_schedule(const std::string& path) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    throw Error(e.kind(),
                "cannot read schedule " + path + ": " + without_path_prefix(e.what(), path));
  }
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, ...": keep the useful
    // part.
    std::string detail = e.what();
    if (const size_t bracket = detail.find("] ");
        detail.starts_with("[json.") && bracket != std::string::npos) {
      detail.erase(0, bracket + 2);
    }
    throw Error(ErrorKind::invalid_file, "schedule " + path + " is not valid JSON: " + detail);
  }
  const auto bad = [&](const std::string& what) {
    return Error(ErrorKind::invalid_file, "schedule " + path + ": " + what);
  };
  if (!root.is_array()) throw bad("expected a JSON list of {\"frame\": F, \"prompt\": \"...\"}");
  if (root.empty()) throw bad("the list is empty");

  std::vector<ScheduleEntry> entries;
  for (size_t i = 0; i < root.size(); ++i) {
    const nlohmann::json& item = root[i];
    const std::string where = "entry " + std::to_string(i + 1);
    if (!item.is_object()) throw bad(where + " is not an object");
    for (const auto& [key, value] : item.items()) {
      if (key != "frame" && key != "prompt") {
        throw bad(where + " has an unknown field \"" + std::string(key) + "\"");
      }
    }
    if (!item.contains("frame") || !item["frame"].is_number_integer()) {
      throw bad(where + ": \"frame\" must be an integer");
    }
    if (!item.contains("prompt") || !item["prompt"].is_string()) {
      throw bad(where + ": \"prompt\" must be a string");
    }
    ScheduleEntry entry;
    if (item["frame"].is_number_unsigned() && item["frame"].get<uint64_t>() > INT64_MAX) {
      throw bad(where + ": \"frame\" is out of range");
    }
    entry.frame = item["frame"].get<int64_t>();
    entry.prompt = item["prompt"].get<std::string>();
    if (entry.frame < 0) throw bad(where + ": \"frame\" must be >= 0");
    if (!entries.empty() && entry.frame <= entries.back().frame) {
      throw bad(where + ": frames must be strictly increasing (" + std::to_string(entry.frame) +
                " after " + std::to_string(entries.back().frame) + ")");
    }
    try {
      validate_prompt(entry.prompt, "prompt");
    } catch (const Error& e) {
      std::string message = "schedule " + path + ": ";
      message += where + " (frame " + std::to_string(entry.frame) + "): " + e.what();
      throw Error(ErrorKind::invalid_argument, message);
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace strand::cli
