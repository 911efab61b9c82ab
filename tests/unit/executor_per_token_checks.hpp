// The checks the per-token integer kernels' tests share (executor_kernels_w3a8.cpp,
// executor_kernels_w2a8.cpp, executor_kernels_w8a8.cpp): a random problem of container codes,
// scales and offsets; each ISA path bit for bit against the scalar path and within W4A8's error
// bound against a double-precision reference on the simulation's values (executor_kernels_w4a8.cpp
// derives it: the same float steps, one fma per group, then the row's scale); exact integer sums
// with unit scales, also with every code and activation code at its maximum (the AVX2 paths' s16
// bound); packing read back; the epilogue and NaN rows. Each test file names its kernel with
// a traits struct K:
//   K::name ("W3A8"), K::bits, K::min_code and K::max_code (the codes' range: 0 and 2^bits - 1
//   for the container codes of the 2- and 3-bit kernels, -128 and 127 for W8A8's), K::k_multiple
//   (the group padding),
//   K::symmetric_offset (the offset of the signed symmetric grid), K::pack, K::gemm,
//   K::panel_width.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "executor/kernels/per_token.hpp"
#include "executor/quant/formats.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan::testing::per_token {

// A random problem: codes [K, N] in [min_code, max_code], a scale and offset per (group,
// column), activations x [M, K].
struct Problem {
  std::int64_t m, k, n, group, groups;
  std::vector<std::int8_t> codes;      // [K][N]
  std::vector<float> scales, offsets;  // [groups][N]
  std::vector<float> x;                // [M][K]
  kernels::W4a32Source source() const {
    return {k, n, group, codes.data(), n, 1, scales.data(), offsets.data()};
  }
  std::int64_t group_of(std::int64_t kk) const { return kk / std::min(group, k); }
  std::int32_t weight_int(std::int64_t kk, std::int64_t nn) const {
    return codes[kk * n + nn] - static_cast<std::int32_t>(offsets[group_of(kk) * n + nn]);
  }
  float weight(std::int64_t kk, std::int64_t nn) const {
    return static_cast<float>(weight_int(kk, nn)) * scales[group_of(kk) * n + nn];
  }
};

// `symmetric_signed`: the signed symmetric grid (offsets all K::symmetric_offset); else an
// asymmetric one (random offsets in [min_code, max_code]). `unit_scales`: every weight
// scale 1, for the exact-integer checks.
template <class K>
Problem make_problem(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t group,
                     bool symmetric_signed, std::uint32_t seed, bool unit_scales = false) {
  std::mt19937 rng(seed);
  Problem p{m, k, n, group, (k + std::min(group, k) - 1) / std::min(group, k), {}, {}, {}, {}};
  std::uniform_int_distribution<int> code(K::min_code, K::max_code);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  std::normal_distribution<float> act(0.3f, 1.f);
  p.codes.resize(static_cast<std::size_t>(k * n));
  for (auto& c : p.codes) c = static_cast<std::int8_t>(code(rng));
  p.scales.resize(static_cast<std::size_t>(p.groups * n));
  p.offsets.resize(p.scales.size());
  for (auto& s : p.scales) s = unit_scales ? 1.f : scale(rng);
  for (auto& o : p.offsets)
    o = symmetric_signed ? static_cast<float>(K::symmetric_offset) : static_cast<float>(code(rng));
  p.x.resize(static_cast<std::size_t>(m * k));
  for (auto& v : p.x) v = act(rng);
  return p;
}

template <class K>
std::vector<float> run(const Problem& p, kernels::Isa isa, kernels::W4a8Activations* keep = nullptr,
                       const kernels::GemmEpilogue& epilogue = {}) {
  const auto packed = K::pack(p.source(), isa);
  kernels::W4a8Activations a = kernels::make_w4a8_activations(packed, p.m);
  std::vector<float> y(static_cast<std::size_t>(p.m * p.n), std::nanf(""));
  K::gemm(packed, p.x.data(), p.m, p.k, y.data(), p.n, a, epilogue);
  if (keep) *keep = std::move(a);
  return y;
}

// executor_kernels_w4a8.cpp's bound: (gamma_{groups+1} + 2u + u^2)/(1 - u)^2 times
// sum_k |xs_k·w_k|, plus 1 % for the double reference and the smallest subnormal.
inline double error_bound(const Problem& p, const std::vector<float>& xs, std::int64_t row,
                          std::int64_t col) {
  const double u = std::ldexp(1.0, -24), j = static_cast<double>(p.groups + 1);
  double magnitude = 0;
  for (std::int64_t kk = 0; kk < p.k; ++kk)
    magnitude += std::fabs(double(xs[row * p.k + kk]) * double(p.weight(kk, col)));
  const double gamma = j * u / (1 - j * u);
  return 1.01 * (gamma + 2 * u + u * u) / ((1 - u) * (1 - u)) * magnitude +
         std::numeric_limits<float>::denorm_min();
}

