// Parameter choice and fake quantization of tensors (executor/quant/quantizer.hpp): every
// slice gets its own parameters, non-finite values have defined results, each non-uniform
// format keeps its promise, and the fast loops equal the element-wise reference bit for bit.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "executor/quant/quantizer.hpp"

namespace executor_quant_quantizer_test {

using namespace bitplan;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor gaussian(Dims dims, std::uint32_t seed, float sigma = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, sigma);
  Tensor t(DType::f32, std::move(dims));
  for (float& v : std::span(t.data<float>(), static_cast<std::size_t>(t.numel()))) v = dist(rng);
  return t;
}

std::span<float> values(Tensor& t) {
  return {t.data<float>(), static_cast<std::size_t>(t.numel())};
}

Tensor fake(const QuantSpec& spec, const QuantParams& params, const Tensor& in, int axis) {
  Tensor out;
  fake_quantize(spec, params, in, out, axis);
  return out;
}

Tensor reference(const QuantSpec& spec, const QuantParams& params, const Tensor& in, int axis) {
  Tensor out;
  fake_quantize_reference(spec, params, in, out, axis);
  return out;
}

// Index of the first element whose bits differ, or -1.
std::int64_t first_difference(const Tensor& a, const Tensor& b) {
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (std::bit_cast<std::uint32_t>(a.data<float>()[i]) !=
        std::bit_cast<std::uint32_t>(b.data<float>()[i]))
      return i;
  return -1;
}

double mse(const Tensor& a, const Tensor& b) {
  double sum = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double d = double(a.data<float>()[i]) - b.data<float>()[i];
    sum += d * d;
  }
  return sum / static_cast<double>(a.numel());
}

// A valid spec of format f with one granularity of each kind it accepts, over a tensor of
// the given rank, paired with the reduction axis to pass.
std::vector<std::pair<QuantSpec, int>> layouts(const FormatTraits& f, int rank) {
  std::vector<std::pair<QuantSpec, int>> out;
  QuantSpec s;
  s.format = f.id;
  if (!f.has_scale() && f.kind != FormatKind::codebook) return {{s, 0}};
  for (bool symmetric : {true, false}) {
    if (!symmetric && f.kind != FormatKind::integer) continue;
    s.symmetric = symmetric;
    if (f.block_size == 0) {
      s.granularity = Granularity::per_tensor;
      out.push_back({s, 0});
      s.granularity = Granularity::per_channel;
      for (int axis = 0; axis < rank; ++axis) {
        s.axis = axis;
        out.push_back({s, 0});
      }
    }
    if (f.kind == FormatKind::codebook) continue;
    s.granularity = Granularity::per_group;
    for (std::int64_t group : f.block_size > 0 ? std::vector<std::int64_t>{f.block_size}
                                               : std::vector<std::int64_t>{3, 16}) {
      s.group_size = group;
      for (int axis = 0; axis < rank; ++axis) out.push_back({s, axis});
    }
    if (f.block_size > 0) continue;
    s.granularity = Granularity::per_token;
    for (int axis = 0; axis < rank; ++axis) out.push_back({s, axis});
  }
  return out;
}

// Gaussian values with the awkward ones sprinkled in: NaN, ±Inf, ±0, fp32 subnormals,
// huge values and exact ties of the coarser grids.
Tensor awkward(Dims dims, std::uint32_t seed) {
  Tensor t = gaussian(std::move(dims), seed, 2.f);
  const float specials[] = {kNaN,   kInf, -kInf, 0.f,   -0.f,  1e-40f, -3e-39f, 1e30f,
                            -7e35f, 0.5f, 1.5f,  -2.5f, 0.25f, 448.f,  3e38f};
  std::mt19937 rng(seed + 1);
  for (float v : specials)
    for (int copies = 0; copies < 3; ++copies)
      t.data<float>()[std::uniform_int_distribution<std::int64_t>(0, t.numel() - 1)(rng)] = v;
  return t;
}

QuantSpec spec_of(std::string_view text) {
  return parse_quant_spec(text);
}

