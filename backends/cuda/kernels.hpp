// The profiler's own CUDA kernels (everything that is not a cuBLASLt call): random fill,
// precision conversion, im2col, depthwise convolution, int8 dequantisation, a spin kernel
// that keeps the GPU busy while the host queues timed work, and the W4A16 GEMM.
// Activations are NHWC; every launcher checks the launch and throws ProfileError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/precision.hpp"
#include "backends/cuda/workloads.hpp"

namespace bitplan::cuda {

// Fills `count` elements with uniform values in [-amplitude, amplitude] (s8: integers in
// [-127, 127] regardless of amplitude), from a counter-based hash of (seed, index).
void fill_random(void* data, ElementType type, std::int64_t count, std::uint32_t seed,
                 float amplitude, cudaStream_t stream);
void fill_random_bytes(void* data, std::int64_t bytes, std::uint32_t seed, cudaStream_t stream);

// out[i] = saturate(round(in[i] * factor)) in the output type; one fused elementwise pass.
void convert(const void* in, ElementType from, void* out, ElementType to, std::int64_t count,
             float factor, cudaStream_t stream);

// NHWC input [n][h][w][c] -> rows [n*oh*ow][padded_k] with columns ordered (r, s, c) and
// zero for padding and for columns past c*r*s (so int8/fp8 GEMMs see aligned K).
void im2col_nhwc(const void* in, std::size_t element_bytes, const LayerShape& shape, void* out,
                 std::int64_t padded_k, cudaStream_t stream);

// NHWC input [n][h][w][c] -> [n][h + pad_top + pad_bottom][w + pad_left + pad_right][c],
// zeros in the border (all-zero bits: 0 in every type used here). For convolutions whose
// padding a library takes only symmetrically (cuDNN's legacy API).
void pad_nhwc(const void* in, std::size_t element_bytes, const LayerShape& shape, void* out,
              cudaStream_t stream);

// Depthwise convolution (groups == c == k), NHWC, weights [c][r][s] in the input type.
// Float types accumulate in fp32 and write the input type (out_type must be it); s8
// accumulates in int32 and e4m3 in fp32, both writing fp16 scaled by input_scale *
// channel_scales[c], or, for s8 with out_type s8, the reader's codes: the same product
// rounded to nearest and saturated (channel_scales then hold s_w[c] / s_y).
void depthwise_conv_nhwc(const void* in, ElementType type, const void* weights,
                         const float* channel_scales, float input_scale, const LayerShape& shape,
                         void* out, ElementType out_type, cudaStream_t stream);

// y[m][n] (fp16) = acc[m][n] (int32) * input_scale * channel_scales[n].
void dequantize_s32(const std::int32_t* acc, float input_scale, const float* channel_scales,
                    std::int64_t m, std::int64_t n, void* y, cudaStream_t stream);
// The same from fp32 sums (cuDNN's int8 convolution writes its int32 sums as fp32).
void dequantize_f32(const float* acc, float input_scale, const float* channel_scales,
                    std::int64_t m, std::int64_t n, void* y, cudaStream_t stream);

// ---- The model's other ops (workloads.hpp, OpKind), in fp32, fp16 or bf16 -----------------
// eltwise: y[i] = sum_j x_j[i mod counts[j]] for i < outputs (at most 4 inputs; fp32 math;
// 16-byte accesses where every size is a multiple of 16 bytes' worth of elements).
void eltwise_op(const std::vector<const void*>& inputs, const std::vector<std::int64_t>& counts,
                ElementType type, void* y, std::int64_t outputs, cudaStream_t stream);
// x [rows][cols] -> y [rows] (the mean of each row), or with `softmax` y [rows][cols] (each
// row's softmax); one warp per row.
void reduce_rows(const void* x, ElementType type, std::int64_t rows, std::int64_t cols, void* y,
                 bool softmax, cudaStream_t stream);
// y[b][i][j] = sum_q x[b][i][q] * w[b][j][q] (fp32 sums), one thread per output: the
// activation products whose shapes cuBLASLt takes no algorithm for (a decode step's
// attention over one token: k or n of 1).
void bmm_direct(const void* w, const void* x, ElementType type, void* y, std::int64_t batch,
                std::int64_t m, std::int64_t n, std::int64_t k, cudaStream_t stream);
// y[i] = x[i mod inputs] for i < outputs (16-byte accesses where both sizes allow).
void copy_op(const void* x, std::int64_t inputs, ElementType type, void* y, std::int64_t outputs,
             cudaStream_t stream);

// Busy-waits on the GPU for about `microseconds` (global timer), so the host can queue a
// batch of timed launches behind it and they then run back to back with no host gaps.
void spin(double microseconds, cudaStream_t stream);

// ---- W4A16: weight-only int4 GEMM with fp16 activations ---------------------------------
// Weights W[k][n] are symmetric int4 (q - 8, q in 0..15) with one fp16 scale per
// (n, group of `group` consecutive k). `group` is 128 when k is a multiple of 128, else k.
// The packed layout pads k to a multiple of 128 and n to a multiple of 8 (zeros), stores
// each (8 columns, 128-k chunk) tile as 512 contiguous bytes (64 per column), and orders
// each column's 64 bytes so that one 16-byte load per lane yields that lane's tensor-core
// (mma.m16n8k16) B fragments for the chunk; the kernel dequantises them in registers.
// The scales follow the tiles: [n / 8][chunk][8 columns], so the 8 scales a warp needs for one
// tile's chunk are one 16-byte sector (a [column][chunk] layout spread them over 8 cache
// lines).
struct W4Layout {
  std::int64_t n = 0, k = 0, padded_n = 0, padded_k = 0, group = 0;
  std::int64_t packed_bytes() const { return padded_n * padded_k / 2; }
  std::int64_t scale_count() const { return padded_n * (padded_k / 128); }
};
W4Layout w4_layout(std::int64_t n, std::int64_t k);

// Host packer: q[n * k + kk] in 0..15 (row n holds output channel n's k weights) and
// scales[n * groups + g] -> packed bytes and per-chunk fp16 scales (as raw uint16 bits).
void w4_pack(const W4Layout& layout, const std::vector<std::uint8_t>& q,
             const std::vector<float>& group_scales, std::vector<std::uint8_t>& packed,
             std::vector<std::uint16_t>& chunk_scales);

// Y[m][n] fp16 = X[m][k] fp16 * dequant(W). `x_row_stride` is in elements (>= k). Small m
// runs a decode kernel chosen by m (kDecodeChoices in w4a16.cu, w4a16_decode.hpp), the rest
// the tile kernel; both read the same packed weights.
void w4a16_gemm(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                const void* chunk_scales, const W4Layout& layout, std::int64_t m, void* y,
                cudaStream_t stream);
// The tile kernel alone, whatever m: the larger-m path, and the decode kernels' baseline.
void w4a16_gemm_tiles(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                      const void* chunk_scales, const W4Layout& layout, std::int64_t m, void* y,
                      cudaStream_t stream);
// Which kernel w4a16_gemm runs for m rows and n output columns, e.g.
// "decode fma1_w4_t4_d8_noalloc_s1".
std::string w4a16_kernel_name(std::int64_t m, std::int64_t n);

// W[n][k] fp16 (row stride padded_k) = dequant(packed): for the large-m path that hands the
// dequantised weights to a cuBLASLt fp16 GEMM.
void w4_dequantize(const std::uint8_t* packed, const void* chunk_scales, const W4Layout& layout,
                   void* w_fp16, cudaStream_t stream);

// ---- W8A16: weight-only int8 GEMM with fp16 activations (w8a16.cu) ------------------------
// Weights W[k][n] are symmetric int8 (q in -128..127) with one fp16 scale per (n, group of
// `group` consecutive k): 128 when k is a multiple of 128, else k (per channel). The packed
// layout pads n to a multiple of 16 and k to a multiple of 128 (zeros) and orders each
// (16 columns, 32-k chunk) as 512 contiguous bytes, one 16-byte load per lane holding its
// tensor-core A fragments (w8a16.cu says how).
struct W8Layout {
  std::int64_t n = 0, k = 0, padded_n = 0, padded_k = 0, group = 0;
  std::int64_t packed_bytes() const { return padded_n * padded_k; }
  std::int64_t scale_count() const { return padded_n * (padded_k / 128); }
};
W8Layout w8_layout(std::int64_t n, std::int64_t k);

// Host packer: q[n * k + kk] (row n holds output channel n's k weights) and
// scales[n * groups + g] -> packed bytes and fp16 scales (raw uint16 bits) in the kernel's order.
void w8_pack(const W8Layout& layout, const std::vector<std::int8_t>& q,
             const std::vector<float>& group_scales, std::vector<std::uint8_t>& packed,
             std::vector<std::uint16_t>& scales);

// One call's operands.
struct W8A16Args {
  const void* x = nullptr;  // fp16 [m][x_row_stride]
  std::int64_t x_row_stride = 0;
  const std::uint8_t* packed = nullptr;  // w8_pack layout
  const void* scales = nullptr;          // fp16, w8_pack layout
  W8Layout layout;
  std::int64_t m = 0;
  void* y = nullptr;  // fp16 [m][n]
};
// A compiled kernel configuration, named "w8_wW_gG_sS": W warps splitting K, G groups of 16
// columns per block, S chunk steps of loads in flight per warp. Any m (blocks of 8 rows each
// read the weights once: a decode kernel, m <= 16 is what it is for).
struct W8A16Variant {
  std::string name;
  cudaError_t (*launch)(const W8A16Args& args, cudaStream_t stream);
};
const std::vector<W8A16Variant>& w8a16_variants();
const W8A16Variant* find_w8a16_variant(const std::string& name);

// Y[m][n] fp16 = X[m][k] fp16 * dequant(W), on the variant chosen for n (kW8Choices in
// w8a16.cu). `x_row_stride` is in elements (>= k).
void w8a16_gemm(const void* x, std::int64_t x_row_stride, const std::uint8_t* packed,
                const void* scales, const W8Layout& layout, std::int64_t m, void* y,
                cudaStream_t stream);
// Which variant w8a16_gemm runs for n output columns.
std::string w8a16_kernel_name(std::int64_t n);
// W[n][k] fp16 (row stride padded_k) = dequant(packed), for the large-m path that hands the
// weights to a cuBLASLt fp16 GEMM.
void w8_dequantize(const std::uint8_t* packed, const void* scales, const W8Layout& layout,
                   void* w_fp16, cudaStream_t stream);

}  // namespace bitplan::cuda
