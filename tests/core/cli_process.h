// Running the built strand-cli as a user does, from the engine tests: a child process (no shell, so
// any bytes pass through unchanged) with stdout and stderr captured in files.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace strand::test {

inline const std::string kCliPath = STRAND_CLI;

struct CliRun {
  int exit_code = -1;  // negative: killed by that signal
  std::string out, err;
};

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Starts strand-cli with `args`, stdout and stderr going to the files `out` and `err`.
// file_size_limit > 0: RLIMIT_FSIZE in the child with SIGXFSZ ignored, so writes past it fail with
// EFBIG as on a full disk.
inline pid_t spawn_cli(const std::vector<std::string>& args, const std::filesystem::path& out,
                       const std::filesystem::path& err, rlim_t file_size_limit = 0) {
  std::vector<std::string> storage{kCliPath};
  storage.insert(storage.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || err_fd < 0) ::_exit(127);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    if (file_size_limit > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      struct rlimit limit {};
      ::getrlimit(RLIMIT_FSIZE, &limit);
      limit.rlim_cur = file_size_limit;
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    std::vector<char*> argv;
    for (auto& arg : storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(kCliPath.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// The child's exit status; -signal when a signal ended it; -1000 when waiting failed.
inline int wait_exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1000;
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Runs strand-cli to completion; its output files live in `scratch` while it runs.
inline CliRun run_cli(const std::vector<std::string>& args, const std::filesystem::path& scratch,
                      rlim_t file_size_limit = 0) {
  const std::filesystem::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  CliRun result;
  result.exit_code = wait_exit_code(spawn_cli(args, out, err, file_size_limit));
  result.out = read_text(out);
  result.err = read_text(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return result;
}

}  // namespace strand::test
