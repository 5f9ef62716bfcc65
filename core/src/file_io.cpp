// Atomic file replacement and whole-file reads (see strand/file_io.h).
//
// The sequence is the one that survives a crash or power loss at any moment: the data goes into a
// temp file next to the target (same filesystem, so rename is atomic), every write is checked
// (short writes and ENOSPC are errors, not truncated files), the file is fsync'ed before the rename
// (otherwise the rename can reach the disk before the data), and the folder is fsync'ed after it
// (otherwise the rename itself may be lost). Any failure removes the temp file.
#include "strand/file_io.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include "strand/error.h"

namespace strand {
namespace {

[[noreturn]] void throw_io(const std::string& path, std::string_view what, int error_number) {
  throw Error(ErrorKind::io, path + ": " + std::string(what) + ": " + std::strerror(error_number));
}

// Splits "dir/name" into the folder to create the temp file in (and to fsync) and the name.
void split_path(const std::string& path, std::string* dir, std::string* name) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    *dir = ".";
    *name = path;
  } else {
    *dir = slash == 0 ? "/" : path.substr(0, slash);
    *name = path.substr(slash + 1);
  }
}

// Closes a descriptor exactly once; retrying close() after EINTR is wrong on Linux.
int close_fd(int* fd) {
  const int result = ::close(*fd);
  *fd = -1;
  return result;
}

void write_all(int fd, std::span<const uint8_t> bytes, const std::string& temp_path) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io(temp_path, "write failed", errno);
    }
    if (n == 0) throw_io(temp_path, "write made no progress", EIO);
    written += static_cast<size_t>(n);
  }
}

void fsync_directory(const std::string& dir, const std::string& path) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw_io(path, "cannot open folder '" + dir + "' to sync it", errno);
  int result = ::fsync(dir_fd);
  const int sync_errno = errno;
  ::close(dir_fd);
  // Some filesystems cannot sync a directory at all (EINVAL); the rename is as durable as that
  // filesystem allows, so that is not a failure of this save.
  if (result != 0 && sync_errno != EINVAL) throw_io(path, "cannot sync folder '" + dir + "'", sync_errno);
}

}  // namespace

void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes) {
  if (path.empty()) throw Error(ErrorKind::io, "write_file_atomic: empty path");
  std::string dir;
  std::string name;
  split_path(path, &dir, &name);
  if (name.empty()) throw Error(ErrorKind::io, path + ": path names a folder, not a file");

  // Hidden, recognisable temp name so a crash leaves an obvious leftover, never a plausible file.
  std::string temp_path = (dir == "/" ? std::string("/") : dir + "/") + "." + name + ".tmp-XXXXXX";
  int fd = ::mkstemp(temp_path.data());
  if (fd < 0) throw_io(path, "cannot create temp file in '" + dir + "'", errno);

  try {
    // mkstemp creates 0600; keep the mode of the file being replaced, else the usual 0644.
    mode_t mode = 0644;
    struct stat existing {};
    if (::stat(path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode)) mode = existing.st_mode & 07777;
    if (::fchmod(fd, mode) != 0) throw_io(temp_path, "fchmod failed", errno);

    write_all(fd, bytes, temp_path);
    if (::fsync(fd) != 0) throw_io(temp_path, "fsync failed", errno);
    // close() can report a deferred write error (e.g. NFS, quota): it must be checked too.
    if (close_fd(&fd) != 0) throw_io(temp_path, "close failed", errno);
    if (::rename(temp_path.c_str(), path.c_str()) != 0) throw_io(path, "rename from temp file failed", errno);
  } catch (...) {
    if (fd >= 0) close_fd(&fd);
    ::unlink(temp_path.c_str());
    throw;
  }
  // The new file is in place; only the durability of the rename is left to ensure.
  fsync_directory(dir, path);
}

void write_file_unsynced(const std::string& path, std::span<const uint8_t> bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_io(path, "cannot create file", errno);
  try {
    write_all(fd, bytes, path);
    if (close_fd(&fd) != 0) throw_io(path, "close failed", errno);
  } catch (...) {
    if (fd >= 0) close_fd(&fd);
    ::unlink(path.c_str());
    throw;
  }
}

void sync_file_system(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorKind::io, path + ": cannot open to sync it: " + std::strerror(errno));
  const int result = ::syncfs(fd);
  const int saved = errno;
  ::close(fd);
  if (result != 0) throw Error(ErrorKind::io, path + ": syncfs failed: " + std::strerror(saved));
}

void sync_to_disk(const std::string& path, bool is_directory) {
  const int fd = ::open(path.c_str(), (is_directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::io, path + ": cannot open to sync it: " + std::strerror(errno));
  }
  const int result = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (result != 0) throw Error(ErrorKind::io, path + ": fsync failed: " + std::strerror(saved));
}

std::string parent_folder(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

std::vector<uint8_t> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_io(path, "cannot open", errno);
  std::vector<uint8_t> bytes;
  try {
    struct stat info {};
    if (::fstat(fd, &info) != 0) throw_io(path, "fstat failed", errno);
    if (S_ISDIR(info.st_mode)) throw_io(path, "cannot read", EISDIR);
    // Read straight into a buffer of the expected size (model files are large), then keep going
    // until EOF: st_size is only a hint (0 for /proc files, or the file may grow meanwhile).
    size_t filled = 0;
    if (S_ISREG(info.st_mode) && info.st_size > 0) bytes.resize(static_cast<size_t>(info.st_size));
    uint8_t probe[1 << 14];
    for (;;) {
      // Once the buffer is full, read into a small probe so that reaching EOF costs no reallocation
      // of a (possibly multi-GB) buffer; extra data is appended with the vector's amortised growth.
      const bool buffer_full = filled == bytes.size();
      const ssize_t n = buffer_full ? ::read(fd, probe, sizeof probe)
                                    : ::read(fd, bytes.data() + filled, bytes.size() - filled);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_io(path, "read failed", errno);
      }
      if (n == 0) break;
      if (buffer_full) bytes.insert(bytes.end(), probe, probe + n);
      filled += static_cast<size_t>(n);
    }
    bytes.resize(filled);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return bytes;
}

}  // namespace strand
