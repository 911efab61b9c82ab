// A search's results on disk (results/<run>/), every file written atomically:
//   pareto.json    the front with every metric (subset and final), predicted and measured
//                  latency, size, BOPs; the uniform baselines; the run's cost
//   pareto.csv     the same front, one row per plan
//   plan_NNN.yaml  one plan per front point (bitplan evaluate / export accept them)
//   sensitivity.csv  layer x option: KL and top-1 drop when only that layer is quantized
//   report.html    self-contained (inline SVG): front vs baselines, sensitivity heat map,
//                  per-layer table of the chosen plans, hypervolume, search cost
#pragma once

#include <filesystem>

#include "search/driver.hpp"

namespace bitplan::search {

struct OutputInfo {
  std::string model_name, model_hash, config_path, command_line;
};

void write_results(const std::filesystem::path& dir, const SearchResult& result,
                   const OutputInfo& info);

}  // namespace bitplan::search
