// W8A8: y = x · W with signed integer weights of up to 8 bits (int8 ... int2, symmetric or
// not, a scale per output channel, per tensor or per group of G consecutive weights along K)
// and activations quantized per token to uint8 at run time, exactly as W4A8 (w4a8.hpp) does:
// plan specs W8A8t, W8g128A8t. The transformer's accurate int8: SmolLM2-135M's perplexity is
// 26.0 with per-token activations against 48.4 with static per-tensor ones (W8A8), which
// oneDNN's int8 kernels take (docs/quantization.md), and ONNX Runtime's quantize_dynamic is
// the same idea with one range per tensor.
// The definition is W4A8's, with the codes stored as the grid holds them: c = q in [-128, 127]
// (no container offset) and o the zero point, an integer in [-128, 127]. Per row m, group g
// and column n
//   I[m][g][n] = sum_{k in g} xq·c - o[g][n]·X[m][g] - zx[m]·S[g][n]     (exact int32)
//   y[m][n]    = sx[m] · sum_g sw[g][n] · I[m][g][n]                   (one fma per group)
// with the activation codes, X, sx and zx of quantize_w4a8_activations (the simulation's
// per-token rule), so the VNNI path agrees bit for bit with the scalar path (the definition)
// and with the simulation up to the float rounding bounded in tests/unit/executor_kernels_w8a8.cpp.
//
// AVX-512 VNNI only: vpdpbusd adds four u8 x s8 products into int32, while AVX2's vpmaddubsw
// adds each pair into a saturating int16, which 2·255·128 overflows. The kernel list declines
// W8A8 on CPUs without it (as oneDNN's int8 kernels decline 8-bit weights there); the scalar
// path is the definition and the tests' reference, never a fallback the executor takes.
//
// Layout (packed once at plan build): columns in panels of P = 32 (two zmm of 16 int32
// lanes), K in groups each padded to G4 = G rounded up to a multiple of 4 (padding codes 0;
// the activation codes there are 0 too). For each group, for each quad of 4 consecutive k, a
// panel takes 4·P bytes: byte 4j + t holds column j's code at k-offset t, so one 32-bit lane
// is the 4 k-values of one column, which vpdpbusd sums: two 64-byte loads per quad. A panel's
// bytes are contiguous over all of K. Scales, offsets and weight sums per panel as [groups][P]
// (PerTokenWeights; offsets once when uniform, as on symmetric grids).
#pragma once

#include <cstdint>
#include <vector>

#include "executor/kernels/isa.hpp"
#include "executor/kernels/per_token.hpp"
#include "executor/kernels/w4a32.hpp"

namespace bitplan::kernels {

struct PackedW8a8 : PerTokenWeights {
  std::vector<std::uint8_t> codes;  // panels x groups x G4/4 quads x 4·P bytes, each an s8 code
  std::size_t bytes() const { return codes.size() + metadata_bytes(); }
  std::int64_t panel_bytes() const { return groups * group_padded * panel; }
};

// The panel width: 32 on every ISA (one layout; only the VNNI path is fast).
std::int64_t w8a8_panel_width(Isa isa);
// Packs from weights whose codes are the grid's values q in [-128, 127] (W4a32Source's
// fields; offsets = zero points). Fails (invalid input) on an offset that is not an integer
// in [-128, 127], a non-positive or non-finite scale, a group of 0, or a group so long that
// its integer sums could overflow int32 (pack_per_token_metadata).
PackedW8a8 pack_w8a8(const W4a32Source& source, Isa isa);
// The code of (k, n) read back from the packed bytes (tests).
int packed_code(const PackedW8a8& packed, std::int64_t k, std::int64_t n);

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W, then the epilogue: quantizes x
// into `a` (make_w4a8_activations(packed, m) or more rows), then runs the kernel of
// `packed.isa` (VNNI where it was packed for it, else the scalar definition), which this CPU
// must support, threaded over panels.
void w8a8_gemm(const PackedW8a8& packed, const float* x, std::int64_t m, std::int64_t ldx, float* y,
               std::int64_t ldy, W4a8Activations& a, const GemmEpilogue& epilogue = {});

namespace detail {
void w8a8_panel_scalar(const PackedW8a8& w, std::int64_t panel, const W4a8Activations& a,
                       std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
void w8a8_panel_avx512_vnni(const PackedW8a8& w, std::int64_t panel, const W4a8Activations& a,
                            std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy);
}  // namespace detail

}  // namespace bitplan::kernels
