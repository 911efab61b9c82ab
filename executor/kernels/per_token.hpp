// What bitplan's integer kernels with per-token uint8 activations share: W4A8 (w4a8.hpp),
// W3A8 (w3a8.hpp) and W2A8 (w2a8.hpp) differ only in how many bits a weight code takes and
// how the codes are laid out in a panel; everything else is written once here:
//   - the activations: each row of x quantized to uint8 codes with the simulation's
//     per-token rule (W4a8Activations, quantize_w4a8_activations);
//   - the weights' per (group, column) data: scales sw, offsets o (once when uniform) and
//     weight sums S, in panels of P columns as [groups][P], checked and filled by
//     pack_per_token_metadata (PerTokenWeights);
//   - the scalar definition of the sums (per_token_panel_scalar), given a kernel's code reader;
//   - the driver (per_token_gemm): quantize x, then one panel kernel per panel and block of
//     rows, threaded over panels, the epilogue applied to partial panels through a tile.
// Every kernel computes, per row m, group g and column n (w4a8.hpp derives it)
//   I[m][g][n] = sum_{k in g} xq·c - o[g][n]·X[m][g] - zx[m]·S[g][n]     (exact int32)
//   y[m][n]    = sx[m] · sum_g sw[g][n] · I[m][g][n]                   (one fma per group)
// so that all of them, on every ISA path, agree bit for bit with their scalar path.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/kernels/epilogue.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/kernels/w4a32.hpp"

namespace bitplan::kernels {

// Where each row's activation codes go: K in groups of `group`, each padded to
// `group_padded` (a multiple of 4; W3A8 pads to 8). The same for every kernel of one K,
// group and padding.
struct ActivationLayout {
  std::int64_t k = 0, group = 0, groups = 0, group_padded = 0;
};

// The activations of one call, quantized: what the kernels read instead of x. Made once at
// plan build for the layer's row count (make_w4a8_activations), refilled by every call.
struct W4a8Activations {
  std::int64_t rows = 0, padded_k = 0, groups = 0;
  std::vector<std::uint8_t> codes;        // rows x padded_k: xq, group g at g·G4, padding 0
  std::vector<float> scales;              // rows: sx (NaN for a row holding a NaN)
  std::vector<std::int32_t> zero_points;  // rows: zx
  std::vector<std::int32_t> code_sums;    // rows x groups: X = sum_{k in g} xq
};

// The weights' shape and per (group, column) data; each kernel's packed struct adds its codes.
struct PerTokenWeights {
  Isa isa = Isa::scalar;  // the kernel it was packed for (the panel width follows from it)
  std::int64_t k = 0, n = 0, group = 0, groups = 0;
  std::int64_t group_padded = 0;  // the group's k rounded up to the kernel's multiple
  std::int64_t panel = 0;         // P columns per panel
  std::int64_t panels = 0;        // ceil(n / P)
  std::vector<float> scales;      // panels x groups x P: sw
  // panels x groups x P: o; or, when every column and group has the same offset (symmetric
  // grids), just P copies of it: no offset traffic per group.
  std::vector<std::int32_t> offsets;
  bool uniform_offset = false;
  std::vector<std::int32_t> weight_sums;  // panels x groups x P: S = sum_{k in g} (c - o)

