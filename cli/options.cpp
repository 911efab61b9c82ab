#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

#include "cli/commands.hpp"
#include "core/error.hpp"

namespace bitplan {

namespace po = boost::program_options;

po::variables_map parse_options(const po::options_description& desc,
                                const std::vector<std::string>& args,
                                const po::positional_options_description* positional) {
  po::variables_map vm;
  try {
    auto parser = po::command_line_parser(args).options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail(ErrorKind::usage, "{} (see --help)", e.what());
  }
  return vm;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::vector<std::int64_t> parse_positive_list(const std::string& text, const char* flag) {
  std::vector<std::int64_t> out;
  for (const auto& item : split_list(text)) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || end != item.data() + item.size() || v <= 0)
      fail(ErrorKind::usage, "{} '{}': '{}' is not a positive integer (give e.g. 1,64)", flag, text,
           item);
    out.push_back(v);
  }
  if (out.empty()) fail(ErrorKind::usage, "{} is empty (give e.g. 1,64)", flag);
  return out;
}

std::string calibration_summary(const DatasetConfig& dataset) {
  const CalibrationConfig& c = dataset.calibration;
  std::string samples = c.count == 0 ? "all samples" : fmt::format("{} samples", c.count);
  samples += c.seed == 0 ? " (dataset order" : fmt::format(" (seed {}", c.seed);
  if (c.offset != 0) samples += fmt::format(", offset {}", c.offset);
  if (c.images.empty())
    return fmt::format("{}) of the evaluation images {}", samples, dataset.images.string());
  return fmt::format("{}) of {}", samples, c.images.string());
}

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME")) return std::string(xdg) + "/bitplan";
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.cache/bitplan";
  return ".bitplan-cache";
}

}  // namespace bitplan
