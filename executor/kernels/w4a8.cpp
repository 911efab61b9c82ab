#include "executor/kernels/w4a8.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/quant/formats.hpp"
#include "executor/quant/quantizer.hpp"

namespace bitplan::kernels {
namespace {

// The integer sums of one group stay exact in int32: |sum xq·c| and |zx·S| are at most
// 255·15 per weight of the group, |o·X| too, so |I| and every partial sum are below
// 2·255·15·G4 (the vector paths add sum xq·c first, then subtract the two terms).
constexpr std::int64_t kMaxGroupPadded = std::numeric_limits<std::int32_t>::max() / (2 * 255 * 15);

}  // namespace

std::int64_t w4a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 32 : 16;
}

PackedW4a8 pack_w4a8(const W4a32Source& src, Isa isa) {
  if (src.k <= 0 || src.n <= 0 || src.group <= 0)
    fail_input("packing W4A8 weights: K {}, N {} and group {} must be positive", src.k, src.n,
               src.group);
  PackedW4a8 p;
  p.isa = isa;
  p.k = src.k;
  p.n = src.n;
  p.group = std::min(src.group, src.k);
  p.groups = (p.k + p.group - 1) / p.group;
  p.group_padded = (p.group + 3) / 4 * 4;
  if (p.group_padded > kMaxGroupPadded)
    fail_input(
        "packing W4A8 weights: a group of {} weights is too long: its integer sums could "
        "overflow int32 (at most {} weights per scale)",
        p.group, kMaxGroupPadded);
  p.panel = w4a8_panel_width(isa);
  p.panels = (p.n + p.panel - 1) / p.panel;
  const std::size_t per_scale = static_cast<std::size_t>(p.panels * p.groups * p.panel);
  p.codes.assign(static_cast<std::size_t>(p.panels * p.panel_bytes()), 0);
  p.scales.assign(per_scale, 1.f);
  p.offsets.assign(per_scale, 0);
  p.weight_sums.assign(per_scale, 0);
  const auto at = [&](std::int64_t g, std::int64_t n) {
    return static_cast<std::size_t>(((n / p.panel) * p.groups + g) * p.panel + n % p.panel);
  };
  for (std::int64_t g = 0; g < p.groups; ++g)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const float s = src.scales[g * p.n + n], o = src.offsets[g * p.n + n];
      if (!(std::isfinite(s) && s > 0))
        fail_input("packing W4A8 weights: scale {} of column {}, group {} is not finite and > 0", s,
                   n, g);
      if (!(o >= 0 && o <= 15 && o == std::nearbyint(o)))
        fail_input(
            "packing W4A8 weights: offset {} of column {}, group {} is not an integer in [0, 15]",
            o, n, g);
      p.scales[at(g, n)] = s;
      p.offsets[at(g, n)] = static_cast<std::int32_t>(o);
    }
  const std::int64_t half = p.panel / 2, quad_bytes = 2 * p.panel;
  for (std::int64_t k = 0; k < p.k; ++k) {
    const std::int64_t g = k / p.group, in_group = k % p.group;
    const std::int64_t quad = g * (p.group_padded / 4) + in_group / 4;
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      if (c < 0 || c > 15)
        fail_input("packing W4A8 weights: code {} at (k {}, n {}) is not in [0, 15]", c, k, n);
      const std::int64_t col = n % p.panel;
      std::uint8_t& byte = p.codes[static_cast<std::size_t>(
          (n / p.panel) * p.panel_bytes() + quad * quad_bytes + (col % half) * 4 + in_group % 4)];
      byte = static_cast<std::uint8_t>(byte | (c << (col < half ? 0 : 4)));
      p.weight_sums[at(g, n)] += c - p.offsets[at(g, n)];
    }
  }
  // Symmetric grids have one offset for all: keep P copies of it. The padding columns'
  // -o·X term is then not 0, but their code sums are 0 (codes 0), their weight sums 0 and
  // their results never stored.
  const float first = src.offsets[0];
  p.uniform_offset =
      std::all_of(src.offsets, src.offsets + p.groups * p.n, [&](float o) { return o == first; });
  if (p.uniform_offset)
    p.offsets.assign(static_cast<std::size_t>(p.panel), static_cast<std::int32_t>(first));
  return p;
}

int packed_code(const PackedW4a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t half = p.panel / 2, col = n % p.panel, in_group = k % p.group;
  const std::int64_t quad = (k / p.group) * (p.group_padded / 4) + in_group / 4;
  const std::uint8_t byte = p.codes[static_cast<std::size_t>(
      (n / p.panel) * p.panel_bytes() + quad * 2 * p.panel + (col % half) * 4 + in_group % 4)];
  return col < half ? byte & 0xF : byte >> 4;
}

