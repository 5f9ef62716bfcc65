// strand-cli internals shared by its subcommands (app/cli/*.cpp). Not a library interface.
//
// Error policy: every user-caused failure is thrown as strand::Error; main() prints it as ONE
// line "strand-cli: error: ..." and exits 2 (130 for a cancel). Commands validate everything
// they can before the first block is generated, and outputs go through .part files so that a
// failed or cancelled run leaves nothing that looks finished.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "strand/model.h"
#include "strand/session.h"

namespace strand::cli {

// ---- Command line -------------------------------------------------------------------------------

struct OptionSpec {
  std::string name;         // without the leading "--"
  bool takes_value = true;  // false: a flag
  bool repeatable = false;
};

// Parsed "--name value" / "--name=value" options of one subcommand. Unknown options, missing
// values, repeats of non-repeatable options and positional arguments are Error(invalid_argument).
class Options {
 public:
  Options(std::span<const std::string> args, const std::vector<OptionSpec>& specs);

  [[nodiscard]] bool has(const std::string& name) const { return values_.count(name) != 0; }
  [[nodiscard]] std::optional<std::string> get(const std::string& name) const;
  [[nodiscard]] std::vector<std::string> all(const std::string& name) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

// Strict decimal parsing (the whole text, no sign for unsigned, range-checked); the error names
// the option.
int64_t parse_int(const std::string& text, const std::string& option, int64_t min, int64_t max);
uint64_t parse_u64(const std::string& text, const std::string& option);

// ---- Shared helpers -----------------------------------------------------------------------------

// --model if given, else the bundled tiny model next to the build (see common.cpp).
std::string model_path_or_default(const std::optional<std::string>& given);
// Loads with a message that names the file (and the safetensors rule broken, if any).
std::shared_ptr<const Model> load_model(const std::string& path);

// The checks Session::set_prompt makes, done up front with a message saying which prompt failed.
void validate_prompt(std::string_view prompt, const std::string& where);

// Engine messages often start with "PATH: "; drop that when our message already names PATH.
std::string without_path_prefix(std::string message, const std::string& path);

// Peak resident set size of this process in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();

// Serialises `value` (indented) and writes it atomically.
void write_json_file(const std::string& path, const nlohmann::json& value);
// Creates the parent folder of an output file and checks it is a folder we can write into.
void prepare_output_file(const std::string& path, const std::string& what);

nlohmann::json timings_to_json(const BlockTimings& t);

// ---- Compute device ("--device cpu|cuda|cuda:N", "--precision fp32|bf16") ----------------------

struct DeviceChoice {
  bool cuda = false;
  int index = 0;      // CUDA device index
  bool bf16 = false;  // GEMM operands in bf16 (CUDA only); fp32 otherwise
  [[nodiscard]] std::string describe() const;  // "cpu fp32", "cuda:0 bf16"
};
// The option specs both flags need (append to a subcommand's list).
std::vector<OptionSpec> device_option_specs();
// Parses and checks --device / --precision: cuda needs a build with CUDA and a GPU at that index
// (Error(unsupported) / Error(device) otherwise); bf16 needs cuda. Default: the CPU in fp32; with
// --device cuda the default precision is bf16 (the fast path).
DeviceChoice parse_device_options(const Options& options);
// Sets the session's device fields from `choice`.
void apply_device(const DeviceChoice& choice, SessionOptions& options);
// Bytes in use on the chosen GPU (cudaMemGetInfo: total - free, all processes); nullopt on the
// CPU or when it cannot be read.
std::optional<uint64_t> device_memory_used_bytes(const DeviceChoice& choice);

// While alive, SIGINT/SIGTERM call session.cancel() (from a watcher thread: the signal handler
// only writes to a pipe, which is async-signal-safe; Session::cancel need not be). A second
// signal terminates the process the default way.
class InterruptGuard {
 public:
  explicit InterruptGuard(Session& session);
  // Calls `on_interrupt` (from the watcher thread) instead, e.g. to set a cancel flag.
  explicit InterruptGuard(std::function<void()> handler);
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  [[nodiscard]] bool interrupted() const { return interrupted_.load(); }

 private:
  std::function<void()> on_interrupt_;
  std::atomic<bool> interrupted_{false};
  int pipe_[2] = {-1, -1};
  std::thread watcher_;
};

// Files and folders a run has written (a PNG sequence is a folder), removed again, last first,
// unless keep() is called once the whole run has succeeded. Never throws.
class RunOutputs {
 public:
  RunOutputs() = default;
  RunOutputs(const RunOutputs&) = delete;
  RunOutputs& operator=(const RunOutputs&) = delete;
  ~RunOutputs();
  void add(const std::string& path) { paths_.push_back(path); }
  void keep() { keep_ = true; }

 private:
  std::vector<std::string> paths_;
  bool keep_ = false;
};

// ---- Schedules ---------------------------------------------------------------------------------

struct ScheduleEntry {
  int64_t frame = 0;
  std::string prompt;
};
// A JSON list of {"frame": F, "prompt": "..."} with frames >= 0 strictly increasing and every
// prompt valid. Error(invalid_file) / Error(invalid_argument) naming the entry otherwise.
std::vector<ScheduleEntry> load_schedule(const std::string& path);

// ---- Subcommands (each returns the exit code) ---------------------------------------------------

int run_info(std::span<const std::string> args);
int run_render(std::span<const std::string> args);
int run_bench(std::span<const std::string> args);
int run_export(std::span<const std::string> args);

}  // namespace strand::cli
