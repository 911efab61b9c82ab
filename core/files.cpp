#include "core/files.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.hpp"

namespace bitplan {
namespace fs = std::filesystem;

std::string read_file(const fs::path& path, std::uint64_t max_bytes, std::string_view what) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    fail_input("cannot read {} '{}': the file does not exist", what, path.string());
  if (!fs::is_regular_file(status))
    fail_input("cannot read {} '{}': not a regular file", what, path.string());
  const auto size = fs::file_size(path, ec);
  if (ec) fail_input("cannot read {} '{}': {}", what, path.string(), ec.message());
  if (size > max_bytes)
    fail_input("cannot read {} '{}': {} bytes exceeds the limit of {} bytes", what, path.string(),
               size, max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input("cannot open {} '{}': {}", what, path.string(), std::strerror(errno));
  std::string data(size, '\0');
  in.read(data.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(in.gcount()) != size)
    fail_input("cannot read {} '{}': read {} of {} bytes", what, path.string(), in.gcount(), size);
  return data;
}

void write_file_atomic(const fs::path& path, std::string_view contents) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    // A missing output folder is made (a failure shows as the write error below), so a long
    // measurement is not lost for want of it.
    std::error_code made;
    if (path.has_parent_path()) fs::create_directories(path.parent_path(), made);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      fail_input("cannot write '{}': {} (is the folder writable?)", path.string(),
                 std::strerror(errno));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      fail_input("cannot write '{}': write failed (disk full?)", path.string());
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    fail_input("cannot write '{}': {}", path.string(), ec.message());
  }
}

}  // namespace bitplan
