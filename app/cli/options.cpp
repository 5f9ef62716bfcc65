// Command-line option parsing for strand-cli: strict, so that a typo is an error, not a default.
#include <charconv>
#include <limits>
#include <system_error>

#include "cli.h"
#include "strand/error.h"

namespace strand::cli {
namespace {

[[noreturn]] void usage_error(const std::string& message) {
  throw Error(ErrorKind::invalid_argument, message);
}

const OptionSpec* find_spec(const std::vector<OptionSpec>& specs, const std::string& name) {
  for (const auto& spec : specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace

Options::Options(std::span<const std::string> args, const std::vector<OptionSpec>& specs) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--") || arg.size() == 2) usage_error("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    const OptionSpec* spec = find_spec(specs, name);
    if (spec == nullptr) usage_error("unknown option '--" + name + "'");
    if (!spec->repeatable && values_.count(name) != 0)
      usage_error("option '--" + name + "' given twice");
    std::string value;
    if (spec->takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        usage_error("option '--" + name + "' needs a value");
      }
    } else if (inline_value) {
      usage_error("option '--" + name + "' takes no value");
    }
    values_[name].push_back(std::move(value));
  }
}

std::optional<std::string> Options::get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Options::all(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t parse_int(const std::string& text, const std::string& option, int64_t min, int64_t max) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    usage_error("--" + option + " expects an integer, got '" + text + "'");
  }
  if (value < min || value > max) {
    usage_error("--" + option + " must be between " + std::to_string(min) + " and " +
                std::to_string(max) + ", got " + text);
  }
  return value;
}

uint64_t parse_u64(const std::string& text, const std::string& option) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    usage_error("--" + option + " expects an integer from 0 to " +
                std::to_string(std::numeric_limits<uint64_t>::max()) + ", got '" + text + "'");
  }
  return value;
}

}  // namespace strand::cli
