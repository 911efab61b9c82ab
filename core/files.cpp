#include "core/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.hpp"

namespace bitplan {
namespace fs = std::filesystem;

namespace {

std::string_view kind_of(fs::file_type type) {
  switch (type) {
    case fs::file_type::regular:
      return "a regular file";
    case fs::file_type::directory:
      return "a folder";
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::fifo:
      return "a FIFO (named pipe)";
    case fs::file_type::socket:
      return "a socket";
    default:
      return "a special file";
  }
}

// Flushes a folder's entries (a rename in it) to disk. Some file systems refuse fsync on
// folders; the rename has happened by then, so such a refusal is no write error.
void sync_folder(const fs::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

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

void check_output_target(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  // A path that does not exist (or cannot be looked at) is left to the write, which names
  // the reason when it fails.
  if (!fs::exists(status) || fs::is_regular_file(status)) return;
  fail_input(
      "cannot write '{}': {}, not a regular file: outputs only create or replace regular files "
      "(give a file path)",
      path.string(), kind_of(status.type()));
}

void write_file_atomic(const fs::path& path, std::string_view contents) {
  check_output_target(path);
  // Through a link to a regular file: its target is replaced, in the target's folder (a
  // rename cannot cross file systems).
  fs::path target = path;
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(path, ec)) && fs::is_regular_file(fs::status(path, ec))) {
    target = fs::canonical(path, ec);
    if (ec) fail_input("cannot write '{}': {}", path.string(), ec.message());
  }
  // A missing output folder is made (a failure shows as the write error below), so a long
  // measurement is not lost for want of it.
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  const fs::path tmp = target.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0)
    fail_input("cannot write '{}': {} (is the folder writable?)", path.string(),
               std::strerror(errno));
  auto abandon = [&](const char* reason) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail_input("cannot write '{}': {}", path.string(), reason);
  };
  struct stat replaced {};
  if (::stat(target.c_str(), &replaced) == 0 && ::fchmod(fd, replaced.st_mode & 07777) != 0)
    abandon(std::strerror(errno));
  for (std::size_t written = 0; written < contents.size();) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) abandon(n < 0 ? std::strerror(errno) : "the write made no progress");
    written += static_cast<std::size_t>(n);
  }
  // The data must be on disk before the rename makes it the file: otherwise a power loss can
  // leave an empty file under the final name.
  if (::fsync(fd) != 0) abandon(std::strerror(errno));
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    fail_input("cannot write '{}': {}", path.string(), std::strerror(error));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    fail_input("cannot write '{}': {}", path.string(), std::strerror(error));
  }
  sync_folder(target.has_parent_path() ? target.parent_path() : fs::path("."));
}

void prepare_output_folder(const fs::path& folder, std::string_view what) {
  const fs::path dir = folder.empty() ? fs::path(".") : folder;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (fs::exists(status) && !fs::is_directory(status))
    fail_input("{} '{}': {}, not a folder: give the path of a folder (made if missing)", what,
               dir.string(), kind_of(status.type()));
  fs::create_directories(dir, ec);
  if (ec) fail_input("{} '{}': cannot create the folder: {}", what, dir.string(), ec.message());
  const fs::path probe = dir / (".bitplan-probe." + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    fail_input("{} '{}': cannot create files in the folder: {}", what, dir.string(),
               std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace bitplan
