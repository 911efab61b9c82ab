// Bias correction (methods.hpp: the rule and when it applies). Rounding W to Q changes a
// layer's output on input x by (Q - W)·x, whose mean over the data is (Q - W)·E[x]; adding
//   Δ = (W - Q)·E[x]      (one value per output channel)
// to the bias makes the layer's mean output on the calibration data what fp32's was. E[x] is
// the mean input vector as the layer's dot products see it (InputHessian::sums / vectors:
// Conv windows with their padding zeros, one mean per group), so Δ is exact for that data.
#pragma once

#include "executor/quant/hessian.hpp"

namespace bitplan {

// Δ for `layer` with fp32 weights `weights` and quantized weights `quantized` (same dims), as
// a [output channels] tensor. An input channel no calibration vector reached contributes 0.
Tensor bias_correction_delta(const QuantizableLayer& layer, const Tensor& weights,
                             const Tensor& quantized, const InputHessian& h);

// The layer's bias plus Δ, in the shape the node's bias input takes: a Conv's B [O] (Δ alone
// when it has none); a Gemm's C + Δ / beta, broadcast as ONNX Gemm broadcasts C to [M, N]
// (absent or one value: [N]; [..., N]: the same shape). Fails (unsupported) for a C of
// another shape, naming it.
Tensor corrected_bias(const QuantizableLayer& layer, const Tensor* bias, const Tensor& delta);

}  // namespace bitplan