// The reduction axis the tests use with a canonical spec: MX blocks run along axis 1.
QuantSpec canonical_spec(const FormatTraits& f) {
  QuantSpec s;
  s.format = f.id;
  if (f.block_size > 0) {
    s.granularity = Granularity::per_group;
    s.group_size = f.block_size;
  } else if (f.has_scale() || f.kind == FormatKind::codebook) {
    s.granularity = Granularity::per_channel;
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- fast == reference

TEST_CASE("fake_quantize equals the reference bit for bit: every format and layout") {
  // The last shape is large enough for the loops to split across threads.
  for (const Dims& dims : {Dims{5, 40, 3}, Dims{7, 70}, Dims{33}, Dims{64, 300, 5}}) {
    const Tensor x = awkward(dims, 42 + static_cast<std::uint32_t>(dims.size()));
    for (const FormatTraits& f : all_formats()) {
      for (const auto& [spec, axis] : layouts(f, static_cast<int>(dims.size()))) {
        CAPTURE(to_string(dims));
        const std::string spec_text = to_string(spec);  // CAPTURE cannot take a binding
        const int captured_axis = axis;
        CAPTURE(spec_text);
        CAPTURE(captured_axis);
        const QuantParams params = choose_weight_params(spec, x, axis);
        CHECK(first_difference(fake(spec, params, x, axis), reference(spec, params, x, axis)) ==
              -1);
      }
    }
  }
}

TEST_CASE("fake_quantize equals the reference over a sweep of fp32 bit patterns") {
  // Every 4099th pattern (about a million values: all exponents, signs, NaN payloads,
  // subnormals), per tensor, with scale 1 (the format's own rounding) and an awkward scale.
  Tensor x(DType::f32, {(std::int64_t{1} << 32) / 4099});
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data<float>()[i] = std::bit_cast<float>(static_cast<std::uint32_t>(i * 4099 + 17));
  for (const FormatTraits& f : all_formats()) {
    if (f.kind == FormatKind::codebook || f.block_size > 0) continue;  // covered above
    for (float scale : {1.f, 0.37f}) {
      CAPTURE(f.name);
      CAPTURE(scale);
      QuantSpec spec;
      spec.format = f.id;
      QuantParams params;
      if (f.has_scale()) params.scale = {scale};
      if (f.kind == FormatKind::integer) params.zero_point = {f.is_signed ? 0.f : 3.f};
      CHECK(first_difference(fake(spec, params, x, 0), reference(spec, params, x, 0)) == -1);
    }
  }
}

TEST_CASE("fake_quantize works in place") {
  const Tensor x = awkward({40, 50}, 8);
  for (std::string_view text : {"int4/group16/sym", "fp8_e4m3/channel:1", "kmeans3/channel"}) {
    CAPTURE(text);
    const QuantSpec spec = spec_of(text);
    const QuantParams params = choose_weight_params(spec, x, 1);
    Tensor data = x.clone();
    Tensor same = data;  // shares the buffer
    fake_quantize(spec, params, data, same, 1);
    CHECK(same.raw() == data.raw());
    CHECK(first_difference(data, reference(spec, params, x, 1)) == -1);
  }
}

TEST_CASE("activation fake quantization equals the per-tensor tensor path") {
  const Tensor x = awkward({1000}, 9);
  for (const FormatTraits& f : all_formats()) {
    if (f.weights_only) continue;
    CAPTURE(f.name);
    for (bool symmetric : {true, false}) {
      if (!symmetric && f.kind != FormatKind::integer) continue;
      const AffineParams a = affine_params_from_range(f.id, symmetric, -3.f, 2.f);
      QuantSpec spec;
      spec.format = f.id;
      spec.symmetric = symmetric;
      QuantParams params;
      if (f.has_scale()) params.scale = {a.scale};
      if (f.kind == FormatKind::integer) params.zero_point = {a.zero_point};
      Tensor in_place = x.clone();
      fake_quantize_activation_per_tensor(f.id, a.scale, a.zero_point, in_place.data<float>(),
                                          in_place.numel());
      CHECK(first_difference(in_place, reference(spec, params, x, 0)) == -1);
    }
  }
}

// ---------------------------------------------------------------- integer grids

TEST_CASE("integer parameters: symmetric amax/qmax, asymmetric with an exact zero") {
  Tensor w = gaussian({64}, 1);
  const float amax = [&] {
    float m = 0;
    for (float v : values(w)) m = std::max(m, std::fabs(v));
    return m;
  }();
  const QuantParams sym = choose_weight_params(spec_of("int8/tensor/sym"), w, 0);
  CHECK(sym.scale == std::vector<float>{amax / 127});
  CHECK(sym.zero_point == std::vector<float>{0});
  // uint8/sym: the same levels as int8/sym, offset by 128.
  const QuantParams usym = choose_weight_params(spec_of("uint8/tensor/sym"), w, 0);
  CHECK(usym.scale == sym.scale);
  CHECK(usym.zero_point == std::vector<float>{128});
  CHECK(first_difference(fake(spec_of("uint8/tensor/sym"), usym, w, 0),
                         fake(spec_of("int8/tensor/sym"), sym, w, 0)) == -1);

  // Asymmetric range [-1, 3] on uint8: scale 4/255, zp = round(0 + 1/scale) = 64.
  const AffineParams a = affine_params_from_range(FormatId::uint8, false, -1.f, 3.f);
  CHECK(a.scale == float(4.0 / 255));
  CHECK(a.zero_point == 64);
  // A range that excludes 0 is widened to include it: ReLU outputs get zero point 0.
  const AffineParams relu = affine_params_from_range(FormatId::uint8, false, 0.5f, 6.f);
  CHECK(relu.zero_point == 0);
  CHECK(relu.scale == float(6.0 / 255));
  const AffineParams negative = affine_params_from_range(FormatId::int8, false, -4.f, -1.f);
  CHECK(negative.zero_point == 127);

  Tensor v = gaussian({500}, 2);
  v.data<float>()[7] = 0.f;
  const QuantSpec asym = spec_of("uint4/tensor/asym");
  const Tensor y = fake(asym, choose_weight_params(asym, v, 0), v, 0);
  CHECK(y.data<float>()[7] == 0.f);
}

TEST_CASE("all-zero and constant tensors: finite scales, exact zeros") {
  for (const FormatTraits& f : all_formats()) {
    CAPTURE(f.name);
    const QuantSpec spec = canonical_spec(f);
    Tensor zeros(DType::f32, {4, 64});
    const QuantParams p0 = choose_weight_params(spec, zeros, 1);
    for (float s : p0.scale) CHECK((std::isfinite(s) && s > 0));
    const Tensor y0 = fake(spec, p0, zeros, 1);
    for (std::int64_t i = 0; i < y0.numel(); ++i) REQUIRE(y0.data<float>()[i] == 0.f);

    for (float c : {-0.37f, 5.f}) {
      Tensor constant(DType::f32, {4, 64});
      std::fill(values(constant).begin(), values(constant).end(), c);
      const QuantParams p = choose_weight_params(spec, constant, 1);
      for (float s : p.scale) CHECK((std::isfinite(s) && s > 0));
      const Tensor y = fake(spec, p, constant, 1);
      // Float formats round c itself to their precision; the other grids put c on a level.
      const double tolerance = f.kind == FormatKind::floating
                                   ? std::ldexp(std::fabs(c), -(f.mantissa_bits + 1))
                                   : std::fabs(c) * 1e-6;
      for (std::int64_t i = 0; i < y.numel(); ++i)
        REQUIRE(std::fabs(y.data<float>()[i] - c) <= tolerance);
    }
  }
}

TEST_CASE("NaN and Inf in weights: NaN stays NaN, Inf saturates like a huge value") {
  for (const FormatTraits& f : all_formats()) {
    CAPTURE(f.name);
    const QuantSpec spec = canonical_spec(f);
    Tensor w = gaussian({3, 64}, 4);
    float* x = w.data<float>();
    x[3] = kNaN;
    x[10] = kInf;
    x[20] = -kInf;
    for (int i = 128; i < 192; ++i) x[i] = i % 3 == 0 ? kNaN : (i % 3 == 1 ? kInf : -kInf);
    const QuantParams p = choose_weight_params(spec, w, 1);
    for (float s : p.scale) REQUIRE((std::isfinite(s) && s > 0));
    for (float z : p.zero_point) REQUIRE(std::isfinite(z));
    for (float c : p.codebook) REQUIRE(std::isfinite(c));
    const Tensor y = fake(spec, p, w, 1);
    CHECK(std::isnan(y.data<float>()[3]));
    CHECK(std::isnan(y.data<float>()[129]));  // in the all-non-finite row
    Tensor huge = w.clone();
    huge.data<float>()[10] = 3e38f;
    huge.data<float>()[20] = -3e38f;
    const Tensor y_huge = fake(spec, p, huge, 1);
    if (f.overflow == Overflow::infinity) {  // fp16, bf16: IEEE
      CHECK(y.data<float>()[10] == kInf);
      CHECK(y.data<float>()[20] == -kInf);
    } else if (f.kind != FormatKind::none) {
      CHECK(std::isfinite(y.data<float>()[10]));
      CHECK(y.data<float>()[10] == y_huge.data<float>()[10]);
      CHECK(y.data<float>()[20] == y_huge.data<float>()[20]);
      for (int i = 0; i < 32; ++i)  // within the first MX block too
        if (std::isfinite(x[i])) CHECK(y.data<float>()[i] <= y.data<float>()[10]);
    }
  }
}

// ---------------------------------------------------------------- slices

TEST_CASE("per-channel parameters are per slice and beat per-tensor on uneven channels") {
  const float sigmas[] = {1e-3f, 1e-1f, 1.f, 10.f};
  Tensor w(DType::f32, {4, 256});
  for (int c = 0; c < 4; ++c) {
    const Tensor row = gaussian({256}, 10 + static_cast<std::uint32_t>(c), sigmas[c]);
    std::copy_n(row.data<float>(), 256, w.data<float>() + c * 256);
  }
  const QuantSpec channel = spec_of("int4/channel/sym");
  const QuantSpec tensor = spec_of("int4/tensor/sym");
  const QuantParams pc = choose_weight_params(channel, w, 1);
  REQUIRE(pc.scale.size() == 4);
  for (int c = 0; c < 4; ++c) {
    float amax = 0;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(w.data<float>()[c * 256 + i]));
    CHECK(pc.scale[static_cast<std::size_t>(c)] == amax / 7);
  }
  const Tensor yc = fake(channel, pc, w, 1);
  const Tensor yt = fake(tensor, choose_weight_params(tensor, w, 1), w, 1);
  // Relative error per channel, summed: per-tensor flushes the small channels to zero.
  double rel_channel = 0, rel_tensor = 0;
  for (int c = 0; c < 4; ++c) {
    double ec = 0, et = 0, energy = 0;
    for (int i = c * 256; i < (c + 1) * 256; ++i) {
      const double v = w.data<float>()[i];
      ec += (yc.data<float>()[i] - v) * (yc.data<float>()[i] - v);
      et += (yt.data<float>()[i] - v) * (yt.data<float>()[i] - v);
      energy += v * v;
    }
    rel_channel += ec / energy;
    rel_tensor += et / energy;
  }
  CHECK(rel_channel < 0.1 * rel_tensor);
  CHECK(mse(yc, w) <= mse(yt, w));
}

TEST_CASE("per-group parameters follow ONNX blocked layout along the reduction axis") {
  auto block_amax = [](const Tensor& w, auto&& index_of, std::int64_t begin, std::int64_t end) {
    float amax = 0;
    for (std::int64_t r = begin; r < end; ++r)
      amax = std::max(amax, std::fabs(w.data<float>()[index_of(r)]));
    return amax;
  };
  SUBCASE("reduction axis last: [N, K] with blocks of 64 along K, the last one short") {
    const Tensor w = gaussian({3, 200}, 20);
    const QuantSpec spec = spec_of("int4/group64/sym");
    const QuantParams p = choose_weight_params(spec, w, 1);
    REQUIRE(p.scale.size() == 3 * 4);  // ceil(200 / 64) = 4 blocks per row
    CHECK(slice_count(spec, w.dims(), 1) == 12);
    for (std::int64_t n = 0; n < 3; ++n)
      for (std::int64_t b = 0; b < 4; ++b)
        CHECK(p.scale[static_cast<std::size_t>(n * 4 + b)] ==
              block_amax(
                  w, [&](std::int64_t k) { return n * 200 + k; }, b * 64,
                  std::min<std::int64_t>(200, b * 64 + 64)) /
                  7);
  }
  SUBCASE("reduction axis first: [K, N] (MatMul weights), scales [blocks, N]") {
    const Tensor w = gaussian({130, 5}, 21);
    const QuantSpec spec = spec_of("int8/group32/sym");
    const QuantParams p = choose_weight_params(spec, w, 0);
    REQUIRE(p.scale.size() == 5 * 5);  // ceil(130 / 32) = 5 blocks, 5 columns
    for (std::int64_t b = 0; b < 5; ++b)
      for (std::int64_t n = 0; n < 5; ++n)
        CHECK(p.scale[static_cast<std::size_t>(b * 5 + n)] ==
              block_amax(
                  w, [&](std::int64_t k) { return k * 5 + n; }, b * 32,
                  std::min<std::int64_t>(130, b * 32 + 32)) /
                  127);
  }
}

// ---------------------------------------------------------------- non-uniform formats

TEST_CASE("k-means: at most 2^b levels, lower error than the uniform grid of the same bits") {
  const Tensor w = gaussian({4096}, 30);
  for (int bits : {2, 3, 4}) {
    CAPTURE(bits);
    const QuantSpec kmeans = spec_of(fmt::format("kmeans{}/tensor", bits));
    const QuantSpec uniform = spec_of(fmt::format("int{}/tensor/sym", bits));
    const QuantParams p = choose_weight_params(kmeans, w, 0);
    REQUIRE(p.codebook.size() == (1u << bits));
    CHECK(std::is_sorted(p.codebook.begin(), p.codebook.end()));
    const Tensor y = fake(kmeans, p, w, 0);
    const std::set<float> levels(y.data<float>(), y.data<float>() + y.numel());
    CHECK(levels.size() <= (1u << bits));
    for (float v : levels)
      CHECK(std::find(p.codebook.begin(), p.codebook.end(), v) != p.codebook.end());
    const double uniform_mse = mse(fake(uniform, choose_weight_params(uniform, w, 0), w, 0), w);
    CHECK(mse(y, w) < 0.8 * uniform_mse);
  }
  SUBCASE("per channel: one codebook per channel") {
    Tensor w2 = gaussian({6, 300}, 31);
    for (int i = 0; i < 300; ++i) w2.data<float>()[5 * 300 + i] *= 50;
    const QuantSpec spec = spec_of("kmeans3/channel");
    const QuantParams p = choose_weight_params(spec, w2, 1);
    REQUIRE(p.codebook.size() == 6 * 8);
    const Tensor y = fake(spec, p, w2, 1);
    for (std::int64_t c = 0; c < 6; ++c) {
      const auto book = std::span(p.codebook).subspan(static_cast<std::size_t>(c * 8), 8);
      for (std::int64_t i = 0; i < 300; ++i)
        REQUIRE(std::find(book.begin(), book.end(), y.data<float>()[c * 300 + i]) != book.end());
    }
    CHECK(p.codebook.back() > 20 * p.codebook[7]);  // channel 5's levels are its own
  }
}

TEST_CASE("pow2: outputs are 0 or ±scale·2^-k with scale = max|w|") {
  for (std::string_view name : {"pow2_3", "pow2_4"}) {
    CAPTURE(name);
    const FormatTraits& f = format_traits(*format_from_name(name));
    const QuantSpec spec = spec_of(fmt::format("{}/channel", name));
    const Tensor w = gaussian({4, 500}, 40);
    const QuantParams p = choose_weight_params(spec, w, 1);
    const Tensor y = fake(spec, p, w, 1);
    for (std::int64_t c = 0; c < 4; ++c) {
      const float s = p.scale[static_cast<std::size_t>(c)];
      float amax = 0;
      for (std::int64_t i = 0; i < 500; ++i)
        amax = std::max(amax, std::fabs(w.data<float>()[c * 500 + i]));
      CHECK(s == amax);
      for (std::int64_t i = 0; i < 500; ++i) {
        const float v = y.data<float>()[c * 500 + i];
        bool is_level = v == 0.f;
        for (int k = 0; k >= f.min_exponent; --k)
          is_level = is_level || std::fabs(v) == s * std::ldexp(1.f, k);
        REQUIRE(is_level);
      }
    }
  }
}

TEST_CASE("ternary: outputs in {-α, 0, α}, α by the TWN rule, nearest level") {
  const Tensor w = gaussian({3, 1000}, 50);
  const QuantSpec spec = spec_of("ternary/channel");
  const QuantParams p = choose_weight_params(spec, w, 1);
  const Tensor y = fake(spec, p, w, 1);
  for (std::int64_t c = 0; c < 3; ++c) {
    const float* row = w.data<float>() + c * 1000;
    double abs_sum = 0;
    for (int i = 0; i < 1000; ++i) abs_sum += std::fabs(row[i]);
    const double delta = 0.7 * abs_sum / 1000;
    double big = 0;
    int count = 0;
    for (int i = 0; i < 1000; ++i)
      if (std::fabs(row[i]) > delta) {
        big += std::fabs(row[i]);
        ++count;
      }
    const float alpha = p.scale[static_cast<std::size_t>(c)];
    CHECK(alpha == float(big / count));
    for (int i = 0; i < 1000; ++i) {
      const float v = y.data<float>()[c * 1000 + i];
      REQUIRE((v == 0.f || v == alpha || v == -alpha));
      REQUIRE(v == (std::fabs(row[i]) > alpha / 2 ? std::copysign(alpha, row[i]) : 0.f));
    }
  }
}

TEST_CASE("fp4 MX: power-of-two scale per 32-block, block max lands in (3, 6]") {
  Tensor w = gaussian({4, 96}, 60);
  for (int i = 0; i < 32; ++i) w.data<float>()[i] *= 1e-3f;  // one block far smaller
  const QuantSpec spec = spec_of("fp4_e2m1/group32");
  const QuantParams p = choose_weight_params(spec, w, 1);
  REQUIRE(p.scale.size() == 12);
  const Tensor y = fake(spec, p, w, 1);
  const std::set<float> grid = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (std::size_t k = 0; k < 12; ++k) {
    int exponent = 0;
    CHECK(std::frexp(p.scale[k], &exponent) == 0.5f);
    float amax = 0;
    for (std::size_t i = k * 32; i < k * 32 + 32; ++i) {
      amax = std::max(amax, std::fabs(w.data<float>()[i]));
      REQUIRE(grid.count(std::fabs(y.data<float>()[i] / p.scale[k])) == 1);
    }
    CHECK(amax / p.scale[k] > 3.f);
    CHECK(amax / p.scale[k] <= 6.f);
  }
}

TEST_CASE("fp8: scale amax/max finite puts the largest magnitude on the top value") {
  const Tensor w = gaussian({2, 300}, 70);
  for (std::string_view text : {"fp8_e4m3/channel", "fp8_e5m2/channel"}) {
    CAPTURE(text);
    const QuantSpec spec = spec_of(text);
    const FormatTraits& f = format_traits(spec.format);
    const QuantParams p = choose_weight_params(spec, w, 1);
    const Tensor y = fake(spec, p, w, 1);
    for (std::int64_t c = 0; c < 2; ++c) {
      float amax = 0, ymax = 0;
      for (std::int64_t i = c * 300; i < (c + 1) * 300; ++i) {
        amax = std::max(amax, std::fabs(w.data<float>()[i]));
        ymax = std::max(ymax, std::fabs(y.data<float>()[i]));
      }
      CHECK(p.scale[static_cast<std::size_t>(c)] == float(amax / f.qmax));
      CHECK(ymax == doctest::Approx(amax).epsilon(1e-6));
    }
  }
}

// ---------------------------------------------------------------- sizes and errors

TEST_CASE("storage_bytes: packed codes plus scales, zero points, codebooks, MX exponents") {
  CHECK(storage_bytes(spec_of("int4/group128/sym"), {256, 1024}, 1) ==
        256 * 1024 / 2 + 256 * (1024 / 128) * 4);
  CHECK(storage_bytes(spec_of("int4/group128/asym"), {256, 1024}, 1) ==
        256 * 1024 / 2 + 256 * 8 * 4 + 256 * 8 / 2);
  CHECK(storage_bytes(spec_of("uint8/tensor/asym"), {10, 10}, 0) == 100 + 4 + 1);
  CHECK(storage_bytes(spec_of("int3/channel/sym"), {3, 5}, 1) == 6 + 3 * 4);  // 45 bits
  CHECK(storage_bytes(spec_of("fp4_e2m1/group32"), {64, 64}, 1) == 64 * 64 / 2 + 64 * 2);
  CHECK(storage_bytes(spec_of("kmeans4/channel"), {16, 32}, 1) == 16 * 32 / 2 + 16 * 16 * 4);
  CHECK(storage_bytes(spec_of("ternary/tensor"), {10}, 0) == 2 + 4);
  CHECK(storage_bytes(spec_of("fp8_e4m3/channel"), {8, 9}, 1) == 72 + 8 * 4);
  CHECK(storage_bytes(spec_of("fp16"), {10}, 0) == 20);
  CHECK(storage_bytes(spec_of("fp32"), {10}, 0) == 40);
}

TEST_CASE("bad parameters, axes and inputs fail with the rule") {
  const Tensor w = gaussian({4, 8}, 80);
  const QuantSpec spec = spec_of("int8/channel/sym");
  QuantParams p = choose_weight_params(spec, w, 1);
  p.scale.pop_back();
  CHECK_THROWS_WITH_AS(fake(spec, p, w, 1),
                       "fake-quantizing with spec 'int8/channel/sym': 3 scales given, the "
                       "tensor needs 4",
                       Error);
  p = choose_weight_params(spec, w, 1);
  p.scale[2] = 0.f;
  CHECK_THROWS_WITH_AS(fake(spec, p, w, 1),
                       doctest::Contains("scale 0 of slice 2 is not a positive finite number"),
                       Error);
  p = choose_weight_params(spec, w, 1);
  p.zero_point[1] = 0.5f;
  CHECK_THROWS_WITH_AS(
      fake(spec, p, w, 1),
      doctest::Contains("zero point 0.5 of slice 1 is not an integer in [-128, 127]"), Error);
  CHECK_THROWS_WITH_AS(
      choose_weight_params(spec_of("int8/channel:2/sym"), w, 1),
      doctest::Contains("the channel axis 2 is out of range for a tensor of shape [4, 8]"), Error);
  CHECK_THROWS_WITH_AS(storage_bytes(spec_of("int4/group32/sym"), {4, 8}, -1),
                       doctest::Contains("the reduction axis -1 is out of range"), Error);
  const Tensor ints = Tensor::from_values<std::int64_t>({2}, std::vector<std::int64_t>{1, 2});
  try {
    choose_weight_params(spec, ints, 0);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::unsupported);
  }
}

