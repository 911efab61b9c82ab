// Number formats as data: one traits row per format, with a portable reference for its
// rounding. Everything else in the quantized executor (specs, parameter choice, fake
// quantization, size accounting, plan files) reads this table instead of switching on
// format names, so adding a format is adding a row.
//
// Conventions shared by all formats (tests in tests/unit/executor_quant_*.cpp):
//  * rounding is to nearest with ties to even (the default floating-point environment),
//    as in ONNX QuantizeLinear/Cast, so exported QDQ graphs compute what bitplan measured;
//  * NaN stays NaN: it is never turned into a number, so a NaN weight or activation shows
//    up in the evaluation instead of being hidden by quantization;
//  * values beyond a format's range saturate to its largest magnitude (Inf included),
//    except fp16/bf16, which overflow to Inf as IEEE conversion (F16C, CUDA) does.
#pragma once

#include <cmath>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bitplan {

// Stable IDs. Plans, caches and result databases store these numbers: never renumber a
// format, never reuse a retired number; a new format takes the next free value.
enum class FormatId : std::uint8_t {
  fp32 = 0,  // not quantized
  int2 = 1,
  int3 = 2,
  int4 = 3,
  int5 = 4,
  int6 = 5,
  int8 = 6,
  int16 = 7,
  uint2 = 8,
  uint3 = 9,
  uint4 = 10,
  uint5 = 11,
  uint6 = 12,
  uint8 = 13,
  uint16 = 14,
  fp16 = 15,
  bf16 = 16,
  fp8_e4m3 = 17,
  fp8_e5m2 = 18,
  fp4_e2m1 = 19,
  ternary = 20,
  kmeans2 = 21,
  kmeans3 = 22,
  kmeans4 = 23,
  pow2_3 = 24,
  pow2_4 = 25,
  // 7-bit grids: int8 kernels on x86 CPUs without VNNI multiply u8 x s8 pairs with
  // vpmaddubsw, whose 16-bit sums saturate for 8-bit weights; 7-bit weights never do, and
  // run bit-exactly there (executor/ops/onednn_int8.cpp).
  int7 = 26,
  uint7 = 27,
};
inline constexpr std::size_t kFormatCount = 28;

// Pins every ID: a change here breaks stored plans, so it must fail to compile.
constexpr bool format_ids_pinned() {
  constexpr FormatId order[] = {
      FormatId::fp32,    FormatId::int2,     FormatId::int3,     FormatId::int4,
      FormatId::int5,    FormatId::int6,     FormatId::int8,     FormatId::int16,
      FormatId::uint2,   FormatId::uint3,    FormatId::uint4,    FormatId::uint5,
      FormatId::uint6,   FormatId::uint8,    FormatId::uint16,   FormatId::fp16,
      FormatId::bf16,    FormatId::fp8_e4m3, FormatId::fp8_e5m2, FormatId::fp4_e2m1,
      FormatId::ternary, FormatId::kmeans2,  FormatId::kmeans3,  FormatId::kmeans4,
      FormatId::pow2_3,  FormatId::pow2_4,   FormatId::int7,     FormatId::uint7,
  };
  for (std::size_t i = 0; i < std::size(order); ++i)
    if (static_cast<std::size_t>(order[i]) != i) return false;
  return std::size(order) == kFormatCount;
}
static_assert(format_ids_pinned(),
              "format IDs are stored in plans and caches: never renumber them");

enum class FormatKind : std::uint8_t {
  none,      // fp32: values pass through
  integer,   // uniform grid: q = round(x / scale) + zero_point, clamped to [qmin, qmax]
  floating,  // a narrower float format (fp16, bf16, fp8, fp4), optionally scaled
  ternary,   // {-α, 0, +α}: the integer grid [-1, 1] with scale α
  codebook,  // 2^bits arbitrary levels per slice (k-means), no scale
  pow2,      // 0 and ±scale·2^-k: shifts instead of multiplies
};

// What a floating format does with magnitudes beyond its largest finite value.
enum class Overflow : std::uint8_t {
  not_floating,
  saturate,  // clamp to ±max finite, Inf included (ONNX saturate=1, OCP "satfinite")
  infinity,  // IEEE: round to ±Inf
};

