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
// Flushes a file or a folder to disk (fsync). A rename is durable only once its folder is synced.
// Throws Error(io).
void sync_to_disk(const std::string& path, bool is_directory);
// The folder holding `path` ("." for a bare file name).
std::string parent_folder(const std::string& path);
// Reads a whole file. Throws Error(io).
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace strand
