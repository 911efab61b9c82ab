// W2A8: y = x · W with 2-bit integer weights (int2 or uint2, symmetric or not, a scale per
// output channel, per tensor or per group of G consecutive weights along K) and activations
// quantized per token to uint8 at run time, exactly as W4A8 (w4a8.hpp) does: plan specs
// W2A8t, W2g32A8t, W2g128A8t. The same definition as W4A8's, with 2-bit container codes:
// w[k][n] = (c[k][n] - o[g][n]) · sw[g][n], c in [0, 3] (q - qmin: q + 2 on int2, q on uint2)
// and o the zero point - qmin, an integer in [0, 3]. Per row m, group g and column n
//   I[m][g][n] = sum_{k in g} xq·c - o[g][n]·X[m][g] - zx[m]·S[g][n]     (exact int32)
//   y[m][n]    = sx[m] · sum_g sw[g][n] · I[m][g][n]                   (one fma per group)
// with the activation codes, X, sx and zx of quantize_w4a8_activations (the simulation's
// per-token rule), so every path agrees bit for bit with the scalar path (the definition), and
// with the simulation of the same spec up to the float rounding bounded in
// tests/unit/executor_kernels_w2a8.cpp.
//
// Why a kernel of its own: at m = 1 (decoding) a GEMV streams its weights once, and the W4A8
// kernel reads int2 weights as 4-bit codes; here they take half the bytes (2 bits a weight plus
// the scales), and the dot products are as cheap per weight (bench/bench_lowbit.cpp).
//
// Layout (packed once at plan build): columns in panels of P (32 for AVX2 and scalar: four
// ymm of 8 int32 lanes; 64 for AVX-512 VNNI: four zmm of 16), K in groups padded to G4 = G
// rounded up to a multiple of 4 (padding codes 0; the activation codes there are 0 too). For
// each quad of 4 consecutive k, a panel takes P bytes: byte j holds, for k-offset j % 4, the
// codes of columns j / 4 + s·P/4 in bits 2s, 2s + 1 (s = 0 .. 3). So one 32-bit lane of
// (bytes >> 2s) & 3 is the 4 k-values of one column, which vpmaddubsw/vpmaddwd and vpdpbusd
// sum: one load, four shifts and four ands give the whole panel. A panel's bytes are
// contiguous over all of K. Scales, offsets and weight sums per panel as [groups][P], as in
// W4A8 (offsets once when uniform, as on symmetric grids).
#pragma once

#include <cstdint>
#include <vector>

#include "executor/kernels/isa.hpp"
#include "executor/kernels/per_token.hpp"
#include "executor/kernels/w4a32.hpp"

namespace bitplan::kernels {

// The shape, scales, offsets and weight sums are PerTokenWeights' (per_token.hpp).
struct PackedW2a8 : PerTokenWeights {
  std::vector<std::uint8_t> codes;  // panels x groups x G4/4 quads x P bytes
  std::size_t bytes() const { return codes.size() + metadata_bytes(); }
  std::int64_t panel_bytes() const { return groups * group_padded / 4 * panel; }
};

// The panel width for `isa`.
std::int64_t w2a8_panel_width(Isa isa);
// Packs for `isa` from weights whose container codes are in [0, 3] (W4a32Source's fields,
// with 2-bit codes and offsets). Fails (invalid input) on a code outside [0, 3], an offset
// that is not an integer in [0, 3], a non-positive or non-finite scale, a group of 0, or a
// group so long that its integer sums could overflow int32.
PackedW2a8 pack_w2a8(const W4a32Source& source, Isa isa);
// The container value of (k, n) read back from the packed bytes (tests).
int packed_code(const PackedW2a8& packed, std::int64_t k, std::int64_t n);

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue: quantizes x
// into `a` (make_w4a8_activations(packed.activation_layout(), m) or more rows), then runs
// the kernel of `packed.isa`, which this CPU must support, threaded over panels.
void w2a8_gemm(const PackedW2a8& packed, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue = {});

namespace detail {
void w2a8_panel_scalar(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w2a8_panel_avx2(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w2a8_panel_avx512_vnni(const PackedW2a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
}  // namespace detail

}  // namespace bitplan::kernels