  // Panel p's offsets, and the step from one group's to the next (0 when uniform).
  const std::int32_t* panel_offsets(std::int64_t p) const {
    return offsets.data() + (uniform_offset ? 0 : p * groups * panel);
  }
  std::int64_t offset_group_step() const { return uniform_offset ? 0 : panel; }
  std::int64_t padded_k() const { return groups * group_padded; }
  ActivationLayout activation_layout() const { return {k, group, groups, group_padded}; }
  std::size_t metadata_bytes() const {
    return scales.size() * sizeof(float) +
           (offsets.size() + weight_sums.size()) * sizeof(std::int32_t);
  }
};

// Checks `src` for `kernel` ("W4A8", ...: messages name it) with container codes in
// [min_code, max_code] and fills `p` but for the codes: shape, groups padded to a multiple of
// `k_multiple`, `panel` columns per panel, scales, offsets, weight sums. Fails (invalid
// input) on a code outside [min_code, max_code], an offset that is not an integer in that
// range, a non-positive or non-finite scale, a group of 0, or a group so long that its integer
// sums could overflow int32: with L = max(|min_code|, |max_code|), |sum xq·c| and |o·X| are
// at most 255·L per weight of the group and |zx·S| and |I| at most 255·2L (|c - o| <= 2L), so
// every partial sum stays below 2·255·L·(padded group).
void pack_per_token_metadata(const W4a32Source& src, Isa isa, std::string_view kernel, int min_code,
                             int max_code, std::int64_t k_multiple, std::int64_t panel,
                             PerTokenWeights& p);

// Room for `m` rows of activations laid out as `layout` (or as `weights` reads them).
W4a8Activations make_w4a8_activations(const ActivationLayout& layout, std::int64_t m);
W4a8Activations make_w4a8_activations(const PerTokenWeights& weights, std::int64_t m);
// Quantizes rows [0, m) of x (row stride ldx) into `a` (which has room for at least m rows)
// with the simulation's dynamic per-token uint8 asym rule. Threaded over rows.
void quantize_w4a8_activations(const ActivationLayout& layout, const float* x, std::int64_t m,
                               std::int64_t ldx, W4a8Activations& a);
void quantize_w4a8_activations(const PerTokenWeights& weights, const float* x, std::int64_t m,
                               std::int64_t ldx, W4a8Activations& a);

// One panel's results for rows [row0, row0 + m) of `a`, P columns per row (row stride ldy),
// padding columns included; no bias, no epilogue: the per-ISA microkernels.
template <class Packed>
using PerTokenPanelFn = void (*)(const Packed& w, std::int64_t panel, const W4a8Activations& a,
                                 std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);

// The panel kernel of `isa`: AVX-512 F without VNNI has no u8 dot products and runs the
// AVX2 kernel (packed with the AVX2 panel width).
template <class Packed>
PerTokenPanelFn<Packed> per_token_panel_kernel(Isa isa, PerTokenPanelFn<Packed> scalar,
                                               PerTokenPanelFn<Packed> avx2,
                                               PerTokenPanelFn<Packed> avx512_vnni) {
  switch (isa) {
    case Isa::avx512_vnni:
      return avx512_vnni;
    case Isa::avx512:
    case Isa::avx2:
      return avx2;
    case Isa::scalar:
      break;
  }
  return scalar;
}

// The definition: per (row, group, column) the exact integer sum I above, from the codes
// `code(g, kk, j)` (group g, k-offset kk in the group, column j of the panel) that a kernel
// reads back from its panel, then one fused multiply-add per group and the row's scale.
template <class Packed, class CodeOf>
void per_token_panel_scalar(const Packed& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy,
                            const CodeOf& code) {
  const std::int64_t P = w.panel;
  BITPLAN_ASSERT(P <= 64);
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
        std::int32_t dot = 0, weight_sum = 0;
        for (std::int64_t kk = 0; kk < len; ++kk) {
          const std::int32_t c = code(g, kk, j);
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

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue: quantizes x
// into `a` (room for m rows), then runs `kernel` on up to `row_block` rows of a panel at a
// time (row_block · P <= 1024), threaded over panels on the OpenMP pool (core/parallel.hpp), about
// 64k multiply-adds per task. Whole panels of an unfused layer go straight to y; the rest through
// a tile. Allocates nothing.
template <class Packed>
void per_token_gemm(const Packed& w, PerTokenPanelFn<Packed> kernel, std::int64_t row_block,
                    const float* x, std::int64_t m, std::int64_t ldx, float* y, std::int64_t ldy,
                    W4a8Activations& a, const GemmEpilogue& epilogue) {
  constexpr std::int64_t kTile = 1024;
  BITPLAN_ASSERT(row_block * w.panel <= kTile);
  BITPLAN_ASSERT(cpu_supports(w.isa));
  if (m <= 0) return;
  quantize_w4a8_activations(w.activation_layout(), x, m, ldx, a);
  const bool identity = epilogue.identity();
  const std::int64_t per_panel = std::max<std::int64_t>(1, w.k * w.panel * std::min(m, row_block));
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / per_panel);
  parallel_for_openmp(w.panels, grain, [&](std::int64_t begin, std::int64_t end) {
    alignas(64) float tile[kTile];
    for (std::int64_t p = begin; p < end; ++p) {
      const std::int64_t n0 = p * w.panel;
      const std::int64_t cols = std::min(w.panel, w.n - n0);
      for (std::int64_t r0 = 0; r0 < m; r0 += row_block) {
        const std::int64_t rows = std::min(row_block, m - r0);
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
