#include "executor/quant/bias_correction.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace bitplan {

Tensor bias_correction_delta(const QuantizableLayer& layer, const Tensor& weights,
                             const Tensor& quantized, const InputHessian& h) {
  BITPLAN_ASSERT(weights.dims() == quantized.dims());
  // Output channel o of W as a row of K reduction values: contiguous for Conv [O, C/g, k...]
  // and Gemm-transB [N, K], a column of a [K, N] Gemm weight otherwise.
  const bool rows_contiguous = layer.reduction_axis == 1 && layer.channel_axis == 0;
  const std::int64_t outputs = weights.dim(static_cast<std::size_t>(layer.channel_axis));
  const std::int64_t k = weights.numel() / outputs;
  if (h.size != k || outputs % h.groups != 0)
    fail_input(
        "correcting the bias of layer '{}': the input statistics ({} group(s) of {} values) do "
        "not fit weights {}",
        layer.name, h.groups, h.size, to_string(weights.dims()));
  Tensor delta(DType::f32, {outputs});
  const float* w = weights.data<float>();
  const float* q = quantized.data<float>();
  const double vectors = static_cast<double>(std::max<std::int64_t>(h.vectors, 1));
  for (std::int64_t o = 0; o < outputs; ++o) {
    const std::span<const double> sums = h.group_sums(o / (outputs / h.groups));
    double sum = 0;
    for (std::int64_t c = 0; c < k; ++c) {
      const std::int64_t at = rows_contiguous ? o * k + c : c * outputs + o;
      const double error = double(w[at]) - double(q[at]);
      // A NaN/Inf weight stays as it is (rounding keeps NaN): it adds nothing to the mean.
      if (std::isfinite(error)) sum += error * sums[static_cast<std::size_t>(c)] / vectors;
    }
    delta.data<float>()[o] = static_cast<float>(sum);
  }
  return delta;
}

Tensor corrected_bias(const QuantizableLayer& layer, const Tensor* bias, const Tensor& delta) {
  const std::int64_t n = delta.numel();
  const float divisor = layer.op_type == "Gemm" ? layer.gemm_beta : 1.f;
  if (!bias || bias->numel() == 1) {
    Tensor out(DType::f32, {n});
    const float base = bias ? bias->data<float>()[0] : 0.f;
    for (std::int64_t o = 0; o < n; ++o)
      out.data<float>()[o] = base + delta.data<float>()[o] / divisor;
    return out;
  }
  if (bias->dtype() != DType::f32 || bias->rank() == 0 || bias->dims().back() != n)
    fail_unsupported(
        "correcting the bias of layer '{}': its bias {} does not end in the {} output channels",
        layer.name, to_string(bias->dims()), n);
  Tensor out = bias->clone();
  float* b = out.data<float>();
  for (std::int64_t i = 0; i < out.numel(); ++i) b[i] += delta.data<float>()[i % n] / divisor;
  return out;
}

}  // namespace bitplan
