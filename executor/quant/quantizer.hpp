// Quantization specs, parameter choice and fake quantization (quantize then dequantize,
// in float) of tensors, built on the format table in formats.hpp.
//
//   QuantSpec  "int4/group128/sym"   what to do to one tensor (plans store the string)
//      |  choose_weight_params       min/max, TWN, k-means, MX block exponents
//      v
//   QuantParams                       scales, zero points, codebooks: one set per slice
//      |  fake_quantize               fast, parallel; equal bit for bit to
//      v                              fake_quantize_reference (the definition)
//   the tensor as the quantized layer will see it
//
// Slices. A tensor is cut into slices that share parameters:
//  * per_tensor: one slice;
//  * per_channel: one slice per index of `QuantSpec::axis` (0 for Conv [O, C, kh, kw] and
//    Gemm transB [N, K] weights; 1 for MatMul [K, N] weights);
//  * per_group: blocks of `group_size` consecutive elements along the reduction axis, one
//    slice per block and per index of every other axis — ONNX blocked quantization
//    (QuantizeLinear block_size): the parameters have the tensor's shape with the reduction
//    axis cut to ceil(D / group_size), row-major; the last block may be shorter;
//  * per_token: one slice per position of every axis but the reduction axis, i.e. a group
//    spanning the whole reduction axis (an activation [..., K] has one slice per row; an
//    NCHW Conv input, reduced over C, one per (n, h, w)). An activation granularity: plans
//    allow it only with ranges taken at run time (LayerQuant::dynamic).
// Slice k's parameters are scale[k], zero_point[k], codebook[k·2^bits ...].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "executor/quant/formats.hpp"

namespace bitplan {

enum class Granularity : std::uint8_t { per_tensor, per_channel, per_group, per_token };

// Which granularity each format takes (checked by parse_quant_spec and every entry point):
//  * fp32, fp16, bf16: no scale, so per_tensor only, written as the bare name ("fp16");
//  * fp4_e2m1: per_group with group_size 32 only (the MX block);
//  * kmeans*: per_tensor or per_channel (a codebook per block would outweigh the block);
//  * the rest: any. `symmetric` chooses the integer grid's zero point; the other kinds
//    are symmetric by construction, and asking them for asymmetry is an error.
// Fields a granularity does not use (axis outside per_channel, group_size outside
// per_group) are ignored; to_string gives the canonical text, which caches use as key.
struct QuantSpec {
  FormatId format = FormatId::fp32;
  Granularity granularity = Granularity::per_tensor;
  int axis = 0;                 // per_channel: the channel axis
  std::int64_t group_size = 0;  // per_group: block length along the reduction axis
  bool symmetric = true;        // integer formats: zero point fixed (sym) or fitted (asym)
};

// Compact form used in plans: "<format>[/<granularity>][/sym|asym]" with granularity
// tensor | channel | channel:<axis> | group<size> | token, e.g. "int4/group128/sym",
// "int8/channel/sym", "uint8/tensor/asym", "fp8_e4m3/tensor", "kmeans4/channel",
// "fp4_e2m1/group32", "uint8/token/asym", "fp16". sym/asym is required for integer formats and
// refused for the others; the granularity is required unless the format takes no scale.
std::string to_string(const QuantSpec& spec);
// Fails (invalid input) naming the bad part and listing the valid values.
QuantSpec parse_quant_spec(std::string_view text);
// Fails (invalid input) when the format does not take the spec's granularity or symmetry.
void check_spec(const QuantSpec& spec);

// Parameters for one tensor, one entry (or codebook) per slice. Which vectors are filled:
//  * integer: scale and zero_point (zero_point also when symmetric: 0 for signed grids,
//    2^(bits-1) for unsigned ones), both integral-valued floats in the code range;
//  * ternary: scale = α; pow2: scale = the largest level; fp8: scale; fp4_e2m1: scale =
//    the MX block's power of two;
//  * codebook: codebook, 2^bits ascending entries per slice;
//  * fp32, fp16, bf16: nothing.
struct QuantParams {
  std::vector<float> scale;
  std::vector<float> zero_point;
  std::vector<float> codebook;
};

// Every function taking `reduction_axis` uses it for per_group and per_token only (the axis the
// blocks run along: 1 for Gemm transB / Conv [O, C, ...] weights, 0 for MatMul [K, N] weights).

// Number of slices of a tensor of `dims` under `spec`: the length of its scale and
// zero-point vectors, and its number of codebooks (1 for formats without parameters).
std::int64_t slice_count(const QuantSpec& spec, const Dims& dims, int reduction_axis);

// The slice of the element at row-major `index` of a tensor of `dims` (the layout above):
// which entry of QuantParams quantizes it.
std::int64_t slice_index(const QuantSpec& spec, const Dims& dims, int reduction_axis,
                         std::int64_t index);

// The same for every element: slice_indices(...)[i] == slice_index(..., i).
std::vector<std::int64_t> slice_indices(const QuantSpec& spec, const Dims& dims,
                                        int reduction_axis);

// Parameters fitted to a float32 tensor, each slice from its own values. Only finite values
// count (an Inf then saturates to the slice's largest level, NaN stays NaN), and every
// scale is positive and finite: a slice with no nonzero finite value gets scale 1.
//  * integer, symmetric: scale = max|w| / (2^(bits-1) - 1), the same levels for signed
//    and unsigned grids (an unsigned grid holds them offset by 2^(bits-1), as offset
//    binary); asymmetric: the range [min(w, 0), max(w, 0)] (0 must be exact: padding,
//    ReLU outputs) onto [qmin, qmax] — see affine_params_from_range.
//  * fp8: scale = max|w| / max finite, so the largest magnitude lands on the format's max.
//  * fp4_e2m1 (MX): per block, the power of two 2^ceil(log2(max|w| / 6)) in E8M0's
//    [2^-127, 2^127], so the block's largest magnitude maps to at most 6 and nothing clips
//    (the OCP spec's floor(log2(max|w|)) - 2 rule clips up to 25% of the top binade).
//  * ternary: α by the TWN rule (Li et al. 2016): Δ = 0.7·mean|w|, α = mean of |w| over
//    |w| > Δ. Elements then go to the nearest of {-α, 0, α} (threshold α/2, not Δ): for a
//    fixed α the nearest level never has a larger error than TWN's Δ assignment.
//  * pow2: scale = max|w|, levels 0 and ±scale·2^-k.
//  * codebook: 1-D k-means (Lloyd), initialised on the quantiles (i + ½) / 2^bits of the
//    slice, deterministic; an empty cluster keeps its entry.
QuantParams choose_weight_params(const QuantSpec& spec, const Tensor& weights, int reduction_axis);

// Scale and zero point of a per-tensor grid for a calibrated range [lo, hi], by the same
// rules as the weights. For activation formats: integer, fp8 (scale = max(|lo|, |hi|) /
// max finite, zero point 0), fp16/bf16/fp32 (1 and 0).
//   asymmetric integer derivation: x is represented as (q - zp)·scale. Mapping
//   lo -> qmin and hi -> qmax gives scale = (hi - lo) / (qmax - qmin) and
//   zp = qmin - lo / scale; rounding zp to an integer (clamped into the grid) makes x = 0
//   exactly representable (q = zp) and shifts the covered range by less than scale/2.
struct AffineParams {
  float scale = 1.f;
  float zero_point = 0.f;
};
AffineParams affine_params_from_range(FormatId format, bool symmetric, float lo, float hi);

// out = dequantize(quantize(in)) with the slice parameters; `in` is float32, `out` either
// empty (then allocated) or float32 of the same dims (it may share in's buffer). Parallel
// over slices/rows, contiguous vectorised inner loops.
void fake_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& in, Tensor& out,
                   int reduction_axis);
