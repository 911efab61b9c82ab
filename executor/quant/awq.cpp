#include "executor/quant/awq.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/parallel.hpp"

namespace bitplan {
namespace {

using RowMajorMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The layer's weight as [outputs, K] (Gemm transB [N, K]) or [K, outputs] (MatMul, Gemm).
bool outputs_first(const QuantizableLayer& layer) {
  return layer.channel_axis == 0;
}

}  // namespace

std::int64_t check_input_scaling(WeightMethod method, const Tensor& weights,
                                 const QuantizableLayer& layer, const InputHessian& h, int grid) {
  const std::string_view name = weight_method_traits(method).name;
  if (auto why = weight_method_layer_refusal(method, layer.op_type))
    fail_input("quantizing layer '{}' by {}: {}", layer.name, name, *why);
  const std::int64_t k = weights.dim(static_cast<std::size_t>(layer.reduction_axis));
  if (h.groups != 1 || h.size != k)
    fail_input(
        "quantizing layer '{}' by {}: the input statistics ({} group(s) of {} values) do not "
        "fit weights {}",
        layer.name, name, h.groups, h.size, to_string(weights.dims()));
  if (grid < 1) fail_input("{}: the grid of exponents must have at least 1 point", name);
  return k;
}

Dims input_scale_dims(const QuantizableLayer& layer, std::int64_t k) {
  return layer.input_reduction_axis == 0 ? Dims{k, 1} : Dims{k};
}

Tensor scale_input_channels(const Tensor& weights, const QuantizableLayer& layer,
                            std::span<const float> scale) {
  BITPLAN_ASSERT(weights.rank() == 2);
  const std::int64_t rows = weights.dim(0), cols = weights.dim(1);
  const bool k_is_column = outputs_first(layer);
  BITPLAN_ASSERT(static_cast<std::int64_t>(scale.size()) == (k_is_column ? cols : rows));
  Tensor out = weights.clone();
  float* w = out.data<float>();
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      w[r * cols + c] *= scale[static_cast<std::size_t>(k_is_column ? c : r)];
  return out;
}

std::vector<float> inverse_input_scale(std::span<const float> scale) {
  std::vector<float> inverse(scale.size());
  for (std::size_t i = 0; i < scale.size(); ++i) inverse[i] = 1.f / scale[i];
  return inverse;
}

double output_error(const Tensor& a, const Tensor& b, const QuantizableLayer& layer,
                    const InputHessian& h) {
  BITPLAN_ASSERT(a.dims() == b.dims() && a.rank() == 2 && h.groups == 1);
  const bool k_is_column = outputs_first(layer);
  const std::int64_t k = a.dim(k_is_column ? 1 : 0), outputs = a.dim(k_is_column ? 0 : 1);
  BITPLAN_ASSERT(h.size == k);
  const Eigen::Map<const Eigen::MatrixXf> hm(h.values.data(), k, k);
  // D = A - B as [K, outputs] columns, a block of outputs at a time: Σ (H D) ∘ D.
  constexpr std::int64_t kBlock = 256;
  const std::int64_t blocks = (outputs + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    Eigen::MatrixXf d;
    for (std::int64_t block = b0; block < b1; ++block) {
      const std::int64_t o0 = block * kBlock, n = std::min(kBlock, outputs - o0);
      d.resize(k, n);
      for (std::int64_t o = 0; o < n; ++o)
        for (std::int64_t i = 0; i < k; ++i) {
          const std::int64_t at = k_is_column ? (o0 + o) * k + i : i * outputs + o0 + o;
          const float diff = a.data<float>()[at] - b.data<float>()[at];
          // A non-finite weight stays non-finite on every grid: it moves no choice.
          d(i, o) = std::isfinite(diff) ? diff : 0.f;
        }
      const Eigen::MatrixXf hd = hm * d;
      partial[static_cast<std::size_t>(block)] = hd.cwiseProduct(d).cast<double>().sum();
    }
  });
  double sum = 0;
  for (const double p : partial) sum += p;
  return sum;
}

AwqResult awq_quantize(const QuantSpec& spec, const Tensor& weights, const QuantizableLayer& layer,
                       const InputHessian& h, const AwqOptions& options) {
  const std::int64_t k = check_input_scaling(WeightMethod::awq, weights, layer, h, options.grid);
  // Mean input magnitude per channel; a channel calibration never reached gets the floor.
  const double vectors = static_cast<double>(std::max<std::int64_t>(h.vectors, 1));
  std::vector<double> magnitude(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < k; ++i)
    magnitude[static_cast<std::size_t>(i)] = h.abs_sums[static_cast<std::size_t>(i)] / vectors;

  // Effective weights Q(W diag(s)) diag(1/s) as the layer computes them (input times 1/s).
  const auto effective = [&](const Tensor& quantized, std::span<const float> scale) {
    return scale_input_channels(quantized, layer, inverse_input_scale(scale));
  };
  AwqResult best;
  for (int step = 0; step < options.grid; ++step) {
    const double alpha = double(step) / options.grid;
    std::vector<float> scale(static_cast<std::size_t>(k), 1.f);
    if (step > 0) {
      // The reference: s = max(mean|x|^α, 1e-4), normalised by sqrt(max s · min s) so the
      // scaled weights keep their overall size.
      std::vector<double> s(static_cast<std::size_t>(k));
      for (std::size_t i = 0; i < s.size(); ++i)
        s[i] = std::max(std::pow(magnitude[i], alpha), 1e-4);
      const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
      const double norm = std::sqrt(*lo * *hi);
      for (std::size_t i = 0; i < s.size(); ++i) scale[i] = static_cast<float>(s[i] / norm);
    }
    Tensor scaled = scale_input_channels(weights, layer, scale);
    const QuantParams params = choose_weight_params(spec, scaled, layer.reduction_axis);
    Tensor quantized;
    fake_quantize(spec, params, scaled, quantized, layer.reduction_axis);
    const double error = output_error(effective(quantized, scale), weights, layer, h);
    if (step == 0) best.rtn_error = error;
    if (step == 0 || (std::isfinite(error) && error < best.error)) {
      best.input_scale = std::move(scale);
      best.scaled_weights = std::move(scaled);
      best.quantized = std::move(quantized);
      best.alpha = alpha;
      best.error = error;
    }
  }
  return best;
}

}  // namespace bitplan