struct FormatTraits {
  FormatId id;
  std::string_view name;  // the spelling in specs, plans and the CLI
  FormatKind kind;
  int bits;  // width of one element's code
  // Dense storage: `pack_elements` elements take `pack_bits` bits. Plain b-bit codes are
  // {b, 1}; ternary packs 5 trits in a byte (3^5 = 243 <= 256), i.e. 1.6 bits, the densest
  // byte-aligned packing of log2(3) = 1.58 bits.
  int pack_bits;
  int pack_elements;
  bool is_signed;
  // integer/ternary: the code range. floating: ∓ max finite. pow2: -1, +1 (levels are
  // fractions of the scale). codebook: 0, 0 (the levels are per-slice data).
  double qmin;
  double qmax;
  // floating: stored exponent and mantissa bits, and the exponent of the smallest normal
  // (1 - bias); subnormals share that binade's spacing 2^(min_exponent - mantissa_bits).
  // pow2: min_exponent is the exponent of the smallest nonzero level (-(2^(bits-1) - 2):
  // a sign bit, one code for zero, the rest for 2^0 .. 2^min_exponent).
  int exponent_bits;
  int mantissa_bits;
  int min_exponent;
  Overflow overflow;
  // Bits of each stored scale: 32 (an fp32 scale per slice), 8 (an MX E8M0 power of two
  // per block) or 0 (no scale: fp32, fp16, bf16, and codebooks, whose levels are stored).
  int scale_bits;
  // MX formats: elements along the reduction axis that share one scale; 0 otherwise.
  std::int64_t block_size;
  // Formats whose parameters come from the values themselves (codebook levels, α, MX
  // block scales) and so cannot be fixed ahead for activations by calibration.
  bool weights_only;
  std::string_view summary;  // one line for help texts

  // Bits per element in dense storage, scales and codebooks excluded.
  constexpr double storage_bits() const { return double(pack_bits) / pack_elements; }
  // Bytes for `elements` densely packed codes, rounded up once for the whole tensor.
  constexpr std::int64_t packed_bytes(std::int64_t elements) const {
    return (elements * pack_bits + 8 * pack_elements - 1) / (8 * pack_elements);
  }
  constexpr bool has_scale() const { return scale_bits > 0; }
  constexpr int codebook_size() const { return kind == FormatKind::codebook ? 1 << bits : 0; }

  // Reference functions (the definition that fake quantization reproduces bit for bit).
  // integer, ternary: the code of x, as a float (NaN stays NaN; a real integer kernel must
  // check for NaN before storing codes).
  float quantize(float x, float scale, float zero_point) const;
  // integer, ternary: the value a code stands for.
  float dequantize(float q, float scale, float zero_point) const;
  // floating: x rounded to the nearest value of this format (ties to even, subnormals
  // included), with this format's overflow rule.
  float round_to_format(float x) const;
  // pow2: x (in units of the scale) rounded to the nearest of 0, ±2^0 .. ±2^min_exponent;
  // ties go to the larger magnitude; |x| > 1 saturates to ±1.
  float round_to_pow2_level(float x) const;
};

// The integer grid, shared by the reference and the fast fake-quantization loops so both
// do the same float operations. As ONNX QuantizeLinear:
//   q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)
// x / scale is one correctly rounded division (not x * (1 / scale)), so a tie x = (k + ½)·s
// is seen as a tie. NaN passes the clamp (both comparisons are false); ±Inf saturate.
inline float quantize_to_grid(float x, float scale, float zero_point, float qmin, float qmax) {
  const float q = std::nearbyint(x / scale) + zero_point;
  return q < qmin ? qmin : (q > qmax ? qmax : q);
}
// (q - zero_point) is exact: both are integers below 2^24.
inline float dequantize_from_grid(float q, float scale, float zero_point) {
  return (q - zero_point) * scale;
}

// Codebook reference: the entry nearest to x in an ascending codebook. Decision points
// are the midpoints m_j = ½c_j + ½c_{j+1} (halving first cannot overflow); x goes to
// entry #{j : x > m_j}, so a tie goes to the lower entry. NaN stays NaN, ±Inf go to the
// end entries.
float round_to_codebook(std::span<const float> sorted_codebook, float x);
inline float codebook_midpoint(float lo, float hi) {
  return 0.5f * lo + 0.5f * hi;
}

// Lookup. format_traits fails (invalid input) on a number outside the table, which can
// only come from a damaged plan or cache.
const FormatTraits& format_traits(FormatId id);
std::span<const FormatTraits> all_formats();
std::optional<FormatId> format_from_name(std::string_view name);
// "fp32, int2, ..., pow2_4": for error messages and help.
std::string format_names();
// format_from_name that fails with "<action>: unknown number format '<name>'; valid
// formats: ...".
FormatId parse_format(std::string_view name, std::string_view action);

}  // namespace bitplan
