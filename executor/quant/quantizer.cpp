// Specs, parameter fitting and fake quantization. The fast path views a tensor as
// [outer, dim, inner] around the slicing axis and runs contiguous element loops with the
// slice's parameters in registers (or read alongside the data when consecutive elements
// belong to consecutive slices); float formats round on the fp32 bit pattern without
// branches so the loops vectorise. fake_quantize_reference is the element-by-element
// definition both must agree with bit for bit.
#include "executor/quant/quantizer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace bitplan {
namespace {

// Elements per parallel task at least: enough to amortise TBB scheduling.
constexpr std::int64_t kGrain = 16384;

std::int64_t items_per_task(std::int64_t elements_per_item) {
  return std::max<std::int64_t>(1, kGrain / std::max<std::int64_t>(1, elements_per_item));
}

// ---------------------------------------------------------------- specs

// fp32, fp16 and bf16 store plain values: nothing to slice.
bool takes_granularity(const FormatTraits& f) {
  return f.has_scale() || f.kind == FormatKind::codebook;
}

// The granularities a format with parameters accepts, as written in specs.
std::string granularity_choices(const FormatTraits& f) {
  if (f.block_size > 0) return fmt::format("group{}", f.block_size);
  if (f.kind == FormatKind::codebook) return "tensor, channel, channel:<axis>";
  return "tensor, channel, channel:<axis>, group<size>, token";
}

std::string granularity_token(const QuantSpec& spec) {
  switch (spec.granularity) {
    case Granularity::per_tensor:
      return "tensor";
    case Granularity::per_channel:
      return spec.axis == 0 ? std::string("channel") : fmt::format("channel:{}", spec.axis);
    case Granularity::per_group:
      return fmt::format("group{}", spec.group_size);
    case Granularity::per_token:
      return "token";
  }
  return "?";
}

// What is wrong with a spec, if anything (the rule part of an error message).
std::optional<std::string> spec_problem(const QuantSpec& spec) {
  const FormatTraits& f = format_traits(spec.format);
  const std::string token = granularity_token(spec);
  if (!takes_granularity(f) && spec.granularity != Granularity::per_tensor)
    return fmt::format("{} takes no scale, so no granularity ('{}')", f.name, token);
  if (f.block_size > 0 &&
      (spec.granularity != Granularity::per_group || spec.group_size != f.block_size))
    return fmt::format("{} takes only group{} (its MX block), not '{}'", f.name, f.block_size,
                       token);
  if (f.kind == FormatKind::codebook &&
      (spec.granularity == Granularity::per_group || spec.granularity == Granularity::per_token))
    return fmt::format("{} takes {}, not '{}' (a codebook per group outweighs the group)", f.name,
                       granularity_choices(f), token);
  if (spec.granularity == Granularity::per_channel && spec.axis < 0)
    return fmt::format("the channel axis must be >= 0, not {}", spec.axis);
  if (spec.granularity == Granularity::per_group && spec.group_size <= 0)
    return fmt::format("the group size must be positive, not {}", spec.group_size);
  if (!spec.symmetric && f.kind != FormatKind::integer)
    return fmt::format("{} is symmetric by construction; asym applies to integer formats only",
                       f.name);
  return std::nullopt;
}

template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// ---------------------------------------------------------------- slicing

// The tensor as [outer, dim, inner] around the slicing axis (per_tensor: [1, 1, numel]).
// per_token is sliced as per_group with one group spanning the reduction axis, so a Slicing
// never holds per_token; the loops below treat it with per_group only to be exhaustive.
struct Slicing {
  Granularity granularity = Granularity::per_tensor;
  std::int64_t outer = 1, dim = 1, inner = 1;
  std::int64_t group = 1, blocks = 1;  // per_group: block length and blocks along dim

