#include "executor/quant/smoothquant.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "executor/quant/awq.hpp"

namespace bitplan {

SmoothQuantResult smoothquant_quantize(const QuantSpec& weight_spec, const QuantSpec& activations,
                                       const Tensor& weights, const QuantizableLayer& layer,
                                       const InputHessian& h, const SmoothQuantOptions& options) {
  const std::int64_t k =
      check_input_scaling(WeightMethod::smoothquant, weights, layer, h, options.grid);
  if (!format_traits(activations.format).has_scale())
    fail_input("quantizing layer '{}' by smoothquant: activations '{}' have no scale to smooth",
               layer.name, to_string(activations));

  // Per input channel: max |x| over the calibration data and max |W| over the outputs.
  const bool k_is_column = layer.channel_axis == 0;  // Gemm transB [N, K]
  const std::int64_t outputs = weights.numel() / k;
  std::vector<double> x_max(static_cast<std::size_t>(k)), w_max(static_cast<std::size_t>(k), 0.0);
  std::vector<bool> reached(static_cast<std::size_t>(k));
  for (std::int64_t j = 0; j < k; ++j) {
    const auto at = static_cast<std::size_t>(j);
    reached[at] = h.mins[at] <= h.maxs[at];
    x_max[at] = reached[at] ? std::max(std::fabs(h.mins[at]), std::fabs(h.maxs[at])) : 0.0;
    for (std::int64_t o = 0; o < outputs; ++o) {
      const float w = weights.data<float>()[k_is_column ? o * k + j : j * outputs + o];
      if (std::isfinite(w)) w_max[at] = std::max(w_max[at], double(std::fabs(w)));
    }
  }

  const double vectors = static_cast<double>(h.vectors);
  SmoothQuantResult best;
  // Candidate -1: no smoothing; then α = step / grid.
  for (int step = -1; step <= options.grid; ++step) {
    std::vector<float> scale;
    if (step >= 0) {
      const double alpha = double(step) / options.grid;
      scale.assign(static_cast<std::size_t>(k), 1.f);
      for (std::size_t j = 0; j < scale.size(); ++j) {
        // A channel calibration never reached (or always 0) keeps its scale: nothing says
        // how large its input gets.
        if (!reached[j] || x_max[j] == 0) continue;
        // The reference: (max|x|^α / max(max|W|, 1e-5)^(1-α)).clamp(min=1e-5).
        scale[j] = static_cast<float>(std::max(
            std::pow(x_max[j], alpha) / std::pow(std::max(w_max[j], 1e-5), 1 - alpha), 1e-5));
      }
    }
    const std::vector<float> ones(static_cast<std::size_t>(k), 1.f);
    const std::span<const float> s = scale.empty() ? std::span<const float>(ones) : scale;
    const std::vector<float> inverse = inverse_input_scale(s);
    Tensor scaled = scale_input_channels(weights, layer, s);
    Tensor quantized;
    fake_quantize(weight_spec, choose_weight_params(weight_spec, scaled, layer.reduction_axis),
                  scaled, quantized, layer.reduction_axis);
    // The scaled input's range: min and max of x_j · (1/s_j) over the channels, exact.
    float lo = INFINITY, hi = -INFINITY;
    for (std::size_t j = 0; j < inverse.size(); ++j) {
      if (!reached[j]) continue;
      lo = std::min(lo, h.mins[j] * inverse[j]);
      hi = std::max(hi, h.maxs[j] * inverse[j]);
    }
    if (!(lo <= hi)) lo = hi = 0.f;
    const AffineParams step_params =
        affine_params_from_range(activations.format, activations.symmetric, lo, hi);
    double weight_norm = 0;
    for (std::int64_t i = 0; i < quantized.numel(); ++i) {
      const double q = quantized.data<float>()[i];
      if (std::isfinite(q)) weight_norm += q * q;
    }
    const double input_error =
        vectors * double(step_params.scale) * step_params.scale / 12.0 * weight_norm;
    const double weight_error =
        output_error(scale_input_channels(quantized, layer, inverse), weights, layer, h);
    const double error = weight_error + input_error;
    if (step == -1) best.plain_error = error;
    if (step == -1 || (std::isfinite(error) && error < best.error)) {
      best.input_scale = std::move(scale);
      best.scaled_weights = std::move(scaled);
      best.quantized = std::move(quantized);
      best.input_min = lo;
      best.input_max = hi;
      best.alpha = step == -1 ? -1.0 : double(step) / options.grid;
      best.error = error;
    }
  }
  return best;
}

}  // namespace bitplan
