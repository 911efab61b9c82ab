#include "executor/kernels/per_token.hpp"

#include <limits>

#include "executor/quant/formats.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan::kernels {

void pack_per_token_metadata(const W4a32Source& src, Isa isa, std::string_view kernel, int min_code,
                             int max_code, std::int64_t k_multiple, std::int64_t panel,
                             PerTokenWeights& p) {
  if (src.k <= 0 || src.n <= 0 || src.group <= 0)
    fail_input("packing {} weights: K {}, N {} and group {} must be positive", kernel, src.k, src.n,
               src.group);
  p.isa = isa;
  p.k = src.k;
  p.n = src.n;
  p.group = std::min(src.group, src.k);
  p.groups = (p.k + p.group - 1) / p.group;
  p.group_padded = (p.group + k_multiple - 1) / k_multiple * k_multiple;
  // The bound of the header: every partial integer sum below 2·255·|code|max·group_padded.
  const std::int64_t largest = std::max(-std::int64_t{min_code}, std::int64_t{max_code});
  const std::int64_t max_group_padded =
      std::numeric_limits<std::int32_t>::max() / (2 * 255 * largest);
  if (p.group_padded > max_group_padded)
    fail_input(
        "packing {} weights: a group of {} weights is too long: its integer sums could "
        "overflow int32 (at most {} weights per scale)",
        kernel, p.group, max_group_padded);
  p.panel = panel;
  p.panels = (p.n + p.panel - 1) / p.panel;
  const std::size_t per_scale = static_cast<std::size_t>(p.panels * p.groups * p.panel);
  p.scales.assign(per_scale, 1.f);
  p.offsets.assign(per_scale, 0);
  p.weight_sums.assign(per_scale, 0);
  const auto at = [&](std::int64_t g, std::int64_t n) {
    return static_cast<std::size_t>(((n / p.panel) * p.groups + g) * p.panel + n % p.panel);
  };
  const auto bottom = static_cast<float>(min_code), top = static_cast<float>(max_code);
  for (std::int64_t g = 0; g < p.groups; ++g)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const float s = src.scales[g * p.n + n], o = src.offsets[g * p.n + n];
      if (!(std::isfinite(s) && s > 0))
        fail_input("packing {} weights: scale {} of column {}, group {} is not finite and > 0",
                   kernel, s, n, g);
      if (!(o >= bottom && o <= top && o == std::nearbyint(o)))
        fail_input(
            "packing {} weights: offset {} of column {}, group {} is not an integer in [{}, {}]",
            kernel, o, n, g, min_code, max_code);
      p.scales[at(g, n)] = s;
      p.offsets[at(g, n)] = static_cast<std::int32_t>(o);
    }
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      if (c < min_code || c > max_code)
        fail_input("packing {} weights: code {} at (k {}, n {}) is not in [{}, {}]", kernel, c, k,
                   n, min_code, max_code);
      p.weight_sums[at(k / p.group, n)] += c - p.offsets[at(k / p.group, n)];
    }
  // Symmetric grids have one offset for all: keep P copies of it. The padding columns'
  // -o·X term is then not 0, but their code sums are 0 (codes 0), their weight sums 0 and
  // their results never stored.
  const float first = src.offsets[0];
  p.uniform_offset =
      std::all_of(src.offsets, src.offsets + p.groups * p.n, [&](float o) { return o == first; });
  if (p.uniform_offset)
    p.offsets.assign(static_cast<std::size_t>(p.panel), static_cast<std::int32_t>(first));
}

W4a8Activations make_w4a8_activations(const PerTokenWeights& w, std::int64_t m) {
  return make_w4a8_activations(w.activation_layout(), m);
}

W4a8Activations make_w4a8_activations(const ActivationLayout& p, std::int64_t m) {
  W4a8Activations a;
  a.rows = std::max<std::int64_t>(m, 0);
  a.padded_k = p.groups * p.group_padded;
  a.groups = p.groups;
  a.codes.assign(static_cast<std::size_t>(a.rows * a.padded_k), 0);
  a.scales.assign(static_cast<std::size_t>(a.rows), 1.f);
  a.zero_points.assign(static_cast<std::size_t>(a.rows), 0);
  a.code_sums.assign(static_cast<std::size_t>(a.rows * a.groups), 0);
  return a;
}

namespace {

// One run of a row on its grid: codes = quantize_to_grid (the simulation's rounding,
// executor/quant/formats.hpp), their sum returned, `nan` set where an x was NaN (its code
// is then 0 and the row's scale NaN). Compiled again for AVX2, where std::nearbyint becomes
// vroundps (same rounding, half to even) and the loop vectorises, as fake_quantize_run is.
[[gnu::target_clones("avx2", "default")]] std::int32_t quantize_run(const float* x, std::int64_t n,
                                                                    float scale, float zero_point,
                                                                    float qmin, float qmax,
                                                                    std::uint8_t* codes,
                                                                    bool& nan) {
  std::int32_t sum = 0;
  int any_nan = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float q = quantize_to_grid(x[i], scale, zero_point, qmin, qmax);
    const bool is_nan = q != q;
    any_nan |= is_nan;
    const std::int32_t code = is_nan ? 0 : static_cast<std::int32_t>(q);
    codes[i] = static_cast<std::uint8_t>(code);
    sum += code;
  }
  nan = nan || any_nan != 0;
  return sum;
}

}  // namespace

void quantize_w4a8_activations(const PerTokenWeights& w, const float* x, std::int64_t m,
                               std::int64_t ldx, W4a8Activations& a) {
  quantize_w4a8_activations(w.activation_layout(), x, m, ldx, a);
}

void quantize_w4a8_activations(const ActivationLayout& w, const float* x, std::int64_t m,
                               std::int64_t ldx, W4a8Activations& a) {
  BITPLAN_ASSERT(a.rows >= m && a.padded_k == w.groups * w.group_padded && a.groups == w.groups);
  // The activation spec the kernel list sends here: uint8/token/asym (takes_w4a8).
  constexpr FormatId kFormat = FormatId::uint8;
  const FormatTraits& f = format_traits(kFormat);
  const auto qmin = static_cast<float>(f.qmin), qmax = static_cast<float>(f.qmax);
  parallel_for_openmp(
      m, std::max<std::int64_t>(1, (std::int64_t{1} << 14) / w.k),
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r) {
          const float* row = x + r * ldx;
          const AffineParams p = per_token_params(kFormat, /*symmetric=*/false, row, w.k);
          bool nan = false;
          for (std::int64_t g = 0; g < w.groups; ++g) {
            const std::int64_t k0 = g * w.group, len = std::min(w.group, w.k - k0);
            a.code_sums[static_cast<std::size_t>(r * w.groups + g)] =
                quantize_run(row + k0, len, p.scale, p.zero_point, qmin, qmax,
                             a.codes.data() + r * a.padded_k + g * w.group_padded, nan);
          }
          a.scales[static_cast<std::size_t>(r)] =
              nan ? std::numeric_limits<float>::quiet_NaN() : p.scale;
          a.zero_points[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(p.zero_point);
        }
      });
}

}  // namespace bitplan::kernels