  std::int64_t count() const {
    switch (granularity) {
      case Granularity::per_tensor:
        return 1;
      case Granularity::per_channel:
        return dim;
      case Granularity::per_group:
      case Granularity::per_token:
        return outer * blocks * inner;
    }
    return 1;
  }
  // The slice of the element at row-major `index` (the definition the fast loops follow).
  std::int64_t slice_of(std::int64_t index) const {
    if (granularity == Granularity::per_tensor) return 0;
    const std::int64_t i = index % inner;
    const std::int64_t d = index / inner % dim;
    const std::int64_t o = index / inner / dim;
    if (granularity == Granularity::per_channel) return d;
    return (o * blocks + d / group) * inner + i;
  }
};

Slicing per_tensor_slicing(std::int64_t n) {
  Slicing s;
  s.inner = n;
  return s;
}

Slicing make_slicing(const QuantSpec& spec, const Dims& dims, int reduction_axis,
                     std::string_view action) {
  if (auto problem = spec_problem(spec)) fail_input("{}: {}", action, *problem);
  if (spec.granularity == Granularity::per_tensor) return per_tensor_slicing(product(dims));
  const bool channel = spec.granularity == Granularity::per_channel;
  const int axis = channel ? spec.axis : reduction_axis;  // groups and tokens: the reduction
  if (axis < 0 || axis >= static_cast<int>(dims.size()))
    fail_input("{}: {} axis {} is out of range for a tensor of shape {}", action,
               channel ? "the channel" : "the reduction", axis, to_string(dims));
  Slicing s;
  s.granularity = channel ? Granularity::per_channel : Granularity::per_group;
  s.outer = product(Dims(dims.begin(), dims.begin() + axis));
  s.dim = dims[static_cast<std::size_t>(axis)];
  s.inner = product(Dims(dims.begin() + axis + 1, dims.end()));
  if (!channel) {
    s.group = spec.granularity == Granularity::per_token ? std::max<std::int64_t>(1, s.dim)
                                                         : spec.group_size;
    s.blocks = (s.dim + s.group - 1) / s.group;
  }
  return s;
}

// Copies slice k's values into `values`.
void gather_slice(const Slicing& s, const float* x, std::int64_t k, std::vector<float>& values) {
  values.clear();
  switch (s.granularity) {
    case Granularity::per_tensor:
      values.assign(x, x + s.inner);
      break;
    case Granularity::per_channel:
      for (std::int64_t o = 0; o < s.outer; ++o) {
        const float* row = x + (o * s.dim + k) * s.inner;
        values.insert(values.end(), row, row + s.inner);
      }
      break;
    case Granularity::per_group:
    case Granularity::per_token: {
      const std::int64_t i = k % s.inner;
      const std::int64_t block = k / s.inner % s.blocks;
      const std::int64_t o = k / s.inner / s.blocks;
      const std::int64_t end = std::min(s.dim, (block + 1) * s.group);
      for (std::int64_t d = block * s.group; d < end; ++d)
        values.push_back(x[(o * s.dim + d) * s.inner + i]);
      break;
    }
  }
}

// ---------------------------------------------------------------- parameter choice

float positive_scale(double scale) {
  const auto s = static_cast<float>(scale);
  return s > 0.f && std::isfinite(s) ? s : 1.f;
}

// Smallest and largest finite value; {0, 0} when there is none.
std::pair<float, float> finite_range(std::span<const float> values) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (float v : values)
    if (std::isfinite(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  return lo <= hi ? std::pair{lo, hi} : std::pair{0.f, 0.f};
}

float finite_amax(std::span<const float> values) {
  const auto [lo, hi] = finite_range(values);
  return std::max(-lo, hi);
}

AffineParams grid_params(const FormatTraits& f, bool symmetric, float lo, float hi) {
  const double low = std::min<double>(lo, 0.0), high = std::max<double>(hi, 0.0);
  AffineParams p;
  if (symmetric) {
    // Levels k·scale, k in [-2^(b-1), 2^(b-1) - 1]: scale = amax / (2^(b-1) - 1) puts ±amax
    // on ±(2^(b-1) - 1); the extra negative code is reached only beyond the range. An
    // unsigned grid holds the same k offset by its zero point 2^(b-1).
    const double half = std::ldexp(1.0, f.bits - 1);
    p.scale = positive_scale(std::max(-low, high) / (half - 1));
    p.zero_point = f.is_signed ? 0.f : static_cast<float>(half);
  } else {
    // See affine_params_from_range in the header for the derivation.
    p.scale = positive_scale((high - low) / (f.qmax - f.qmin));
    p.zero_point =
        static_cast<float>(std::clamp(std::nearbyint(f.qmin - low / p.scale), f.qmin, f.qmax));
  }
  return p;
}

// The parameters of an activation format for the finite range [lo, hi], lo <= hi: what the
// static, dynamic per-tensor and dynamic per-token paths all use, so they compute the same
// bits. fp8 maps the largest magnitude onto the format's max finite; fp16/bf16/fp32 take
// no scale.
AffineParams range_params(const FormatTraits& f, bool symmetric, float lo, float hi) {
  if (f.kind == FormatKind::integer) return grid_params(f, symmetric, lo, hi);
  if (f.has_scale()) return {positive_scale(std::max(-lo, hi) / f.qmax), 0.f};
  return {};
}

// MX: the smallest power of two X with amax / X <= max_element, i.e.
// X = 2^ceil(log2(amax / max_element)), within E8M0's [2^-127, 2^127]. The ratio is
// computed in double, and for max_element = 6 it is exactly a power of two only when it
// truly is one: the floats nearest 3·2^k are 2^-24 (relative) away from it, far beyond
// double's rounding, so the m == ½ test below cannot pick a scale that clips.
float mx_block_scale(float amax, double max_element) {
  if (!(amax > 0.f)) return 1.f;
  int e = 0;
  const double m = std::frexp(double(amax) / max_element, &e);  // ratio = m·2^e, m in [½, 1)
  return std::ldexp(1.f, std::clamp(m == 0.5 ? e - 1 : e, -127, 127));
}

// TWN (Li et al. 2016): Δ = 0.7·mean|w| approximates the error-minimising threshold for
// Gaussian-like weights, and α = mean |w| over |w| > Δ is the error-minimising level for
// that support.
float twn_alpha(std::span<const float> values) {
  double abs_sum = 0;
  std::int64_t finite = 0;
  for (float v : values)
    if (std::isfinite(v)) {
      abs_sum += std::fabs(v);
      ++finite;
    }
  if (finite == 0) return 1.f;
  const double delta = 0.7 * abs_sum / static_cast<double>(finite);
  double big_sum = 0;
  std::int64_t big = 0;
  for (float v : values)
    if (std::isfinite(v) && std::fabs(v) > delta) {
      big_sum += std::fabs(v);
      ++big;
    }
  return positive_scale(big > 0 ? big_sum / static_cast<double>(big) : 0.0);
}

// 1-D k-means. With the values sorted, the midpoint rule (round_to_codebook) makes every
// cluster a contiguous run, found by binary search, and its mean a difference of prefix
// sums: an iteration costs O(entries · log n) after one O(n log n) sort.
void fit_codebook(std::vector<float>& values, int entries, float* codebook) {
  constexpr int kMaxIterations = 64;
  std::erase_if(values, [](float v) { return !std::isfinite(v); });
  if (values.empty()) {
    std::fill(codebook, codebook + entries, 0.f);
    return;
  }
  std::sort(values.begin(), values.end());
  const auto n = static_cast<std::int64_t>(values.size());
  std::vector<double> prefix(values.size() + 1, 0.0);
  for (std::size_t i = 0; i < values.size(); ++i) prefix[i + 1] = prefix[i] + values[i];
  for (int j = 0; j < entries; ++j)  // the quantile (j + ½) / entries
    codebook[j] =
        values[static_cast<std::size_t>(std::min(n - 1, (2 * j + 1) * n / (2 * entries)))];

  std::vector<std::int64_t> bounds(static_cast<std::size_t>(entries) + 1), previous;
  for (int iteration = 0; iteration < kMaxIterations && bounds != previous; ++iteration) {
    previous = bounds;
    // Cluster j holds the values in (m_{j-1}, m_j]: bounds[j] .. bounds[j+1].
    bounds.front() = 0;
    bounds.back() = n;
    for (int j = 0; j + 1 < entries; ++j) {
      const float mid = codebook_midpoint(codebook[j], codebook[j + 1]);
      bounds[static_cast<std::size_t>(j) + 1] =
          std::upper_bound(values.begin(), values.end(), mid) - values.begin();
    }
    for (int j = 0; j < entries; ++j) {
      const std::int64_t lo = bounds[static_cast<std::size_t>(j)];
      const std::int64_t hi = bounds[static_cast<std::size_t>(j) + 1];
      if (hi > lo)
        codebook[j] = static_cast<float>(
            (prefix[static_cast<std::size_t>(hi)] - prefix[static_cast<std::size_t>(lo)]) /
            static_cast<double>(hi - lo));
    }
    // Means of consecutive runs are ordered in exact arithmetic; sorting keeps the order
    // round_to_codebook relies on when rounding (prefix differences, subnormal midpoints)
    // says otherwise.
    std::sort(codebook, codebook + entries);
  }
}

// Fills slice k's entries of `p` from the slice's values.
void fit_slice(const FormatTraits& f, bool symmetric, std::vector<float>& values, std::int64_t k,
               QuantParams& p) {
  const auto at = static_cast<std::size_t>(k);
  switch (f.kind) {
    case FormatKind::integer: {
      const auto [lo, hi] = finite_range(values);
      const AffineParams a = grid_params(f, symmetric, lo, hi);
      p.scale[at] = a.scale;
      p.zero_point[at] = a.zero_point;
      break;
    }
    case FormatKind::floating:
      p.scale[at] = f.block_size > 0 ? mx_block_scale(finite_amax(values), f.qmax)
                                     : positive_scale(finite_amax(values) / f.qmax);
      break;
    case FormatKind::ternary:
      p.scale[at] = twn_alpha(values);
      break;
    case FormatKind::pow2:
      p.scale[at] = positive_scale(finite_amax(values));
      break;
    case FormatKind::codebook:
      fit_codebook(values, f.codebook_size(),
                   p.codebook.data() + k * static_cast<std::int64_t>(f.codebook_size()));
      break;
    case FormatKind::none:
      break;
  }
}

// ---------------------------------------------------------------- parameter checks

void check_params(const FormatTraits& f, const Slicing& s, const QuantParams& p,
                  std::string_view action) {
  const std::int64_t slices = s.count();
  const auto expect = [&](const std::vector<float>& v, std::int64_t n, std::string_view what) {
    if (static_cast<std::int64_t>(v.size()) != n)
      fail_input("{}: {} {} given, the tensor needs {}", action, v.size(), what, n);
  };
  expect(p.scale, f.has_scale() ? slices : 0, "scales");
  expect(p.zero_point, f.kind == FormatKind::integer ? slices : 0, "zero points");
  expect(p.codebook, slices * f.codebook_size(), "codebook entries");
  for (std::size_t k = 0; k < p.scale.size(); ++k)
    if (!(p.scale[k] > 0.f && std::isfinite(p.scale[k])))
      fail_input("{}: scale {} of slice {} is not a positive finite number", action, p.scale[k], k);
  for (std::size_t k = 0; k < p.zero_point.size(); ++k) {
    const float z = p.zero_point[k];
    if (!(z >= f.qmin && z <= f.qmax && z == std::nearbyint(z)))
      fail_input("{}: zero point {} of slice {} is not an integer in [{}, {}]", action, z, k,
                 f.qmin, f.qmax);
  }
  const auto size = static_cast<std::size_t>(f.codebook_size());
  for (std::size_t k = 0; size > 0 && k < p.codebook.size() / size; ++k) {
    const auto first = p.codebook.begin() + static_cast<std::ptrdiff_t>(k * size);
    const auto last = first + static_cast<std::ptrdiff_t>(size);
    if (!std::is_sorted(first, last) ||
        !std::all_of(first, last, [](float c) { return std::isfinite(c); }))
      fail_input("{}: codebook {} is not finite and ascending", action, k);
  }
}

void check_tensors(const Tensor& in, Tensor& out, std::string_view action) {
  if (in.dtype() != DType::f32)
    fail_unsupported("{}: the tensor is {}; quantization takes float32", action,
                     dtype_name(in.dtype()));
  if (out.empty()) out = Tensor(DType::f32, in.dims());
  BITPLAN_ASSERT(out.dtype() == DType::f32 && out.dims() == in.dims());
}

// ---------------------------------------------------------------- fast element functions

constexpr std::uint32_t kSignBit = 0x80000000u;
constexpr std::uint32_t kInfBits = 0x7F800000u;

std::uint32_t bits_of(float x) {
  return std::bit_cast<std::uint32_t>(x);
}

// The element functions below choose with bit masks, not `?:`. Given a branch, GCC sinks
// the float arithmetic of one arm into it, and then (trapping math being the default)
// refuses to if-convert and vectorise the loop; masks keep it straight-line. Magnitudes are
// compared as integers: for non-negative floats the bit patterns order like the values.
std::uint32_t mask_if(bool condition) {
  return 0u - static_cast<std::uint32_t>(condition);
}
std::uint32_t select_bits(std::uint32_t mask, std::uint32_t if_set, std::uint32_t if_clear) {
  return (if_set & mask) | (if_clear & ~mask);
}

// Round to nearest even into a narrower float format on the fp32 bit pattern. Equal to
// FormatTraits::round_to_format bit for bit (tests sweep the fp32 patterns), because both
// round the same real number the same way:
//  * |x| >= the smallest normal: the format keeps the top mantissa_bits of fp32's 23, so
//    adding (half an ulp - 1) plus the lowest kept bit, then clearing the dropped bits,
//    rounds half to even; a carry out of the mantissa correctly moves to the next binade
//    (and out of fp32's range to the Inf pattern);
//  * below it the spacing is fixed at 2^(min_exponent - mantissa_bits), and adding
//    2^(min_exponent - mantissa_bits + 23), whose fp32 ulp is exactly that spacing, makes
//    the hardware's round-half-even addition do the rounding; subtracting it back is exact.
class FloatRounder {
 public:
  explicit FloatRounder(const FormatTraits& f)
      : drop_(static_cast<std::uint32_t>(23 - f.mantissa_bits)),
        round_bias_((1u << (drop_ - 1)) - 1),
        keep_mask_(~0u << drop_),
        min_normal_(bits_of(std::ldexp(1.f, f.min_exponent))),
        max_finite_(bits_of(static_cast<float>(f.qmax))),
        overflow_to_(f.overflow == Overflow::saturate ? max_finite_ : kInfBits),
        magic_(std::ldexp(1.f, f.min_exponent - f.mantissa_bits + 23)) {}

  float operator()(float x) const {
    const std::uint32_t bits = bits_of(x);
    const std::uint32_t sign = bits & kSignBit;
    const std::uint32_t magnitude = bits ^ sign;
    const std::uint32_t normal =
        (magnitude + round_bias_ + ((magnitude >> drop_) & 1u)) & keep_mask_;
    const float a = std::bit_cast<float>(magnitude);
    const std::uint32_t subnormal = bits_of((a + magic_) - magic_);
    std::uint32_t r = select_bits(mask_if(magnitude < min_normal_), subnormal, normal);
    r = select_bits(mask_if(r > max_finite_), overflow_to_, r);
    return std::bit_cast<float>(select_bits(mask_if(magnitude > kInfBits), bits, r | sign));
  }

 private:
  std::uint32_t drop_;        // fp32 mantissa bits the format lacks
  std::uint32_t round_bias_;  // half an ulp of the format, minus one
  std::uint32_t keep_mask_;
  std::uint32_t min_normal_;   // bits of 2^min_exponent
  std::uint32_t max_finite_;   // bits of the largest finite value
  std::uint32_t overflow_to_;  // bits of what overflow gives: max finite or Inf
  float magic_;
};

// pow2 levels on the bit pattern: adding half the mantissa range carries into the exponent
// exactly when the mantissa is >= 1.5, the linear midpoint between 2^e and 2^(e+1) (ties
// up, as the reference); clearing the mantissa leaves the power of two.
class Pow2Rounder {
 public:
  explicit Pow2Rounder(const FormatTraits& f)
      : smallest_(bits_of(std::ldexp(1.f, f.min_exponent))),
        half_smallest_(bits_of(std::ldexp(1.f, f.min_exponent - 1))) {}

  float operator()(float x) const {
    const std::uint32_t bits = bits_of(x);
    const std::uint32_t sign = bits & kSignBit;
    const std::uint32_t magnitude = bits ^ sign;
    const std::uint32_t nearest = (magnitude + 0x00400000u) & kInfBits;
    const std::uint32_t tiny = smallest_ & mask_if(magnitude >= half_smallest_);
    std::uint32_t r = select_bits(mask_if(magnitude < smallest_), tiny, nearest);
    r = select_bits(mask_if(r > kOneBits), kOneBits, r);
    return std::bit_cast<float>(select_bits(mask_if(magnitude > kInfBits), bits, r | sign));
  }

 private:
  static constexpr std::uint32_t kOneBits = 0x3F800000u;  // 1.0f
  std::uint32_t smallest_;       // bits of 2^min_exponent, the smallest level
  std::uint32_t half_smallest_;  // the midpoint between 0 and it
};

// Each quantizer's at(k) returns the element function with slice k's parameters bound.

struct PassThrough {
  auto at(std::int64_t) const {
    return [](float x) { return x; };
  }
};

template <bool kZeroPoint>
struct GridQuant {
  const float* scale;
  const float* zero_point;
  float qmin, qmax;
  auto at(std::int64_t k) const {
    const float s = scale[k];
    const float z = kZeroPoint ? zero_point[k] : 0.f;
    return [s, z, lo = qmin, hi = qmax](float x) {
      return dequantize_from_grid(quantize_to_grid(x, s, z, lo, hi), s, z);
    };
  }
};

template <typename Quant>
constexpr bool kIsGridQuant =
    std::is_same_v<Quant, GridQuant<true>> || std::is_same_v<Quant, GridQuant<false>>;

// The hot loop of simulated integer quantization, one slice's run of n values. The release
// build targets baseline x86-64, where std::nearbyint is a library call per element; compiled
// again for AVX2 it becomes one vroundps per 8 values (same rounding, half to even, so the
// same bits), and the loader picks the clone the CPU can run (GCC/clang target_clones).
// docs/performance.md ("Portable release build") has what it is worth.
[[gnu::target_clones("avx2", "default")]] void fake_quantize_run(const float* x, float* y,
                                                                  std::int64_t n, float scale,
                                                                  float zero_point, float qmin,
                                                                  float qmax) {
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = dequantize_from_grid(quantize_to_grid(x[i], scale, zero_point, qmin, qmax), scale,
                                zero_point);
}

struct ScaledFloatQuant {
  const float* scale;
  FloatRounder round;
  auto at(std::int64_t k) const {
    return [s = scale[k], r = round](float x) { return r(x / s) * s; };
  }
};

struct UnscaledFloatQuant {
  FloatRounder round;
  auto at(std::int64_t) const { return round; }
};

struct Pow2Quant {
  const float* scale;
  Pow2Rounder round;
  auto at(std::int64_t k) const {
    return [s = scale[k], r = round](float x) { return r(x / s) * s; };
  }
};

// Entries and precomputed midpoints (entries - 1 per slice) of every slice.
struct CodebookQuant {
  const float* entries;
  const float* midpoints;
  std::int64_t size;
  auto at(std::int64_t k) const {
    return [c = entries + k * size, m = midpoints + k * (size - 1), n = size - 1](float x) {
      std::int64_t index = 0;
      for (std::int64_t j = 0; j < n; ++j) index += x > m[j] ? 1 : 0;
      return std::isnan(x) ? x : c[index];
    };
  }
};

std::vector<float> codebook_midpoints(const std::vector<float>& codebook, std::int64_t size) {
  std::vector<float> mids;
  for (std::size_t begin = 0; begin < codebook.size(); begin += static_cast<std::size_t>(size))
    for (std::size_t j = begin; j + 1 < begin + static_cast<std::size_t>(size); ++j)
      mids.push_back(codebook_midpoint(codebook[j], codebook[j + 1]));
  return mids;
}

// Calls fn with the fast quantizer of format f over the given parameter arrays.
template <typename Fn>
void with_quantizer(const FormatTraits& f, const float* scale, const float* zero_point,
                    const float* codebook, const float* midpoints, Fn&& fn) {
  switch (f.kind) {
    case FormatKind::none:
      fn(PassThrough{});
      break;
    case FormatKind::integer:
      fn(GridQuant<true>{scale, zero_point, static_cast<float>(f.qmin),
                         static_cast<float>(f.qmax)});
      break;
    case FormatKind::ternary:
      fn(GridQuant<false>{scale, nullptr, static_cast<float>(f.qmin), static_cast<float>(f.qmax)});
      break;
    case FormatKind::floating:
      if (f.has_scale())
        fn(ScaledFloatQuant{scale, FloatRounder(f)});
      else
        fn(UnscaledFloatQuant{FloatRounder(f)});
      break;
    case FormatKind::pow2:
      fn(Pow2Quant{scale, Pow2Rounder(f)});
      break;
    case FormatKind::codebook:
      fn(CodebookQuant{codebook, midpoints, f.codebook_size()});
      break;
  }
}

// Runs the quantizer over the tensor, slice by slice, in parallel.
template <typename Quant>
void apply(const Slicing& s, const Quant& q, const float* x, float* y) {
  // A run of one slice: its parameters are loaded once and the loop vectorises.
  const auto fixed = [&](std::int64_t k, std::int64_t begin, std::int64_t length) {
    if constexpr (kIsGridQuant<Quant>) {
      const float zero_point = q.zero_point ? q.zero_point[k] : 0.f;
      fake_quantize_run(x + begin, y + begin, length, q.scale[k], zero_point, q.qmin, q.qmax);
    } else {
      const auto fn = q.at(k);
      for (std::int64_t i = begin; i < begin + length; ++i) y[i] = fn(x[i]);
    }
  };
  // A run whose elements belong to slices k0, k0 + 1, ...: parameters stream alongside.
  const auto varying = [&](std::int64_t k0, std::int64_t begin, std::int64_t length) {
    for (std::int64_t i = 0; i < length; ++i) y[begin + i] = q.at(k0 + i)(x[begin + i]);
  };
  const std::int64_t rows = s.outer * s.dim;
  switch (s.granularity) {
    case Granularity::per_tensor:
      parallel_for(s.inner, kGrain, [&](std::int64_t b, std::int64_t e) { fixed(0, b, e - b); });
      break;
    case Granularity::per_channel:
      if (s.inner == 1) {  // channel axis last: row o holds channels 0 .. dim-1
        parallel_for(s.outer, items_per_task(s.dim), [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t o = b; o < e; ++o) varying(0, o * s.dim, s.dim);
        });
      } else {
        parallel_for(rows, items_per_task(s.inner), [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) fixed(r % s.dim, r * s.inner, s.inner);
        });
      }
      break;
    case Granularity::per_group:
    case Granularity::per_token:
      if (s.inner == 1) {  // reduction axis last: each block is contiguous, slice = block
        parallel_for(
            s.outer * s.blocks, items_per_task(s.group), [&](std::int64_t b, std::int64_t e) {
              for (std::int64_t r = b; r < e; ++r) {
                const std::int64_t start = r / s.blocks * s.dim + r % s.blocks * s.group;
                const std::int64_t length = std::min(s.group, s.dim - r % s.blocks * s.group);
                fixed(r, start, length);
              }
            });
      } else {  // row (o, d) holds slices (o·blocks + d/group)·inner + i, i = 0 .. inner-1
        parallel_for(rows, items_per_task(s.inner), [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) {
            const std::int64_t o = r / s.dim, d = r % s.dim;
            varying((o * s.blocks + d / s.group) * s.inner, r * s.inner, s.inner);
          }
        });
      }
      break;
  }
}

