#include "search/results_db.hpp"

#include <fmt/chrono.h>
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <utility>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/text.hpp"

namespace bitplan::search {

namespace {

// The schema of kSchemaVersion; a change to it needs a new version number.
constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE evaluations(
  context TEXT NOT NULL, genome_key TEXT NOT NULL, objectives TEXT NOT NULL,
  constraint_violation REAL NOT NULL, metrics TEXT NOT NULL, seconds REAL NOT NULL,
  created TEXT NOT NULL, PRIMARY KEY(context, genome_key));
CREATE TABLE sensitivity(
  context TEXT NOT NULL, layer TEXT NOT NULL, option TEXT NOT NULL, value REAL NOT NULL,
  metrics TEXT NOT NULL, seconds REAL NOT NULL, created TEXT NOT NULL,
  PRIMARY KEY(context, layer, option));
CREATE TABLE runs(
  run_id TEXT PRIMARY KEY, config TEXT NOT NULL, started TEXT NOT NULL, finished TEXT,
  status TEXT NOT NULL);
)sql";

constexpr const char* kApplication = "bitplan";

std::string utc_now() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::now()));
}

[[noreturn]] void fail_sqlite(sqlite3* db, const std::filesystem::path& path,
                              std::string_view action) {
  fail_input("{} in results database '{}': {}", action, path.string(), sqlite3_errmsg(db));
}

