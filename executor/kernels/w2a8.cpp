#include "executor/kernels/w2a8.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace bitplan::kernels {
namespace {

// The integer sums of one group stay exact in int32: |sum xq·c|, |o·X| and |zx·S| are each at
// most 255·3 per weight of the group, and |I| and every partial sum below 2·255·3·G4.
constexpr std::int64_t kW2MaxGroupPadded = std::numeric_limits<std::int32_t>::max() / (2 * 255 * 3);

std::size_t code_byte(const PackedW2a8& p, std::int64_t k, std::int64_t n) {
  const std::int64_t in_group = k % p.group, quarter = p.panel / 4;
  const std::int64_t quad = (k / p.group) * (p.group_padded / 4) + in_group / 4;
  return static_cast<std::size_t>((n / p.panel) * p.panel_bytes() + quad * p.panel +
                                  (n % p.panel % quarter) * 4 + in_group % 4);
}

int code_shift(const PackedW2a8& p, std::int64_t n) {
  return static_cast<int>(2 * (n % p.panel / (p.panel / 4)));
}

}  // namespace

std::int64_t w2a8_panel_width(Isa isa) {
  return isa == Isa::avx512_vnni ? 64 : 32;
}

PackedW2a8 pack_w2a8(const W4a32Source& src, Isa isa) {
  if (src.k <= 0 || src.n <= 0 || src.group <= 0)
    fail_input("packing W2A8 weights: K {}, N {} and group {} must be positive", src.k, src.n,
               src.group);
  PackedW2a8 p;
  p.isa = isa;
  p.k = src.k;
  p.n = src.n;
  p.group = std::min(src.group, src.k);
  p.groups = (p.k + p.group - 1) / p.group;
  p.group_padded = (p.group + 3) / 4 * 4;
  if (p.group_padded > kW2MaxGroupPadded)
    fail_input(
        "packing W2A8 weights: a group of {} weights is too long: its integer sums could "
        "overflow int32 (at most {} weights per scale)",
        p.group, kW2MaxGroupPadded);
  p.panel = w2a8_panel_width(isa);
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
        fail_input("packing W2A8 weights: scale {} of column {}, group {} is not finite and > 0", s,
                   n, g);
      if (!(o >= 0 && o <= 3 && o == std::nearbyint(o)))
        fail_input(
            "packing W2A8 weights: offset {} of column {}, group {} is not an integer in [0, 3]", o,
            n, g);
      p.scales[at(g, n)] = s;
      p.offsets[at(g, n)] = static_cast<std::int32_t>(o);
    }
  for (std::int64_t k = 0; k < p.k; ++k)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const int c = src.codes[k * src.stride_k + n * src.stride_n];
      if (c < 0 || c > 3)
        fail_input("packing W2A8 weights: code {} at (k {}, n {}) is not in [0, 3]", c, k, n);
      std::uint8_t& byte = p.codes[code_byte(p, k, n)];
      byte = static_cast<std::uint8_t>(byte | (c << code_shift(p, n)));
      p.weight_sums[at(k / p.group, n)] += c - p.offsets[at(k / p.group, n)];
    }
  // As in W4A8: one offset for all columns and groups is kept as P copies.
  const float first = src.offsets[0];
  p.uniform_offset =
      std::all_of(src.offsets, src.offsets + p.groups * p.n, [&](float o) { return o == first; });
  if (p.uniform_offset)
    p.offsets.assign(static_cast<std::size_t>(p.panel), static_cast<std::int32_t>(first));
  return p;
}

int packed_code(const PackedW2a8& p, std::int64_t k, std::int64_t n) {
  return (p.codes[code_byte(p, k, n)] >> code_shift(p, n)) & 3;
}

namespace detail {

// The definition: per (row, group, column) the exact integer sum I of w2a8.hpp, read from
// the packed codes, then one fused multiply-add per group and the row's scale.
void w2a8_panel_scalar(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, quarter = P / 4, quads = w.group_padded / 4;
  const std::uint8_t* codes = w.codes.data() + panel * w.panel_bytes();
  const float* scales = w.scales.data() + panel * w.groups * P;
  const std::int32_t* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  for (std::int64_t r = 0; r < m; ++r) {
    const std::int64_t row = row0 + r;
    const std::uint8_t* xq = a.codes.data() + row * a.padded_k;
    const std::int32_t zx = a.zero_points[static_cast<std::size_t>(row)];
    float acc[64] = {};
    for (std::int64_t g = 0; g < w.groups; ++g) {
      const std::int64_t len = std::min(w.group, w.k - g * w.group);
      for (std::int64_t j = 0; j < P; ++j) {
        const std::int32_t o = offsets[g * ostep + j];
        const int shift = static_cast<int>(2 * (j / quarter));
        std::int32_t dot = 0, weight_sum = 0;
        for (std::int64_t kk = 0; kk < len; ++kk) {
          const std::uint8_t b = codes[(g * quads + kk / 4) * P + (j % quarter) * 4 + kk % 4];
          const std::int32_t c = (b >> shift) & 3;
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

using W2a8PanelFn = void (*)(const PackedW2a8&, std::int64_t, const W4a8Activations&, std::int64_t,
                             std::int64_t, float*, std::int64_t);

W2a8PanelFn w2a8_panel_kernel(Isa isa) {
  switch (isa) {
    case Isa::avx512_vnni:
      return detail::w2a8_panel_avx512_vnni;
    case Isa::avx512:  // packed with the AVX2 panel width: AVX-512 F has no u8 dot products
    case Isa::avx2:
      return detail::w2a8_panel_avx2;
    case Isa::scalar:
      break;
  }
  return detail::w2a8_panel_scalar;
}

// Rows per pass over a panel (the tile below holds them).
constexpr std::int64_t kW2a8RowBlock = 16;

}  // namespace

void w2a8_gemm(const PackedW2a8& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue) {
  BITPLAN_ASSERT(w.panel <= 64);
  BITPLAN_ASSERT(cpu_supports(w.isa));
  if (m <= 0) return;
  quantize_w4a8_activations(w.activation_layout(), x, m, ldx, a);
  const W2a8PanelFn kernel = w2a8_panel_kernel(w.isa);
  const bool identity = epilogue.identity();
  // About 64k multiply-adds per task, as W4A8's.
  const std::int64_t per_panel =
      std::max<std::int64_t>(1, w.k * w.panel * std::min(m, kW2a8RowBlock));
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / per_panel);
  parallel_for(w.panels, grain, [&](std::int64_t begin, std::int64_t end) {
    alignas(64) float tile[kW2a8RowBlock * 64];
    for (std::int64_t p = begin; p < end; ++p) {
      const std::int64_t n0 = p * w.panel;
      const std::int64_t cols = std::min(w.panel, w.n - n0);
      for (std::int64_t r0 = 0; r0 < m; r0 += kW2a8RowBlock) {
        const std::int64_t rows = std::min(kW2a8RowBlock, m - r0);
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
