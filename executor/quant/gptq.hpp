// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers"): weights rounded one input column at a time, each column's
// rounding error spread over the columns still to come so the layer's output on the
// calibration inputs moves as little as possible.
//
// Derivation (per output row w, input Hessian H = Σ x xᵀ, hessian.hpp). Quantizing column i
// to q_i and letting the later columns F absorb the error minimises (w - w')ᵀ H (w - w')
// with w'_i = q_i fixed; the optimal update of the rest (Optimal Brain Surgeon) is
//   δ_F = -(w_i - q_i) / [H_F⁻¹]_ii · [H_F⁻¹]_{i,F},
// where H_F⁻¹ is the inverse Hessian of the columns not yet quantized. GPTQ's insight: those
// successive inverses are the rows of the upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U),
// scaled: [H_F⁻¹]_{i,F} / [H_F⁻¹]_ii = U_{i,F} / U_ii, so
//   e_i = (w_i - q_i) / U_ii,      w_F -= e_i · U_{i,F}.
// Lazy batches: within a block of B columns the updates touch only the block; the columns
// after it receive all of the block's errors at once, W[:, after] -= E · U[block, after],
// one matrix product (the same sums, reordered).
// Every row shares H, so rows are independent: they run in parallel.
//
// Choices, as in the reference implementation (github.com/IST-DASLab/gptq) unless noted:
//  * damping: H + λ·mean(diag H)·I, λ = 0.01; a Hessian still not positive definite gets
//    λ ×10 up to 1.0, with a warning, then round-to-nearest with a warning (never NaN);
//  * act-order: columns in order of decreasing diag(H) (the inputs with the most energy
//    first, while the most columns remain to absorb their error);
//  * static groups: every slice's scale and zero point come from the fp32 weights
//    (choose_weight_params) before any column moves — the grid of round-to-nearest, so the
//    kernels, exporters and size accounting of a spec do not depend on the method (the
//    reference refits group params as it goes, which with act-order would need a
//    permutation at run time; AutoGPTQ's static_groups is this choice);
//  * a column no calibration input reaches (H_ii = 0) gets H_ii = 1, so it is rounded to
//    nearest and passes no error on (the reference also zeroes its weights: bitplan keeps
//    them, as other data may reach that input);
//  * a non-finite weight is rounded as round-to-nearest does and passes no error on.
#pragma once

#include <memory>
#include <string>

#include "executor/quant/hessian.hpp"

namespace bitplan {

struct GptqOptions {
  double damping = 0.01;     // λ
  std::int64_t block = 128;  // lazy batch width B
  bool act_order = true;
};

// The Hessian's share of GPTQ, per group: the column order and U, the upper Cholesky factor
// of the damped inverse Hessian. It depends on H and the options only, so layers reading one
// input (q/k/v) and every spec of a layer share it. `warning` (may be null) receives what was
// done to a degenerate Hessian, or stays untouched.
struct GptqFactors;
std::shared_ptr<const GptqFactors> gptq_factors(const InputHessian& h, const GptqOptions& options,
                                                std::string* warning = nullptr);

// The weights of `layer` quantized by GPTQ with the factors of its input Hessian.
Tensor gptq_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
                     const QuantizableLayer& layer, const GptqFactors& factors,
                     const GptqOptions& options);

// The weights of `layer` quantized by GPTQ under `spec` (a weight_spec_for spec of an
// integer or ternary format) with `params` (choose_weight_params of the fp32 weights), as
// fake-quantized floats of the weights' dims: every value a level of its slice. `h` is the
// layer's input Hessian (collect_input_hessians). `warning` (may be null) receives what was
// done to a degenerate Hessian, or stays untouched.
Tensor gptq_quantize(const QuantSpec& spec, const QuantParams& params, const Tensor& weights,
                     const QuantizableLayer& layer, const InputHessian& h,
                     const GptqOptions& options, std::string* warning = nullptr);

// The definition gptq_quantize follows: column by column in double, every update applied at
// once (no lazy batches). Slow; for tests.
Tensor gptq_quantize_reference(const QuantSpec& spec, const QuantParams& params,
                               const Tensor& weights, const QuantizableLayer& layer,
                               const InputHessian& h, const GptqOptions& options);

}  // namespace bitplan
