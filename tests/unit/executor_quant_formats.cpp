// The format table and its reference functions (executor/quant/formats.hpp): stable IDs,
// the integer grid's error bound per bit width, float formats checked against an
// independent decoder of every bit pattern, pow2 levels and codebook rounding.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "executor/quant/formats.hpp"

namespace executor_quant_formats_test {

using namespace bitplan;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

const FormatTraits& traits(std::string_view name) {
  return format_traits(*format_from_name(name));
}

std::vector<const FormatTraits*> formats_of(FormatKind kind) {
  std::vector<const FormatTraits*> out;
  for (const FormatTraits& f : all_formats())
    if (f.kind == kind) out.push_back(&f);
  return out;
}

// Value of a float bit pattern, written from the format definitions (not from bitplan's
// code): sign, exponent with bias 2^(e-1) - 1, mantissa; exponent 0 is subnormal.
// E5M2 (and fp16) keep IEEE's Inf/NaN in the top exponent; E4M3 has only NaN there, at
// mantissa all ones; E2M1 has no special values.
double decode(std::uint32_t bits, int exponent_bits, int mantissa_bits, std::string_view name) {
  const std::uint32_t top = (1u << exponent_bits) - 1;
  const std::uint32_t mantissa_mask = (1u << mantissa_bits) - 1;
  const bool negative = (bits >> (exponent_bits + mantissa_bits)) & 1u;
  const std::uint32_t exponent = (bits >> mantissa_bits) & top;
  const std::uint32_t mantissa = bits & mantissa_mask;
  const int bias = (1 << (exponent_bits - 1)) - 1;
  double value = 0;
  if ((name == "fp8_e5m2" || name == "fp16") && exponent == top)
    value = mantissa ? std::numeric_limits<double>::quiet_NaN() : INFINITY;
  else if (name == "fp8_e4m3" && exponent == top && mantissa == mantissa_mask)
    value = std::numeric_limits<double>::quiet_NaN();
  else if (exponent == 0)
    value = std::ldexp(double(mantissa), 1 - bias - mantissa_bits);
  else
    value = std::ldexp(1.0 + std::ldexp(double(mantissa), -mantissa_bits), int(exponent) - bias);
  return negative ? -value : value;
}

}  // namespace

TEST_CASE("format IDs and names are stable: plans and caches store them") {
  struct Row {
    int id;
    std::string_view name;
    int bits;
    FormatKind kind;
  };
  const std::vector<Row> expected = {
      {0, "fp32", 32, FormatKind::none},         {1, "int2", 2, FormatKind::integer},
      {2, "int3", 3, FormatKind::integer},       {3, "int4", 4, FormatKind::integer},
      {4, "int5", 5, FormatKind::integer},       {5, "int6", 6, FormatKind::integer},
      {6, "int8", 8, FormatKind::integer},       {7, "int16", 16, FormatKind::integer},
      {8, "uint2", 2, FormatKind::integer},      {9, "uint3", 3, FormatKind::integer},
      {10, "uint4", 4, FormatKind::integer},     {11, "uint5", 5, FormatKind::integer},
      {12, "uint6", 6, FormatKind::integer},     {13, "uint8", 8, FormatKind::integer},
      {14, "uint16", 16, FormatKind::integer},   {15, "fp16", 16, FormatKind::floating},
      {16, "bf16", 16, FormatKind::floating},    {17, "fp8_e4m3", 8, FormatKind::floating},
      {18, "fp8_e5m2", 8, FormatKind::floating}, {19, "fp4_e2m1", 4, FormatKind::floating},
      {20, "ternary", 2, FormatKind::ternary},   {21, "kmeans2", 2, FormatKind::codebook},
      {22, "kmeans3", 3, FormatKind::codebook},  {23, "kmeans4", 4, FormatKind::codebook},
      {24, "pow2_3", 3, FormatKind::pow2},       {25, "pow2_4", 4, FormatKind::pow2},
      {26, "int7", 7, FormatKind::integer},      {27, "uint7", 7, FormatKind::integer},
  };
  REQUIRE(all_formats().size() == expected.size());
  for (const Row& row : expected) {
    CAPTURE(row.name);
    const FormatTraits& f = all_formats()[static_cast<std::size_t>(row.id)];
    CHECK(static_cast<int>(f.id) == row.id);
    CHECK(f.name == row.name);
    CHECK(f.bits == row.bits);
    CHECK(f.kind == row.kind);
    CHECK(format_from_name(row.name) == f.id);
    CHECK(&format_traits(f.id) == &f);
  }
  CHECK_FALSE(format_from_name("int9").has_value());
  CHECK_FALSE(format_from_name("INT4").has_value());
}