// One element through the format's reference functions.
float reference_value(const FormatTraits& f, const QuantParams& p, std::int64_t k, float x) {
  const auto at = static_cast<std::size_t>(k);
  switch (f.kind) {
    case FormatKind::none:
      return x;
    case FormatKind::integer:
      return f.dequantize(f.quantize(x, p.scale[at], p.zero_point[at]), p.scale[at],
                          p.zero_point[at]);
    case FormatKind::ternary:
      return f.dequantize(f.quantize(x, p.scale[at], 0.f), p.scale[at], 0.f);
    case FormatKind::floating:
      return f.has_scale() ? f.round_to_format(x / p.scale[at]) * p.scale[at]
                           : f.round_to_format(x);
    case FormatKind::pow2:
      return f.round_to_pow2_level(x / p.scale[at]) * p.scale[at];
    case FormatKind::codebook: {
      const auto size = static_cast<std::size_t>(f.codebook_size());
      return round_to_codebook(std::span<const float>(p.codebook).subspan(at * size, size), x);
    }
  }
  return x;
}

std::string action_for(std::string_view verb, const QuantSpec& spec) {
  return fmt::format("{} with spec '{}'", verb, to_string(spec));
}

}  // namespace

// ---------------------------------------------------------------- public API

std::string to_string(const QuantSpec& spec) {
  const FormatTraits& f = format_traits(spec.format);
  if (!takes_granularity(f)) return std::string(f.name);
  std::string text = fmt::format("{}/{}", f.name, granularity_token(spec));
  if (f.kind == FormatKind::integer) text += spec.symmetric ? "/sym" : "/asym";
  return text;
}

