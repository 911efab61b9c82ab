// W3A8: y = x · W with 3-bit integer weights (int3 or uint3, symmetric or not, a scale per
// output channel, per tensor or per group of G consecutive weights along K) and activations
// quantized per token to uint8 at run time, exactly as W4A8 (w4a8.hpp) and W2A8 (w2a8.hpp)
// do: plan specs W3A8t, W3g32A8t, W3g128A8t. The same definition (per_token.hpp), with 3-bit
// container codes: w[k][n] = (c[k][n] - o[g][n]) · sw[g][n], c in [0, 7] (q - qmin: q + 4 on
// int3, q on uint3) and o the zero point - qmin, an integer in [0, 7]. Per row m, group g
// and column n
//   I[m][g][n] = sum_{k in g} xq·c - o[g][n]·X[m][g] - zx[m]·S[g][n]     (exact int32)
//   y[m][n]    = sx[m] · sum_g sw[g][n] · I[m][g][n]                   (one fma per group)
// with the activation codes, X, sx and zx of quantize_w4a8_activations, so every path agrees
// bit for bit with the scalar path (the definition), and with the simulation of the same spec
// up to the float rounding bounded in tests/unit/executor_kernels_w3a8.cpp. The signed weight
// q - zero point = c - o is never formed per weight: the vector paths multiply the stored
// codes c (in [0, 7], a valid s8 operand) and subtract o·X once per group, as W4A8 does.
//
// Why a kernel of its own: before it, int3 weights ran on the W4A8 kernel as 4-bit codes, so
// 3 bits cost the time of 4. Here a weight takes 3/8 of a byte (plus the scales).
//
// Layout (packed once at plan build): columns in panels of P (32 for AVX2 and scalar: four
// ymm of 8 int32 lanes; 64 for AVX-512 VNNI: four zmm of 16), K in groups padded to G8 = G
// rounded up to a multiple of 8 (padding codes 0; the activation codes there are 0 too). For
// each octet of 8 consecutive k a panel takes 3·P bytes, three planes A, B, C of P bytes.
// Byte j of each plane holds codes for k-offset j % 4 of the octet's quads q = 0, 1 and the
// columns j / 4 + s·P/4 (s = 0 .. 3): eight codes in 24 bits, code t = 4q + s at
//   t = 0: A bits 0-2,  t = 1: A bits 3-5,  t = 2: B bits 0-2,  t = 3: B bits 3-5,
//   t = 4: C bits 0-2,  t = 5: C bits 3-5,
//   t = 6: A bits 6-7 (its low two bits) and C bit 6 (its high bit),
//   t = 7: B bits 6-7 and C bit 7.
// So for each t the 32-bit lanes of one vector are the 4 k-values of one column each, which
// vpmaddubsw/vpmaddwd and vpdpbusd sum, and per octet three loads and 19 simple operations
// (6 codes: an and, or a shift and an and; the other 2: two shifts, two ands and an or) give
// all eight vectors: as many operations per weight as W4A8's unpack plus its extra widening,
// on 3/4 of its bytes. (The first layout tried, a 2-bit plane as W2A8's plus a 1-bit plane,
// took 37 operations per octet and was slower than W4A8 at M = 1: docs/performance.md.) A
// panel's bytes are contiguous over all of K. Scales, offsets and weight sums per panel as
// [groups][P] (PerTokenWeights, offsets once when uniform, as on symmetric grids).
#pragma once

#include <cstdint>
#include <vector>

#include "executor/kernels/isa.hpp"
#include "executor/kernels/per_token.hpp"
#include "executor/kernels/w4a32.hpp"

namespace bitplan::kernels {

// The shape, scales, offsets and weight sums are PerTokenWeights' (per_token.hpp).
struct PackedW3a8 : PerTokenWeights {
  std::vector<std::uint8_t> codes;  // panels x groups x G8/8 octets x 3 planes x P bytes
  std::size_t bytes() const { return codes.size() + metadata_bytes(); }
  std::int64_t panel_bytes() const { return groups * group_padded / 8 * 3 * panel; }
};

// The panel width for `isa`.
std::int64_t w3a8_panel_width(Isa isa);
// Packs for `isa` from weights whose container codes are in [0, 7] (W4a32Source's fields,
// with 3-bit codes and offsets). Fails (invalid input) on a code outside [0, 7], an offset
// that is not an integer in [0, 7], a non-positive or non-finite scale, a group of 0, or a
// group so long that its integer sums could overflow int32 (pack_per_token_metadata).
PackedW3a8 pack_w3a8(const W4a32Source& source, Isa isa);
// The container value of (k, n) read back from the packed bytes (tests).
int packed_code(const PackedW3a8& packed, std::int64_t k, std::int64_t n);

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue: quantizes x
// into `a` (make_w4a8_activations(packed, m) or more rows), then runs the kernel of
// `packed.isa`, which this CPU must support, threaded over panels.
void w3a8_gemm(const PackedW3a8& packed, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue = {});

namespace detail {
void w3a8_panel_scalar(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w3a8_panel_avx2(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w3a8_panel_avx512_vnni(const PackedW3a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
}  // namespace detail

}  // namespace bitplan::kernels
