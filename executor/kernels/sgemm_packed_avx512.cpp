// Packed-B SGEMM microkernel, AVX-512 F: up to 12 rows x 32 columns (a panel: two zmm) of C
// in 24 accumulators; per k, two loads of the panel's row and one broadcast per row of A
// feed 24 FMAs (sgemm_packed.hpp). Narrow panels (the last one) load and store C under a
// mask. Compiled with a function target attribute: this file adds no ISA flag to the build,
// and sgemm_packed calls it only where cpu_supports(Isa::avx512).
#include <immintrin.h>

#include "executor/kernels/sgemm_packed.hpp"

#if defined(__clang__)
#define BITPLAN_UNROLL _Pragma("unroll")
#else
#define BITPLAN_UNROLL _Pragma("GCC unroll 16")
#endif
#define BITPLAN_SGEMM_AVX512 __attribute__((target("avx512f")))

namespace bitplan::kernels::detail {
namespace {

constexpr int kSgemmNrAvx512 = 32;

template <int MR>
BITPLAN_SGEMM_AVX512 void sgemm_rows_avx512(const SgemmTile& t) {
  // Columns 0-15 and 16-31 of the panel that are stored (cols <= 32).
  const int cols = static_cast<int>(t.cols);
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1u);
  const __mmask16 m1 = cols >= 32
                           ? __mmask16(0xFFFF)
                           : (cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1u));
  __m512 acc[MR][2];
  BITPLAN_UNROLL
  for (int r = 0; r < MR; ++r) {
    if (t.first) {
      acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    } else {
      const float* c = t.c + r * t.ldc;
      acc[r][0] = _mm512_maskz_loadu_ps(m0, c);
      acc[r][1] = _mm512_maskz_loadu_ps(m1, c + 16);
    }
  }
  const float* a = t.a;
  const float* b = t.b;
  for (std::int64_t k = 0; k < t.kc; ++k, b += kSgemmNrAvx512) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    BITPLAN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * t.lda + k]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  if (t.last) {
    const __m512 alpha = _mm512_set1_ps(t.alpha);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (t.bias) {
      bias0 = _mm512_maskz_loadu_ps(m0, t.bias);
      bias1 = _mm512_maskz_loadu_ps(m1, t.bias + 16);
    }
    BITPLAN_UNROLL
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = _mm512_fmadd_ps(acc[r][0], alpha, bias0);
      acc[r][1] = _mm512_fmadd_ps(acc[r][1], alpha, bias1);
    }
  }
  BITPLAN_UNROLL
  for (int r = 0; r < MR; ++r) {
    float* c = t.c + r * t.ldc;
    _mm512_mask_storeu_ps(c, m0, acc[r][0]);
    _mm512_mask_storeu_ps(c + 16, m1, acc[r][1]);
  }
}

}  // namespace

void sgemm_tile_avx512(const SgemmTile& t) {
  switch (t.m) {
    case 12:
      return sgemm_rows_avx512<12>(t);
    case 11:
      return sgemm_rows_avx512<11>(t);
    case 10:
      return sgemm_rows_avx512<10>(t);
    case 9:
      return sgemm_rows_avx512<9>(t);
    case 8:
      return sgemm_rows_avx512<8>(t);
    case 7:
      return sgemm_rows_avx512<7>(t);
    case 6:
      return sgemm_rows_avx512<6>(t);
    case 5:
      return sgemm_rows_avx512<5>(t);
    case 4:
      return sgemm_rows_avx512<4>(t);
    case 3:
      return sgemm_rows_avx512<3>(t);
    case 2:
      return sgemm_rows_avx512<2>(t);
    default:
      return sgemm_rows_avx512<1>(t);
  }
}

}  // namespace bitplan::kernels::detail
#undef BITPLAN_SGEMM_AVX512