W4a8Activations make_w4a8_activations(const PackedW4a8& p, std::int64_t m) {
  return make_w4a8_activations(p.activation_layout(), m);
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

void quantize_w4a8_activations(const PackedW4a8& w, const float* x, std::int64_t m,
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
  parallel_for(m, std::max<std::int64_t>(1, (std::int64_t{1} << 14) / w.k),
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
                   a.zero_points[static_cast<std::size_t>(r)] =
                       static_cast<std::int32_t>(p.zero_point);
                 }
               });
}

namespace detail {

// The definition: per (row, group, column) the exact integer sum I of w4a8.hpp, read from
// the packed codes, then one fused multiply-add per group and the row's scale.
void w4a8_panel_scalar(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, half = P / 2, quads = w.group_padded / 4;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  const float* scales = w.scales.data() + panel * w.groups * P;
  const std::int32_t* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  for (std::int64_t r = 0; r < m; ++r) {
    const std::int64_t row = row0 + r;
    const std::uint8_t* xq = a.codes.data() + row * a.padded_k;
    const std::int32_t zx = a.zero_points[static_cast<std::size_t>(row)];
    float acc[32] = {};
    for (std::int64_t g = 0; g < w.groups; ++g) {
      const std::int64_t len = std::min(w.group, w.k - g * w.group);
      for (std::int64_t j = 0; j < P; ++j) {
        const std::int32_t o = offsets[g * ostep + j];
        std::int32_t dot = 0, weight_sum = 0;
        for (std::int64_t kk = 0; kk < len; ++kk) {
          const std::uint8_t b = codes[(g * quads + kk / 4) * 2 * P + (j % half) * 4 + kk % 4];
          const std::int32_t c = j < half ? b & 0xF : b >> 4;
          dot += xq[g * w.group_padded + kk] * (c - o);
          weight_sum += c - o;
        }
        const std::int32_t sum = dot - zx * weight_sum;
        acc[j] = std::fma(scales[g * P + j], static_cast<float>(sum), acc[j]);
      }
    }
    const float sx = a.scales[static_cast<std::size_t>(row)];
    for (std::int64_t j = 0; j < P; ++j) y[r * ldy + j] = sx * acc[j];
  }
}

}  // namespace detail

namespace {

using W4a8PanelFn = void (*)(const PackedW4a8&, std::int64_t, const W4a8Activations&, std::int64_t,
                             std::int64_t, float*, std::int64_t);

W4a8PanelFn w4a8_panel_kernel(Isa isa) {
  switch (isa) {
    case Isa::avx512_vnni:
      return detail::w4a8_panel_avx512_vnni;
    case Isa::avx512:  // packed with the AVX2 panel width: AVX-512 F has no u8 dot products
    case Isa::avx2:
      return detail::w4a8_panel_avx2;
    case Isa::scalar:
      break;
  }
  return detail::w4a8_panel_scalar;
}

// Rows per pass over a panel: the panel kernels keep up to this many rows' results in a
// stack buffer before the epilogue writes them out.
constexpr std::int64_t kW4a8RowBlock = 32;

}  // namespace

void w4a8_gemm(const PackedW4a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  BITPLAN_ASSERT(w.panel <= 32);
  BITPLAN_ASSERT(cpu_supports(w.isa));
  if (m <= 0) return;
  quantize_w4a8_activations(w, x, m, ldx, a);
  const W4a8PanelFn kernel = w4a8_panel_kernel(w.isa);
  const bool identity = epilogue.identity();
  // About 64k multiply-adds per task: small layers run inline, large ones on every core.
  const std::int64_t per_panel =
      std::max<std::int64_t>(1, w.k * w.panel * std::min(m, kW4a8RowBlock));
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / per_panel);
  parallel_for(w.panels, grain, [&](std::int64_t begin, std::int64_t end) {
    alignas(64) float tile[kW4a8RowBlock * 32];
    for (std::int64_t p = begin; p < end; ++p) {
      const std::int64_t n0 = p * w.panel;
      const std::int64_t cols = std::min(w.panel, w.n - n0);
      for (std::int64_t r0 = 0; r0 < m; r0 += kW4a8RowBlock) {
        const std::int64_t rows = std::min(kW4a8RowBlock, m - r0);
        // Whole panels of an unfused layer go straight to y; the rest through the tile.
        if (identity && cols == w.panel) {
          kernel(w, p, a, r0, rows, y + r0 * ldy + n0, ldy);
          continue;
        }
        kernel(w, p, a, r0, rows, tile, w.panel);
        for (std::int64_t r = 0; r < rows; ++r) {
          float* out = y + (r0 + r) * ldy + n0;
          std::copy(tile + r * w.panel, tile + r * w.panel + cols, out);
          epilogue.apply(out, cols, n0);
        }
      }
    }
  });
}

}  // namespace bitplan::kernels
