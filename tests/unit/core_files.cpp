// Atomic output writes: the file appears whole or not at all, missing folders are made, and a
// folder that cannot be written gives the path and the reason.
#include <doctest/doctest.h>

#include <filesystem>
#include <unistd.h>

#include "core/error.hpp"
#include "core/files.hpp"

namespace core_files_test {

namespace fs = std::filesystem;
using namespace bitplan;

TEST_CASE("write_file_atomic makes missing folders and leaves no temporary file") {
  const fs::path root = fs::temp_directory_path() / ("bitplan_files_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path file = root / "a" / "b" / "out.yaml";
  write_file_atomic(file, "x: 1\n");
  CHECK(read_file(file, 1024, "output") == "x: 1\n");
  write_file_atomic(file, "x: 2\n");  // replaces
  CHECK(read_file(file, 1024, "output") == "x: 2\n");
  CHECK(std::distance(fs::directory_iterator(file.parent_path()), fs::directory_iterator()) == 1);

  // A regular file where a folder should be: the error names the path.
  write_file_atomic(root / "blocker", "");
  CHECK_THROWS_WITH_AS(write_file_atomic(root / "blocker" / "out.yaml", "x"),
                       doctest::Contains("blocker/out.yaml"), Error);
  fs::remove_all(root);
}

}  // namespace core_files_test
