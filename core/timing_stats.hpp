// The statistics every latency bitplan stores or prints is made of: the median of repeated
// timings, and their interquartile range as the spread. Both are robust to the occasional
// run that a page fault or another process slows down, which a mean and standard deviation
// are not.
//
// Header-only and standard-library only: the standalone CUDA profiler (backends/cuda/
// standalone) uses it without the rest of bitplan.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

namespace bitplan {

// The q-quantile (q in [0, 1]) of `sorted` (ascending, not empty) by linear interpolation
// between order statistics: the usual "type 7" definition (R's default, numpy's "linear").
inline double quantile_of_sorted(std::span<const double> sorted, double q) {
  const double position = q * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(position);
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (position - static_cast<double>(below)) * (sorted[above] - sorted[below]);
}

struct Spread {
  double median = 0, iqr = 0;
};

// Median and interquartile range (75th minus 25th percentile, type 7) of `samples`, which it
// sorts in place; both 0 when there are none.
inline Spread median_and_iqr(std::vector<double>& samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  return {quantile_of_sorted(samples, 0.5),
          quantile_of_sorted(samples, 0.75) - quantile_of_sorted(samples, 0.25)};
}

}  // namespace bitplan
