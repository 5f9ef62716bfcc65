// Errors the engine reports. Every failure a user can cause (bad files, bad prompts, I/O) is a
// strand::Error with a category and one human-readable line; programming errors are asserts.
#pragma once
#include <stdexcept>
#include <string>

namespace strand {

enum class ErrorKind {
  invalid_argument = 1,  // bad prompt, bad option, bad schedule
  invalid_file,          // corrupt or malformed model / snapshot / schedule file
  model_mismatch,        // snapshot or data made for a different model
  io,                    // open/read/write/rename failed (disk full, permissions)
  cancelled,             // the operation was cancelled by the user
  out_of_memory,         // host or device allocation failed
  device,                // backend failure (e.g. a sticky CUDA error)
  unsupported,           // feature not built in (e.g. FFmpeg missing)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace strand
