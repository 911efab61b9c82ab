// Packed-B SGEMM: C[M, N] = alpha · A[M, K] · B[K, N] (+ bias[N]) in float32, for a B known
// at plan time (a MatMul's or Gemm's weight initializer). B is packed once, when the plan is
// built (plan once, run many), into panels of the microkernel's width; a run only computes.
// oneDNN 2.6's fp32 matmul on AVX2 goes through its gemm, which copies B into its own blocks
// on every call; ONNX Runtime's MLAS packs B once at session start, as this does
// (docs/performance.md, "fp32 vs ONNX Runtime").
//
// Layout: columns in panels of NR (the ISA's microkernel width: 16 for AVX2 and scalar, 32
// for AVX-512); panel p holds B[k][p·NR + j] at data[p·K·NR + k·NR + j], so one k-range of a
// panel is one contiguous block. Columns past N in the last panel are 0 (computed, never
// stored).
//
// The loops (BLIS's order, A read in place instead of packed): the C of one task is a block
// of MB rows x NB panels; for each k-block of at most KC values, for each panel of the block,
// for each group of MR rows, the microkernel keeps MR x NR sums in registers over the k-block
// and adds them into C (the first k-block stores them; the last applies alpha and the bias).
// The k-block of a panel (NR·KC floats) stays in L1 while the MR-row groups sweep it, the A
// rows of the block (MB·KC floats) in L2. Tasks run on the OpenMP pool (core/parallel.hpp).
//
// Rounding: every path sums each output over k in increasing order with float32 FMAs, one
// accumulator per output, so the paths agree with each other bit for bit and differ from an
// exact sum by at most about K · 2^-24 · sum_k |a_k b_k| (tests/unit/executor_kernels_sgemm.cpp).
#pragma once

#include <cstdint>
#include <memory>

#include "executor/kernels/isa.hpp"

namespace bitplan::kernels {

// B as it is stored: logical [K, N], element (k, n) at data[k * stride_k + n * stride_n]
// (a Gemm's transB weight [N, K] is a stride swap).
struct SgemmSource {
  std::int64_t k = 0, n = 0;
  const float* data = nullptr;
  std::int64_t stride_k = 0, stride_n = 0;
};

struct PackedSgemmB {
  Isa isa = Isa::scalar;  // the microkernel it was packed for (NR follows from it)
  std::int64_t k = 0, n = 0;
  std::int64_t nr = 0;      // columns per panel
  std::int64_t panels = 0;  // ceil(n / nr)
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data;  // panels x k x nr, 64-byte aligned
  const float* panel(std::int64_t p) const { return data.get() + p * k * nr; }
  std::size_t bytes() const { return static_cast<std::size_t>(panels * k * nr) * sizeof(float); }
};

// The panel width (NR) and the rows per microkernel call (MR) of `isa`'s kernel.
std::int64_t sgemm_panel_width(Isa isa);
std::int64_t sgemm_rows_per_tile(Isa isa);
// Packs for `isa`. Fails (invalid input) on K or N below 1.
PackedSgemmB pack_sgemm_b(const SgemmSource& source, Isa isa);

// C = alpha · A · B (+ bias[n]) for A [M, K] with row stride lda, C [M, N] with row stride
// ldc (C must not overlap A). bias is null or N floats. Runs the kernel of `packed.isa`,
// which this CPU must support (cpu_supports), threaded over blocks of C (`threads` > 1
// runs them on the OpenMP pool). Allocates nothing.
void sgemm_packed(const PackedSgemmB& packed, const float* a, std::int64_t m, std::int64_t lda,
                  float* c, std::int64_t ldc, float alpha = 1.f, const float* bias = nullptr);

// The plain triple loop in double precision (tests' reference): C = alpha · A · B + bias.
void sgemm_reference(const SgemmSource& b, const float* a, std::int64_t m, std::int64_t lda,
                     float* c, std::int64_t ldc, float alpha = 1.f, const float* bias = nullptr);

// One tile of the per-ISA microkernels (sgemm_packed_*.cpp): rows [0, m) with m <= MR, one
// panel's columns, k values [0, kc) of A (row stride lda) and of the panel (b points at the
// k-block, NR floats per k). With `first` the sums replace C, else they are added to it; with
// `last` the result is alpha · C + bias (bias: NR floats of the panel, or null). `cols`
// (<= NR) columns are stored; the rest of the panel is padding.
namespace detail {
struct SgemmTile {
  const float* a;
  std::int64_t lda;
  const float* b;
  std::int64_t kc;
  float* c;
  std::int64_t ldc;
  std::int64_t m, cols;
  bool first, last;
  float alpha;
  const float* bias;
};
void sgemm_tile_scalar(const SgemmTile& t);
void sgemm_tile_avx2(const SgemmTile& t);
void sgemm_tile_avx512(const SgemmTile& t);
}  // namespace detail

}  // namespace bitplan::kernels
