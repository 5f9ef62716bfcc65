// Helpers shared by the strand-cli subcommands: model location and loading, prompt checks,
// output files, resource figures and Ctrl-C handling.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <system_error>

#ifdef STRAND_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "cli.h"
#include "strand/devices.h"
#include "strand/error.h"
#include "strand/file_io.h"
#include "strand/safetensors.h"
#include "strand/session.h"
#include "strand/tokenizer.h"

namespace strand::cli {
namespace fs = std::filesystem;

namespace {
constexpr const char* kBundledModel = "resources/models/strand-world-v1.safetensors";
}  // namespace

std::string model_path_or_default(const std::optional<std::string>& given) {
  if (given) {
    if (given->empty()) throw Error(ErrorKind::invalid_argument, "--model needs a file path");
    return *given;
  }
  // The binary lives in <repo>/build*/bin/, so the bundled model is two folders up. Fall back to
  // the source tree this binary was configured from, when the build passes its location.
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path() / ".." / ".." / kBundledModel);
#ifdef STRAND_SOURCE_DIR
  candidates.push_back(fs::path(STRAND_SOURCE_DIR) / kBundledModel);
#endif
  for (const auto& candidate : candidates) {
    if (fs::is_regular_file(candidate, ec)) return candidate.lexically_normal().string();
  }
  if (candidates.empty())
    throw Error(ErrorKind::io, "cannot locate the bundled model: pass --model");
  throw Error(ErrorKind::io, "bundled model not found at " +
                                 candidates.front().lexically_normal().string() + ": pass --model");
}

std::shared_ptr<const Model> load_model(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw Error(ErrorKind::io, "model file not found: " + path);
  if (!fs::is_regular_file(status)) throw Error(ErrorKind::io, "model path is not a file: " + path);
  try {
    return Model::load(path);
  } catch (const SafetensorsError& e) {
    throw Error(e.kind(), "cannot load model " + path + ": " + without_path_prefix(e.what(), path) +
                              " (rule: " + std::string(rule_name(e.rule())) + ")");
  } catch (const Error& e) {
    throw Error(e.kind(), "cannot load model " + path + ": " + without_path_prefix(e.what(), path));
  }
}

std::string without_path_prefix(std::string message, const std::string& path) {
  if (message.starts_with(path + ": ")) message.erase(0, path.size() + 2);
  return message;
}