// One prepared statement; values are always bound, never spliced into the SQL text.
class Statement {
 public:
  Statement(sqlite3* db, const std::filesystem::path& path, std::string_view sql,
            std::string_view action)
      : db_(db), path_(path), action_(action) {
    if (sqlite3_prepare_v2(db, sql.data(), int(sql.size()), &statement_, nullptr) != SQLITE_OK)
      fail_sqlite(db_, path_, action_);
  }
  ~Statement() { sqlite3_finalize(statement_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::string_view text) {
    check(sqlite3_bind_text(statement_, index, text.data(), int(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind(int index, double value) {
    check(sqlite3_bind_double(statement_, index, value));
    return *this;
  }
  // True while a row is available.
  bool step() {
    const int status = sqlite3_step(statement_);
    if (status == SQLITE_ROW) return true;
    if (status == SQLITE_DONE) return false;
    fail_sqlite(db_, path_, action_);
  }
  std::string text(int column) const {
    const auto* chars = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
    return chars ? std::string(chars, std::size_t(sqlite3_column_bytes(statement_, column)))
                 : std::string();
  }
  double real(int column) const { return sqlite3_column_double(statement_, column); }

 private:
  void check(int status) {
    if (status != SQLITE_OK) fail_sqlite(db_, path_, action_);
  }

  sqlite3* db_;
  const std::filesystem::path& path_;
  std::string_view action_;
  sqlite3_stmt* statement_ = nullptr;
};

void execute(sqlite3* db, const std::filesystem::path& path, const char* sql,
             std::string_view action) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail_sqlite(db, path, action);
}

// BEGIN IMMEDIATE takes the write lock up front, so a concurrent writer waits (busy
// timeout) instead of failing half-way; anything not committed is rolled back.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::filesystem::path& path, std::string_view action)
      : db_(db), path_(path), action_(action) {
    execute(db_, path_, "BEGIN IMMEDIATE", action_);
  }
  ~Transaction() {
    if (!committed_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    execute(db_, path_, "COMMIT", action_);
    committed_ = true;
  }

 private:
  sqlite3* db_;
  const std::filesystem::path& path_;
  std::string_view action_;
  bool committed_ = false;
};

nlohmann::json parse_stored_json(const std::string& text, const std::filesystem::path& path,
                                 std::string_view what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail_input("read results database '{}': {} is not valid JSON: {}", path.string(), what,
               e.what());
  }
}

std::vector<double> parse_objectives(const std::string& text, const std::filesystem::path& path,
                                     std::string_view genome_key) {
  const nlohmann::json json = parse_stored_json(text, path, "objectives");
  std::vector<double> objectives;
  if (json.is_array())
    for (const nlohmann::json& value : json)
      if (value.is_number()) objectives.push_back(value.get<double>());
  if (!json.is_array() || objectives.size() != json.size())
    fail_input(
        "read results database '{}': objectives of '{}' are '{}': they must be an array "
        "of numbers",
        path.string(), genome_key, text);
  return objectives;
}

}  // namespace

ResultsDb::ResultsDb(const std::filesystem::path& path) : path_(path) {
  // SQLite would read /dev/null as an empty database and block on a FIFO.
  check_output_target(path);
  const int opened =
      sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (opened != SQLITE_OK) {
    const std::string reason = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(opened);
    sqlite3_close(db_);
    db_ = nullptr;
    fail_input("open results database '{}': {}: the folder must exist and be writable",
               path.string(), reason);
  }
  try {
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    // The first statement reads the file header: a file that is not SQLite fails here.
    if (sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
        SQLITE_OK)
      fail_input("open results database '{}': {}: it must be a bitplan results database (SQLite)",
                 path.string(), sqlite3_errmsg(db_));

    {  // statements are finalised before the journal mode can change
      Transaction transaction(db_, path_, "check schema");
      Statement tables(db_, path_, "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                       "check schema");
      tables.step();
      if (tables.real(0) == 0) {
        execute(db_, path_, kSchema, "create schema");
        Statement meta(db_, path_, "INSERT INTO meta(key, value) VALUES (?1, ?2), (?3, ?4)",
                       "create schema");
        meta.bind(1, "schema_version")
            .bind(2, std::to_string(kSchemaVersion))
            .bind(3, "application")
            .bind(4, kApplication)
            .step();
      } else {
        Statement has_meta(
            db_, path_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            "check schema");
        has_meta.step();
        if (has_meta.real(0) == 0)
          fail_input(
              "open results database '{}': an SQLite database without bitplan's 'meta' table: "
              "it belongs to another application; give bitplan its own file",
              path.string());
        Statement version(db_, path_, "SELECT value FROM meta WHERE key = 'schema_version'",
                          "check schema");
        const std::string found = version.step() ? version.text(0) : "(none)";
        if (found != std::to_string(kSchemaVersion))
          fail_input(
              "open results database '{}': schema version {}: this bitplan reads version {}; "
              "use a new results file or the bitplan that wrote it",
              path.string(), found, kSchemaVersion);
      }
      transaction.commit();
    }
    // Only now that the file is known to be ours: WAL persists in the file itself.
    execute(db_, path_, "PRAGMA journal_mode=WAL", "switch to write-ahead logging");
    execute(db_, path_, "PRAGMA synchronous=FULL", "configure durability");
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

ResultsDb::~ResultsDb() {
  sqlite3_close(db_);
}

ResultsDb::ResultsDb(ResultsDb&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}

ResultsDb& ResultsDb::operator=(ResultsDb&& other) noexcept {
  if (this != &other) {
    sqlite3_close(db_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

std::optional<StoredEvaluation> ResultsDb::find(std::string_view context,
                                                std::string_view genome_key) const {
  Statement query(db_, path_,
                  "SELECT objectives, constraint_violation, metrics, seconds, created "
                  "FROM evaluations WHERE context = ?1 AND genome_key = ?2",
                  "find evaluation");
  query.bind(1, context).bind(2, genome_key);
  if (!query.step()) return std::nullopt;
  return StoredEvaluation{
      std::string(genome_key), parse_objectives(query.text(0), path_, genome_key),
      query.real(1),           parse_stored_json(query.text(2), path_, "metrics"),
      query.real(3),           query.text(4)};
}

void ResultsDb::put(std::string_view context, const StoredEvaluation& evaluation) {
  put(context, std::span(&evaluation, 1));
}

void ResultsDb::put(std::string_view context, std::span<const StoredEvaluation> evaluations) {
  if (context.empty())
    fail_input("store evaluations in '{}': empty context: the driver must name the conditions",
               path_.string());
  for (const StoredEvaluation& evaluation : evaluations) {
    if (evaluation.genome_key.empty())
      fail_input("store evaluation in '{}': empty genome key", path_.string());
    for (double objective : evaluation.objectives)
      if (!std::isfinite(objective))
        fail_input("store evaluation '{}' in '{}': objective {}: objectives must be finite",
                   evaluation.genome_key, path_.string(), objective);
  }
  const std::string created = utc_now();
  Transaction transaction(db_, path_, "store evaluations");
  for (const StoredEvaluation& evaluation : evaluations) {
    Statement insert(db_, path_,
                     "INSERT INTO evaluations(context, genome_key, objectives, "
                     "constraint_violation, metrics, seconds, created) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                     "ON CONFLICT(context, genome_key) DO UPDATE SET objectives = ?3, "
                     "constraint_violation = ?4, metrics = ?5, seconds = ?6, created = ?7",
                     "store evaluation");
    insert.bind(1, context)
        .bind(2, evaluation.genome_key)
        .bind(3, json_text(nlohmann::json(evaluation.objectives)))
        .bind(4, evaluation.constraint_violation)
        .bind(5, json_text(evaluation.metrics))
        .bind(6, evaluation.seconds)
        .bind(7, created)
        .step();
  }
  transaction.commit();
}

std::vector<StoredEvaluation> ResultsDb::all(std::string_view context) const {
  Statement query(db_, path_,
                  "SELECT genome_key, objectives, constraint_violation, metrics, seconds, created "
                  "FROM evaluations WHERE context = ?1 ORDER BY rowid",
                  "list evaluations");
  query.bind(1, context);
  std::vector<StoredEvaluation> evaluations;
  while (query.step()) {
    std::string key = query.text(0);
    std::vector<double> objectives = parse_objectives(query.text(1), path_, key);
    evaluations.push_back({std::move(key), std::move(objectives), query.real(2),
                           parse_stored_json(query.text(3), path_, "metrics"), query.real(4),
                           query.text(5)});
  }
  return evaluations;
}

std::optional<StoredSensitivity> ResultsDb::find_sensitivity(std::string_view context,
                                                             std::string_view layer,
                                                             std::string_view option) const {
  Statement query(db_, path_,
                  "SELECT value, metrics, seconds, created FROM sensitivity "
                  "WHERE context = ?1 AND layer = ?2 AND option = ?3",
                  "find sensitivity");
  query.bind(1, context).bind(2, layer).bind(3, option);
  if (!query.step()) return std::nullopt;
  return StoredSensitivity{std::string(layer), std::string(option),
                           query.real(0),      parse_stored_json(query.text(1), path_, "metrics"),
                           query.real(2),      query.text(3)};
}

void ResultsDb::put_sensitivity(std::string_view context, const StoredSensitivity& sensitivity) {
  if (context.empty() || sensitivity.layer.empty() || sensitivity.option.empty())
    fail_input(
        "store sensitivity in '{}': context '{}', layer '{}', option '{}': none may be empty",
        path_.string(), context, sensitivity.layer, sensitivity.option);
  if (!std::isfinite(sensitivity.value))
    fail_input("store sensitivity of layer '{}' option '{}' in '{}': value {}: it must be finite",
               sensitivity.layer, sensitivity.option, path_.string(), sensitivity.value);
  Transaction transaction(db_, path_, "store sensitivity");
  Statement insert(db_, path_,
                   "INSERT INTO sensitivity(context, layer, option, value, metrics, seconds, "
                   "created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                   "ON CONFLICT(context, layer, option) DO UPDATE SET value = ?4, metrics = ?5, "
                   "seconds = ?6, created = ?7",
                   "store sensitivity");
  insert.bind(1, context)
      .bind(2, sensitivity.layer)
      .bind(3, sensitivity.option)
      .bind(4, sensitivity.value)
      .bind(5, json_text(sensitivity.metrics))
      .bind(6, sensitivity.seconds)
      .bind(7, utc_now())
      .step();
  transaction.commit();
}

std::vector<StoredSensitivity> ResultsDb::all_sensitivity(std::string_view context) const {
  Statement query(db_, path_,
                  "SELECT layer, option, value, metrics, seconds, created FROM sensitivity "
                  "WHERE context = ?1 ORDER BY rowid",
                  "list sensitivity");
  query.bind(1, context);
  std::vector<StoredSensitivity> rows;
  while (query.step())
    rows.push_back({query.text(0), query.text(1), query.real(2),
                    parse_stored_json(query.text(3), path_, "metrics"), query.real(4),
                    query.text(5)});
  return rows;
}

void ResultsDb::begin_run(std::string_view run_id, const nlohmann::json& config) {
  if (run_id.empty()) fail_input("record run in '{}': empty run id", path_.string());
  Transaction transaction(db_, path_, "record run");
  Statement insert(db_, path_,
                   "INSERT OR REPLACE INTO runs(run_id, config, started, finished, status) "
                   "VALUES (?1, ?2, ?3, NULL, 'running')",
                   "record run");
  insert.bind(1, run_id).bind(2, json_text(config)).bind(3, utc_now()).step();
  transaction.commit();
}

void ResultsDb::finish_run(std::string_view run_id, std::string_view status) {
  Transaction transaction(db_, path_, "finish run");
  Statement update(db_, path_, "UPDATE runs SET finished = ?2, status = ?3 WHERE run_id = ?1",
                   "finish run");
  update.bind(1, run_id).bind(2, utc_now()).bind(3, status).step();
  if (sqlite3_changes(db_) == 0)
    fail_input("finish run '{}' in '{}': no such run: begin_run() records it first", run_id,
               path_.string());
  transaction.commit();
}

std::optional<RunRecord> ResultsDb::find_run(std::string_view run_id) const {
  Statement query(db_, path_,
                  "SELECT config, started, finished, status FROM runs WHERE run_id = ?1",
                  "find run");
  query.bind(1, run_id);
  if (!query.step()) return std::nullopt;
  return RunRecord{std::string(run_id), parse_stored_json(query.text(0), path_, "run config"),
                   query.text(1), query.text(2), query.text(3)};
}

}  // namespace bitplan::search
