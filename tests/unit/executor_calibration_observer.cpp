// RangeObserver: each method against values computed directly from the data (sorted copies,
// real int8 fake quantization, TensorRT's entropy algorithm run on an exact histogram).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "data_test_util.hpp"
#include "executor/quant/calibration.hpp"

namespace bitplan::executor_calibration_observer_test {
namespace {

using Range = RangeObserver::Range;
using test::check_error;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

CalibrationOptions with(CalibrationMethod method, bool symmetric = false) {
  CalibrationOptions options;
  options.method = method;
  options.symmetric = symmetric;
  return options;
}

// Feeds `values` in batches of `batch` values.
RangeObserver observed(const CalibrationOptions& options, std::span<const float> values,
                       std::size_t batch) {
  RangeObserver observer(options);
  for (std::size_t i = 0; i < values.size(); i += batch)
    observer.observe(values.subspan(i, std::min(batch, values.size() - i)));
  return observer;
}

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Laplace(0, 1) (difference of two unit exponentials), with `outliers` put in at random places.
std::vector<float> laplace(std::size_t n, std::uint32_t seed,
                           std::initializer_list<float> outliers = {}) {
  std::mt19937 rng(seed);
  std::exponential_distribution<float> dist(1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng) - dist(rng);
  for (const float outlier : outliers) v[rng() % n] = outlier;
  return v;
}

std::vector<float> sorted(std::vector<float> values) {
  std::sort(values.begin(), values.end());
  return values;
}

// The p-th percentile of sorted values, interpolating between order statistics (NumPy's
// default "linear" rule).
double exact_percentile(const std::vector<float>& values, double p) {
  const double position = p / 100 * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(position);
  if (below + 1 >= values.size()) return values.back();
  return values[below] + (position - static_cast<double>(below)) *
                             (static_cast<double>(values[below + 1]) - values[below]);
}

std::vector<float> magnitudes(std::vector<float> values) {
  for (float& x : values) x = std::abs(x);
  return values;
}

std::vector<float> sorted_magnitudes(const std::vector<float>& values) {
  return sorted(magnitudes(values));
}

// Mean squared error of real b-bit fake quantization over `range`: symmetric grids step
// t / (2^(b-1) - 1) with levels +-(2^(b-1) - 1); asymmetric grids step (max - min) / (2^b - 1)
// with an integer zero point, as an int8 kernel would use them (rounding half to even).
double fake_quant_mse(std::span<const float> values, Range range, bool symmetric, int bits = 8) {
  REQUIRE(range.min <= 0.f);
  REQUIRE(range.max >= 0.f);
  double qmin = 0, qmax = std::ldexp(1.0, bits) - 1, scale = 0, zero_point = 0;
  if (symmetric) {
    qmax = std::ldexp(1.0, bits - 1) - 1;
    qmin = -qmax;
    scale = range.max / qmax;
  } else {
    scale = (static_cast<double>(range.max) - range.min) / qmax;
    zero_point = std::nearbyint(-range.min / scale);
  }
  double sum = 0;
  for (const float x : values) {
    const double q = std::clamp(std::nearbyint(x / scale) + zero_point, qmin, qmax);
    const double error = (q - zero_point) * scale - x;
    sum += error * error;
  }
  return sum / static_cast<double>(values.size());
}

// TensorRT's entropy calibration exactly as the GTC 2017 slides write it, with bin 0 given
// bin 1's count as NVIDIA's pytorch-quantization does, on an exact histogram of |x| with
// `bins` bins over [0, max |x|] built from all values at once; the observer derives the same
// quantity from its streaming histogram in O(levels) per candidate.
double reference_entropy_threshold(std::span<const float> values, int bins, int levels) {
  double largest = 0;
  for (const float x : values) largest = std::max(largest, static_cast<double>(std::abs(x)));
  std::vector<double> h(static_cast<std::size_t>(bins), 0.0);
  for (const float x : values)
    h[std::min<std::size_t>(static_cast<std::size_t>(std::abs(x) / largest * bins),
                            static_cast<std::size_t>(bins - 1))] += 1;
  h[0] = h[1];
  int best = bins;
  double best_divergence = kInf;
  for (int i = levels; i <= bins; ++i) {
    std::vector<double> p(h.begin(), h.begin() + i);
    for (int k = i; k < bins; ++k)
      p[static_cast<std::size_t>(i - 1)] += h[static_cast<std::size_t>(k)];
    std::vector<double> q(static_cast<std::size_t>(i), 0.0);
    const int chunk = i / levels;
    for (int j = 0; j < levels; ++j) {
      const int from = j * chunk, to = j + 1 == levels ? i : from + chunk;
      double sum = 0, nonzero = 0;
      for (int k = from; k < to; ++k) {
        sum += h[static_cast<std::size_t>(k)];
        nonzero += p[static_cast<std::size_t>(k)] > 0;
      }
      for (int k = from; k < to; ++k)
        if (p[static_cast<std::size_t>(k)] > 0) q[static_cast<std::size_t>(k)] = sum / nonzero;
    }
    double p_total = 0, q_total = 0;
    for (int k = 0; k < i; ++k) {
      p_total += p[static_cast<std::size_t>(k)];
      q_total += q[static_cast<std::size_t>(k)];
    }
    double divergence = 0;
    for (int k = 0; k < i; ++k) {
      const double pk = p[static_cast<std::size_t>(k)] / p_total;
      const double qk = q[static_cast<std::size_t>(k)] / q_total;
      if (pk > 0) divergence += qk > 0 ? pk * std::log(pk / qk) : kInf;
    }
    if (divergence < best_divergence) {
      best_divergence = divergence;
      best = i;
    }
  }
  return largest * best / bins;
}

TEST_CASE("minmax is exact over several batches, symmetric takes the larger magnitude") {
  const std::vector<float> a{3.f, -1.f, 2.f}, b{0.5f, 7.25f}, c{-4.5f};
  RangeObserver observer(with(CalibrationMethod::minmax));
  RangeObserver symmetric(with(CalibrationMethod::minmax, true));
  for (const auto* batch : {&a, &b, &c}) {
    observer.observe(*batch);
    symmetric.observe(*batch);
  }
  CHECK(observer.count() == 6);
  CHECK(observer.nonfinite() == 0);
  CHECK(observer.range().min == -4.5f);
  CHECK(observer.range().max == 7.25f);
  CHECK(symmetric.range().min == -7.25f);
  CHECK(symmetric.range().max == 7.25f);
}

TEST_CASE("NaN and Inf are counted and skipped by every method") {
  const std::vector<float> values{1.f, kNaN, -kInf, 2.f, kInf, -3.f, 0.5f};
  for (const auto method : {CalibrationMethod::minmax, CalibrationMethod::percentile,
                            CalibrationMethod::mse, CalibrationMethod::entropy}) {
    CAPTURE(calibration_method_name(method));
    CalibrationOptions options = with(method);
    options.percentile = 100;
    RangeObserver observer(options);
    observer.observe(values);
    CHECK(observer.count() == 4);
    CHECK(observer.nonfinite() == 3);
    const Range range = observer.range();
    CHECK(std::isfinite(range.min));
    CHECK(std::isfinite(range.max));
    CHECK(range.min >= -3.f);
    CHECK(range.max <= 2.f);
    if (method == CalibrationMethod::minmax || method == CalibrationMethod::percentile) {
      CHECK(range.min == -3.f);
      CHECK(range.max == 2.f);
    }
  }
}

TEST_CASE("the vectorised, parallel scan matches a plain loop on a large batch with NaN/Inf") {
  std::vector<float> values = gaussian(1 << 20, 7);
  for (std::size_t i = 0; i < values.size(); i += 7) values[i] = i % 3 == 0 ? kNaN : -kInf;
  values[values.size() - 1] = kInf;  // in the scalar tail after the vector lanes
  values[12345] = 9.5f;
  float lo = kInf, hi = -kInf;
  std::int64_t finite = 0;
  for (const float x : values)
    if (std::isfinite(x)) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      ++finite;
    }
  CalibrationOptions options = with(CalibrationMethod::percentile);
  options.percentile = 100;
  for (const auto& o : {with(CalibrationMethod::minmax), options}) {
    RangeObserver observer(o);
    observer.observe(values);
    CHECK(observer.count() == finite);
    CHECK(observer.nonfinite() == static_cast<std::int64_t>(values.size()) - finite);
    CHECK(observer.range().min == lo);
    CHECK(observer.range().max == 9.5f);
  }
}

TEST_CASE("no finite value: range() fails and names the count of non-finite values") {
  RangeObserver observer(with(CalibrationMethod::percentile));
  observer.observe(std::vector<float>{kNaN, kNaN, kInf, -kInf, kNaN});
  CHECK(observer.count() == 0);
  CHECK(observer.nonfinite() == 5);
  check_error([&] { observer.range(); }, {"all 5 observed values are NaN or Inf", "finite"});
  RangeObserver nothing(with(CalibrationMethod::minmax));
  nothing.observe({});
  check_error([&] { nothing.range(); }, {"no values observed"});
}

TEST_CASE("a constant tensor gives its value at both ends, whatever the method") {
  for (const auto method : {CalibrationMethod::minmax, CalibrationMethod::percentile,
                            CalibrationMethod::mse, CalibrationMethod::entropy}) {
    for (const float value : {2.5f, 0.f, -1e-30f}) {
      CAPTURE(calibration_method_name(method));
      CAPTURE(value);
      RangeObserver observer(with(method));
      observer.observe(std::vector<float>(1000, value));
      observer.observe(std::vector<float>{value, kNaN});
      CHECK(observer.range().min == value);
      CHECK(observer.range().max == value);
    }
  }
}

TEST_CASE("values from denormals to the largest float give finite ranges") {
  constexpr float kMax = std::numeric_limits<float>::max();
  constexpr float kTiny = std::numeric_limits<float>::denorm_min();
  std::vector<float> values = gaussian(10'000, 19);
  for (const float x : {-kMax, kMax, kTiny, -kTiny, 0.f, 3e38f, -1e-40f}) values.push_back(x);
  for (const auto method : {CalibrationMethod::minmax, CalibrationMethod::percentile,
                            CalibrationMethod::mse, CalibrationMethod::entropy}) {
    for (const bool symmetric : {false, true}) {
      CAPTURE(calibration_method_name(method));
      CAPTURE(symmetric);
      // Tiny values first, so the histogram grows from float resolution to 2^115.
      RangeObserver observer(with(method, symmetric));
      observer.observe(std::vector<float>{kTiny, -kTiny});
      observer.observe(values);
      const Range range = observer.range();
      CHECK(std::isfinite(range.min));
      CHECK(std::isfinite(range.max));
      CHECK(range.min <= range.max);
      CHECK(range.min >= -kMax);
    }
  }
}

TEST_CASE("options outside their ranges are rejected with the rule") {
  CalibrationOptions options;
  options.percentile = 150;
  check_error([&] { RangeObserver{options}; }, {"percentile '150'", "[50, 100]"});
  options = {};
  options.bins = 0;
  check_error([&] { RangeObserver{options}; }, {"bins '0'", "[1, 16384]"});
  options = {};
  options.target_bits = 1;
  check_error([&] { RangeObserver{options}; }, {"target_bits '1'", "[2, 16]"});
  options = with(CalibrationMethod::entropy);
  options.bins = 64;
  check_error([&] { RangeObserver{options}; }, {"entropy at 8 bits", "bins '64'", "256"});
}

// The streaming histogram's bins are never wider than 2 R / (4 bins - 2) (R = max - min of
// what it holds), and a percentile lies within 2 bins of the exact one.
double percentile_tolerance(double lo, double hi, int bins = 2048) {
  return 2 * 2 * (hi - lo) / (4.0 * bins - 2);
}

TEST_CASE("percentile of a large Gaussian sample is within the stated bound of the exact one") {
  const std::vector<float> values = gaussian(1'000'000, 42);
  const std::vector<float> exact = sorted(values), exact_abs = sorted_magnitudes(values);
  const double tolerance = percentile_tolerance(exact.front(), exact.back());
  const double abs_tolerance = percentile_tolerance(exact_abs.front(), exact_abs.back());
  for (const double p : {99.99, 99.9, 99.0, 90.0}) {
    CAPTURE(p);
    CalibrationOptions options = with(CalibrationMethod::percentile);
    options.percentile = p;
    const Range range = observed(options, values, 4096).range();
    const double high = exact_percentile(exact, p), low = exact_percentile(exact, 100 - p);
    MESSAGE("p=", p, " high err=", range.max - high, " low err=", range.min - low,
            " bound=", tolerance);
    CHECK(std::abs(range.max - high) <= tolerance);
    CHECK(std::abs(range.min - low) <= tolerance);

    options.symmetric = true;
    const Range symmetric = observed(options, values, 4096).range();
    const double magnitude = exact_percentile(exact_abs, p);
    MESSAGE("p=", p, " |x| err=", symmetric.max - magnitude, " bound=", abs_tolerance);
    CHECK(symmetric.min == -symmetric.max);
    CHECK(std::abs(symmetric.max - magnitude) <= abs_tolerance);
  }
}

TEST_CASE("percentile: batches with growing ranges re-bin exactly") {
  // Sorted by magnitude, every batch reaches beyond all earlier ones, so the histogram widens
  // its bins (merging pairs) again and again. Merging is exact, so the result is the same
  // as from one pass over everything.
  std::vector<float> values = gaussian(500'000, 3);
  std::sort(values.begin(), values.end(),
            [](float a, float b) { return std::abs(a) < std::abs(b); });
  for (const bool symmetric : {false, true}) {
    CAPTURE(symmetric);
    CalibrationOptions options = with(CalibrationMethod::percentile, symmetric);
    options.percentile = 99.9;
    const Range growing = observed(options, values, 1000).range();
    const Range at_once = observed(options, values, values.size()).range();
    CHECK(growing.min == at_once.min);
    CHECK(growing.max == at_once.max);
    if (!symmetric) {
      const std::vector<float> exact = sorted(values);
      const double tolerance = percentile_tolerance(exact.front(), exact.back());
      CHECK(std::abs(growing.max - exact_percentile(exact, 99.9)) <= tolerance);
      CHECK(std::abs(growing.min - exact_percentile(exact, 0.1)) <= tolerance);
    }
  }

  // A first batch of zeros, then a tiny value, then the data: the bin width grows from float
  // resolution (2^-149) to ~2^-9 in one step.
  std::vector<float> all{0.f, 0.f, 1e-30f};
  RangeObserver observer([] {
    CalibrationOptions options = with(CalibrationMethod::percentile);
    options.percentile = 99;
    return options;
  }());
  observer.observe(std::span<const float>(all).first(2));
  observer.observe(std::span<const float>(all).subspan(2));
  const std::vector<float> data = gaussian(100'000, 9);
  observer.observe(data);
  all.insert(all.end(), data.begin(), data.end());
  const std::vector<float> exact = sorted(all);
  const double tolerance = percentile_tolerance(exact.front(), exact.back());
  CHECK(std::abs(observer.range().max - exact_percentile(exact, 99)) <= tolerance);
  CHECK(std::abs(observer.range().min - exact_percentile(exact, 1)) <= tolerance);
}

TEST_CASE("percentile 100 gives the observed extremes exactly") {
  const std::vector<float> values = gaussian(10'000, 5);
  CalibrationOptions options = with(CalibrationMethod::percentile);
  options.percentile = 100;
  const Range range = observed(options, values, 999).range();
  CHECK(range.min == *std::min_element(values.begin(), values.end()));
  CHECK(range.max == *std::max_element(values.begin(), values.end()));
}

TEST_CASE("mse and entropy clip heavy tails and quantize them better than minmax at 8 bits") {
  // Clipping pays only while the clipped values' squared distance, ~k M^2 / N for k outliers
  // of size M among N values, stays below the rounding error minmax's wide grid costs
  // everyone, ~(2 M / 255)^2 / 12 = M^2 / 195000 at 8 bits: here k / N = 2e-6.
  const std::vector<float> values = laplace(1'000'000, 11, {100.f, -80.f});
  for (const bool symmetric : {false, true}) {
    CAPTURE(symmetric);
    const Range minmax = observed(with(CalibrationMethod::minmax, symmetric), values, 8192).range();
    const double minmax_mse = fake_quant_mse(values, minmax, symmetric);
    for (const auto method : {CalibrationMethod::mse, CalibrationMethod::entropy}) {
      CAPTURE(calibration_method_name(method));
      const Range range = observed(with(method, symmetric), values, 8192).range();
      const double mse = fake_quant_mse(values, range, symmetric);
      MESSAGE(calibration_method_name(method), " symmetric=", symmetric, " range [", range.min,
              ", ", range.max, "] mse ", mse, " vs minmax [", minmax.min, ", ", minmax.max,
              "] mse ", minmax_mse);
      CHECK(range.max - range.min < (minmax.max - minmax.min) / 3);
      CHECK(mse < minmax_mse / 2);
    }
  }
}

// The least fake-quantization MSE over ranges [-a, b] (a = b when symmetric): a 0.5 grid up
// to the extremes, then a 0.05 grid within 0.5 of the best point.
double grid_search_mse(std::span<const float> values, bool symmetric) {
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  const float a_end = symmetric ? std::max(-*lo, *hi) : -*lo, b_end = *hi;
  double best = kInf;
  float best_a = 0, best_b = 0;
  const auto search = [&](float a_from, float a_to, float b_from, float b_to, float step) {
    for (float a = std::max(a_from, step); a < a_to + step; a += step)
      for (float b = std::max(b_from, step); b < b_to + step; b += step) {
        if (symmetric) b = a;
        const double mse = fake_quant_mse(values, {-a, b}, symmetric);
        if (mse < best) std::tie(best, best_a, best_b) = std::tuple(mse, a, b);
        if (symmetric) break;
      }
  };
  search(0, a_end, 0, b_end, 0.5f);
  search(best_a - 0.5f, best_a + 0.5f, best_b - 0.5f, best_b + 0.5f, 0.05f);
  return best;
}

TEST_CASE("mse finds a clipping range as good as a grid search on real fake quantization") {
  for (const auto& values : {laplace(100'000, 13), laplace(100'000, 15, {60.f})}) {
    for (const bool symmetric : {false, true}) {
      CAPTURE(symmetric);
      const Range range = observed(with(CalibrationMethod::mse, symmetric), values, 5000).range();
      const double mse = fake_quant_mse(values, range, symmetric);
      const double best = grid_search_mse(values, symmetric);
      MESSAGE("symmetric=", symmetric, " mse range [", range.min, ", ", range.max, "] mse ", mse,
              " grid search best ", best);
      CHECK(mse <= best * 1.01);
    }
  }
}

TEST_CASE("entropy matches TensorRT's algorithm run on an exact histogram") {
  for (const auto& values : {gaussian(300'000, 21), laplace(300'000, 23, {100.f, -80.f})}) {
    const RangeObserver observer = observed(with(CalibrationMethod::entropy, true), values, 10000);
    const double reference = reference_entropy_threshold(values, 2048, 128);
    const auto abs_values = magnitudes(values);
    const double bin = *std::max_element(abs_values.begin(), abs_values.end()) / 2048;
    MESSAGE("entropy threshold ", observer.range().max, " reference ", reference, " (bin ", bin,
            ")");
    // The observer's 2048 bins are re-spread from its streaming histogram: a few bins of slack.
    CHECK(std::abs(observer.range().max - reference) <= 4 * bin);
  }
}

TEST_CASE("entropy keeps (nearly) the full range of a uniform distribution") {
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> values(1'000'000);
  for (float& x : values) x = dist(rng);
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  const Range symmetric = observed(with(CalibrationMethod::entropy, true), values, 65536).range();
  const Range asymmetric = observed(with(CalibrationMethod::entropy), values, 65536).range();
  MESSAGE("uniform: symmetric [", symmetric.min, ", ", symmetric.max, "], asymmetric [",
          asymmetric.min, ", ", asymmetric.max, "]");
  const float largest = std::max(-*lo, *hi);
  CHECK(symmetric.max >= 0.99f * largest);
  CHECK(symmetric.min == -symmetric.max);
  // Asymmetric: the |x| threshold cut to the observed extremes.
  CHECK(asymmetric.min >= *lo);
  CHECK(asymmetric.max <= *hi);
  CHECK(asymmetric.max - asymmetric.min >= 0.99f * (*hi - *lo));

  // One-signed data (a ReLU output): the range starts at the minimum, not at -t.
  for (float& x : values) x = std::abs(x);
  const Range relu = observed(with(CalibrationMethod::entropy), values, 65536).range();
  CHECK(relu.min == *std::min_element(values.begin(), values.end()));
  CHECK(relu.max >= 0.99f * *std::max_element(values.begin(), values.end()));
}

// A ReLU output: most values exactly zero. They quantize exactly whatever the threshold, so
// the threshold must not depend on how many there are (before bin 0 was neutralised, a
// 60 % spike at zero pulled it to the narrowest candidate, 1/16 of the range, and the zoo
// MobileNetV2 lost every top-1 agreement under entropy calibration).
TEST_CASE("entropy: the zeros of a ReLU output do not move the threshold") {
  std::mt19937 rng(29);
  std::normal_distribution<float> normal;
  std::vector<float> positive(200'000);
  for (float& x : positive) x = std::abs(normal(rng));
  std::vector<float> with_zeros = positive;
  with_zeros.resize(500'000, 0.f);  // 60 % zeros
  std::shuffle(with_zeros.begin(), with_zeros.end(), rng);
  const Range dense = observed(with(CalibrationMethod::entropy), positive, 10000).range();
  const Range sparse = observed(with(CalibrationMethod::entropy), with_zeros, 10000).range();
  const float largest = *std::max_element(positive.begin(), positive.end());
  MESSAGE("relu entropy: without zeros [", dense.min, ", ", dense.max, "], with 60 % zeros [",
          sparse.min, ", ", sparse.max, "], max ", largest);
  CHECK(sparse.min == 0.f);
  CHECK(std::abs(sparse.max - dense.max) <= 4 * largest / 2048);
  // A half-normal's 8-bit threshold sits in its tail (about 4 sigma here), far above the
  // 1/16 of the range the spike used to force.
  CHECK(sparse.max >= 3.f);
}

}  // namespace
}  // namespace bitplan::executor_calibration_observer_test