void validate_prompt(std::string_view prompt, const std::string& where) {
  try {
    strand::validate_prompt(prompt);
  } catch (const Error& e) {
    std::string message = e.what();  // "prompt is ...": name the option or file instead
    if (message.starts_with("prompt")) message.replace(0, 6, where);
    throw Error(e.kind(), message);
  }
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

void write_json_file(const std::string& path, const nlohmann::json& value) {
  const std::string text = value.dump(2) + "\n";
  write_file_atomic(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void prepare_output_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw Error(ErrorKind::invalid_argument, what + ": empty path");
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(ErrorKind::io, what + " " + path + ": is a folder");
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  fs::create_directories(parent, ec);
  if (ec || !fs::is_directory(parent)) {
    throw Error(ErrorKind::io, what + " " + path + ": cannot create folder " + parent.string() +
                                   (ec ? ": " + ec.message() : ""));
  }
  if (::access(parent.c_str(), W_OK) != 0) {
    throw Error(ErrorKind::io, what + " " + path + ": folder is not writable");
  }
}

nlohmann::json timings_to_json(const BlockTimings& t) {
  return {{"denoise", t.denoise_ms}, {"clean", t.clean_ms},     {"decode", t.decode_ms},
          {"text", t.text_ms},       {"recache", t.recache_ms}, {"total", t.total_ms}};
}

// ---- Compute device
// ------------------------------------------------------------------------------

std::string DeviceChoice::describe() const {
  return (cuda ? "cuda:" + std::to_string(index) : std::string("cpu")) + (bf16 ? " bf16" : " fp32");
}

std::vector<OptionSpec> device_option_specs() {
  return {{"device"}, {"precision"}};
}

DeviceChoice parse_device_options(const Options& options) {
  DeviceChoice choice;
  const std::string device = options.get("device").value_or("cpu");
  if (device == "cuda" || device.starts_with("cuda:")) {
    choice.cuda = true;
    if (device.size() > 4) {
      choice.index = static_cast<int>(parse_int(device.substr(5), "device cuda:N", 0, 1023));
    }
  } else if (device != "cpu") {
    throw Error(ErrorKind::invalid_argument,
                "--device expects cpu, cuda or cuda:N, got '" + device + "'");
  }
  const std::string precision = options.get("precision").value_or(choice.cuda ? "bf16" : "fp32");
  if (precision == "bf16") {
    choice.bf16 = true;
  } else if (precision != "fp32") {
    throw Error(ErrorKind::invalid_argument,
                "--precision expects fp32 or bf16, got '" + precision + "'");
  }
  if (choice.bf16 && !choice.cuda) {
    throw Error(ErrorKind::invalid_argument,
                "--precision bf16 needs --device cuda (the CPU engine computes in fp32)");
  }
  if (choice.cuda) {
    if (!built_with_cuda()) {
      throw Error(ErrorKind::unsupported,
                  "--device " + device +
                      ": this strand-cli was built without CUDA (configure with the 'cuda' preset "
                      "on a machine with nvcc)");
    }
    int gpus = 0;
    for (const auto& d : compute_devices()) gpus += d.kind == "cuda" ? 1 : 0;
    if (choice.index >= gpus) {
      throw Error(
          ErrorKind::device,
          "--device " + device + ": " +
              (gpus == 0 ? std::string("no CUDA GPU found (no driver or no device)")
                         : "no such GPU (" + std::to_string(gpus) + " found, numbered from 0)"));
    }
  }
  return choice;
}

void apply_device(const DeviceChoice& choice, SessionOptions& options) {
  options.device = choice.cuda ? DeviceKind::cuda : DeviceKind::cpu;
  options.device_index = choice.cuda ? choice.index : 0;
  options.precision = choice.bf16 ? ComputePrecision::bf16 : ComputePrecision::fp32;
}

std::optional<uint64_t> device_memory_used_bytes(const DeviceChoice& choice) {
  if (!choice.cuda) return std::nullopt;
#ifdef STRAND_HAVE_CUDA
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return std::nullopt;
  if (current != choice.index && cudaSetDevice(choice.index) != cudaSuccess) return std::nullopt;
  size_t free_bytes = 0, total_bytes = 0;
  const bool ok = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
  if (current != choice.index) (void)cudaSetDevice(current);
  if (!ok) return std::nullopt;
  return static_cast<uint64_t>(total_bytes - free_bytes);
#else
  return std::nullopt;
#endif
}

// ---- InterruptGuard -----------------------------------------------------------------------------

namespace {
std::atomic<int> g_interrupt_pipe{-1};

extern "C" void on_interrupt(int /*signal*/) {
  const int saved_errno = errno;
  const int fd = g_interrupt_pipe.load();
  const char byte = 1;
  if (fd >= 0) (void)!::write(fd, &byte, 1);
  errno = saved_errno;
}

void set_handler(int signal_number, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  // SA_RESETHAND: the first Ctrl-C cancels cleanly; a second one kills at once, the usual
  // escape hatch if the engine is stuck.
  action.sa_flags = handler == SIG_DFL ? 0 : SA_RESETHAND;
  ::sigaction(signal_number, &action, nullptr);
}
}  // namespace

InterruptGuard::InterruptGuard(Session& session)
    : InterruptGuard(std::function<void()>([&session] { session.cancel(); })) {}

InterruptGuard::InterruptGuard(std::function<void()> handler) : on_interrupt_(std::move(handler)) {
  if (::pipe2(pipe_, O_CLOEXEC) != 0) {
    throw Error(ErrorKind::io, "cannot set up Ctrl-C handling: " +
                                   std::error_code(errno, std::generic_category()).message());
  }
  g_interrupt_pipe.store(pipe_[1]);
  watcher_ = std::thread([this] {
    char byte = 0;
    for (;;) {
      const ssize_t n = ::read(pipe_[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 0) return;  // 0: the guard is closing
      interrupted_.store(true);
      if (on_interrupt_) on_interrupt_();
    }
  });
  set_handler(SIGINT, on_interrupt);
  set_handler(SIGTERM, on_interrupt);
}

InterruptGuard::~InterruptGuard() {
  set_handler(SIGINT, SIG_DFL);
  set_handler(SIGTERM, SIG_DFL);
  g_interrupt_pipe.store(-1);
  const char stop = 0;
  (void)!::write(pipe_[1], &stop, 1);
  watcher_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

RunOutputs::~RunOutputs() {
  if (keep_) return;
  for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) {
    std::error_code ec;
    std::filesystem::remove_all(*it, ec);
  }
}

}  // namespace strand::cli
