// File helpers shared by every reader and writer: bounded reads with clear errors, and
// atomic writes (temp file in the same folder, flushed to disk, then rename) so a crash
// never leaves half a file.
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

// Fails (invalid_input, naming the path) when `path` exists and is not a regular file (after
// following symbolic links): a device such as /dev/null or /dev/full, a FIFO, a socket or a
// folder. Outputs replace regular files only, so a device node is never turned into a file.
void check_output_target(const std::filesystem::path& path);

// Writes `contents` to `path` atomically: to "<path>.tmp.<pid>" in the same folder first,
// fsync'd, then renamed over `path` and the folder fsync'd. Missing folders are made; a
// replaced file keeps its permissions; a symbolic link to a regular file is written through
// (its target is replaced, the link stays). Fails as check_output_target does, and on any
// write error (disk full...), leaving `path` as it was.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

// Makes `folder` (and its parents) and proves that files can be created in it by creating
// and removing a probe file, so a long run fails at its start, not at its end. `what` names
// the setting or flag the folder came from (e.g. "search.output").
void prepare_output_folder(const std::filesystem::path& folder, std::string_view what);

}  // namespace bitplan
