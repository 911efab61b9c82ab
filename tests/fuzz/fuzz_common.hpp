// Shared by the libFuzzer harnesses. The CLI's readers take file paths, so each input is
// written to a file in a scratch folder of this process and read back through the same
// function the CLI calls. A bitplan::Error of kind invalid_input, unsupported or usage is
// the expected answer to bad input; kind internal means a bitplan bug and aborts, and any
// other exception escapes the harness, so libFuzzer reports both as crashes.
#pragma once

#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.hpp"

namespace bitplan::fuzz {

// A folder of this process under the temp directory, removed at normal exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("bitplan_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return d;
  }();
  return dir;
}

// Writes the fuzz input to scratch_dir()/name and returns its path.
inline std::filesystem::path write_input(const std::string& name, const std::uint8_t* data,
                                         std::size_t size) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Runs `read`; a clean bitplan::Error is fine, an internal one is a finding.
template <typename Read>
void expect_clean_error(Read&& read) {
  try {
    read();
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::internal) {
      std::fprintf(stderr, "fuzz harness: internal error on this input: %s\n", e.what());
      std::abort();
    }
  }
}

}  // namespace bitplan::fuzz
