#include "cli/values.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>

#include "core/parallel.hpp"

namespace bitplan {

ValueOrigin ValueOrigin::flag(std::string name) {
  return ValueOrigin(ErrorKind::usage, std::move(name));
}

ValueOrigin ValueOrigin::config(const std::filesystem::path& file, const YAML::Node& node,
                                std::string key) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0)
    return ValueOrigin(ErrorKind::invalid_input,
                       fmt::format("config '{}' (as changed by --set): {}", file.string(), key));
  return ValueOrigin(ErrorKind::invalid_input,
                     fmt::format("config '{}' line {}, column {}: {}", file.string(), mark.line + 1,
                                 mark.column + 1, key));
}

void ValueOrigin::fail(std::string_view value, std::string_view rule) const {
  throw Error(kind_, fmt::format("{} {}: {}", where_, value.empty() ? "''" : value, rule));
}

namespace {

// The text without one leading '+', which from_chars does not take.
std::string_view unsigned_digits(std::string_view text) {
  return text.size() > 1 && text[0] == '+' ? text.substr(1) : text;
}

template <typename T>
T parse_whole(std::string_view text, const ValueOrigin& origin, const char* what) {
  const std::string_view digits = std::is_signed_v<T> ? unsigned_digits(text) : text;
  T value{};
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range)
    origin.fail(text, fmt::format("is out of range (at most {})", std::numeric_limits<T>::max()));
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
    origin.fail(text, fmt::format("is not {}", what));
  return value;
}

}  // namespace

std::int64_t parse_integer(std::string_view text, const ValueOrigin& origin) {
  return parse_whole<std::int64_t>(text, origin, "a whole number");
}

std::uint64_t parse_unsigned(std::string_view text, const ValueOrigin& origin) {
  return parse_whole<std::uint64_t>(unsigned_digits(text), origin, "a whole number >= 0");
}

double parse_finite(std::string_view text, const ValueOrigin& origin) {
  const std::string_view digits = unsigned_digits(text);
  double value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
    origin.fail(text, "is not a number");
  if (!std::isfinite(value)) origin.fail(text, "must be a finite number");
  return value;
}

std::int64_t parse_batch(std::string_view text, const ValueOrigin& origin) {
  const std::int64_t batch = parse_integer(text, origin);
  if (batch < 1) origin.fail(text, "must be >= 1");
  return batch;
}

int parse_threads(std::string_view text, const ValueOrigin& origin) {
  const std::int64_t threads = parse_integer(text, origin);
  if (const std::string problem = thread_count_problem(threads); !problem.empty())
    origin.fail(text, problem);
  return static_cast<int>(threads);
}

std::int64_t parse_count(std::string_view text, const ValueOrigin& origin) {
  const std::int64_t count = parse_integer(text, origin);
  if (count < 0) origin.fail(text, "must be >= 0 (0 = all / no limit)");
  return count;
}

double parse_seconds(std::string_view text, const ValueOrigin& origin) {
  const double seconds = parse_finite(text, origin);
  if (seconds < 0) origin.fail(text, "must be a number of seconds >= 0 (0 = no limit)");
  return seconds;
}

std::uint64_t parse_seed(std::string_view text, const ValueOrigin& origin) {
  return parse_unsigned(text, origin);
}

std::uint64_t memory_limit_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  std::uint64_t limit = pages > 0 && page_size > 0 ? static_cast<std::uint64_t>(pages) *
                                                         static_cast<std::uint64_t>(page_size)
                                                   : std::numeric_limits<std::uint64_t>::max();
  // cgroup v2 ("max" when unlimited) and v1 (a huge number when unlimited).
  for (const char* file :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(file);
    std::uint64_t cgroup = 0;
    if (in >> cgroup && cgroup > 0) limit = std::min(limit, cgroup);
  }
  return limit;
}

void check_batch_memory(std::int64_t batch, std::int64_t samples_at_once, double bytes_per_sample,
                        const ValueOrigin& origin) {
  const double needed = static_cast<double>(samples_at_once) * bytes_per_sample;
  const double limit = static_cast<double>(memory_limit_bytes());
  if (needed <= limit) return;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  origin.fail(std::to_string(batch),
              fmt::format("needs {:.3g} GiB for the activations alone ({:.1f} KiB per sample x "
                          "{} samples at once), more than the {:.1f} GiB of memory this process "
                          "may use; give a smaller batch",
                          needed / gib, bytes_per_sample / 1024.0, samples_at_once, limit / gib));
}

}  // namespace bitplan
