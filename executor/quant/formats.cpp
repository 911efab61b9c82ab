// The format table and the reference rounding functions. The references favour being
// obviously right over being fast: they work in double with frexp/ldexp straight from the
// definition of each format. The fast loops in quantizer.cpp use bit manipulation instead
// and are tested against these bit for bit.
#include "executor/quant/formats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "core/error.hpp"

namespace bitplan {
namespace {

constexpr FormatTraits plain(FormatId id, std::string_view name, std::string_view summary) {
  return {.id = id,
          .name = name,
          .kind = FormatKind::none,
          .bits = 32,
          .pack_bits = 32,
          .pack_elements = 1,
          .is_signed = true,
          .qmin = 0,
          .qmax = 0,
          .exponent_bits = 8,
          .mantissa_bits = 23,
          .min_exponent = -126,
          .overflow = Overflow::not_floating,
          .scale_bits = 0,
          .block_size = 0,
          .weights_only = false,
          .summary = summary};
}

// Signed codes span [-2^(b-1), 2^(b-1) - 1] (two's complement), unsigned [0, 2^b - 1].
constexpr FormatTraits integer(FormatId id, std::string_view name, int bits, bool is_signed,
                               std::string_view summary) {
  const double levels = double(std::int64_t{1} << bits);
  return {.id = id,
          .name = name,
          .kind = FormatKind::integer,
          .bits = bits,
          .pack_bits = bits,
          .pack_elements = 1,
          .is_signed = is_signed,
          .qmin = is_signed ? -levels / 2 : 0,
          .qmax = is_signed ? levels / 2 - 1 : levels - 1,
          .exponent_bits = 0,
          .mantissa_bits = 0,
          .min_exponent = 0,
          .overflow = Overflow::not_floating,
          .scale_bits = 32,
          .block_size = 0,
          .weights_only = false,
          .summary = summary};
}

struct FloatLayout {
  int bits, exponent_bits, mantissa_bits, min_exponent;
  double max_finite;
  Overflow overflow;
};

constexpr FormatTraits floating(FormatId id, std::string_view name, FloatLayout f, int scale_bits,
                                std::int64_t block_size, std::string_view summary) {
  return {.id = id,
          .name = name,
          .kind = FormatKind::floating,
          .bits = f.bits,
          .pack_bits = f.bits,
          .pack_elements = 1,
          .is_signed = true,
          .qmin = -f.max_finite,
          .qmax = f.max_finite,
          .exponent_bits = f.exponent_bits,
          .mantissa_bits = f.mantissa_bits,
          .min_exponent = f.min_exponent,
          .overflow = f.overflow,
          .scale_bits = scale_bits,
          .block_size = block_size,
          .weights_only = block_size > 0,
          .summary = summary};
}

constexpr FormatTraits ternary(std::string_view summary) {
  return {.id = FormatId::ternary,
          .name = "ternary",
          .kind = FormatKind::ternary,
          .bits = 2,
          .pack_bits = 8,
          .pack_elements = 5,
          .is_signed = true,
          .qmin = -1,
          .qmax = 1,
          .exponent_bits = 0,
          .mantissa_bits = 0,
          .min_exponent = 0,
          .overflow = Overflow::not_floating,
          .scale_bits = 32,
          .block_size = 0,
          .weights_only = true,
          .summary = summary};
}

constexpr FormatTraits codebook(FormatId id, std::string_view name, int bits,
                                std::string_view summary) {
  return {.id = id,
          .name = name,
          .kind = FormatKind::codebook,
          .bits = bits,
          .pack_bits = bits,
          .pack_elements = 1,
          .is_signed = true,
          .qmin = 0,
          .qmax = 0,
          .exponent_bits = 0,
          .mantissa_bits = 0,
          .min_exponent = 0,
          .overflow = Overflow::not_floating,
          .scale_bits = 0,
          .block_size = 0,
          .weights_only = true,
          .summary = summary};
}

// A sign bit and bits-1 magnitude bits: one magnitude code is zero, the others are 2^0 down
// to 2^-(2^(bits-1) - 2).
constexpr FormatTraits pow2(FormatId id, std::string_view name, int bits,
                            std::string_view summary) {
  return {.id = id,
          .name = name,
          .kind = FormatKind::pow2,
          .bits = bits,
          .pack_bits = bits,
          .pack_elements = 1,
          .is_signed = true,
          .qmin = -1,
          .qmax = 1,
          .exponent_bits = 0,
          .mantissa_bits = 0,
          .min_exponent = -((1 << (bits - 1)) - 2),
          .overflow = Overflow::not_floating,
          .scale_bits = 32,
          .block_size = 0,
          .weights_only = true,
          .summary = summary};
}

// Largest finite values: fp16 (2 - 2^-10)·2^15; bf16 (2 - 2^-7)·2^127; E4M3 1.75·2^8 (its
// all-ones pattern is NaN, so 1.875·2^8 is not a number); E5M2 1.75·2^15; E2M1 1.5·2^2.
constexpr FloatLayout kFp16{16, 5, 10, -14, (2 - 0x1p-10) * 0x1p15, Overflow::infinity};
constexpr FloatLayout kBf16{16, 8, 7, -126, (2 - 0x1p-7) * 0x1p127, Overflow::infinity};
constexpr FloatLayout kE4M3{8, 4, 3, -6, 1.75 * 0x1p8, Overflow::saturate};
constexpr FloatLayout kE5M2{8, 5, 2, -14, 1.75 * 0x1p15, Overflow::saturate};
constexpr FloatLayout kE2M1{4, 2, 1, 0, 1.5 * 0x1p2, Overflow::saturate};

// Row i describes FormatId i (checked below).
constexpr std::array<FormatTraits, kFormatCount> kFormats = {
    plain(FormatId::fp32, "fp32", "float32: not quantized"),
    integer(FormatId::int2, "int2", 2, true, "2-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int3, "int3", 3, true, "3-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int4, "int4", 4, true, "4-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int5, "int5", 5, true, "5-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int6, "int6", 6, true, "6-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int8, "int8", 8, true, "8-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::int16, "int16", 16, true, "16-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::uint2, "uint2", 2, false, "2-bit unsigned integer grid with zero point"),
    integer(FormatId::uint3, "uint3", 3, false, "3-bit unsigned integer grid with zero point"),
    integer(FormatId::uint4, "uint4", 4, false, "4-bit unsigned integer grid with zero point"),
    integer(FormatId::uint5, "uint5", 5, false, "5-bit unsigned integer grid with zero point"),
    integer(FormatId::uint6, "uint6", 6, false, "6-bit unsigned integer grid with zero point"),
    integer(FormatId::uint8, "uint8", 8, false, "8-bit unsigned integer grid with zero point"),
    integer(FormatId::uint16, "uint16", 16, false, "16-bit unsigned integer grid with zero point"),
    floating(FormatId::fp16, "fp16", kFp16, 0, 0, "IEEE half (max 65504), no scale"),
    floating(FormatId::bf16, "bf16", kBf16, 0, 0,
             "bfloat16 (fp32 range, 8-bit significand), no scale"),
    floating(FormatId::fp8_e4m3, "fp8_e4m3", kE4M3, 32, 0,
             "OCP FP8 E4M3 (max 448, no Inf), fp32 scale amax/448 per slice"),
    floating(FormatId::fp8_e5m2, "fp8_e5m2", kE5M2, 32, 0,
             "OCP FP8 E5M2 (max 57344), fp32 scale amax/57344 per slice"),
    floating(FormatId::fp4_e2m1, "fp4_e2m1", kE2M1, 8, 32,
             "OCP MXFP4: E2M1 values ±{0,0.5,1,1.5,2,3,4,6}, E8M0 scale per 32 elements"),
    ternary("{-α, 0, +α} (1.58 bits, 5 per byte), α per slice by the TWN rule"),
    codebook(FormatId::kmeans2, "kmeans2", 2, "4-entry k-means codebook per slice, 2-bit indices"),
    codebook(FormatId::kmeans3, "kmeans3", 3, "8-entry k-means codebook per slice, 3-bit indices"),
    codebook(FormatId::kmeans4, "kmeans4", 4, "16-entry k-means codebook per slice, 4-bit indices"),
    pow2(FormatId::pow2_3, "pow2_3", 3, "0 and ±scale·2^-k for k = 0..2, scale = max|w| per slice"),
    pow2(FormatId::pow2_4, "pow2_4", 4, "0 and ±scale·2^-k for k = 0..6, scale = max|w| per slice"),
    integer(FormatId::int7, "int7", 7, true, "7-bit signed integer grid, fp32 scale per slice"),
    integer(FormatId::uint7, "uint7", 7, false, "7-bit unsigned integer grid with zero point"),
};

constexpr bool rows_match_ids() {
  for (std::size_t i = 0; i < kFormats.size(); ++i)
    if (static_cast<std::size_t>(kFormats[i].id) != i) return false;
  return true;
}
static_assert(rows_match_ids(), "kFormats row i must describe FormatId i");

}  // namespace

float FormatTraits::quantize(float x, float scale, float zero_point) const {
  BITPLAN_ASSERT(kind == FormatKind::integer || kind == FormatKind::ternary);
  return quantize_to_grid(x, scale, zero_point, float(qmin), float(qmax));
}

float FormatTraits::dequantize(float q, float scale, float zero_point) const {
  BITPLAN_ASSERT(kind == FormatKind::integer || kind == FormatKind::ternary);
  return dequantize_from_grid(q, scale, zero_point);
}

float FormatTraits::round_to_format(float x) const {
  BITPLAN_ASSERT(kind == FormatKind::floating);
  if (std::isnan(x)) return x;
  const double a = std::fabs(double(x));
  double r = a;
  if (std::isfinite(a)) {
    // a = m·2^e with m in [½, 1), so a lies in the binade [2^(e-1), 2^e). The format keeps
    // mantissa_bits bits after the leading one, so its spacing there is
    // 2^(e - 1 - mantissa_bits); below the smallest normal the spacing stays that of the
    // lowest normal binade (gradual underflow). a / spacing < 2^(mantissa_bits + 1) and
    // nearbyint rounds it half to even, all exact in double; a value rounding up to the
    // next power of two lands on that binade's first value, as it should.
    int e = 0;
    std::frexp(a, &e);
    const int binade = std::max(e - 1, min_exponent);
    const double spacing = std::ldexp(1.0, binade - mantissa_bits);
    r = std::nearbyint(a / spacing) * spacing;
  }
  if (r > qmax) r = overflow == Overflow::saturate ? qmax : INFINITY;
  return std::copysign(float(r), x);
}

float FormatTraits::round_to_pow2_level(float x) const {
  BITPLAN_ASSERT(kind == FormatKind::pow2);
  if (std::isnan(x)) return x;
  const double a = std::fabs(double(x));
  const double smallest = std::ldexp(1.0, min_exponent);
  double r = 1.0;
  if (a < smallest) {
    // Between 0 and the smallest level the midpoint is smallest/2.
    r = a >= smallest / 2 ? smallest : 0.0;
  } else if (a < 1.0) {
    // a in [2^(e-1), 2^e): the neighbouring levels are 2^(e-1) and 2^e, with the
    // (linear) midpoint 0.75·2^e.
    int e = 0;
    std::frexp(a, &e);
    r = a >= 0.75 * std::ldexp(1.0, e) ? std::ldexp(1.0, e) : std::ldexp(1.0, e - 1);
  }
  return std::copysign(float(r), x);
}

float round_to_codebook(std::span<const float> sorted_codebook, float x) {
  BITPLAN_ASSERT(!sorted_codebook.empty());
  if (std::isnan(x)) return x;
  std::size_t index = 0;
  for (std::size_t j = 0; j + 1 < sorted_codebook.size(); ++j)
    index += x > codebook_midpoint(sorted_codebook[j], sorted_codebook[j + 1]) ? 1 : 0;
  return sorted_codebook[index];
}

const FormatTraits& format_traits(FormatId id) {
  const auto index = static_cast<std::size_t>(id);
  if (index >= kFormats.size())
    fail_input("looking up number format id {}: unknown; ids 0..{} are defined", index,
               kFormats.size() - 1);
  return kFormats[index];
}

std::span<const FormatTraits> all_formats() {
  return kFormats;
}

std::optional<FormatId> format_from_name(std::string_view name) {
  for (const FormatTraits& f : kFormats)
    if (f.name == name) return f.id;
  return std::nullopt;
}

std::string format_names() {
  std::string names;
  for (const FormatTraits& f : kFormats) {
    if (!names.empty()) names += ", ";
    names += f.name;
  }
  return names;
}

FormatId parse_format(std::string_view name, std::string_view action) {
  if (auto id = format_from_name(name)) return *id;
  fail_input("{}: unknown number format '{}'; valid formats: {}", action, name, format_names());
}

}  // namespace bitplan