TEST_CASE("unknown names and IDs fail with the valid names listed") {
  try {
    parse_format("int9", "reading plan 'p.yaml'");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
    CHECK(std::string(e.what()) ==
          "reading plan 'p.yaml': unknown number format 'int9'; valid formats: " + format_names());
  }
  CHECK(format_names().starts_with("fp32, int2, int3, int4, int5, int6, int8, int16, uint2"));
  CHECK(format_names().ends_with("kmeans4, pow2_3, pow2_4, int7, uint7"));
  CHECK_THROWS_AS(format_traits(static_cast<FormatId>(kFormatCount)), Error);
}

TEST_CASE("traits: grids, float layouts, storage and weight-only formats") {
  CHECK(traits("int4").qmin == -8);
  CHECK(traits("int4").qmax == 7);
  CHECK(traits("int16").qmin == -32768);
  CHECK(traits("uint8").qmin == 0);
  CHECK(traits("uint8").qmax == 255);
  CHECK(traits("uint16").qmax == 65535);
  CHECK(traits("ternary").qmin == -1);
  CHECK(traits("ternary").qmax == 1);
  CHECK(traits("fp8_e4m3").qmax == 448);
  CHECK(traits("fp8_e5m2").qmax == 57344);
  CHECK(traits("fp16").qmax == 65504);
  CHECK(float(traits("bf16").qmax) == std::bit_cast<float>(0x7F7F0000u));
  CHECK(traits("fp4_e2m1").qmax == 6);
  CHECK(traits("fp4_e2m1").block_size == 32);
  CHECK(traits("fp4_e2m1").scale_bits == 8);
  CHECK(traits("pow2_3").min_exponent == -2);
  CHECK(traits("pow2_4").min_exponent == -6);
  CHECK(traits("kmeans3").codebook_size() == 8);

  CHECK(traits("int4").storage_bits() == 4);
  CHECK(traits("ternary").storage_bits() == doctest::Approx(1.6));
  CHECK(traits("ternary").packed_bytes(10) == 2);
  CHECK(traits("ternary").packed_bytes(11) == 3);
  CHECK(traits("int3").packed_bytes(3) == 2);  // 9 bits
  CHECK(traits("fp16").packed_bytes(3) == 6);

  for (const FormatTraits& f : all_formats()) {
    CAPTURE(f.name);
    const bool weights_only = f.kind == FormatKind::ternary || f.kind == FormatKind::codebook ||
                              f.kind == FormatKind::pow2 || f.block_size > 0;
    CHECK(f.weights_only == weights_only);
    CHECK(f.has_scale() == !(f.kind == FormatKind::none || f.kind == FormatKind::codebook ||
                             f.name == "fp16" || f.name == "bf16"));
    CHECK_FALSE(f.summary.empty());
  }
}

// ---------------------------------------------------------------- integer grids

TEST_CASE("integer grids, every bit width: error <= scale/2 inside the range") {
  // Bound. t = x/s is computed as fl(t) = t(1 + d1), |d1| <= u = 2^-24, so the chosen code
  // k = round(fl(t)) has |k - t| <= 1/2 + |t|·u; dequantization returns fl(k·s) =
  // k·s(1 + d2). Hence |x̂ - x| <= s/2 + |x|·u + |k·s|·u <= s/2 + 2|x|·u + s·u/2.
  const double u = std::ldexp(1.0, -24);
  std::mt19937 rng(7);
  for (const FormatTraits* f : formats_of(FormatKind::integer)) {
    CAPTURE(f->name);
    for (float scale : {1.f, 0.1f, 0.37f, 0x1p-6f, 123.4f}) {
      for (double zp : {0.0, std::nearbyint(f->qmin + (f->qmax - f->qmin) / 3)}) {
        CAPTURE(scale);
        CAPTURE(zp);
        const double lo = (f->qmin - zp) * scale, hi = (f->qmax - zp) * scale;
        std::uniform_real_distribution<double> dist(lo, hi);
        double worst = 0;
        for (int i = 0; i < 2000; ++i) {
          const float x = static_cast<float>(dist(rng));
          if (x < lo || x > hi) continue;  // rounding to float may step outside
          const float q = f->quantize(x, scale, float(zp));
          REQUIRE(q == std::nearbyint(q));
          REQUIRE(q >= f->qmin);
          REQUIRE(q <= f->qmax);
          const double err = std::fabs(double(f->dequantize(q, scale, float(zp))) - x);
          const double bound = scale / 2.0 + 2 * std::fabs(x) * u + scale * u / 2;
          worst = std::max(worst, err / bound);
        }
        CHECK(worst <= 1.0);
        CHECK(worst > 0.5);  // the bound is tight enough to mean something
      }
    }
  }
}