QuantSpec parse_quant_spec(std::string_view text) {
  const std::string action = fmt::format("parsing quantization spec '{}'", text);
  const std::size_t first_slash = text.find('/');
  QuantSpec spec;
  spec.format = parse_format(text.substr(0, first_slash), action);
  const FormatTraits& f = format_traits(spec.format);

  bool have_granularity = false, have_symmetry = false;
  std::string_view rest =
      first_slash == std::string_view::npos ? std::string_view() : text.substr(first_slash);
  while (!rest.empty()) {
    rest.remove_prefix(1);  // the '/'
    const std::string_view part = rest.substr(0, rest.find('/'));
    rest.remove_prefix(part.size());
    if (part == "sym" || part == "asym") {
      if (have_symmetry) fail_input("{}: '{}' repeats the symmetry", action, part);
      have_symmetry = true;
      spec.symmetric = part == "sym";
      continue;
    }
    if (part == "tensor") {
      spec.granularity = Granularity::per_tensor;
    } else if (part == "channel" || part.starts_with("channel:")) {
      spec.granularity = Granularity::per_channel;
      if (part != "channel") {
        const auto axis = parse_number<int>(part.substr(8));
        if (!axis || *axis < 0)
          fail_input("{}: '{}' has a bad axis; write channel:<axis> with an integer axis >= 0",
                     action, part);
        spec.axis = *axis;
      }
    } else if (part == "token") {
      spec.granularity = Granularity::per_token;
    } else if (part.starts_with("group")) {
      spec.granularity = Granularity::per_group;
      const auto size = parse_number<std::int64_t>(part.substr(5));
      if (!size || *size <= 0)
        fail_input(
            "{}: '{}' has a bad group size; write group<size> with a positive integer, "
            "e.g. group128",
            action, part);
      spec.group_size = *size;
    } else {
      fail_input(
          "{}: '{}' is neither a granularity (tensor, channel, channel:<axis>, "
          "group<size>, token) nor a symmetry (sym, asym)",
          action, part);
    }
    if (have_granularity) fail_input("{}: '{}' repeats the granularity", action, part);
    have_granularity = true;
  }

  if (!takes_granularity(f) && (have_granularity || have_symmetry))
    fail_input("{}: {} takes no scale, so the spec is just '{}'", action, f.name, f.name);
  if (takes_granularity(f) && !have_granularity)
    fail_input("{}: {} needs a granularity: {}", action, f.name, granularity_choices(f));
  if (f.kind == FormatKind::integer && !have_symmetry)
    fail_input("{}: {} needs a symmetry: sym or asym", action, f.name);
  if (f.kind != FormatKind::integer && have_symmetry)
    fail_input("{}: {} is symmetric by construction; sym/asym applies to integer formats only",
               action, f.name);
  if (auto problem = spec_problem(spec)) fail_input("{}: {}", action, *problem);
  return spec;
}

