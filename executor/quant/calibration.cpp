#include "executor/quant/calibration.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/hash.hpp"
#include "core/parallel.hpp"

namespace bitplan {
namespace {

using Range = RangeObserver::Range;

// The streaming histogram stores this many bins per searched bin: mse and entropy re-spread
// it over `bins` bins, each then made of at least two stored ones (the data always fills
// more than half of the stored bins), so re-spreading blurs little.
constexpr int kStoredPerSearchedBin = 4;
// mse searches bins^2 / 2 clipping ranges and entropy up to bins^2 / 4 (candidate, level)
// pairs: 16384 bins keeps either under a second (measured on one core: 0.14 s for mse,
// 0.6 s for entropy at 14 bits, its worst case; 2 ms each at the default 2048 bins).
constexpr int kMaxBins = 16384;
constexpr int kMinTargetBits = 2;  // a symmetric grid needs a level above zero
constexpr int kMaxTargetBits = 16;
// Bumped whenever a change here alters computed ranges, so cached ranges are not reused.
constexpr int kAlgorithmVersion = 1;
constexpr std::uint64_t kMaxCacheBytes = std::uint64_t{64} << 20;
// Slices smaller than this run on the caller: scheduling and per-slice histograms would cost
// more than the parallel scan saves.
constexpr std::int64_t kSliceGrain = std::int64_t{1} << 16;

constexpr float kFloatMax = std::numeric_limits<float>::max();
constexpr float kInf = std::numeric_limits<float>::infinity();
// Float spacing at 2^k is 2^(k - 23); the smallest positive float is 2^-149.
constexpr int kFloatMantissaBits = std::numeric_limits<float>::digits - 1;
constexpr int kFloatMinExponent =
    std::numeric_limits<float>::min_exponent - std::numeric_limits<float>::digits;

// NaN compares false and |Inf| exceeds the largest float: one comparison, vectorisable.
bool is_finite(float v) {
  return std::abs(v) <= kFloatMax;
}

// ---------------------------------------------------------------------------------------
// Batch extremes: one vectorised pass.

struct Extremes {
  float min = kInf, max = -kInf, min_abs = kInf;  // over finite values
  std::int64_t nonfinite = 0;

  void merge(const Extremes& other) {
    min = std::min(min, other.min);
    max = std::max(max, other.max);
    min_abs = std::min(min_abs, other.min_abs);
    nonfinite += other.nonfinite;
  }
};

// kLanes independent accumulators: a single running min is a serial dependency chain the
// compiler may not reorder without -ffast-math, while lane-wise `v < m ? v : m` maps onto
// one vminps per 8 lanes. Non-finite values become neutral elements instead of branches.
Extremes scan(std::span<const float> x) {
  constexpr std::size_t kLanes = 16;
  float lo[kLanes], hi[kLanes], lo_abs[kLanes];
  std::int64_t bad[kLanes];
  std::fill_n(lo, kLanes, kInf);
  std::fill_n(hi, kLanes, -kInf);
  std::fill_n(lo_abs, kLanes, kInf);
  std::fill_n(bad, kLanes, 0);
  const std::size_t whole = x.size() / kLanes * kLanes;
  for (std::size_t i = 0; i < whole; i += kLanes) {
    for (std::size_t l = 0; l < kLanes; ++l) {
      const float v = x[i + l];
      const float a = std::abs(v);
      const bool finite = a <= kFloatMax;
      const float v_lo = finite ? v : kInf, v_hi = finite ? v : -kInf, a_lo = finite ? a : kInf;
      lo[l] = v_lo < lo[l] ? v_lo : lo[l];
      hi[l] = v_hi > hi[l] ? v_hi : hi[l];
      lo_abs[l] = a_lo < lo_abs[l] ? a_lo : lo_abs[l];
      bad[l] += !finite;
    }
  }
  Extremes out;
  for (std::size_t l = 0; l < kLanes; ++l) out.merge({lo[l], hi[l], lo_abs[l], bad[l]});
  for (std::size_t i = whole; i < x.size(); ++i) {
    const float v = x[i];
    if (is_finite(v))
      out.merge({v, v, std::abs(v), 0});
    else
      ++out.nonfinite;
  }
  return out;
}

std::int64_t slice_count(std::size_t values) {
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(values) / kSliceGrain, 1,
                                  num_threads());
}

// Runs fn(slice, part) over `slices` contiguous parts of `values` on the TBB pool.
template <typename Fn>
void for_each_slice(std::span<const float> values, std::int64_t slices, const Fn& fn) {
  const auto n = static_cast<std::int64_t>(values.size());
  parallel_for(slices, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t s = begin; s < end; ++s) {
      const std::int64_t from = n * s / slices, to = n * (s + 1) / slices;
      fn(s, values.subspan(static_cast<std::size_t>(from), static_cast<std::size_t>(to - from)));
    }
  });
}