TEST_CASE("integer grids, every bit width: representable values round-trip exactly") {
  // x = fl(k·s) is within |k|·s·u of k·s, so x/s rounds back to k (|k| < 2^23) and
  // dequantization recomputes the same fl(k·s).
  for (const FormatTraits* f : formats_of(FormatKind::integer)) {
    CAPTURE(f->name);
    // Every code up to 8 bits; for 16 bits every 97th and the ends.
    std::vector<double> codes;
    for (double k = f->qmin; k <= f->qmax; k += f->bits > 8 ? 97 : 1) codes.push_back(k);
    codes.push_back(f->qmax);
    for (float scale : {1.f, 0.3f, 0x1p-9f, 7.7f}) {
      const float zp = f->is_signed ? 0.f : float(std::ldexp(1.0, f->bits - 1));
      for (double k : codes) {
        const float x = (float(k) - zp) * scale;
        const float q = f->quantize(x, scale, zp);
        CHECK(q == float(k));
        CHECK(same_bits(f->dequantize(q, scale, zp), x));
      }
    }
  }
}

TEST_CASE("integer grids, every bit width: saturation, ties to even, NaN") {
  for (const FormatTraits* f : formats_of(FormatKind::integer)) {
    CAPTURE(f->name);
    const float lo = float(f->qmin), hi = float(f->qmax);
    const float zp = f->is_signed ? 0.f : lo + 1;
    const float s = 0.5f;  // a power of two: (k + ½)·s is exact, a true tie
    CHECK(f->quantize((hi - zp + 5) * s, s, zp) == hi);
    CHECK(f->quantize((lo - zp - 5) * s, s, zp) == lo);
    CHECK(f->quantize(3e38f, s, zp) == hi);
    CHECK(f->quantize(kInf, s, zp) == hi);
    CHECK(f->quantize(-kInf, s, zp) == lo);
    CHECK(std::isnan(f->quantize(kNaN, s, zp)));
    CHECK(std::isnan(f->dequantize(f->quantize(kNaN, s, zp), s, zp)));
    int ties = 0;
    for (double k = f->qmin; k + 1 <= f->qmax && ties < 300; ++k, ++ties) {
      // x/s = j + ½ with j = k - zp: the tie goes to the even one of j, j + 1.
      const double j = k - zp;
      const float x = float((j + 0.5) * s);
      CHECK(f->quantize(x, s, zp) == float((std::fmod(j, 2.0) == 0 ? j : j + 1) + zp));
    }
  }
  const FormatTraits& int8 = traits("int8");
  CHECK(int8.quantize(0.5f, 1, 0) == 0);
  CHECK(int8.quantize(1.5f, 1, 0) == 2);
  CHECK(int8.quantize(2.5f, 1, 0) == 2);
  CHECK(int8.quantize(-2.5f, 1, 0) == -2);
  CHECK(int8.quantize(-127.5f, 1, 0) == -128);
  CHECK(int8.quantize(126.5f, 1, 0) == 126);
}

// ---------------------------------------------------------------- float formats

TEST_CASE("fp8 and fp4: every bit pattern round-trips; Inf saturates, NaN stays NaN") {
  for (std::string_view name : {"fp8_e4m3", "fp8_e5m2", "fp4_e2m1"}) {
    CAPTURE(name);
    const FormatTraits& f = traits(name);
    std::set<float> finite;
    for (std::uint32_t bits = 0; bits < (1u << f.bits); ++bits) {
      CAPTURE(bits);
      const double v = decode(bits, f.exponent_bits, f.mantissa_bits, name);
      const float r = f.round_to_format(float(v));
      if (std::isnan(v)) {
        CHECK(std::isnan(r));
      } else if (std::isinf(v)) {
        CHECK(r == std::copysign(float(f.qmax), float(v)));  // saturating (ONNX saturate=1)
      } else {
        CHECK(same_bits(r, float(v)));  // ±0 included
        finite.insert(float(v));
      }
    }
    CHECK(*finite.rbegin() == float(f.qmax));
    if (name == "fp8_e4m3") CHECK(finite.size() == 253);  // 256 - 2 NaN, ±0 one value
    if (name == "fp8_e5m2") CHECK(finite.size() == 247);  // 256 - 2 Inf - 6 NaN
    if (name == "fp4_e2m1")
      CHECK(finite ==
            std::set<float>{-6, -4, -3, -2, -1.5f, -1, -0.5f, 0, 0.5f, 1, 1.5f, 2, 3, 4, 6});
  }
}

