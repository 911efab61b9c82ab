// How a measurement is repeated, and what it gives. No CUDA header here: the profile file
// code (profile_file.hpp) records both and builds without the toolkit.
#pragma once

namespace bitplan::cuda {

struct TimingOptions {
  int warmup_runs = 10;
  int min_repeats = 50;
  int max_repeats = 2000;
  double budget_ms = 20.0;
};

struct TimingResult {
  double median_us = 0, iqr_us = 0;
  int repeats = 0;
};

}  // namespace bitplan::cuda
