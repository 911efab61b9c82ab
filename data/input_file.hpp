// Internal to data/: a binary input file whose size is known up front, so readers can check
// every size a header declares against the real file before they allocate anything.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace bitplan {

class InputFile {
 public:
  // Opens `path`; fails naming the file when it is missing, is not a regular file or cannot
  // be opened. `what` names the file's role in messages ("IDX file", "NPY file").
  InputFile(const std::filesystem::path& path, std::string_view what);

  std::uint64_t size() const { return size_; }
  // Bytes left after the current position.
  std::uint64_t remaining() const { return size_ - position_; }

  // Reads exactly `n` bytes; fails naming the file when fewer remain.
  void read(void* dst, std::uint64_t n);

 private:
  std::filesystem::path path_;
  std::string what_;
  std::ifstream in_;
  std::uint64_t size_ = 0;
  std::uint64_t position_ = 0;
};

}  // namespace bitplan