TEST_CASE("fp16 and bf16: every bit pattern round-trips, Inf stays Inf (IEEE)") {
  const FormatTraits& fp16 = traits("fp16");
  const FormatTraits& bf16 = traits("bf16");
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const double h = decode(bits, 5, 10, "fp16");
    const float b = std::bit_cast<float>(bits << 16);
    if (std::isnan(h))
      CHECK(std::isnan(fp16.round_to_format(float(h))));
    else
      CHECK(same_bits(fp16.round_to_format(float(h)), float(h)));
    if (std::isnan(b))
      CHECK(std::isnan(bf16.round_to_format(b)));
    else
      CHECK(same_bits(bf16.round_to_format(b), b));
  }
}

TEST_CASE("float formats: relative error <= 2^-(mantissa+1) for normal values") {
  std::mt19937 rng(3);
  for (const FormatTraits* f : formats_of(FormatKind::floating)) {
    CAPTURE(f->name);
    // Log-uniform magnitudes across the normal range [2^min_exponent, max finite].
    std::uniform_real_distribution<double> log2_magnitude(f->min_exponent, std::log2(f->qmax));
    const double bound = std::ldexp(1.0, -(f->mantissa_bits + 1));
    double worst = 0;
    for (int i = 0; i < 20000; ++i) {
      const float x = float(std::exp2(log2_magnitude(rng))) * (i % 2 ? -1.f : 1.f);
      if (std::fabs(x) > f->qmax) continue;
      const float r = f->round_to_format(x);
      worst = std::max(worst, std::fabs(double(r) - x) / std::fabs(double(x)));
    }
    CHECK(worst <= bound);
    CHECK(worst > bound / 2);
  }
}

TEST_CASE("float formats: subnormals, ties to even, overflow rules, ±0") {
  const FormatTraits& e4m3 = traits("fp8_e4m3");
  // Subnormal spacing 2^(-6-3) = 2^-9.
  CHECK(e4m3.round_to_format(0x1p-10f) == 0);  // tie between 0 and 2^-9: even is 0
  CHECK(e4m3.round_to_format(0x1.8p-10f) == 0x1p-9f);
  CHECK(e4m3.round_to_format(0x3p-10f) == 0x1p-8f);   // tie 1·2^-9 | 2·2^-9: even mantissa
  CHECK(e4m3.round_to_format(0x7p-10f) == 0x4p-9f);   // 3.5·2^-9: tie 3|4 -> 4
  CHECK(e4m3.round_to_format(0x1.ep-7f) == 0x1p-6f);  // largest subnormal rounds up to 2^-6
  CHECK(e4m3.round_to_format(1.0625f) == 1.f);        // tie 1 | 1.125
  CHECK(e4m3.round_to_format(1.1875f) == 1.25f);      // tie 1.125 | 1.25
  CHECK(e4m3.round_to_format(449.f) == 448.f);
  CHECK(e4m3.round_to_format(464.f) == 448.f);
  CHECK(e4m3.round_to_format(1e9f) == 448.f);
  CHECK(e4m3.round_to_format(-kInf) == -448.f);

  const FormatTraits& e5m2 = traits("fp8_e5m2");
  CHECK(e5m2.round_to_format(0x1p-17f) == 0);  // half the smallest subnormal 2^-16
  CHECK(e5m2.round_to_format(0x1.8p-17f) == 0x1p-16f);
  CHECK(e5m2.round_to_format(61440.f) == 57344.f);  // would round to 65536: saturates
  CHECK(e5m2.round_to_format(kInf) == 57344.f);

  const FormatTraits& fp16 = traits("fp16");
  CHECK(fp16.round_to_format(0x1p-25f) == 0);  // half the smallest subnormal 2^-24
  CHECK(fp16.round_to_format(0x1.8p-25f) == 0x1p-24f);
  CHECK(fp16.round_to_format(65519.f) == 65504.f);
  CHECK(fp16.round_to_format(65520.f) == kInf);  // the tie rounds to the even 2^16: overflow
  CHECK(fp16.round_to_format(-1e6f) == -kInf);
  CHECK(fp16.round_to_format(kInf) == kInf);

  const FormatTraits& bf16 = traits("bf16");
  CHECK(bf16.round_to_format(std::numeric_limits<float>::max()) == kInf);
  CHECK(bf16.round_to_format(std::bit_cast<float>(0x00018000u)) ==
        std::bit_cast<float>(0x00020000u));  // fp32 subnormal, tie -> even
  CHECK(bf16.round_to_format(1.f + 0x1p-8f) == 1.f);
  CHECK(bf16.round_to_format(1.f + 0x3p-8f) == 1.f + 0x1p-6f);

  const FormatTraits& fp4 = traits("fp4_e2m1");
  CHECK(fp4.round_to_format(0.25f) == 0);
  CHECK(fp4.round_to_format(0.75f) == 1);  // tie 0.5 | 1: 1 has the even mantissa
  CHECK(fp4.round_to_format(2.5f) == 2);
  CHECK(fp4.round_to_format(5.f) == 4);
  CHECK(fp4.round_to_format(7.f) == 6);
  CHECK(fp4.round_to_format(-100.f) == -6);

  for (const FormatTraits* f : formats_of(FormatKind::floating)) {
    CAPTURE(f->name);
    CHECK(same_bits(f->round_to_format(0.f), 0.f));
    CHECK(same_bits(f->round_to_format(-0.f), -0.f));
    CHECK(same_bits(f->round_to_format(-0x1p-149f), -0.f));  // underflow keeps the sign
    CHECK(std::isnan(f->round_to_format(kNaN)));
    CHECK(std::isnan(f->round_to_format(-kNaN)));
  }
}