// Runs `isa`'s path; checks it bit for bit against the scalar path (when given) and every
// output against the simulation's values summed in double.
template <class K>
void check_path(const Problem& p, kernels::Isa isa, const std::vector<float>* scalar) {
  const std::vector<float> y = run<K>(p, isa);
  std::vector<float> xs(p.x.size());
  fake_quantize_activation_per_token(FormatId::uint8, false, p.x.data(), xs.data(), p.m, p.k, 1);
  for (std::int64_t r = 0; r < p.m; ++r)
    for (std::int64_t c = 0; c < p.n; ++c) {
      const float v = y[static_cast<std::size_t>(r * p.n + c)];
      double ref = 0;
      for (std::int64_t kk = 0; kk < p.k; ++kk)
        ref += double(xs[r * p.k + kk]) * double(p.weight(kk, c));
      const double bound = error_bound(p, xs, r, c);
      const bool same_as_scalar = !scalar || (*scalar)[static_cast<std::size_t>(r * p.n + c)] == v;
      if (!(std::fabs(double(v) - ref) <= bound) || !same_as_scalar) {
        FAIL_CHECK(std::string(K::name)
                   << " " << isa_name(isa) << " m " << p.m << " k " << p.k << " n " << p.n
                   << " group " << p.group << ": y[" << r << "][" << c << "] = " << v
                   << ", reference " << ref << ", bound " << bound);
        return;
      }
    }
}

// Odd K and N, K tails of a quad, an octet and a group, tails of both panel widths (32, 64),
// several panels, K past one s16 widening span of the AVX2 paths in one group (64 k for
// W2A8, 32 k for W3A8), groups shorter, equal to and longer than K.
template <class K>
void check_every_shape(kernels::Isa isa) {
  std::uint32_t seed = 1;
  for (const std::int64_t m : {1, 2, 3, 5, 33})
    for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 1}, {7, 5}, {37, 19}, {64, 32}, {96, 65}, {128, 64}, {202, 47}, {576, 130}})
      for (const std::int64_t group : {32, 64, 128, 1 << 20})
        for (const bool symmetric : {true, false}) {
          const Problem p = make_problem<K>(m, k, n, group, symmetric, seed++);
          const std::vector<float> scalar = run<K>(p, kernels::Isa::scalar);
          check_path<K>(p, isa, isa == kernels::Isa::scalar ? nullptr : &scalar);
        }
}

// With every weight scale 1 the float sums hold exact integers (below 2^24), so each path's
// output is, bit for bit, fl(sx · sum_k (q - zx)(c - o)): any error in an integer sum shows.
template <class K>
bool exact_integers(const Problem& p, kernels::Isa isa) {
  kernels::W4a8Activations a;
  const std::vector<float> y = run<K>(p, isa, &a);
  const std::int64_t g_len = std::min(p.group, p.k);
  const std::int64_t g_pad = (g_len + K::k_multiple - 1) / K::k_multiple * K::k_multiple;
  bool all = true;
  for (std::int64_t r = 0; r < p.m; ++r) {
    const std::int32_t zx = a.zero_points[static_cast<std::size_t>(r)];
    const float sx = a.scales[static_cast<std::size_t>(r)];
    for (std::int64_t c = 0; c < p.n; ++c) {
      std::int64_t exact = 0;
      for (std::int64_t kk = 0; kk < p.k; ++kk) {
        const std::int64_t at = p.group_of(kk) * g_pad + kk % g_len;
        exact += (a.codes[static_cast<std::size_t>(r * a.padded_k + at)] - zx) *
                 std::int64_t{p.weight_int(kk, c)};
      }
      all = all && y[static_cast<std::size_t>(r * p.n + c)] == sx * static_cast<float>(exact);
    }
  }
  return all;
}

template <class K>
void check_exact_integers(kernels::Isa isa) {
  std::uint32_t seed = 100;
  for (const std::int64_t m : {1, 3, 33})
    for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {7, 5}, {37, 19}, {96, 33}, {202, 70}, {1000, 9}})
      for (const std::int64_t group : {32, 64, 128, 1 << 20})
        for (const bool symmetric : {true, false}) {
          const Problem p = make_problem<K>(m, k, n, group, symmetric, seed++, true);
          CHECK_MESSAGE(exact_integers<K>(p, isa),
                        std::string(K::name) << " " << isa_name(isa) << " m " << m << " k " << p.k
                                             << " n " << p.n << " group " << group);
        }
  // The s16 bound of the AVX2 paths: every code at max_code and every activation code 255
  // (x all 1: per-token range [0, 1]) make each vpmaddubsw pair 2·255·max_code, the most
  // each widening span adds (W3A8: 8 quads, 28560; W2A8: 16 quads, 24480); offsets 0 keep
  // the weights at their maximum.
  // The codes' other end too where it is larger in magnitude (W8A8: -128).
  for (const int extreme : {K::max_code, K::min_code}) {
    if (extreme == 0) continue;
    for (const std::int64_t group : {32, 128, 1 << 20}) {
      Problem p = make_problem<K>(3, 256, 40, group, false, seed++, true);
      std::fill(p.codes.begin(), p.codes.end(), static_cast<std::int8_t>(extreme));
      std::fill(p.offsets.begin(), p.offsets.end(), 0.f);
      std::fill(p.x.begin(), p.x.end(), 1.f);
      kernels::W4a8Activations a;
      run<K>(p, isa, &a);
      CHECK(a.codes[0] == 255);
      CHECK_MESSAGE(exact_integers<K>(p, isa), std::string(K::name)
                                                   << " " << isa_name(isa) << " all codes "
                                                   << extreme << ", group " << group);
    }
  }
}

