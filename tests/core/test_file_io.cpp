// write_file_atomic / read_file: round trips, and failures that must leave neither a temp file nor
// a damaged original (missing folder, unwritable folder, rename onto a folder, "disk full").
#include <gtest/gtest.h>

#include "temp_dir.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <sys/resource.h>
#include <sys/stat.h>

#include "strand/error.h"
#include "strand/file_io.h"

namespace fs = std::filesystem;

namespace {

struct TempDir : strand::test::TempDir {
  TempDir() : strand::test::TempDir("strand-file-io") {}
};

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

// Reads with the standard library, independently of read_file.
std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

strand::ErrorKind kind_of_failure(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const strand::Error& e) {
    if (message != nullptr) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected strand::Error";
  return strand::ErrorKind::invalid_argument;
}

// Runs `action` with writes limited to 4096 bytes a file (RLIMIT_FSIZE: write() then fails with
// EFBIG mid-file, like a full disk; SIGXFSZ ignored so the process survives) and returns the kind
// of the strand::Error it throws, its message in `message`.
strand::ErrorKind kind_under_file_size_limit(const std::function<void()>& action,
                                             std::string* message) {
  struct rlimit previous {};
  EXPECT_EQ(::getrlimit(RLIMIT_FSIZE, &previous), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = previous;
  limited.rlim_cur = 4096;
  EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  const auto kind = kind_of_failure(action, message);
  ::setrlimit(RLIMIT_FSIZE, &previous);
  std::signal(SIGXFSZ, old_handler);
  return kind;
}

}  // namespace

TEST(FileIo, WriteThenReadRoundTrips) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  std::vector<uint8_t> data(300'000);
  std::mt19937 rng(7);
  for (auto& byte : data) byte = static_cast<uint8_t>(rng());
  strand::write_file_atomic(path, data);
  EXPECT_EQ(slurp(path), data);
  EXPECT_EQ(strand::read_file(path), data);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.bin"});  // no temp file left behind
}

TEST(FileIo, ReplacesExistingFileCompletely) {
  TempDir dir;
  const std::string path = dir.file("a.txt");
  strand::write_file_atomic(path, bytes_of("a much longer original content"));
  strand::write_file_atomic(path, bytes_of("short"));
  EXPECT_EQ(slurp(path), bytes_of("short"));
  strand::write_file_atomic(path, {});
  EXPECT_TRUE(strand::read_file(path).empty());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.txt"});
}

TEST(FileIo, NewFileIs0644AndExistingModeIsKept) {
  TempDir dir;
  const std::string path = dir.file("m");
  strand::write_file_atomic(path, bytes_of("x"));
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0644u);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  strand::write_file_atomic(path, bytes_of("y"));
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
}

TEST(FileIo, RelativePathInCurrentFolder) {
  TempDir dir;
  const fs::path previous = fs::current_path();
  fs::current_path(dir.file(""));
  EXPECT_NO_THROW(strand::write_file_atomic("rel.bin", bytes_of("abc")));
  fs::current_path(previous);
  EXPECT_EQ(slurp(dir.file("rel.bin")), bytes_of("abc"));
}

TEST(FileIo, MissingFolderFailsWithIoAndReason) {
  TempDir dir;
  std::string message;
  EXPECT_EQ(kind_of_failure([&] { strand::write_file_atomic(dir.file("missing/x.bin"), bytes_of("x")); },
                            &message),
            strand::ErrorKind::io);
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  EXPECT_TRUE(dir.entries().empty());
}

TEST(FileIo, UnwritableFolderFailsWithIo) {
  // Tests run as root, so a chmod'ed folder would still be writable: /proc is not, for anyone.
  EXPECT_EQ(kind_of_failure([] { strand::write_file_atomic("/proc/strand-test-file.bin", bytes_of("x")); }),
            strand::ErrorKind::io);
  EXPECT_FALSE(fs::exists("/proc/strand-test-file.bin"));
}

TEST(FileIo, FailedRenameRemovesTempFile) {
  // The temp file is created and written, then rename fails (target is a non-empty folder).
  TempDir dir;
  fs::create_directory(dir.file("target"));
  std::ofstream(dir.file("target/keep")) << "k";
  std::string message;
  EXPECT_EQ(kind_of_failure([&] { strand::write_file_atomic(dir.file("target"), bytes_of("data")); }, &message),
            strand::ErrorKind::io);
  EXPECT_NE(message.find("rename"), std::string::npos) << message;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"target"});
}

TEST(FileIo, DiskFullKeepsOriginalAndRemovesTemp) {
  // RLIMIT_FSIZE makes write() fail with EFBIG mid-file, like a full disk (SIGXFSZ ignored so the
  // process survives). The original must stay intact and the temp file must be gone.
  TempDir dir;
  const std::string path = dir.file("project.bin");
  const std::vector<uint8_t> original = bytes_of("original content");
  strand::write_file_atomic(path, original);

  std::string message;
  const auto kind = kind_under_file_size_limit(
      [&] { strand::write_file_atomic(path, std::vector<uint8_t>(100'000, 0xAB)); }, &message);

  EXPECT_EQ(kind, strand::ErrorKind::io);
  EXPECT_NE(message.find("write"), std::string::npos) << message;
  EXPECT_EQ(slurp(path), original);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"project.bin"});
}

TEST(FileIo, ReadErrors) {
  TempDir dir;
  EXPECT_EQ(kind_of_failure([&] { strand::read_file(dir.file("nope")); }), strand::ErrorKind::io);
  EXPECT_EQ(kind_of_failure([&] { strand::read_file(dir.file("")); }), strand::ErrorKind::io);
}

TEST(FileIo, ReadsFilesWhoseSizeIsUnknown) {
  // /proc files report st_size 0; read_file must read until EOF, not trust the size.
  const std::vector<uint8_t> status = strand::read_file("/proc/self/status");
  const std::string text(status.begin(), status.end());
  EXPECT_NE(text.find("Name:"), std::string::npos);
}

// write_file_unsynced (files of a staging folder, synced as a whole by sync_file_system): the
// bytes round-trip, an existing file is replaced, and a write that fails mid-file (RLIMIT_FSIZE,
// like a full disk) is an io error that leaves no partial file behind.
TEST(FileIo, UnsyncedWritesRoundTripAndAFailedOneLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("frame_000000.png");
  strand::write_file_unsynced(path, bytes_of("first"));
  strand::write_file_unsynced(path, bytes_of("second, longer"));
  EXPECT_EQ(slurp(path), bytes_of("second, longer"));
  strand::sync_file_system(dir.path().string());
  EXPECT_EQ(kind_of_failure([&] { strand::sync_file_system(dir.file("missing")); }),
            strand::ErrorKind::io);
  EXPECT_EQ(kind_of_failure([&] { strand::write_file_unsynced(dir.file("no/such/dir"), bytes_of("x")); }),
            strand::ErrorKind::io);

  std::string message;
  const auto kind = kind_under_file_size_limit(
      [&] { strand::write_file_unsynced(dir.file("big.png"), std::vector<uint8_t>(100'000, 1)); },
      &message);
  EXPECT_EQ(kind, strand::ErrorKind::io);
  EXPECT_NE(message.find("write"), std::string::npos) << message;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"frame_000000.png"});
}
