// SmoothQuant (Xiao et al. 2022, "SmoothQuant: Accurate and Efficient Post-Training
// Quantization for Large Language Models"): a linear layer whose input has a few channels of
// outliers quantizes badly per tensor (the outliers set the step for every channel). Dividing
// input channel j by s_j and multiplying the weights' channel j by the same,
//   y = W x = (W diag(s)) (diag(s)⁻¹ x),
// migrates the difficulty from the activations to the weights:
//   s_j = max|x_j|^α / max_o |W_oj|^(1-α)        (the paper's equation 4)
// with max|x_j| over the calibration data; α = 0.5 in the paper, searched per model there.
//
// bitplan searches α per layer, on statistics the calibration pass already has (hessian.hpp),
// by the expected output error of the quantized layer on the calibration inputs:
//   E(s) = Σ_o (w'_o - w_o)ᵀ H (w'_o - w_o)  +  n · Δ(s)²/12 · ||Q(W diag(s))||²_F
// where W' = Q(W diag(s)) diag(1/s) is the weights' rounding seen from the unscaled input
// (exact, as in awq.hpp), and the second term the rounding of the scaled input: n vectors,
// each element off by a uniform error of variance Δ²/12 with Δ the activation step of the
// scaled input's range, passed through the quantized weights (errors of different elements
// independent, and of the weights' rounding: their cross terms average out). Candidates: no
// smoothing (s = 1) and α = 0, 0.05, ..., 1; the lowest E wins, so by this estimate SmoothQuant
// is never worse than quantizing the layer as it is.
//
// The scaled input's range is exact without a second pass: x_j/s_j with s_j > 0 keeps each
// channel's order, so its minimum over all channels is min_j(min x_j · 1/s_j), the value the
// layer's Mul computes for that element (likewise the maximum): what minmax calibration of
// the scaled input would find. Percentile, MSE and entropy calibration would need the scaled
// input's histogram, a second pass: refused (methods.hpp). Dynamic ranges (per tensor or per
// token, at run time) need no calibration; the estimate then uses the per-tensor range, an
// upper bound on each token's.
#pragma once

#include <vector>

#include "executor/quant/hessian.hpp"

namespace bitplan {

struct SmoothQuantOptions {
  int grid = 20;  // α tried: 0, 1/grid, ..., 1 (and no smoothing)
};

struct SmoothQuantResult {
  std::vector<float> input_scale;      // s per input channel; empty when no smoothing won
  Tensor scaled_weights;               // W diag(s) (W when no smoothing)
  Tensor quantized;                    // the scaled weights fake-quantized
  float input_min = 0, input_max = 0;  // the scaled input's range over the calibration data
  double alpha = -1;                   // the α chosen; -1 for no smoothing
  double error = 0, plain_error = 0;   // E at the choice, and without smoothing
};

// SmoothQuant's weights for `layer` with weights quantized by `weight_spec` (a weight_spec_for
// spec) and its input by `activations`, from its input statistics.
SmoothQuantResult smoothquant_quantize(const QuantSpec& weight_spec, const QuantSpec& activations,
                                       const Tensor& weights, const QuantizableLayer& layer,
                                       const InputHessian& h,
                                       const SmoothQuantOptions& options = {});

}  // namespace bitplan