// ---------------------------------------------------------------- pow2 and codebooks

TEST_CASE("pow2 levels: nearest of 0, ±2^-k; ties up; saturation at ±1") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
  for (const FormatTraits* f : formats_of(FormatKind::pow2)) {
    CAPTURE(f->name);
    std::vector<double> levels = {0};
    for (int k = 0; k >= f->min_exponent; --k) {
      levels.push_back(std::ldexp(1.0, k));
      levels.push_back(-std::ldexp(1.0, k));
    }
    CHECK(levels.size() == (1u << f->bits) - 1);
    for (int i = 0; i < 5000; ++i) {
      const float x = dist(rng) * (i % 3 == 0 ? 0.02f : 1.f);
      const double r = f->round_to_pow2_level(x);
      REQUIRE(std::find(levels.begin(), levels.end(), r) != levels.end());
      for (double level : levels) REQUIRE(std::fabs(r - x) <= std::fabs(level - x));
    }
    const float smallest = std::ldexp(1.f, f->min_exponent);
    CHECK(f->round_to_pow2_level(0.75f) == 1.f);
    CHECK(f->round_to_pow2_level(0.7499f) == 0.5f);
    CHECK(f->round_to_pow2_level(-0.375f) == -0.5f);
    CHECK(f->round_to_pow2_level(smallest / 2) == smallest);
    CHECK(f->round_to_pow2_level(std::nextafter(smallest / 2, 0.f)) == 0.f);
    CHECK(f->round_to_pow2_level(7.f) == 1.f);
    CHECK(f->round_to_pow2_level(-kInf) == -1.f);
    CHECK(same_bits(f->round_to_pow2_level(-0.f), -0.f));
    CHECK(std::isnan(f->round_to_pow2_level(kNaN)));
  }
}

TEST_CASE("codebook rounding: nearest entry, ties to the lower, Inf to the ends") {
  const std::vector<float> book = {-2, 0, 1, 4};
  CHECK(round_to_codebook(book, -1.f) == -2);  // midpoint -1: the lower entry
  CHECK(round_to_codebook(book, -0.99f) == 0);
  CHECK(round_to_codebook(book, 0.5f) == 0);
  CHECK(round_to_codebook(book, 2.5f) == 1);
  CHECK(round_to_codebook(book, 2.51f) == 4);
  CHECK(round_to_codebook(book, kInf) == 4);
  CHECK(round_to_codebook(book, -kInf) == -2);
  CHECK(std::isnan(round_to_codebook(book, kNaN)));
  std::mt19937 rng(11);
  std::normal_distribution<float> dist;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> c(16);
    for (float& v : c) v = dist(rng);
    std::sort(c.begin(), c.end());
    for (int i = 0; i < 200; ++i) {
      const float x = dist(rng) * 1.5f;
      const float r = round_to_codebook(c, x);
      for (float v : c) REQUIRE(std::fabs(r - x) <= std::fabs(v - x) + 1e-6f);
    }
  }
}

}  // namespace executor_quant_formats_test
