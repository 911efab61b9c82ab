// What the end-to-end tests share: running the `bitplan` executable and reading its output.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/skip.hpp"

namespace bitplan::e2e {

inline const std::filesystem::path kSource = BITPLAN_SOURCE_DIR;
// Debian's dataset-fashion-mnist, which the fixture configs evaluate on.
inline const std::filesystem::path kFashionImages =
    "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
inline const std::filesystem::path kFashionLabels =
    "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
inline constexpr const char* kFashionMissing =
    "Fashion-MNIST not installed (apt install dataset-fashion-mnist)";

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs `bitplan ARGS` through the shell (in `working_dir` when given); a death by signal
// reads as 128 + signal.
inline Result run(const std::string& args, const std::filesystem::path& working_dir = {}) {
  std::string command = std::string(BITPLAN_EXECUTABLE) + " " + args + " 2>&1";
  if (!working_dir.empty()) command = "cd '" + working_dir.string() + "' && " + command;
  Result r{-1, ""};
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) r.output += buffer.data();
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace bitplan::e2e
