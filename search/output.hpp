// A search's results on disk (results/<run>/), every file written atomically:
//   pareto.json    the front with every metric (subset and final), predicted and measured
//                  latency, size, BOPs; the uniform baselines; the run's cost
//   pareto.csv     the same front, one row per plan
//   plan_NNN.yaml  one plan per front point (bitplan evaluate / export accept them); those
//                  of an earlier, larger front in the same folder are removed
//   (JSON: a value that is infinite or does not apply, such as the SQNR of a plan identical
//   to fp32 or a latency without a profile, is null; names that are not UTF-8 have U+FFFD
//   for each invalid byte in every file)
//   sensitivity.csv  layer x option: KL and top-1 drop when only that layer is quantized
//   report.html    self-contained (inline SVG; search/report.hpp): front vs baselines,
//                  sensitivity heat map, per-layer table of the chosen plans, hypervolume,
//                  search cost
#pragma once

#include <filesystem>

#include "search/driver.hpp"

namespace bitplan::search {

struct OutputInfo {
  std::string model_name, model_hash, config_path, command_line;
};

// Makes `dir` and checks that files can be created in it and that none of the result files
// exists as a non-regular file (a device, a folder): run before any work, so an unusable
// folder fails in a second rather than after the search.
void prepare_results_folder(const std::filesystem::path& dir);

// "plan_003.yaml": the file of the front's plan at `front_index`.
std::string plan_file_name(std::size_t front_index);

void write_results(const std::filesystem::path& dir, const SearchResult& result,
                   const OutputInfo& info);

}  // namespace bitplan::search