void check_spec(const QuantSpec& spec) {
  if (auto problem = spec_problem(spec))
    fail_input("checking quantization spec '{}': {}", to_string(spec), *problem);
}

std::int64_t slice_count(const QuantSpec& spec, const Dims& dims, int reduction_axis) {
  return make_slicing(spec, dims, reduction_axis, action_for("counting slices", spec)).count();
}

std::int64_t slice_index(const QuantSpec& spec, const Dims& dims, int reduction_axis,
                         std::int64_t index) {
  return make_slicing(spec, dims, reduction_axis, action_for("finding a slice", spec))
      .slice_of(index);
}

std::vector<std::int64_t> slice_indices(const QuantSpec& spec, const Dims& dims,
                                        int reduction_axis) {
  const Slicing s = make_slicing(spec, dims, reduction_axis, action_for("finding slices", spec));
  std::vector<std::int64_t> out(static_cast<std::size_t>(product(dims)));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = s.slice_of(static_cast<std::int64_t>(i));
  return out;
}

QuantParams choose_weight_params(const QuantSpec& spec, const Tensor& weights, int reduction_axis) {
  const std::string action = action_for("choosing quantization parameters", spec);
  if (weights.dtype() != DType::f32)
    fail_unsupported("{}: the tensor is {}; quantization takes float32", action,
                     dtype_name(weights.dtype()));
  const FormatTraits& f = format_traits(spec.format);
  const Slicing s = make_slicing(spec, weights.dims(), reduction_axis, action);
  QuantParams p;
  if (!takes_granularity(f)) return p;
  const std::int64_t slices = s.count();
  if (f.has_scale()) p.scale.resize(static_cast<std::size_t>(slices));
  if (f.kind == FormatKind::integer) p.zero_point.resize(static_cast<std::size_t>(slices));
  p.codebook.resize(static_cast<std::size_t>(slices * f.codebook_size()));
  const float* x = weights.data<float>();
  const std::int64_t slice_elements = slices > 0 ? weights.numel() / slices : 0;
  parallel_for(slices, items_per_task(slice_elements), [&](std::int64_t b, std::int64_t e) {
    std::vector<float> values;
    for (std::int64_t k = b; k < e; ++k) {
      gather_slice(s, x, k, values);
      fit_slice(f, spec.symmetric, values, k, p);
    }
  });
  return p;
}

