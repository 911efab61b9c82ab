// AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration"): before rounding, scale each input channel of a linear layer's weights by a
// factor that grows with the channel's input magnitude, and divide the layer's input by it,
//   y = W x = (W diag(s)) (diag(s)⁻¹ x),
// so the weights that meet the largest inputs take relatively finer steps of the grid.
//
// Why it helps (the paper's section 3.1): with a scale per group, multiplying one input
// channel's weight w by s > 1 barely moves the group's scale Δ (set by its largest weight),
// so that weight's rounding error Δ·err stays the same size while its contribution to the
// output, (Q(w s)/s) x, has the error divided by s. Channels with large |x| matter most, so
// s = mean|x|^α; α = 0 is round-to-nearest, α = 1 the most aggressive.
//
// The exponent is searched per layer, as the reference implementation does
// (github.com/mit-han-lab/llm-awq, auto_scale.py), on a grid α = 0, 1/n, ..., (n-1)/n with
// s normalised by sqrt(max s · min s), keeping the α whose quantized weights move the layer's
// output least on the calibration data. That output error needs no second pass over the data:
// for weights W' = Q(W diag(s)) diag(s)⁻¹ it is
//   Σ_x ||(W' - W) x||² = Σ_o (w'_o - w_o)ᵀ H (w'_o - w_o),   H = Σ_x x xᵀ (hessian.hpp),
// and mean|x| is the Hessian pass's Σ|x| / vectors. Since α = 0 is on the grid, the chosen
// weights are never worse than round-to-nearest by this measure.
//
// What the layer runs is the scaled weights on their grid (codes, scales: kernels and
// exporters see an ordinary quantized weight) after a Mul of its input by 1/s
// (QuantSimulator::build, export/onnx_qdq.cpp): simulation, real execution and the exported
// model compute the same products. The reference's weight clipping search (auto_clip) is not
// done. AWQ is weight-only: quantized activations would be the scaled input's, whose range
// calibration never saw (SmoothQuant's case).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "executor/quant/hessian.hpp"
#include "executor/quant/methods.hpp"

namespace bitplan {

struct AwqOptions {
  int grid = 20;  // α tried: 0, 1/grid, ..., (grid - 1)/grid
};

struct AwqResult {
  std::vector<float> input_scale;  // s, one per input channel (the reduction axis)
  Tensor scaled_weights;           // W diag(s): what choose_weight_params fits the grid to
  Tensor quantized;                // the scaled weights fake-quantized (on the grid)
  double alpha = 0;                // the exponent chosen
  double error = 0;                // Σ_o (w'_o - w_o)ᵀ H (w'_o - w_o) at alpha
  double rtn_error = 0;            // the same at α = 0 (round-to-nearest)
};

// AWQ's weights for `layer` under `spec` (a weight_spec_for spec), from its input statistics.
// Fails (invalid input) on a layer weight_method_layer_refusal refuses.
AwqResult awq_quantize(const QuantSpec& spec, const Tensor& weights, const QuantizableLayer& layer,
                       const InputHessian& h, const AwqOptions& options = {});

// W with input channel k (index k of the reduction axis) multiplied by scale[k].
Tensor scale_input_channels(const Tensor& weights, const QuantizableLayer& layer,
                            std::span<const float> scale);

// The checks every input-scaling method (methods.hpp: scales_inputs) makes before it starts:
// the layer is one it can scale, `h` is the statistics of its input (one group of K values) and
// the grid of exponents is not empty. Returns K. Fails (invalid input) naming the layer.
std::int64_t check_input_scaling(WeightMethod method, const Tensor& weights,
                                 const QuantizableLayer& layer, const InputHessian& h, int grid);

// The dims of the inverse-scale tensor the layer's input is multiplied by: the scale runs
// along the input's reduction axis, the last one ([..., K], broadcast from [K]) or, for a
// Gemm with transA, the first of A [K, M] ([K, 1]).
Dims input_scale_dims(const QuantizableLayer& layer, std::int64_t k);

// The inverse scales the layer's input is multiplied by (one float division each: the value
// the simulation's Mul, the real execution and the exported model all use).
std::vector<float> inverse_input_scale(std::span<const float> scale);

// Σ_o (a_o - b_o)ᵀ H (a_o - b_o) over the output channels of two weights of `layer`: the
// squared output difference over the calibration inputs H was summed from.
double output_error(const Tensor& a, const Tensor& b, const QuantizableLayer& layer,
                    const InputHessian& h);

}  // namespace bitplan
