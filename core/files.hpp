// File helpers shared by every reader and writer: bounded reads with clear errors, and
// atomic writes (temp file in the same folder + rename) so a crash never leaves half a file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace bitplan {

// Reads a whole file; fails with a message naming the file when it is missing, is not a
// regular file, or is larger than `max_bytes`.
std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                      std::string_view what);

// Writes `contents` to `path` atomically: to "<path>.tmp.<pid>" first, then rename.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

}  // namespace bitplan
