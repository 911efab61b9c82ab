#include "executor/kernels/w4a32.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace bitplan::kernels {

std::int64_t w4a32_panel_width(Isa isa) {
  return isa >= Isa::avx512 ? 32 : 16;
}

PackedW4a32 pack_w4a32(const W4a32Source& src, Isa isa) {
  if (src.k <= 0 || src.n <= 0 || src.group <= 0)
    fail_input("packing W4A32 weights: K {}, N {} and group {} must be positive", src.k, src.n,
               src.group);
  PackedW4a32 p;
  p.isa = isa;
  p.k = src.k;
  p.n = src.n;
  p.group = std::min(src.group, src.k);
  p.groups = (p.k + p.group - 1) / p.group;
  p.panel = w4a32_panel_width(isa);
  p.panels = (p.n + p.panel - 1) / p.panel;
  const std::int64_t half = p.panel / 2;
  p.codes.assign(static_cast<std::size_t>(p.panels * p.k * half), 0);
  p.scales.assign(static_cast<std::size_t>(p.panels * p.groups * p.panel), 1.f);
  p.offsets.assign(static_cast<std::size_t>(p.panels * p.groups * p.panel), 0.f);
  for (std::int64_t g = 0; g < p.groups; ++g)
    for (std::int64_t n = 0; n < p.n; ++n) {
      const float s = src.scales[g * p.n + n], o = src.offsets[g * p.n + n];
      if (!(std::isfinite(s) && s > 0))
        fail_input("packing W4A32 weights: scale {} of column {}, group {} is not finite and > 0",
                   s, n, g);
      if (!(o >= 0 && o <= 15 && o == std::nearbyint(o)))
        fail_input(
            "packing W4A32 weights: offset {} of column {}, group {} is not an integer "
            "in [0, 15]",
            o, n, g);
      const std::int64_t at = ((n / p.panel) * p.groups + g) * p.panel + n % p.panel;
      p.scales[static_cast<std::size_t>(at)] = s;
      p.offsets[static_cast<std::size_t>(at)] = o;
    }
  // Symmetric grids have one offset for all: keep P copies of it, and give the padding
  // columns that code so their weights are 0 too.
  const float first = src.offsets[0];
  p.uniform_offset =
      std::all_of(src.offsets, src.offsets + p.groups * p.n, [&](float o) { return o == first; });
  if (p.uniform_offset) p.offsets.assign(static_cast<std::size_t>(p.panel), first);
  const int padding_code = p.uniform_offset ? static_cast<int>(first) : 0;
  for (std::int64_t n = 0; n < p.panels * p.panel; ++n) {
    const std::int64_t panel = n / p.panel, col = n % p.panel;
    const int shift = col < half ? 0 : 4;
    std::uint8_t* base = p.codes.data() + panel * p.k * half + col % half;
    for (std::int64_t k = 0; k < p.k; ++k) {
      int c;
      if (n < p.n) {
        c = src.codes[k * src.stride_k + n * src.stride_n];
        if (c < 0 || c > 15)
          fail_input("packing W4A32 weights: code {} at (k {}, n {}) is not in [0, 15]", c, k, n);
      } else {
        c = padding_code;  // padding column: code = offset, weight 0
      }
      base[k * half] = static_cast<std::uint8_t>(base[k * half] | (c << shift));
    }
  }
  return p;
}

int packed_code(const PackedW4a32& p, std::int64_t k, std::int64_t n) {
  const std::int64_t half = p.panel / 2, col = n % p.panel;
  const std::uint8_t byte =
      p.codes[static_cast<std::size_t>((n / p.panel) * p.k * half + k * half + col % half)];
  return col < half ? byte & 0xF : byte >> 4;
}

namespace detail {

// The definition: each weight dequantized exactly as dequantize_from_grid does, products
// summed over k in order, one float32 accumulator per (row, column).
void w4a32_panel_scalar(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                        std::int64_t ldx, float* y, std::int64_t ldy) {
  const std::int64_t P = w.panel, half = P / 2;
  const std::uint8_t* codes = w.codes.data() + panel * w.k * half;
  const float* scales = w.scales.data() + panel * w.groups * P;
  const float* offsets = w.panel_offsets(panel);
  const std::int64_t ostep = w.offset_group_step();
  for (std::int64_t r = 0; r < m; ++r) {
    float acc[32] = {};
    for (std::int64_t k = 0; k < w.k; ++k) {
      const std::int64_t g = k / w.group;
      const float xv = x[r * ldx + k];
      const std::uint8_t* b = codes + k * half;
      for (std::int64_t j = 0; j < P; ++j) {
        const int c = j < half ? b[j] & 0xF : b[j - half] >> 4;
        const float wv = (static_cast<float>(c) - offsets[g * ostep + j]) * scales[g * P + j];
        acc[j] += xv * wv;
      }
    }
    std::copy(acc, acc + P, y + r * ldy);
  }
}

}  // namespace detail

namespace {

using PanelFn = void (*)(const PackedW4a32&, std::int64_t, const float*, std::int64_t, std::int64_t,
                         float*, std::int64_t);

PanelFn panel_kernel(Isa isa) {
  switch (isa) {
    case Isa::avx512:
    case Isa::avx512_vnni:  // no integer dot products here: the float AVX-512 kernel
      return detail::w4a32_panel_avx512;
    case Isa::avx2:
      return detail::w4a32_panel_avx2;
    case Isa::scalar:
      break;
  }
  return detail::w4a32_panel_scalar;
}

// Rows per pass over a panel: the panel kernels keep up to this many rows' sums in a stack
// buffer before the epilogue writes them out.
constexpr std::int64_t kRowBlock = 32;

}  // namespace

void w4a32_gemm(const PackedW4a32& w, const float* x, std::int64_t m, std::int64_t ldx, float* y,
                std::int64_t ldy, const GemmEpilogue& epilogue) {
  BITPLAN_ASSERT(w.panel <= 32);
  BITPLAN_ASSERT(cpu_supports(w.isa));
  if (m <= 0) return;
  const PanelFn kernel = panel_kernel(w.isa);
  const bool identity = epilogue.identity();
  // About 64k multiply-adds per task: small layers run inline, large ones on every core.
  const std::int64_t per_panel = std::max<std::int64_t>(1, w.k * w.panel * std::min(m, kRowBlock));
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / per_panel);
  parallel_for_openmp(w.panels, grain, [&](std::int64_t begin, std::int64_t end) {
    alignas(64) float tile[kRowBlock * 32];
    for (std::int64_t p = begin; p < end; ++p) {
      const std::int64_t n0 = p * w.panel;
      const std::int64_t cols = std::min(w.panel, w.n - n0);
      for (std::int64_t r0 = 0; r0 < m; r0 += kRowBlock) {
        const std::int64_t rows = std::min(kRowBlock, m - r0);
        // Whole panels of an unfused layer go straight to y; the rest through the tile.
        if (identity && cols == w.panel) {
          kernel(w, p, x + r0 * ldx, rows, ldx, y + r0 * ldy + n0, ldy);
          continue;
        }
        kernel(w, p, x + r0 * ldx, rows, ldx, tile, w.panel);
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
