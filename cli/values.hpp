// Numbers a user gives on the command line or in a run config pass the same checks here, so
// a flag and its config key accept exactly the same values. Errors name where the value came
// from: the flag (a usage error, exit 2), or the config file with line, column and key (an
// invalid-input error, exit 3); a value set with --set names the override.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace bitplan {

class ValueOrigin {
 public:
  // A command-line flag, e.g. "--threads".
  static ValueOrigin flag(std::string name);
  // The config key `key` at `node` of `file` (nodes a --set made have no position there).
  static ValueOrigin config(const std::filesystem::path& file, const YAML::Node& node,
                            std::string key);

  // "<where> <value>: <rule>", with the exit code of the origin.
  [[noreturn]] void fail(std::string_view value, std::string_view rule) const;
  const std::string& where() const { return where_; }

 private:
  ValueOrigin(ErrorKind kind, std::string where) : kind_(kind), where_(std::move(where)) {}
  ErrorKind kind_;
  std::string where_;  // "--threads" or "config 'run.yaml' line 3, column 12: evaluate.threads"
};

// A whole integer in the type's range: no sign for the unsigned seed, no fraction or
// exponent, no trailing characters, no overflow (the message says which).
std::int64_t parse_integer(std::string_view text, const ValueOrigin& origin);
std::uint64_t parse_unsigned(std::string_view text, const ValueOrigin& origin);
// A finite decimal number ("inf" and "nan" are refused).
double parse_finite(std::string_view text, const ValueOrigin& origin);

// The rules, each for a flag and the config keys that mean the same.
// --batch, evaluate.batch: >= 1 (a batch too large for memory is refused by
// check_batch_memory once the model is known).
std::int64_t parse_batch(std::string_view text, const ValueOrigin& origin);
// --threads, evaluate.threads: 0 (all cores) or 1 .. max_threads() (core/parallel.hpp).
int parse_threads(std::string_view text, const ValueOrigin& origin);
// --count (validation samples), --evaluations, search.budget.evaluations: >= 0, 0 = all / no
// limit.
std::int64_t parse_count(std::string_view text, const ValueOrigin& origin);
// --seconds, search.budget.seconds: a finite number of seconds >= 0 (0 = no limit).
double parse_seconds(std::string_view text, const ValueOrigin& origin);
// --seed, search.seed: 0 .. 2^64-1.
std::uint64_t parse_seed(std::string_view text, const ValueOrigin& origin);

// The memory a process may use: the machine's physical memory, or its cgroup's limit when
// lower.
std::uint64_t memory_limit_bytes();
// Refuses a `batch` whose activations alone (`bytes_per_sample` x the `samples_at_once` a run
// of that batch holds) would not fit in memory_limit_bytes(), before anything is allocated.
void check_batch_memory(std::int64_t batch, std::int64_t samples_at_once, double bytes_per_sample,
                        const ValueOrigin& origin);

}  // namespace bitplan