// The definition fake_quantize follows: one element at a time through the format's
// reference functions (formats.hpp), with the slice index computed per element. Slow; for
// tests and debugging.
void fake_quantize_reference(const QuantSpec& spec, const QuantParams& params, const Tensor& in,
                             Tensor& out, int reduction_axis);

// Static activation quantization, in place: n floats with one scale and zero point (from
// affine_params_from_range). Fails (unsupported) for weight-only formats; fp32/fp16/bf16
// take scale 1 and zero point 0, fp8 zero point 0, integer formats an integral zero point
// inside the grid.
void fake_quantize_activation_per_tensor(FormatId format, float scale, float zero_point,
                                         float* data, std::int64_t n);
// The same from `in` into `out` (one pass; `in == out` is allowed).
void fake_quantize_activation_per_tensor(FormatId format, float scale, float zero_point,
                                         const float* in, float* out, std::int64_t n);

// Dynamic per-token activation quantization from `in` into `out` (one pass over each token
// for its range, one to quantize; `in == out` is allowed). The tensor is viewed as
// [outer, dim, inner] around its reduction axis (dim = the axis products are summed over),
// and each token (o, i) gets its own scale and zero point from its finite min/max by the
// rules of affine_params_from_range; NaN stays NaN, ±Inf saturate, a token with no finite
// value (or all values equal to 0) gets scale 1. Integer and fp8 formats (the activation
// formats with a scale); parallel over tokens, allocates nothing.
void fake_quantize_activation_per_token(FormatId format, bool symmetric, const float* in,
                                        float* out, std::int64_t outer, std::int64_t dim,
                                        std::int64_t inner);
// The scale and zero point fake_quantize_activation_per_token gives one contiguous token
// x[0, n) (the rule above, checks aside: `format` must be one it takes). The W4A8 kernel
// (executor/kernels/w4a8.hpp) quantizes its rows with this and quantize_to_grid, so its
// codes are the simulation's.
AffineParams per_token_params(FormatId format, bool symmetric, const float* x, std::int64_t n);

// Bytes to store the quantized tensor: element codes packed densely and rounded up once
// per tensor, plus per slice: an fp32 scale (an 8-bit E8M0 exponent for MX), a zero point
// of the element's width when asymmetric (packed, rounded up), 2^bits fp32 codebook
// entries. A symmetric grid's zero point is implied by the format and not stored.
std::int64_t storage_bytes(const QuantSpec& spec, const Dims& weight_dims, int reduction_axis);

}  // namespace bitplan