Extremes extremes(std::span<const float> values) {
  const std::int64_t slices = slice_count(values.size());
  if (slices == 1) return scan(values);
  std::vector<Extremes> parts(static_cast<std::size_t>(slices));
  for_each_slice(values, slices, [&](std::int64_t s, std::span<const float> part) {
    parts[static_cast<std::size_t>(s)] = scan(part);
  });
  Extremes out;
  for (const Extremes& part : parts) out.merge(part);
  return out;
}

// ---------------------------------------------------------------------------------------
// The dyadic grid: bin j = [j w, (j + 1) w), w = 2^e.

// floor(v / 2^e), exact: v is a float and 2^-e a power of two, so the product in double is
// exact, and grid_exponent keeps |v / 2^e| <= 2^24.
std::int64_t grid_index(double v, double inverse_width) {
  return static_cast<std::int64_t>(std::floor(v * inverse_width));
}

std::int64_t span_bins(double lo, double hi, int exponent) {
  const double inverse_width = std::ldexp(1.0, -exponent);
  return grid_index(hi, inverse_width) - grid_index(lo, inverse_width) + 1;
}

// The smallest e for which [lo, hi] lies in at most `capacity` consecutive bins, but no finer
// than float spacing at max |x| (finer bins could not separate more values).
// Resolution: span(e) = floor(hi / w) - floor(lo / w) + 1 is below R / w + 2 and above
// R / w, with R = hi - lo. The search starts at e0 = floor(log2(R / capacity)), where
// R / w >= capacity so span(e0) > capacity: every smaller e fails too, and stepping up from e0
// finds the smallest e that fits. That e failed at e - 1, so with w' = w / 2
//   capacity < span(e - 1) < R / w' + 2   =>   w = 2 w' < 2 R / (capacity - 2).
int grid_exponent(double lo, double hi, std::int64_t capacity) {
  const double largest = std::max(std::abs(lo), std::abs(hi));
  int e = largest > 0 ? std::max(std::ilogb(largest) - kFloatMantissaBits, kFloatMinExponent)
                      : kFloatMinExponent;
  if (hi > lo) e = std::max(e, std::ilogb((hi - lo) / static_cast<double>(capacity)));
  while (span_bins(lo, hi, e) > capacity) ++e;
  return e;
}

// ---------------------------------------------------------------------------------------
// Searches over a histogram h of `bins` equal bins, in units of one bin: bin k holds h[k]
// values spread uniformly over [k, k + 1].
//
// Clipping to [a, b] (bin edges) moves every value x > b to b and every x < a to a. For a
// bin k >= b, with x uniform over [k, k + 1]:
//   E[(x - b)^2] = (k + 1/2 - b)^2 + 1/12          (squared mean offset + variance)
// so above[b] = sum_{k >= b} h[k] ((k + 1/2 - b)^2 + 1/12). Lowering b by one adds 1 to
// every offset d = k + 1/2 - b: (d + 1)^2 = d^2 + 2 d + 1, giving the recurrences
//   above[b] = above[b+1] + 2 offset[b+1] + count[b+1] + h[b] (1/4 + 1/12)
//   offset[b] = offset[b+1] + count[b+1] + h[b] / 2,   count[b] = count[b+1] + h[b]
// with offset[b] = sum_{k >= b} h[k] (k + 1/2 - b): sums of positive terms, no cancellation.
// below[a] (values under a) is the mirror image.
struct ClippingErrors {
  std::vector<double> below, above;  // indexed by edge 0..bins
  std::vector<double> cumulative;    // values below edge k
};

