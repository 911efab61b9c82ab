// W4A8: y = x · W with integer weights of at most 4 bits (as for W4A32: int2-int4 or
// uint2-uint4, symmetric or not, a scale per output channel, per tensor or per group of G
// consecutive weights along K) and activations quantized per token (row of x) to uint8,
// asymmetric, with ranges taken at run time: plan specs W4g32A8t, W4g128A8t, W4A8t
// (`uint8/token/asym`, dynamic: true). The products are integer dot products (u8 x s8 into
// int32: vpmaddubsw + vpmaddwd on AVX2, vpdpbusd on AVX-512 VNNI), the scales applied once
// per group.
//
// What every path computes (the scalar path is the definition; docs/quantization.md):
// each row m of x is quantized by the simulation's own rule (per_token_params and
// quantize_to_grid, executor/quant/), giving codes xq[m][k] in [0, 255], a scale sx[m] and
// a zero point zx[m]; the weights are w[k][n] = (c[k][n] - o[g][n]) · sw[g][n] as in
// w4a32.hpp (c the 4-bit container value, o the offset, g = k / G). Then
//   I[m][g][n] = sum_{k in g} xq[m][k]·(c[k][n] - o[g][n]) - zx[m]·sum_{k in g} (c[k][n] - o[g][n])
//   y[m][n]    = sx[m] · sum_g sw[g][n] · I[m][g][n]        (+ bias[n], then the epilogue)
// which is sum_k (xq - zx)·sx · (c - o)·sw, the simulation's fake-quantized x times its
// dequantized weights, up to float rounding. I is an exact int32 (|I| <= 2·255·15·G, checked
// at pack time); the sums over g run in float32 with one fused multiply-add per group, in the
// same order on every path, so the paths agree bit for bit
// (tests/unit/executor_kernels_w4a8.cpp derives the bound against the exact value).
// A row holding a NaN gets sx = NaN, so its outputs are NaN as in the simulation; ±Inf
// saturate to the grid's ends, as in the simulation.
//
// The vector paths split the zero-point terms out of the dot product so that the codes can
// be used as they are stored (c in [0, 15] is a valid s8 operand):
//   I = sum_{k in g} xq·c - o[g][n]·X[m][g] - zx[m]·S[g][n],
//   X[m][g] = sum_{k in g} xq[m][k] (found while quantizing),
//   S[g][n] = sum_{k in g} (c[k][n] - o[g][n]) (found at pack time).
//
// Layout (plan once, run many: pack_w4a8 runs at plan build, never in run):
// columns in panels of P (16 for AVX2 and scalar: two ymm of 8 int32 lanes; 32 for AVX-512
// VNNI), K in groups each padded to G4 = G rounded up to a multiple of 4 (padding codes 0,
// and the activation codes there 0, so they add nothing). For each group, for each quad of 4
// consecutive k, a panel takes 2·P bytes: byte j holds, for k-offset j % 4, column j / 4 in
// its low nibble and column P/2 + j / 4 in its high nibble. So one 32-bit lane holds the 4
// k-values of one column, which is what vpmaddubsw/vpmaddwd and vpdpbusd sum, and one load,
// an and and a shift give the two halves of the panel. A panel's bytes are contiguous over
// all of K: one sequential stream per thread. Scales, offsets and weight sums are stored per
// panel as [groups][P] (offsets once when they are all the same, as on symmetric grids).
// Columns past N (the last panel) have code 0, scale 1 and a weight sum of 0, so they add
// nothing whatever their offset; they are computed and not stored.
#pragma once

#include <cstdint>
#include <vector>

#include "executor/kernels/isa.hpp"
#include "executor/kernels/per_token.hpp"
#include "executor/kernels/w4a32.hpp"

namespace bitplan::kernels {

// The shape, scales, offsets and weight sums are PerTokenWeights' (per_token.hpp), shared
// with W3A8 and W2A8.
struct PackedW4a8 : PerTokenWeights {
  std::vector<std::uint8_t> codes;  // panels x groups x G4/4 quads x 2·P bytes
  std::size_t bytes() const { return codes.size() + metadata_bytes(); }
  // Bytes of one panel's codes.
  std::int64_t panel_bytes() const { return groups * group_padded / 4 * 2 * panel; }
};

// The panel width for `isa`.
std::int64_t w4a8_panel_width(Isa isa);
// Packs for `isa` from the weights as the quantizer defines them (the same source as W4A32's).
// Fails (invalid input) on a code outside [0, 15], an offset that is not an integer in
// [0, 15], a non-positive or non-finite scale, a group of 0, or a group so long that its
// integer sums could overflow int32.
PackedW4a8 pack_w4a8(const W4a32Source& source, Isa isa);
// The container value of (k, n) read back from the packed bytes (tests).
int packed_code(const PackedW4a8& packed, std::int64_t k, std::int64_t n);

// The activations (make_w4a8_activations, quantize_w4a8_activations): per_token.hpp.

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue: quantizes x
// into `a` (room for m rows), then runs the kernel of `packed.isa`, which must be one this
// CPU supports (cpu_supports), threaded over panels (core/parallel.hpp). Allocates nothing.
void w4a8_gemm(const PackedW4a8& packed, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue = {});

// One panel's results for rows [row0, row0 + m) of `a`: the per-ISA microkernels
// (w4a8_*.cpp). `y` receives P columns per row (row stride ldy), padding columns included;
// no bias, no epilogue.
namespace detail {
void w4a8_panel_scalar(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w4a8_panel_avx2(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w4a8_panel_avx512_vnni(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
}  // namespace detail

}  // namespace bitplan::kernels