// Packing reads back every code and weight sum, for every panel width; transposed source
// strides ([N, K] storage, a Gemm with transB) pack the same bytes.
template <class K>
void check_packing() {
  for (const kernels::Isa isa :
       {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512_vnni}) {
    // K = 45 in groups of 30: two groups of 30 and 15, each with 32 padded k.
    const Problem p = make_problem<K>(1, 45, 141, 30, false, 7);
    const auto packed = K::pack(p.source(), isa);
    CHECK(packed.panel == K::panel_width(isa));
    CHECK(packed.panels == (141 + packed.panel - 1) / packed.panel);
    CHECK(packed.groups == 2);
    CHECK(packed.group_padded == 32);
    // K::bits / 8 of a byte per weight of the padded K, per panel column.
    CHECK(packed.codes.size() ==
          static_cast<std::size_t>(packed.panels * 2 * 32 * K::bits * packed.panel / 8));
    bool all = true, sums = true;
    for (std::int64_t n = 0; n < p.n; ++n) {
      std::int32_t sum[2] = {0, 0};
      for (std::int64_t k = 0; k < p.k; ++k) {
        all = all && packed_code(packed, k, n) == p.codes[k * p.n + n];
        sum[p.group_of(k)] += p.weight_int(k, n);
      }
      for (std::int64_t g = 0; g < 2; ++g)
        sums =
            sums && packed.weight_sums[static_cast<std::size_t>(
                        ((n / packed.panel) * 2 + g) * packed.panel + n % packed.panel)] == sum[g];
    }
    CHECK(all);
    CHECK(sums);
    for (std::int64_t n = p.n; n < packed.panels * packed.panel; ++n)
      CHECK(packed_code(packed, 0, n) == 0);
  }
  const Problem p = make_problem<K>(1, 40, 9, 32, true, 8);
  std::vector<std::int8_t> nk(p.codes.size());
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) nk[n * p.k + k] = p.codes[k * p.n + n];
  kernels::W4a32Source transposed = p.source();
  transposed.codes = nk.data();
  transposed.stride_k = 1;
  transposed.stride_n = p.k;
  CHECK(K::pack(transposed, kernels::Isa::avx2).codes ==
        K::pack(p.source(), kernels::Isa::avx2).codes);
}

// Bias, clamp and output quantization as the simulation applies them; a row holding a NaN
// gives NaN sums.
template <class K>
void check_epilogue_and_nan_rows() {
  Problem p = make_problem<K>(8, 96, 70, 32, false, 11);
  p.x[static_cast<std::size_t>(3 * p.k + 17)] = std::nanf("");
  std::vector<float> bias(static_cast<std::size_t>(p.n));
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.05f * float(i % 7) - 0.1f;
  kernels::GemmEpilogue e;
  e.bias = bias.data();
  e.clamp = true;
  e.lo = 0.f;
  e.hi = 6.f;
  e.quantize_output = true;
  e.out_scale = 0.02f;
  e.out_zero_point = 3.f;
  e.out_qmin = 0.f;
  e.out_qmax = 255.f;
  for (const kernels::Isa isa :
       {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512_vnni}) {
    if (!kernels::cpu_supports(isa)) continue;
    const std::vector<float> sums = run<K>(p, isa), y = run<K>(p, isa, nullptr, e);
    bool all = true, nan_row = true;
    for (std::int64_t i = 0; i < p.m * p.n; ++i) {
      if (i / p.n == 3) {
        nan_row = nan_row && std::isnan(sums[i]);
        continue;
      }
      float v = std::min(std::max(sums[i] + bias[i % p.n], 0.f), 6.f);
      const float q = std::min(std::max(std::nearbyint(v / 0.02f) + 3.f, 0.f), 255.f);
      all = all && y[i] == (q - 3.f) * 0.02f;
    }
    CHECK_MESSAGE(all, std::string(K::name) << " " << isa_name(isa));
    CHECK_MESSAGE(nan_row, std::string(K::name) << " " << isa_name(isa));
  }
}

}  // namespace bitplan::testing::per_token
