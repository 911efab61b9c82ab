// Output targets (issue 17.2, 17.6): writers replace regular files only, so a device node,
// a FIFO or a folder is refused with the path and the rule, and a results folder is proved
// writable before any work.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/files.hpp"
#include "tests/temp_dir.hpp"

namespace core_output_targets_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

std::size_t entries(const fs::path& folder) {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(folder), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("17.2 write_file_atomic refuses device nodes and leaves them devices") {
  for (const char* device : {"/dev/null", "/dev/full"}) {
    CAPTURE(device);
    REQUIRE(fs::is_character_file(device));
    CHECK_THROWS_WITH_AS(write_file_atomic(device, "x"),
                         doctest::Contains((std::string("cannot write '") + device +
                                            "': a character device, not a regular file")
                                               .c_str()),
                         Error);
    CHECK_THROWS_AS(check_output_target(device), Error);
    CHECK(fs::is_character_file(device));
  }
}

TEST_CASE("17.2 write_file_atomic refuses a FIFO and a folder without blocking or replacing") {
  test::TempDir dir;
  const fs::path fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(write_file_atomic(fifo, "x"), doctest::Contains("a FIFO (named pipe)"),
                       Error);
  CHECK(fs::is_fifo(fifo));
  const fs::path folder = dir / "folder";
  fs::create_directories(folder);
  CHECK_THROWS_WITH_AS(write_file_atomic(folder, "x"), doctest::Contains("a folder"), Error);
  CHECK(fs::is_directory(folder));
  CHECK(entries(dir.path()) == 2);  // no temporary file left behind
}

TEST_CASE("17.2 write_file_atomic keeps the replaced file's permissions and writes through links") {
  test::TempDir dir;
  const fs::path file = dir / "plan.yaml";
  write_file_atomic(file, "old\n");
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  write_file_atomic(file, "new\n");
  CHECK(read_file(file, 64, "output") == "new\n");
  CHECK((fs::status(file).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));

  const fs::path link = dir / "link.yaml";
  fs::create_symlink(file, link);
  write_file_atomic(link, "through\n");
  CHECK(fs::is_symlink(fs::symlink_status(link)));
  CHECK(read_file(file, 64, "output") == "through\n");
  // A link to a device is refused like the device.
  const fs::path to_null = dir / "null.yaml";
  fs::create_symlink("/dev/null", to_null);
  CHECK_THROWS_WITH_AS(write_file_atomic(to_null, "x"), doctest::Contains("a character device"),
                       Error);
  CHECK(fs::is_symlink(fs::symlink_status(to_null)));
  CHECK(entries(dir.path()) == 3);
}

TEST_CASE("17.2 a failed write is reported and leaves the old file whole, no temporary file") {
  test::TempDir dir;
  const fs::path file = dir / "out.json";
  write_file_atomic(file, "old");
  // A file size limit makes write() fail (EFBIG) as a full disk would (ENOSPC).
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto previous_handler = ::signal(SIGXFSZ, SIG_IGN);
  const rlimit small{16, saved.rlim_max};
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string error;
  try {
    write_file_atomic(file, std::string(4096, 'x'));
  } catch (const Error& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, previous_handler);
  CHECK(error == "cannot write '" + file.string() + "': File too large");
  CHECK(read_file(file, 64, "output") == "old");
  CHECK(entries(dir.path()) == 1);
}

TEST_CASE("17.6 prepare_output_folder makes the folder, proves it writable, leaves no probe") {
  test::TempDir dir;
  const fs::path results = dir / "a" / "b";
  prepare_output_folder(results, "search.output");
  CHECK(fs::is_directory(results));
  CHECK(entries(results) == 0);
  prepare_output_folder(results, "search.output");  // an existing folder is fine

  const fs::path file = dir / "file";
  std::ofstream(file) << "x";
  CHECK_THROWS_WITH_AS(
      prepare_output_folder(file, "search.output"),
      doctest::Contains(
          ("search.output '" + file.string() + "': a regular file, not a folder").c_str()),
      Error);
  CHECK_THROWS_WITH_AS(prepare_output_folder("/dev/null", "search.output"),
                       doctest::Contains("'/dev/null': a character device, not a folder"), Error);
  CHECK_THROWS_WITH_AS(prepare_output_folder(file / "sub", "search.output"),
                       doctest::Contains("cannot create the folder"), Error);
  CHECK(fs::is_character_file("/dev/null"));
}

}  // namespace core_output_targets_test
