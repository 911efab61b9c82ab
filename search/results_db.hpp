// The results database: every evaluation and sensitivity measurement a search makes, in
// one SQLite file, so a run can resume and later runs reuse what was measured.
//
// Rows are keyed by an opaque `context` the driver builds (model hash + dataset selection +
// calibration + metric...), so results measured under different conditions never mix, and
// by the plan's genome_key (or layer and option). The file is in WAL mode with
// synchronous=FULL and every put is its own committed transaction: a crash (or power loss)
// after put() returns never loses that result. Several processes may share one file
// (waits up to kBusyTimeoutMs for a lock). One ResultsDb must not be used by two threads
// at once.
//
// Tables (schema version kSchemaVersion):
//   meta(key, value)                        'schema_version', 'application' = 'bitplan'
//   evaluations(context, genome_key, objectives JSON array, constraint_violation,
//               metrics JSON, seconds, created)            PRIMARY KEY(context, genome_key)
//   sensitivity(context, layer, option, value, metrics JSON, seconds, created)
//                                                          PRIMARY KEY(context, layer, option)
//   runs(run_id, config JSON, started, finished, status)   PRIMARY KEY(run_id)
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace bitplan::search {

struct StoredEvaluation {
  std::string genome_key;
  std::vector<double> objectives;  // finite, minimised, in the driver's order
  double constraint_violation = 0;
  nlohmann::json metrics = nlohmann::json::object();  // driver-defined details
  double seconds = 0;                                 // how long the evaluation took
  std::string created;                                // UTC "YYYY-MM-DDTHH:MM:SSZ", set by put()
};

struct StoredSensitivity {
  std::string layer;
  std::string option;
  double value = 0;  // metric loss when only this layer takes this option
  nlohmann::json metrics = nlohmann::json::object();
  double seconds = 0;
  std::string created;  // set by put_sensitivity()
};

struct RunRecord {
  std::string run_id;
  nlohmann::json config;
  std::string started;
  std::string finished;  // empty while running
  std::string status;    // "running" until finish_run()
};

class ResultsDb {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr int kBusyTimeoutMs = 10'000;

  // Opens `path`, creating the file and schema when it does not exist. Fails
  // (invalid_input, naming the path) when it cannot be opened or created, is not an SQLite
  // file, is another application's database, or has another schema version.
  explicit ResultsDb(const std::filesystem::path& path);
  ~ResultsDb();
  ResultsDb(ResultsDb&& other) noexcept;
  ResultsDb& operator=(ResultsDb&& other) noexcept;
  ResultsDb(const ResultsDb&) = delete;
  ResultsDb& operator=(const ResultsDb&) = delete;

  const std::filesystem::path& path() const { return path_; }

  std::optional<StoredEvaluation> find(std::string_view context, std::string_view genome_key) const;
  // Stores (or replaces) results in one transaction; fails on empty keys or non-finite
  // objectives, leaving the database unchanged.
  void put(std::string_view context, const StoredEvaluation& evaluation);
  void put(std::string_view context, std::span<const StoredEvaluation> evaluations);
  // Every evaluation of `context`, in the order first stored (for resuming a run).
  std::vector<StoredEvaluation> all(std::string_view context) const;

  std::optional<StoredSensitivity> find_sensitivity(std::string_view context,
                                                    std::string_view layer,
                                                    std::string_view option) const;
  void put_sensitivity(std::string_view context, const StoredSensitivity& sensitivity);
  std::vector<StoredSensitivity> all_sensitivity(std::string_view context) const;

  // Records a run as "running" (replacing an earlier run of the same id).
  void begin_run(std::string_view run_id, const nlohmann::json& config);
  // Sets the run's status (e.g. "done", "failed", "interrupted") and finish time; fails
  // when no such run was begun.
  void finish_run(std::string_view run_id, std::string_view status);
  std::optional<RunRecord> find_run(std::string_view run_id) const;

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace bitplan::search
