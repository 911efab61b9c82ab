// W4A8 panel kernel, AVX2: a panel of 16 columns, two ymm of 8 int32 lanes each, one lane
// per column holding 4 consecutive k (w4a8.hpp). Per quad of k: one 32-byte load; an and
// gives the codes of columns 0-7, a shift and an and those of columns 8-15; each row's 4
// activation codes are broadcast to every lane, vpmaddubsw multiplies u8 (activations) by s8
// (weight codes) and adds neighbouring pairs into s16, vpmaddwd by ones adds the two pairs
// into the lane's int32. vpmaddubsw saturates its s16 sums, which cannot happen here: the
// weight operand is the stored code c in [0, 15] (the offsets are subtracted once per group,
// w4a8.hpp), so a pair is at most 2·255·15 = 7650 < 32767. At the end of each group the
// zero-point terms are subtracted from the exact int32 sums, which are converted and scaled
// once. Tiles of up to 4 rows reuse each unpacked weight vector (8 int32 accumulators).
// Compiled with a function target attribute: this file adds no ISA flag to the build, and
// w4a8_gemm calls it only where cpu_supports(Isa::avx2).
#include <cstring>

#include "executor/kernels/per_token_x86.hpp"
#include "executor/kernels/w4a8.hpp"

namespace bitplan::kernels::detail {
namespace {

template <int MT>
BITPLAN_AVX2 void tile_avx2(const PackedW4a8& w, const PanelData& d, const W4a8Activations& a,
                            std::int64_t row0, float* y, std::int64_t ldy) {
  const std::int64_t quads = w.group_padded / 4;
  const std::uint8_t* xq[MT];
  for (int r = 0; r < MT; ++r) xq[r] = a.codes.data() + (row0 + r) * a.padded_k;
  __m256 acc[MT][2];
  for (int r = 0; r < MT; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m256i dot[MT][2];
    BITPLAN_UNROLL
    for (int r = 0; r < MT; ++r) dot[r][0] = dot[r][1] = _mm256_setzero_si256();
    const std::uint8_t* wq = d.codes + g * quads * 32;
    const std::int64_t x0 = g * w.group_padded;
    for (std::int64_t q = 0; q < quads; ++q) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + q * 32));
      const __m256i c0 = _mm256_and_si256(v, low4);
      const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      BITPLAN_UNROLL
      for (int r = 0; r < MT; ++r) {
        std::int32_t four;
        std::memcpy(&four, xq[r] + x0 + q * 4, sizeof four);
        const __m256i xb = _mm256_set1_epi32(four);
        dot[r][0] =
            _mm256_add_epi32(dot[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, c0), ones));
        dot[r][1] =
            _mm256_add_epi32(dot[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, c1), ones));
      }
    }
    group_end_avx2<MT, 2>(d, g, a, row0, dot, acc);
  }
  store_rows_avx2<MT, 2>(a, row0, acc, y, ldy);
}

}  // namespace

void w4a8_panel_avx2(const PackedW4a8& w, std::int64_t panel, const W4a8Activations& a,
                     std::int64_t row0, std::int64_t m, float* y, std::int64_t ldy) {
  const PanelData d = panel_data(w, panel);
  row_tiles<4>(m,
               [&]<int MT>(std::int64_t r) { tile_avx2<MT>(w, d, a, row0 + r, y + r * ldy, ldy); });
}

}  // namespace bitplan::kernels::detail
