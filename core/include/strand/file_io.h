// Safe file output: write to a temp file in the same folder, check every write, fsync, rename,
// fsync the folder. A failed or interrupted write never leaves a file that looks finished.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strand {

// Replaces `path` atomically with `bytes`. Throws Error(io) with the reason (e.g. disk full).
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
// Writes `bytes` to `path` (created or truncated) with every write and the close checked, but no
// fsync: for the files of a staging folder that is committed as a whole (sync_file_system, then a
// rename), where a crash leaves only the staging folder. A failed write removes the file. Throws
// Error(io).
void write_file_unsynced(const std::string& path, std::span<const uint8_t> bytes);
// Flushes everything written to the file system that holds `path` (syncfs): one call for a folder
// of files written with write_file_unsynced. Throws Error(io).
void sync_file_system(const std::string& path);
// Flushes a file or a folder to disk (fsync). A rename is durable only once its folder is synced.
// Throws Error(io).
void sync_to_disk(const std::string& path, bool is_directory);
// The folder holding `path` ("." for a bare file name).
std::string parent_folder(const std::string& path);
// Reads a whole file. Throws Error(io).
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace strand
