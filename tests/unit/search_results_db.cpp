// The SQLite results database: round trips, persistence, concurrent readers, and clear
// errors for files that are not (this version of) a bitplan results database.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "search/results_db.hpp"

namespace search_results_db_test {

namespace fs = std::filesystem;
using namespace bitplan;
using namespace bitplan::search;

namespace {

// A fresh database path, removed with its WAL files when the test ends.
struct TempPath {
  explicit TempPath(const std::string& name)
      : path(fs::temp_directory_path() /
             fmt::format("bitplan_results_{}_{}.sqlite", name, getpid())) {
    remove();
  }
  ~TempPath() { remove(); }
  void remove() const {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix);
  }
  const fs::path path;
};

std::string open_error(const fs::path& path) {
  try {
    ResultsDb db(path);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
    return e.what();
  }
  return "";
}

StoredEvaluation sample(const std::string& key, double loss) {
  StoredEvaluation evaluation;
  evaluation.genome_key = key;
  evaluation.objectives = {loss, 1.0 / 3.0, 123456789.125};
  evaluation.constraint_violation = 0.5;
  evaluation.metrics = {{"top1", 0.91}, {"per_class", {0.9, 0.8}}};
  evaluation.seconds = 2.5;
  return evaluation;
}

}  // namespace

TEST_CASE("evaluations round-trip exactly, per context, and survive reopening") {
  const TempPath path_file("roundtrip");
  const fs::path& path = path_file.path;
  {
    ResultsDb db(path);
    CHECK_FALSE(db.find("model-a", "conv1=W8A8"));
    db.put("model-a", sample("conv1=W8A8", 0.125));
    const std::vector<StoredEvaluation> batch{sample("conv1=W4A8", 0.75),
                                              sample("conv1=FP32", 0.0)};
    db.put("model-a", batch);
    db.put("model-b", sample("conv1=W8A8", 9.0));
    CHECK(fs::exists(path.string() + "-wal"));  // write-ahead logging is on

    const auto found = db.find("model-a", "conv1=W8A8");
    REQUIRE(found);
    CHECK(found->objectives == std::vector<double>{0.125, 1.0 / 3.0, 123456789.125});
    CHECK(found->constraint_violation == 0.5);
    CHECK(found->metrics["per_class"][1] == 0.8);
    CHECK(found->seconds == 2.5);
    CHECK(found->created.size() == 20);  // YYYY-MM-DDTHH:MM:SSZ

    // Storing the same plan again replaces it.
    db.put("model-a", sample("conv1=W8A8", 0.25));
    CHECK(db.find("model-a", "conv1=W8A8")->objectives[0] == 0.25);
  }
  ResultsDb reopened(path);
  const auto all = reopened.all("model-a");
  REQUIRE(all.size() == 3);
  CHECK(all[0].genome_key == "conv1=W8A8");  // first-stored order
  CHECK(all[0].objectives[0] == 0.25);
  CHECK(all[1].genome_key == "conv1=W4A8");
  CHECK(all[2].genome_key == "conv1=FP32");
  CHECK(reopened.all("model-b").size() == 1);
  CHECK(reopened.all("model-c").empty());
}

TEST_CASE("a second connection sees every committed result at once") {
  const TempPath path_file("shared");
  const fs::path& path = path_file.path;
  ResultsDb writer(path), reader(path);
  writer.put("ctx", sample("a=W8A8", 1.0));
  CHECK(reader.find("ctx", "a=W8A8"));
  reader.put("ctx", sample("a=W4A8", 2.0));
  CHECK(writer.all("ctx").size() == 2);
}

TEST_CASE("invalid results are refused and leave the database unchanged") {
  const TempPath path_file("invalid");
  const fs::path& path = path_file.path;
  ResultsDb db(path);
  const std::vector<StoredEvaluation> batch{sample("a=W8A8", 1.0), sample("a=W4A8", NAN)};
  CHECK_THROWS_WITH_AS(db.put("ctx", batch), doctest::Contains("objectives must be finite"), Error);
  CHECK(db.all("ctx").empty());
  CHECK_THROWS_AS(db.put("", sample("a=W8A8", 1.0)), Error);
  CHECK_THROWS_AS(db.put("ctx", sample("", 1.0)), Error);
}

TEST_CASE("sensitivity rows and runs round-trip") {
  const TempPath path_file("sensitivity");
  const fs::path& path = path_file.path;
  ResultsDb db(path);
  db.put_sensitivity("ctx", {"conv1", "W4A8", 0.031, {{"top1", 0.88}}, 1.5, ""});
  db.put_sensitivity("ctx", {"conv1", "W8A8", 0.002, {}, 1.25, ""});
  db.put_sensitivity("ctx", {"conv1", "W4A8", 0.030, {}, 1.0, ""});  // replaces
  const auto found = db.find_sensitivity("ctx", "conv1", "W4A8");
  REQUIRE(found);
  CHECK(found->value == 0.030);
  CHECK_FALSE(db.find_sensitivity("ctx", "conv2", "W4A8"));
  const auto rows = db.all_sensitivity("ctx");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].option == "W4A8");
  CHECK(rows[1].value == 0.002);

  db.begin_run("run-1", {{"policy", "nsga2"}, {"seed", 3}});
  auto run = db.find_run("run-1");
  REQUIRE(run);
  CHECK(run->status == "running");
  CHECK(run->finished.empty());
  CHECK(run->config["seed"] == 3);
  db.finish_run("run-1", "done");
  run = db.find_run("run-1");
  CHECK(run->status == "done");
  CHECK(!run->finished.empty());
  CHECK_THROWS_WITH_AS(db.finish_run("run-2", "done"), doctest::Contains("no such run"), Error);
}

TEST_CASE("files that are not a bitplan results database fail with the path and the reason") {
  const TempPath garbage_file("garbage");
  const fs::path& garbage = garbage_file.path;
  {
    std::ofstream out(garbage, std::ios::binary);
    for (int i = 0; i < 200; ++i) out << "not a database at all ";
  }
  std::string error = open_error(garbage);
  CHECK(error.find(garbage.string()) != std::string::npos);
  CHECK(error.find("file is not a database") != std::string::npos);

  const TempPath foreign_file("foreign");
  const fs::path& foreign = foreign_file.path;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE notes(text TEXT)", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(db);
  }
  CHECK(open_error(foreign).find("belongs to another application") != std::string::npos);
  CHECK_FALSE(fs::exists(foreign.string() + "-wal"));  // another application's file: untouched

  const TempPath future_file("future");
  const fs::path& future = future_file.path;
  { ResultsDb db(future); }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(future.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  error = open_error(future);
  CHECK(error.find("schema version 99: this bitplan reads version 1") != std::string::npos);

  error = open_error(fs::temp_directory_path() / "bitplan_no_such_folder" / "results.sqlite");
  CHECK(error.find("bitplan_no_such_folder") != std::string::npos);
  CHECK(error.find("the folder must exist") != std::string::npos);
}

}  // namespace search_results_db_test