AffineParams affine_params_from_range(FormatId format, bool symmetric, float lo, float hi) {
  const FormatTraits& f = format_traits(format);
  // Dynamic per-tensor ranges call this once per layer per batch: the message is only built
  // when something is wrong.
  auto action = [&] {
    return fmt::format("computing {} parameters for the range [{}, {}]", f.name, lo, hi);
  };
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo <= hi))
    fail_input("{}: the range must be finite with lo <= hi", action());
  if (f.weights_only)
    fail_unsupported(
        "{}: {} is a weight-only format; activations take integer, fp8, fp16, "
        "bf16 or fp32",
        action(), f.name);
  if (!symmetric && f.kind != FormatKind::integer)
    fail_input("{}: {} is symmetric by construction; asym applies to integer formats only",
               action(), f.name);
  return range_params(f, symmetric, lo, hi);
}

void fake_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& in, Tensor& out,
                   int reduction_axis) {
  const std::string action = action_for("fake-quantizing", spec);
  check_tensors(in, out, action);
  const FormatTraits& f = format_traits(spec.format);
  const Slicing s = make_slicing(spec, in.dims(), reduction_axis, action);
  check_params(f, s, params, action);
  const std::vector<float> midpoints = codebook_midpoints(params.codebook, f.codebook_size());
  with_quantizer(f, params.scale.data(), params.zero_point.data(), params.codebook.data(),
                 midpoints.data(),
                 [&](const auto& q) { apply(s, q, in.data<float>(), out.data<float>()); });
}