TEST_CASE("activation quantization: formats, scales and zero points are checked") {
  std::vector<float> x = {0.1f, -2.f, 3.f};
  auto kind_of = [&](FormatId id, float scale, float zp) -> std::optional<ErrorKind> {
    try {
      fake_quantize_activation_per_tensor(id, scale, zp, x.data(), 3);
    } catch (const Error& e) {
      return e.kind();
    }
    return std::nullopt;
  };
  CHECK(kind_of(FormatId::kmeans4, 1, 0) == ErrorKind::unsupported);
  CHECK(kind_of(FormatId::fp4_e2m1, 1, 0) == ErrorKind::unsupported);
  CHECK(kind_of(FormatId::ternary, 1, 0) == ErrorKind::unsupported);
  CHECK(kind_of(FormatId::int8, 0, 0) == ErrorKind::invalid_input);
  CHECK(kind_of(FormatId::int8, kNaN, 0) == ErrorKind::invalid_input);
  CHECK(kind_of(FormatId::uint8, 0.1f, 256) == ErrorKind::invalid_input);
  CHECK(kind_of(FormatId::uint8, 0.1f, 3.5f) == ErrorKind::invalid_input);
  CHECK(kind_of(FormatId::fp16, 2, 0) == ErrorKind::invalid_input);
  CHECK(kind_of(FormatId::fp8_e4m3, 0.1f, 1) == ErrorKind::invalid_input);
  CHECK_THROWS_WITH_AS(affine_params_from_range(FormatId::pow2_4, true, -1, 1),
                       doctest::Contains("pow2_4 is a weight-only format"), Error);
  CHECK_THROWS_WITH_AS(affine_params_from_range(FormatId::int8, true, 1, -1),
                       doctest::Contains("the range must be finite with lo <= hi"), Error);
  CHECK_THROWS_AS(affine_params_from_range(FormatId::int8, true, -kInf, 1), Error);

  x = {0.1f, -2.f, 3.f};
  CHECK_FALSE(kind_of(FormatId::uint8, 0.5f, 4).has_value());
  CHECK(x == std::vector<float>{0.f, -2.f, 3.f});
  x = {1e6f, -1e6f, 0.3f};
  CHECK_FALSE(kind_of(FormatId::fp8_e4m3, 1.f, 0).has_value());
  CHECK(x == std::vector<float>{448.f, -448.f, 0.3125f});
}

}  // namespace executor_quant_quantizer_test
