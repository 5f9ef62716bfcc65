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
// Reads a whole file. Throws Error(io).
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace strand