void fake_quantize_reference(const QuantSpec& spec, const QuantParams& params, const Tensor& in,
                             Tensor& out, int reduction_axis) {
  const std::string action = action_for("fake-quantizing (reference)", spec);
  check_tensors(in, out, action);
  const FormatTraits& f = format_traits(spec.format);
  const Slicing s = make_slicing(spec, in.dims(), reduction_axis, action);
  check_params(f, s, params, action);
  const float* x = in.data<float>();
  float* y = out.data<float>();
  for (std::int64_t index = 0; index < in.numel(); ++index)
    y[index] = reference_value(f, params, s.slice_of(index), x[index]);
}

void fake_quantize_activation_per_tensor(FormatId format, float scale, float zero_point,
                                         const float* in, float* out, std::int64_t n) {
  const FormatTraits& f = format_traits(format);
  // Runs once per layer per batch: the message is only built when something is wrong.
  auto action = [&] {
    return fmt::format("fake-quantizing activations as {} with scale {} and zero point {}", f.name,
                       scale, zero_point);
  };
  if (f.weights_only)
    fail_unsupported(
        "{}: {} is a weight-only format; activations take integer, fp8, fp16, "
        "bf16 or fp32",
        action(), f.name);
  if (f.has_scale() ? !(scale > 0.f && std::isfinite(scale)) : scale != 1.f)
    fail_input("{}: the scale must be {}", action(),
               f.has_scale() ? "positive and finite" : "1 (the format takes no scale)");
  if (f.kind == FormatKind::integer ? !(zero_point >= f.qmin && zero_point <= f.qmax &&
                                        zero_point == std::nearbyint(zero_point))
                                    : zero_point != 0.f)
    fail_input("{}: the zero point must be {}", action(),
               f.kind == FormatKind::integer ? fmt::format("an integer in [{}, {}]", f.qmin, f.qmax)
                                             : std::string("0 (the format has none)"));
  if (f.kind == FormatKind::none) {
    if (in != out) std::copy(in, in + n, out);
    return;
  }
  with_quantizer(f, &scale, &zero_point, nullptr, nullptr,
                 [&](const auto& q) { apply(per_tensor_slicing(n), q, in, out); });
}

void fake_quantize_activation_per_tensor(FormatId format, float scale, float zero_point,
                                         float* data, std::int64_t n) {
  fake_quantize_activation_per_tensor(format, scale, zero_point, data, data, n);
}

