// What follows the sums of bitplan's own GEMM kernels (w4a32, w4a8), in oneDNN's post-op
// order (what the simulation's fp32 kernels do): bias, activation, then the output's fake
// quantization when the next layer's FakeQuant was fused into this one
// (fuse_fake_quant_into_producers):
//   y = clamp(y, lo, hi);  q = clamp(round_half_even(y / s) + zp, qmin, qmax);  y = (q - zp)·s
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bitplan::kernels {

struct GemmEpilogue {
  const float* bias = nullptr;  // [N] or null
  bool clamp = false;           // Relu: [0, inf); Clip: [lo, hi]
  float lo = 0.f, hi = 0.f;
  bool quantize_output = false;
  float out_scale = 1.f, out_zero_point = 0.f, out_qmin = 0.f, out_qmax = 0.f;

  bool identity() const { return !bias && !clamp && !quantize_output; }

  // Applies the epilogue to `count` values of one row, columns n0 .. n0 + count - 1.
  void apply(float* y, std::int64_t count, std::int64_t n0) const {
    for (std::int64_t j = 0; j < count; ++j) {
      float v = y[j];
      if (bias) v += bias[n0 + j];
      if (clamp) v = std::min(std::max(v, lo), hi);
      if (quantize_output) {
        // quantize_to_grid then dequantize_from_grid (executor/quant/formats.hpp), inlined.
        float q = std::nearbyint(v / out_scale) + out_zero_point;
        q = q < out_qmin ? out_qmin : (q > out_qmax ? out_qmax : q);
        v = (q - out_zero_point) * out_scale;
      }
      y[j] = v;
    }
  }
};

}  // namespace bitplan::kernels
