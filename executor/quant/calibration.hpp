// Activation range calibration for static quantization. One RangeObserver per activation
// tensor is fed that tensor's values batch after batch while the fp32 model runs over the
// calibration samples, then asked for the [min, max] range its quantizer will use. The
// ranges of a run are cached on disk under a key naming the model, the samples and the
// options, so a later search over the same model skips the calibration pass.
//
//   RangeObserver observer({.method = CalibrationMethod::percentile, .percentile = 99.99});
//   for (batch...) observer.observe(activation_values);
//   const RangeObserver::Range r = observer.range();
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitplan {

enum class CalibrationMethod {
  minmax,      // the smallest and largest finite values
  percentile,  // the (100 - p)-th and p-th percentiles (p-th of |x| when symmetric)
  mse,         // the clipping range with the least expected quantization error
  entropy,     // TensorRT's KL-divergence threshold t on |x|: [-t, t], or when asymmetric
               // the part of it the values reach (a ReLU output gets [0, t])
};

// "minmax", "percentile", "mse", "entropy".
std::string_view calibration_method_name(CalibrationMethod method);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::minmax;
  double percentile = 99.99;  // percentile: in [50, 100]; 100 gives the observed extremes
  // mse and entropy search `bins` bins spanning the observed values (|x| when symmetric or
  // for entropy); the streaming histogram under them has 4 x bins, see RangeObserver.
  int bins = 2048;
  int target_bits = 8;     // mse and entropy: the integer width the range is chosen for
  bool symmetric = false;  // ranges [-t, t] for a symmetric quantizer, from |x|
};

// Streaming range observer for one tensor. Not thread-safe: one tensor's batches are
// observed one after another (each `observe` may itself use every core).
//
// Histogram methods keep a histogram of x (of |x| when symmetric or for entropy) whose
// range grows with the data without ever reading old values again. Bin j covers
// [j w, (j + 1) w) with w = 2^e, and 4 x bins consecutive bins are stored. When a batch
// falls outside them, e grows until the whole observed range fits: one bin of width 2^e
// is exactly two bins of width 2^(e-1), so re-binning only adds counts together and the
// histogram is identical to the one a single pass over all values would have built —
// batch order and range growth cost no accuracy. e is always the smallest exponent that
// fits the range R = max - min into the stored bins, so (see grid_exponent in the .cpp)
//   w < 2 R / (4 bins - 2)        (about R / 4095 for the default 2048 bins)
// unless w is already as fine as float spacing at max |x|. A percentile is read by linear
// interpolation inside its bin, whose counts are exact: it is off from the exact sample
// percentile by less than 2 w (the estimate and the samples ranked around it lie in the
// same bin or its neighbour), and far less in practice: on 10^6 Gaussian values, at most
// 3e-4 off for percentiles 90 to 99.99 against a bound of 5e-3.
class RangeObserver {
 public:
  struct Range {
    float min, max;
  };

  // Fails with ErrorKind::invalid_input when an option is out of its range.
  explicit RangeObserver(CalibrationOptions options);

  // Takes one batch of values; NaN and Inf are counted and skipped.
  void observe(std::span<const float> values);
  // The calibrated range: finite, min <= max; both ends equal for a constant tensor (the
  // caller handles the zero width). It need not contain 0: the caller decides. Fails
  // (invalid_input) when no finite value was observed, saying how many were NaN or Inf.
  Range range() const;

  std::int64_t count() const { return count_; }          // finite values observed
  std::int64_t nonfinite() const { return nonfinite_; }  // NaN / Inf observed and skipped
  const CalibrationOptions& options() const { return options_; }

 private:
  // The streaming histogram described above, of x or of |x|.
  struct Histogram {
    bool magnitude = false;  // bins |x| instead of x
    int exponent = 0;        // bin width 2^exponent
    std::int64_t first = 0;  // grid index j of counts[0]
    // The smallest and largest binned value; lo > hi while empty.
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    std::vector<std::int64_t> counts;  // 4 x bins

    // Regrids so that [lo, hi] fits, merging bins when it must grow.
    void cover(double new_lo, double new_hi);
    void add(std::span<const float> values);
    // Value below which a fraction q of the binned values lie.
    double quantile(double q) const;
    // Counts re-spread over `bins` equal bins spanning [from, hi], each stored bin's
    // count spread uniformly over the part of it inside [lo, hi].
    std::vector<double> resample(double from, int bins) const;
  };

  CalibrationOptions options_;
  std::int64_t count_ = 0;
  std::int64_t nonfinite_ = 0;
  float min_ = 0, max_ = 0;  // valid once count_ > 0
  float min_abs_ = 0;        // smallest |x|, valid once count_ > 0
  Histogram histogram_;      // unused by minmax
};

using CalibrationRanges = std::map<std::string, RangeObserver::Range>;

// The on-disk calibration cache: JSON
//   {"format": "bitplan-calibration", "version": 1,
//    "ranges": {"<tensor name>": {"min": -1.25, "max": 3.5}, ...}}
// Each float is written as its exact double value (up to 17 significant digits), so parse
// returns bit-identical ranges. Fails (invalid_input) on a non-finite or inverted range,
// or a name that is not valid UTF-8 (JSON strings must be).
std::string serialize_calibration_ranges(const CalibrationRanges& ranges);
// Parses what serialize wrote; `source` (a file name) only goes into error messages.
// Fails (invalid_input) on anything else, naming the entry at fault.
CalibrationRanges parse_calibration_ranges(std::string_view text, std::string_view source);
// serialize + write_file_atomic, and read_file (at most 64 MiB) + parse.
void write_calibration_cache(const std::filesystem::path& path, const CalibrationRanges& ranges);
CalibrationRanges read_calibration_cache(const std::filesystem::path& path);

// A filename-safe key "<method>-<16 hex digits>" for the ranges computed from a model
// (`model_hash`, e.g. fnv1a64_hex of its bytes) over a dataset selection (any text that
// names the samples exactly) with `options`. Only the options the method reads enter the
// key (minmax ignores bins, percentile and target_bits), so changing an unused option still
// finds the cache; a version number of the calibration algorithm is part of it too.
std::string calibration_cache_key(std::string_view model_hash, std::string_view dataset_selection,
                                  const CalibrationOptions& options);

}  // namespace bitplan
