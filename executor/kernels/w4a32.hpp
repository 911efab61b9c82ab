// W4A32: y = x · W for float32 activations x [M, K] and integer weights of at most 4 bits
// (int2/int3/int4, uint2/uint3/uint4; symmetric or asymmetric; a scale per output channel,
// per tensor, or per group of G consecutive weights along K), packed two per byte.
// The weights are dequantized in registers and the products accumulated in float32, so
// the weight traffic is an eighth of fp32's: for memory-bound shapes (batch-1 / small-M
// GEMV and GEMM: LLM decoding, large FFN and classifier layers) fewer bits mean less time.
//
// What every path computes (the scalar path is the definition; docs/quantization.md):
//   w[k][n] = (c[k][n] - o[g][n]) * s[g][n],   g = k / G
//   y[m][n] = sum_k x[m][k] * w[k][n]  (+ bias[n], then the fused epilogue)
// with c the 4-bit container value of the code q (c = q + 8 for signed grids, q for
// unsigned ones) and o = zero point + the same 8 (or 0): c - o = q - zero point, an exact
// small integer, so w is, bit for bit, the simulation's dequantized weight
// (dequantize_from_grid). The scalar path computes exactly this, in order. The vector paths
// take the same value with the scale applied once per group instead of once per weight,
//   y[m][n] = sum_g s[g][n] · sum_{k in g} x[m][k] · (c[k][n] - o[g][n]),
// which saves a multiply per weight; they differ from the scalar path only in float32
// rounding (tests/unit/executor_kernels_w4a32.cpp derives and checks the bound).
//
// Layout (plan once, run many: pack_w4a32 runs at plan build, never in run):
// columns in panels of P = 2·L (L = the ISA's float lanes: 8 for AVX2 and scalar, 16 for
// AVX-512); for each k, a panel's P codes take P/2 bytes, byte j holding column j in its low
// nibble and column j + L in its high nibble, so one zero-extending load gives L codes of
// each half in vector lanes (and, shift, convert). A panel's bytes are contiguous over all
// K: one sequential stream per thread. Scales and offsets are stored per panel as
// [groups][P] floats. Columns past N (the last panel) have code = offset (weight 0), are
// computed and not stored.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "executor/kernels/epilogue.hpp"
#include "executor/kernels/isa.hpp"

namespace bitplan::kernels {

// Weights as the quantizer defines them, before packing. Logical [K, N]: element (k, n) at
// codes[k * n_stride_k + n * n_stride_n] (so a [N, K] Gemm transB weight is a stride swap).
struct W4a32Source {
  std::int64_t k = 0, n = 0;
  std::int64_t group = 0;  // weights per scale along K; >= k: one group (per channel/tensor)
  const std::int8_t* codes = nullptr;  // container values c in [0, 15]
  std::int64_t stride_k = 0, stride_n = 0;
  // Per (group, column): scale s > 0 and offset o (an integer in [0, 15]); [groups][N].
  const float* scales = nullptr;
  const float* offsets = nullptr;
};

struct PackedW4a32 {
  Isa isa = Isa::scalar;  // the kernel it was packed for (the panel width follows from it)
  std::int64_t k = 0, n = 0, group = 0, groups = 0;
  std::int64_t panel = 0;           // P columns per panel
  std::int64_t panels = 0;          // ceil(n / P)
  std::vector<std::uint8_t> codes;  // panels x k x P/2 bytes
  std::vector<float> scales;        // panels x groups x P
  // panels x groups x P; or, when every column and group has the same offset (symmetric
  // grids: 8 or 0), just P copies of it: no offset traffic per group.
  std::vector<float> offsets;
  bool uniform_offset = false;
  std::size_t bytes() const {
    return codes.size() + (scales.size() + offsets.size()) * sizeof(float);
  }
  // Panel p's offsets, and the step from one group's to the next (0 when uniform).
  const float* panel_offsets(std::int64_t p) const {
    return offsets.data() + (uniform_offset ? 0 : p * groups * panel);
  }
  std::int64_t offset_group_step() const { return uniform_offset ? 0 : panel; }
};

// The panel width for `isa`.
std::int64_t w4a32_panel_width(Isa isa);
// Packs for `isa`. Fails (invalid input) on a code outside [0, 15], an offset that is not an
// integer in [0, 15], a non-positive or non-finite scale, a group of 0.
PackedW4a32 pack_w4a32(const W4a32Source& source, Isa isa);
// The container value of (k, n) read back from the packed bytes (tests).
int packed_code(const PackedW4a32& packed, std::int64_t k, std::int64_t n);

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue (epilogue.hpp).
// Threaded over panels (core/parallel.hpp). Runs the kernel of `packed.isa`, which must be one this
// CPU supports (cpu_supports). Allocates nothing.
void w4a32_gemm(const PackedW4a32& packed, const float* x, std::int64_t m, std::int64_t ldx,
                float* y, std::int64_t ldy, const GemmEpilogue& epilogue = {});

// One panel's sums for rows [0, m): the per-ISA microkernels (w4a32_*.cpp). `y` receives P
// columns per row (row stride ldy), padding columns included; no bias, no epilogue.
namespace detail {
void w4a32_panel_scalar(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                        std::int64_t ldx, float* y, std::int64_t ldy);
void w4a32_panel_avx2(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                      std::int64_t ldx, float* y, std::int64_t ldy);
void w4a32_panel_avx512(const PackedW4a32& w, std::int64_t panel, const float* x, std::int64_t m,
                        std::int64_t ldx, float* y, std::int64_t ldy);
}  // namespace detail

}  // namespace bitplan::kernels