void fake_quantize_activation_per_token(FormatId format, bool symmetric, const float* in,
                                        float* out, std::int64_t outer, std::int64_t dim,
                                        std::int64_t inner) {
  const FormatTraits& f = format_traits(format);
  if (!f.has_scale() || f.weights_only || f.block_size > 0)
    fail_unsupported(
        "fake-quantizing activations per token as {}: per-token ranges need a format with one "
        "scale per slice: integer or fp8 (fp16/bf16 take no scale; weight-only and MX formats "
        "fix their own parameters)",
        f.name);
  if (!symmetric && f.kind != FormatKind::integer)
    fail_input(
        "fake-quantizing activations per token as {}: {} is symmetric by construction; asym "
        "applies to integer formats only",
        f.name, f.name);
  BITPLAN_ASSERT(outer >= 0 && dim >= 0 && inner >= 0);
  // Each token t (its values x_t along the reduction axis) has its own grid, from its finite
  // values only (NaN then stays NaN and ±Inf saturate, as on the per-tensor path):
  //   lo_t = min x_t, hi_t = max x_t, both 0 when the token has no finite value;
  //   integer, asym: the range is widened to [l, h] = [min(lo_t, 0), max(hi_t, 0)] so that 0
  //     (padding, ReLU outputs) stays exact; l -> qmin and h -> qmax give
  //     scale_t = (h - l) / (qmax - qmin), zp_t = clamp(round(qmin - l / scale_t), qmin, qmax);
  //   integer, sym: scale_t = max(-l, h) / (2^(b-1) - 1), zp_t = 0 (signed) or 2^(b-1);
  //   fp8: scale_t = max(-l, h) / max finite, no zero point;
  // and x -> (clamp(round(x / scale_t) + zp_t, qmin, qmax) - zp_t) * scale_t. A zero range
  // (a token of zeros, e.g. padding) gives h - l = 0: the scale would be 0 and x / 0 NaN, so
  // positive_scale makes it 1, and a token of zeros stays exactly zero.
  // range_params is affine_params_from_range's arithmetic without its checks (done above),
  // so tokens and a per-tensor range of the same values give the same bits.
  const auto token_params = [&](float lo, float hi) {
    return lo <= hi ? range_params(f, symmetric, lo, hi) : range_params(f, symmetric, 0.f, 0.f);
  };
  if (inner == 1) {  // reduction axis last: token o is the contiguous row o
    parallel_for(outer, items_per_task(dim), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t o = b; o < e; ++o) {
        const float* x = in + o * dim;
        float* y = out + o * dim;
        const AffineParams p = per_token_params(format, symmetric, x, dim);
        with_quantizer(f, &p.scale, &p.zero_point, nullptr, nullptr, [&](const auto& q) {
          const auto fn = q.at(0);
          for (std::int64_t d = 0; d < dim; ++d) y[d] = fn(x[d]);
        });
      }
    });
    return;
  }
  // Tokens (o, i) with the reduction axis in the middle (NCHW: i = h·W + w) are strided by
  // `inner`: a tile of consecutive i walks the axis row by row, so both passes read
  // contiguous runs, and its ranges and parameters fit on the stack.
  constexpr std::int64_t kTile = 64;
  const std::int64_t tiles = (inner + kTile - 1) / kTile;
  parallel_for(outer * tiles, items_per_task(dim * kTile), [&](std::int64_t b, std::int64_t e) {
    float lo[kTile], hi[kTile], scale[kTile], zero_point[kTile];
    for (std::int64_t t = b; t < e; ++t) {
      const std::int64_t i0 = t % tiles * kTile, n = std::min(kTile, inner - i0);
      const std::int64_t begin = t / tiles * dim * inner + i0;
      std::fill_n(lo, n, std::numeric_limits<float>::infinity());
      std::fill_n(hi, n, -std::numeric_limits<float>::infinity());
      for (std::int64_t d = 0; d < dim; ++d) {
        const float* x = in + begin + d * inner;
        for (std::int64_t j = 0; j < n; ++j)
          if (std::isfinite(x[j])) {
            lo[j] = std::min(lo[j], x[j]);
            hi[j] = std::max(hi[j], x[j]);
          }
      }
      for (std::int64_t j = 0; j < n; ++j) {
        const AffineParams p = token_params(lo[j], hi[j]);
        scale[j] = p.scale;
        zero_point[j] = p.zero_point;
      }
      with_quantizer(f, scale, zero_point, nullptr, nullptr, [&](const auto& q) {
        for (std::int64_t d = 0; d < dim; ++d) {
          const float* x = in + begin + d * inner;
          float* y = out + begin + d * inner;
          for (std::int64_t j = 0; j < n; ++j) y[j] = q.at(j)(x[j]);
        }
      });
    }
  });
}

AffineParams per_token_params(FormatId format, bool symmetric, const float* x, std::int64_t n) {
  const auto [lo, hi] = finite_range(std::span(x, static_cast<std::size_t>(n)));  // lo <= hi
  return range_params(format_traits(format), symmetric, lo, hi);
}

std::int64_t storage_bytes(const QuantSpec& spec, const Dims& weight_dims, int reduction_axis) {
  const FormatTraits& f = format_traits(spec.format);
  const Slicing s =
      make_slicing(spec, weight_dims, reduction_axis, action_for("computing the storage", spec));
  const std::int64_t slices = takes_granularity(f) ? s.count() : 0;
  std::int64_t bytes = f.packed_bytes(product(weight_dims));
  bytes += slices * f.scale_bits / 8;
  if (f.kind == FormatKind::integer && !spec.symmetric) bytes += (slices * f.bits + 7) / 8;
  bytes += slices * f.codebook_size() * static_cast<std::int64_t>(sizeof(float));
  return bytes;
}

}  // namespace bitplan