ClippingErrors clipping_errors(const std::vector<double>& h) {
  const std::size_t bins = h.size();
  ClippingErrors out{std::vector<double>(bins + 1, 0.0), std::vector<double>(bins + 1, 0.0),
                     std::vector<double>(bins + 1, 0.0)};
  double offset = 0, count = 0;
  for (std::size_t b = bins; b-- > 0;) {
    out.above[b] = out.above[b + 1] + 2 * offset + count + h[b] / 3;
    offset += count + h[b] / 2;
    count += h[b];
  }
  offset = 0;
  count = 0;
  for (std::size_t a = 0; a < bins; ++a) {
    out.below[a + 1] = out.below[a] + 2 * offset + count + h[a] / 3;
    offset += count + h[a] / 2;
    count += h[a];
    out.cumulative[a + 1] = count;
  }
  return out;
}

// Rounding: a value kept inside the range lands uniformly within half a step of its grid
// point, an error of variance step^2 / 12. Total expected squared error (times the count):
//   E(a, b) = below[a] + above[b] + (cumulative[b] - cumulative[a]) step(a, b)^2 / 12
// An asymmetric n-bit grid has 2^n - 1 steps over [a, b]. Returns the best (a, b).
std::pair<std::size_t, std::size_t> mse_asymmetric(const std::vector<double>& h, int bits) {
  const ClippingErrors e = clipping_errors(h);
  const double steps = std::ldexp(1.0, bits) - 1;
  const double rounding = 1 / (12 * steps * steps);
  std::pair<std::size_t, std::size_t> best{0, h.size()};
  double best_error = kInf;
  for (std::size_t a = 0; a < h.size(); ++a) {
    for (std::size_t b = a + 1; b <= h.size(); ++b) {
      const double width = static_cast<double>(b - a);
      const double error =
          e.below[a] + e.above[b] + (e.cumulative[b] - e.cumulative[a]) * width * width * rounding;
      if (error < best_error) {
        best_error = error;
        best = {a, b};
      }
    }
  }
  return best;
}

// h is a histogram of |x| over [0, max |x|]: a symmetric n-bit grid [-t, t] has steps of
// t / (2^(n-1) - 1) (levels -(2^(n-1) - 1) .. 2^(n-1) - 1), and only values above t clip.
// Returns the best edge t.
std::size_t mse_symmetric(const std::vector<double>& h, int bits) {
  const ClippingErrors e = clipping_errors(h);
  const double steps = std::ldexp(1.0, bits - 1) - 1;
  const double rounding = 1 / (12 * steps * steps);
  std::size_t best = h.size();
  double best_error = kInf;
  for (std::size_t t = 1; t <= h.size(); ++t) {
    const double width = static_cast<double>(t);
    const double error = e.above[t] + e.cumulative[t] * width * width * rounding;
    if (error < best_error) {
      best_error = error;
      best = t;
    }
  }
  return best;
}

double x_log_x(double x) {
  return x > 0 ? x * std::log(x) : 0.0;
}

// TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC 2017) on a
// histogram h of |x| over [0, max |x|]: for each candidate i = levels .. bins of kept bins,
//   P = h[0 .. i), with the clipped values h[i ..] added to its last bin (clipping moves them
//       there): the distribution the quantized tensor should have;
//   Q = h[0 .. i) merged into `levels` chunks of i / levels bins (the last takes the
//       remainder) — what `levels` quantization levels can tell apart — each chunk's count
//       spread evenly over its bins where P is non-zero;
// and the threshold is the i with the least KL(P || Q) = sum_k P_k ln(P_k / Q_k).
//
// Direct evaluation costs O(i) per candidate; it drops to O(levels) because Q is constant on
// the non-zero bins of a chunk. With N values in all, o = N - S clipped, S kept (sum of
// h[0 .. i)), p the counts of P (p = h except p[i-1] = h[i-1] + o), chunk j holding S_j of h,
// M_j of p over nz_j non-zero bins of p:
//   P_k = p_k / N,   Q_k = S_j / (nz_j S) on those bins (sum_j S_j = S normalises Q), so
//   KL = (1/N) sum_k p_k ln p_k - ln N - sum_j (M_j / N) ln(S_j / (nz_j S))
// where sum_k p_k ln p_k is a prefix sum of h ln h plus the last bin's term. A chunk with
// M_j > 0 but S_j = 0 (only the clipped values landed in it) makes Q zero where P is not:
// KL is infinite and the candidate is skipped (MXNet smooths P and Q instead, which makes
// such a candidate's KL large but finite). Candidates run up to i = bins, which clips
// nothing and is always finite (the slides' loop stops at bins - 1, always clipping a bin).
// Returns the best i; its threshold is the edge i (the top of the last kept bin), where
// the slides' (i + 0.5) bin widths would put it half a bin above the values P kept.
std::size_t entropy_bins(const std::vector<double>& h, std::size_t levels) {
  const std::size_t bins = h.size();
  std::vector<double> cumulative(bins + 1, 0.0), cumulative_log(bins + 1, 0.0);
  std::vector<std::size_t> nonzero(bins + 1, 0);
  for (std::size_t k = 0; k < bins; ++k) {
    cumulative[k + 1] = cumulative[k] + h[k];
    cumulative_log[k + 1] = cumulative_log[k] + x_log_x(h[k]);
    nonzero[k + 1] = nonzero[k] + (h[k] > 0);
  }
  const double total = cumulative[bins];
  std::size_t best = bins;
  double best_divergence = kInf;
  for (std::size_t i = levels; i <= bins; ++i) {
    const double kept = cumulative[i];
    const double clipped = total - kept;
    if (kept <= 0) continue;
    const double last = h[i - 1] + clipped;
    double divergence = (cumulative_log[i - 1] + x_log_x(last)) / total - std::log(total);
    const std::size_t chunk = i / levels;
    for (std::size_t j = 0; j < levels; ++j) {
      const std::size_t from = j * chunk, to = j + 1 == levels ? i : from + chunk;
      const double s = cumulative[to] - cumulative[from];
      double m = s;
      std::size_t nz = nonzero[to] - nonzero[from];
      if (to == i) {
        m += clipped;
        nz += h[i - 1] <= 0 && last > 0;
      }
      if (m <= 0) continue;
      if (s <= 0) {
        divergence = kInf;
        break;
      }
      divergence -= m / total * std::log(s / (static_cast<double>(nz) * kept));
    }
    if (divergence < best_divergence) {
      best_divergence = divergence;
      best = i;
    }
  }
  return best;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// RangeObserver::Histogram

void RangeObserver::Histogram::cover(double new_lo, double new_hi) {
  const bool empty = lo > hi;
  const double lo2 = empty ? new_lo : std::min(lo, new_lo);
  const double hi2 = empty ? new_hi : std::max(hi, new_hi);
  const auto capacity = static_cast<std::int64_t>(counts.size());
  const int e = std::max(empty ? kFloatMinExponent : exponent, grid_exponent(lo2, hi2, capacity));
  const std::int64_t start = grid_index(lo2, std::ldexp(1.0, -e));
  if (!empty && (e != exponent || start != first)) {
    // Bin j of width 2^exponent lies inside bin floor(j / 2^k) of width 2^(exponent + k):
    // an arithmetic shift (floor division for negative j too). |j| <= 2^24, so shifts past
    // 62 all give 0 or -1 like the exact one.
    const int shift = std::min(e - exponent, 62);
    std::vector<std::int64_t> merged(counts.size(), 0);
    for (std::size_t s = 0; s < counts.size(); ++s)
      if (counts[s] != 0)
        merged[static_cast<std::size_t>(((first + static_cast<std::int64_t>(s)) >> shift) -
                                        start)] += counts[s];
    counts.swap(merged);
  }
  exponent = e;
  first = start;
  lo = lo2;
  hi = hi2;
}

void RangeObserver::Histogram::add(std::span<const float> values) {
  const double inverse_width = std::ldexp(1.0, -exponent);
  const auto bin = [&](std::span<const float> part, std::int64_t* out) {
    for (const float v : part) {
      if (!is_finite(v)) continue;
      ++out[grid_index(magnitude ? std::abs(v) : v, inverse_width) - first];
    }
  };
  const std::int64_t slices = slice_count(values.size());
  if (slices == 1) {
    bin(values, counts.data());
    return;
  }
  const std::size_t capacity = counts.size();
  std::vector<std::int64_t> partial(static_cast<std::size_t>(slices) * capacity, 0);
  for_each_slice(values, slices, [&](std::int64_t s, std::span<const float> part) {
    bin(part, partial.data() + static_cast<std::size_t>(s) * capacity);
  });
  for (std::size_t s = 0; s < static_cast<std::size_t>(slices); ++s)
    for (std::size_t k = 0; k < capacity; ++k) counts[k] += partial[s * capacity + k];
}

double RangeObserver::Histogram::quantile(double q) const {
  std::int64_t total = 0;
  for (const std::int64_t c : counts) total += c;
  const double rank = q * static_cast<double>(total);
  const double width = std::ldexp(1.0, exponent);
  double below = 0;
  for (std::size_t s = 0; s < counts.size(); ++s) {
    const auto c = static_cast<double>(counts[s]);
    if (c == 0 || below + c < rank) {
      below += c;
      continue;
    }
    // The values of this bin lie in its part inside [lo, hi]; interpolate linearly there.
    const auto j = static_cast<double>(first + static_cast<std::int64_t>(s));
    const double from = std::max(lo, j * width), to = std::min(hi, (j + 1) * width);
    return from + (to - from) * std::clamp((rank - below) / c, 0.0, 1.0);
  }
  return hi;  // not reached: the last non-empty bin ends at rank = total >= q total
}

std::vector<double> RangeObserver::Histogram::resample(double from, int bins) const {
  std::vector<double> out(static_cast<std::size_t>(bins), 0.0);
  const double width = (hi - from) / bins;
  const double stored_width = std::ldexp(1.0, exponent);
  const auto last = static_cast<double>(bins - 1);
  for (std::size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    const auto c = static_cast<double>(counts[s]);
    const auto j = static_cast<double>(first + static_cast<std::int64_t>(s));
    // The stored bin's values, in units of the output bins.
    const double u0 = (std::max(lo, j * stored_width) - from) / width;
    const double u1 = (std::min(hi, (j + 1) * stored_width) - from) / width;
    const double k0 = std::clamp(std::floor(u0), 0.0, last);
    if (!(u1 > u0)) {  // all at one point (lo or hi on the bin's edge)
      out[static_cast<std::size_t>(k0)] += c;
      continue;
    }
    const double k1 = std::clamp(std::floor(u1), 0.0, last);
    for (double k = k0; k <= k1; ++k) {
      const double overlap = std::min(u1, k + 1) - std::max(u0, k);
      if (overlap > 0) out[static_cast<std::size_t>(k)] += c * overlap / (u1 - u0);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// RangeObserver

std::string_view calibration_method_name(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::minmax:
      return "minmax";
    case CalibrationMethod::percentile:
      return "percentile";
    case CalibrationMethod::mse:
      return "mse";
    case CalibrationMethod::entropy:
      return "entropy";
  }
  BITPLAN_ASSERT(false);
}

RangeObserver::RangeObserver(CalibrationOptions options) : options_(options) {
  if (!(options_.percentile >= 50 && options_.percentile <= 100))
    fail_input("calibrate with percentile '{}': must be in [50, 100]", options_.percentile);
  if (options_.bins < 1 || options_.bins > kMaxBins)
    fail_input("calibrate with bins '{}': must be in [1, {}]", options_.bins, kMaxBins);
  if (options_.target_bits < kMinTargetBits || options_.target_bits > kMaxTargetBits)
    fail_input("calibrate with target_bits '{}': must be in [{}, {}]", options_.target_bits,
               kMinTargetBits, kMaxTargetBits);
  // One-signed data on an asymmetric grid gets all 2^bits levels (range() below).
  const int levels = 1 << options_.target_bits;
  if (options_.method == CalibrationMethod::entropy && options_.bins < levels)
    fail_input(
        "calibrate with entropy at {} bits: bins '{}': must be at least the {} quantized "
        "levels of |x|",
        options_.target_bits, options_.bins, levels);
  if (options_.method == CalibrationMethod::minmax) return;
  histogram_.magnitude = options_.symmetric || options_.method == CalibrationMethod::entropy;
  histogram_.counts.assign(static_cast<std::size_t>(options_.bins) * kStoredPerSearchedBin, 0);
}

void RangeObserver::observe(std::span<const float> values) {
  const Extremes batch = extremes(values);
  nonfinite_ += batch.nonfinite;
  const std::int64_t finite = static_cast<std::int64_t>(values.size()) - batch.nonfinite;
  if (finite == 0) return;
  min_ = count_ == 0 ? batch.min : std::min(min_, batch.min);
  max_ = count_ == 0 ? batch.max : std::max(max_, batch.max);
  min_abs_ = count_ == 0 ? batch.min_abs : std::min(min_abs_, batch.min_abs);
  count_ += finite;
  if (options_.method == CalibrationMethod::minmax) return;
  if (histogram_.magnitude)
    histogram_.cover(batch.min_abs, std::max(-batch.min, batch.max));
  else
    histogram_.cover(batch.min, batch.max);
  histogram_.add(values);
}

RangeObserver::Range RangeObserver::range() const {
  if (count_ == 0) {
    if (nonfinite_ == 0)
      fail_input("calibrate range: no values observed: need at least one finite value");
    fail_input(
        "calibrate range: all {} observed values are NaN or Inf: need at least one finite "
        "value",
        nonfinite_);
  }
  if (min_ == max_) return {min_, max_};
  const auto symmetric = [](double t) {
    return Range{-static_cast<float>(t), static_cast<float>(t)};
  };
  const float largest = std::max(-min_, max_);
  switch (options_.method) {
    case CalibrationMethod::minmax:
      return options_.symmetric ? symmetric(largest) : Range{min_, max_};
    case CalibrationMethod::percentile: {
      const double q = options_.percentile / 100;
      if (options_.symmetric) return symmetric(histogram_.quantile(q));
      return {static_cast<float>(histogram_.quantile(1 - q)),
              static_cast<float>(histogram_.quantile(q))};
    }
    case CalibrationMethod::mse: {
      if (options_.symmetric) {
        const std::size_t t =
            mse_symmetric(histogram_.resample(0, options_.bins), options_.target_bits);
        return symmetric(static_cast<double>(largest) * static_cast<double>(t) / options_.bins);
      }
      const auto [a, b] =
          mse_asymmetric(histogram_.resample(min_, options_.bins), options_.target_bits);
      const double width = (static_cast<double>(max_) - min_) / options_.bins;
      const auto edge = [&](std::size_t k) {
        return k == static_cast<std::size_t>(options_.bins)
                   ? max_
                   : static_cast<float>(min_ + width * static_cast<double>(k));
      };
      return {edge(a), edge(b)};
    }
    case CalibrationMethod::entropy: {
      // As NVIDIA's reference (pytorch-quantization's _compute_amax_entropy):
      //  * |x| of one-signed data (a ReLU output) on an asymmetric grid spans all 2^bits
      //    levels of [0, t]; anything else spans 2^(bits-1) per sign;
      //  * bin 0 takes the count of bin 1. It holds the exact zeros of a ReLU output (half
      //    or more of the values), which every candidate represents exactly, so they carry
      //    nothing about where to clip; left in, their spike dominates P, and merging it
      //    into Q's first chunk costs most at the widest thresholds - the search then picks
      //    the narrowest candidate it has (1/16 of the range at 8 bits), which cost the zoo
      //    MobileNetV2 every top-1 agreement.
      const bool one_signed = !options_.symmetric && min_ >= 0;
      const std::size_t levels = std::size_t{1} << (options_.target_bits - (one_signed ? 0 : 1));
      std::vector<double> h = histogram_.resample(0, options_.bins);
      if (h.size() > 1) h[0] = h[1];
      const std::size_t i = entropy_bins(h, levels);
      const float t = i == static_cast<std::size_t>(options_.bins)
                          ? largest
                          : static_cast<float>(static_cast<double>(largest) *
                                               static_cast<double>(i) / options_.bins);
      // The threshold is on |x|: a symmetric quantizer uses [-t, t]; an asymmetric one
      // keeps only the part of it the values reach (a ReLU output gets [0, t]).
      return options_.symmetric ? Range{-t, t} : Range{std::max(min_, -t), std::min(max_, t)};
    }
  }
  BITPLAN_ASSERT(false);
}

// ---------------------------------------------------------------------------------------
// The cache

namespace {
constexpr std::string_view kCacheFormat = "bitplan-calibration";
constexpr int kCacheVersion = 1;

void check_range(const Range& range, std::string_view action, std::string_view name) {
  if (!is_finite(range.min) || !is_finite(range.max) || !(range.min <= range.max))
    fail_input("{} range of '{}': [{}, {}]: must be finite with min <= max", action, name,
               range.min, range.max);
}
}  // namespace

std::string serialize_calibration_ranges(const CalibrationRanges& ranges) {
  nlohmann::ordered_json entries = nlohmann::ordered_json::object();
  for (const auto& [name, range] : ranges) {
    check_range(range, "serialize calibration", name);
    // A float converts to double exactly, and the JSON writer prints doubles so that they
    // parse back to the same double (shortest round-trip form): the float survives bit for bit.
    entries[name] = {{"min", static_cast<double>(range.min)},
                     {"max", static_cast<double>(range.max)}};
  }
  const nlohmann::ordered_json document = {
      {"format", kCacheFormat}, {"version", kCacheVersion}, {"ranges", std::move(entries)}};
  try {
    return document.dump(2) + "\n";
  } catch (const nlohmann::json::type_error& e) {  // a name that is not UTF-8
    fail_input("serialize calibration ranges: {}: tensor names must be valid UTF-8", e.what());
  }
}

CalibrationRanges parse_calibration_ranges(std::string_view text, std::string_view source) {
  nlohmann::json document;
  try {
    document = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail_input("parse calibration cache '{}': {}: must be JSON", source, e.what());
  }
  const auto format = document.find("format");
  if (format == document.end() || !format->is_string() ||
      format->get<std::string>() != kCacheFormat)
    fail_input("parse calibration cache '{}': no \"format\": \"{}\": not a calibration cache",
               source, kCacheFormat);
  const auto version = document.find("version");
  if (version == document.end() || !version->is_number_integer() || *version != kCacheVersion)
    fail_input("parse calibration cache '{}': version {}: must be {}", source,
               version == document.end() ? "missing" : version->dump(), kCacheVersion);
  const auto entries = document.find("ranges");
  if (entries == document.end() || !entries->is_object())
    fail_input("parse calibration cache '{}': \"ranges\": must be an object of tensor names",
               source);
  CalibrationRanges ranges;
  for (const auto& [name, entry] : entries->items()) {
    const auto min = entry.find("min"), max = entry.find("max");
    if (!entry.is_object() || entry.size() != 2 || min == entry.end() || max == entry.end() ||
        !min->is_number() || !max->is_number())
      fail_input(
          "parse calibration cache '{}': range of '{}': {}: must be {{\"min\": number, "
          "\"max\": number}}",
          source, name, entry.dump());
    const Range range{static_cast<float>(min->get<double>()),
                      static_cast<float>(max->get<double>())};
    check_range(range, fmt::format("parse calibration cache '{}':", source), name);
    ranges.emplace(name, range);
  }
  return ranges;
}

void write_calibration_cache(const std::filesystem::path& path, const CalibrationRanges& ranges) {
  write_file_atomic(path, serialize_calibration_ranges(ranges));
}

CalibrationRanges read_calibration_cache(const std::filesystem::path& path) {
  return parse_calibration_ranges(read_file(path, kMaxCacheBytes, "calibration cache"),
                                  path.string());
}

std::string calibration_cache_key(std::string_view model_hash, std::string_view dataset_selection,
                                  const CalibrationOptions& options) {
  // Each field is length-prefixed, so no two different inputs describe the same text.
  std::string description =
      fmt::format("calibration v{} model {}:{} selection {}:{} {}", kAlgorithmVersion,
                  model_hash.size(), model_hash, dataset_selection.size(), dataset_selection,
                  calibration_method_name(options.method));
  description += fmt::format(" symmetric={}", options.symmetric);
  switch (options.method) {
    case CalibrationMethod::minmax:
      break;
    case CalibrationMethod::percentile:
      // {} prints the shortest text that reads back as the same double.
      description += fmt::format(" percentile={} bins={}", options.percentile, options.bins);
      break;
    case CalibrationMethod::mse:
      description += fmt::format(" bins={} bits={}", options.bins, options.target_bits);
      break;
    case CalibrationMethod::entropy:
      // v2: the zero bin and one-signed levels of range(); v1 ranges are not reused.
      description += fmt::format(" bins={} bits={} v2", options.bins, options.target_bits);
      break;
  }
  return fmt::format("{}-{}", calibration_method_name(options.method), fnv1a64_hex(description));
}

}  // namespace bitplan
