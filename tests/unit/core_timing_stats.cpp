// Median and IQR (core/timing_stats.hpp) against the type-7 quantiles numpy computes:
// numpy.percentile(x, [25, 50, 75]) with its default linear interpolation.
#include <doctest/doctest.h>

#include <vector>

#include "core/timing_stats.hpp"

namespace core_timing_stats_test {

using namespace bitplan;

TEST_CASE("median_and_iqr gives numpy's linear-interpolation quartiles") {
  // numpy.percentile([7, 1, 3, 5], [25, 50, 75]) == [2.5, 4.0, 5.5]
  std::vector<double> even{7, 1, 3, 5};
  const Spread four = median_and_iqr(even);
  CHECK(four.median == doctest::Approx(4.0));
  CHECK(four.iqr == doctest::Approx(3.0));
  CHECK(even == std::vector<double>{1, 3, 5, 7});  // sorted in place

  // numpy.percentile([10, 2, 4, 8, 6], [25, 50, 75]) == [4, 6, 8]
  std::vector<double> odd{10, 2, 4, 8, 6};
  const Spread five = median_and_iqr(odd);
  CHECK(five.median == doctest::Approx(6.0));
  CHECK(five.iqr == doctest::Approx(4.0));

  // numpy.percentile([1, 2, 4, 8, 16, 32, 64], [25, 50, 75]) == [3, 8, 24]
  std::vector<double> skewed{64, 1, 32, 2, 16, 4, 8};
  const Spread seven = median_and_iqr(skewed);
  CHECK(seven.median == doctest::Approx(8.0));
  CHECK(seven.iqr == doctest::Approx(21.0));
}

TEST_CASE("median_and_iqr of one sample and of none") {
  std::vector<double> one{2.5};
  CHECK(median_and_iqr(one).median == 2.5);
  CHECK(median_and_iqr(one).iqr == 0.0);
  std::vector<double> none;
  CHECK(median_and_iqr(none).median == 0.0);
  CHECK(median_and_iqr(none).iqr == 0.0);
}

TEST_CASE("quantile_of_sorted interpolates between neighbours") {
  const std::vector<double> sorted{0, 10, 20};
  CHECK(quantile_of_sorted(sorted, 0.0) == 0.0);
  CHECK(quantile_of_sorted(sorted, 0.25) == doctest::Approx(5.0));
  CHECK(quantile_of_sorted(sorted, 1.0) == 20.0);
}

}  // namespace core_timing_stats_test
