#include "data/input_file.hpp"

#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace bitplan {
namespace fs = std::filesystem;

InputFile::InputFile(const fs::path& path, std::string_view what) : path_(path), what_(what) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    fail_input("cannot read {} '{}': the file does not exist", what_, path.string());
  if (!fs::is_regular_file(status))
    fail_input("cannot read {} '{}': not a regular file", what_, path.string());
  size_ = fs::file_size(path, ec);
  if (ec) fail_input("cannot read {} '{}': {}", what_, path.string(), ec.message());
  in_.open(path, std::ios::binary);
  if (!in_) fail_input("cannot open {} '{}': {}", what_, path.string(), std::strerror(errno));
}

void InputFile::read(void* dst, std::uint64_t n) {
  if (n > remaining())
    fail_input("cannot read {} '{}': needs {} more bytes at offset {}, but the file ends after {}",
               what_, path_.string(), n, position_, remaining());
  in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (static_cast<std::uint64_t>(in_.gcount()) != n)
    fail_input("cannot read {} '{}': read {} of {} bytes at offset {} (was the file changed?)",
               what_, path_.string(), in_.gcount(), n, position_);
  position_ += n;
}

}  // namespace bitplan
