// Issue 17.14, deployment fidelity of onnx-qdq exports: which of the simulation's ops must
// agree with ONNX Runtime bit for bit. The layer-by-layer comparison of the CIFAR ResNets
// (tests/interop/compare_layers.py, docs/export.md "Where the CIFAR ResNets differ")
// found every op of a W8A8 ResNet with option-A shortcuts identical to ONNX's definition
// except the float sums of Conv and GlobalAveragePool. These tests hold the identical part
// to the ONNX definitions, written here from the spec rather than from bitplan's code.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "executor/plan.hpp"
#include "executor/quant/formats.hpp"
#include "executor/quant/simulate.hpp"

namespace export_fidelity_test {

using namespace bitplan;

namespace {

// ONNX QuantizeLinear (uint8, opset 13): y = saturate(round(x / y_scale) + y_zero_point),
// x / y_scale in float32, rounding half to even; DequantizeLinear: (y - zp) * scale.
float onnx_quantize_dequantize(float x, float scale, float zero_point) {
  const float quotient = x / scale;
  double rounded = std::floor(double(quotient));
  const double fraction = double(quotient) - rounded;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(rounded, 2.0) != 0)) rounded += 1;
  const double code = std::clamp(rounded + zero_point, 0.0, 255.0);
  return static_cast<float>(code - zero_point) * scale;
}

// Inputs on and a few ulps around every rounding tie (k + 1/2)·scale of the grid, zero,
// and values far beyond both ends of the range (saturation).
std::vector<float> crafted_inputs(float scale, float zero_point) {
  std::vector<float> xs{0.f, -0.f, 1e6f, -1e6f};
  for (int k = -static_cast<int>(zero_point) - 3; k <= 258 - static_cast<int>(zero_point); ++k) {
    float x = (static_cast<float>(k) + 0.5f) * scale;
    for (int step = 0; step < 3; ++step) x = std::nextafter(x, -INFINITY);
    for (int step = 0; step < 7; ++step) {
      xs.push_back(x);
      x = std::nextafter(x, INFINITY);
    }
  }
  return xs;
}

Node fake_quant(const std::string& in, const std::string& out, float scale, float zero_point) {
  Node fq{"fq", "FakeQuant", "bitplan", {in}, {out}, {}};
  fq.attrs["format"] = static_cast<std::int64_t>(FormatId::uint8);
  fq.attrs["symmetric"] = std::int64_t{0};
  fq.attrs["scale"] = scale;
  fq.attrs["zero_point"] = zero_point;
  return fq;
}

}  // namespace

TEST_CASE(
    "17.14 activation quantization, separate and fused into a Conv, is ONNX "
    "QuantizeLinear/DequantizeLinear bit for bit on ties and saturation") {
  // Scales like the calibrated ones of the CIFAR ResNets (not powers of two, so x / s and
  // x * (1/s) round differently for some x) and powers of two (exact ties).
  for (const auto& [scale, zero_point] : {std::pair{0.0213f, 0.f}, std::pair{0.0187f, 119.f},
                                          std::pair{0.25f, 3.f}, std::pair{1.f / 255.f, 0.f}}) {
    const float captured_scale = scale, captured_zero_point = zero_point;  // CAPTURE's lambda
    CAPTURE(captured_scale);  // cannot capture a structured binding (clang 14)
    CAPTURE(captured_zero_point);
    const std::vector<float> xs = crafted_inputs(scale, zero_point);
    const auto n = static_cast<std::int64_t>(xs.size());
    // x -> Conv with one 1x1 weight of 1 (exact: x·1) -> FakeQuant: the fused form is what
    // `bitplan evaluate` runs (the quantization in the convolution's oneDNN epilogue).
    Graph g;
    g.name = "conv_fq";
    g.opset = 13;
    g.inputs.push_back({"x", DType::f32, {1, 1, 1, n}, {}});
    g.outputs.push_back({"y", DType::f32, {1, 1, 1, n}, {}});
    g.initializers["w"] = Tensor::from_values<float>({1, 1, 1, 1}, std::vector<float>{1.f});
    g.nodes = {Node{"conv", "Conv", "", {"x", "w"}, {"h"}, {}},
               fake_quant("h", "y", scale, zero_point)};
    Graph fused = g;
    fuse_fake_quant_into_producers(fused);
    REQUIRE(fused.nodes.size() == 1);
    const Tensor x = Tensor::from_values<float>({1, 1, 1, n}, xs);
    ExecutionPlan separate(g, PlanOptions{1}), in_epilogue(fused, PlanOptions{1});
    for (ExecutionPlan* plan : {&separate, &in_epilogue}) {
      const auto y = plan->run(std::span<const Tensor>(&x, 1));
      const auto got = y[0].values<float>();
      int mismatches = 0;
      for (std::size_t i = 0; i < xs.size(); ++i) {
        const float want = onnx_quantize_dequantize(xs[i], scale, zero_point);
        if (std::memcmp(&want, &got[i], sizeof(float)) != 0 && !(want == 0 && got[i] == 0)) {
          if (++mismatches <= 3)
            FAIL_CHECK("x = " << xs[i] << ": " << got[i] << " != ONNX " << want);
        }
      }
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE(
    "17.14 option-A shortcut (strided Slice, channel Pad, Add, Relu) computes ONNX's "
    "definition exactly") {
  // The CIFAR ResNets' downsampling shortcut: x[:, :, ::2, ::2] padded with zero channels
  // on both sides, added to the block's output, then ReLU.
  const std::int64_t batch = 2, channels = 4, side = 6, pad = 2;
  const std::int64_t out_channels = channels + 2 * pad, out_side = side / 2;
  Tensor x(DType::f32, {batch, channels, side, side});
  Tensor residual(DType::f32, {batch, out_channels, out_side, out_side});
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data<float>()[i] = std::sin(0.37f * static_cast<float>(i)) * 3.1f;
  for (std::int64_t i = 0; i < residual.numel(); ++i)
    residual.data<float>()[i] = std::cos(0.53f * static_cast<float>(i)) * 2.3f;
  const auto i64s = [](std::vector<std::int64_t> v) {
    return Tensor::from_values<std::int64_t>({static_cast<std::int64_t>(v.size())}, v);
  };
  Graph g;
  g.name = "option_a";
  g.opset = 13;
  g.inputs.push_back({"x", DType::f32, {batch, channels, side, side}, {}});
  g.inputs.push_back({"r", DType::f32, {batch, out_channels, out_side, out_side}, {}});
  g.outputs.push_back({"y", DType::f32, {batch, out_channels, out_side, out_side}, {}});
  g.initializers["starts"] = i64s({0, 0});
  g.initializers["ends"] =
      i64s({std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::max()});
  g.initializers["axes"] = i64s({2, 3});
  g.initializers["steps"] = i64s({2, 2});
  g.initializers["pads"] = i64s({0, pad, 0, 0, 0, pad, 0, 0});
  g.initializers["zero"] = Tensor::from_values<float>({}, std::vector<float>{0.f});
  g.nodes = {Node{"slice", "Slice", "", {"x", "starts", "ends", "axes", "steps"}, {"s"}, {}},
             Node{"pad", "Pad", "", {"s", "pads", "zero"}, {"p"}, {}},
             Node{"add", "Add", "", {"r", "p"}, {"a"}, {}},
             Node{"relu", "Relu", "", {"a"}, {"y"}, {}}};
  ExecutionPlan plan(g, PlanOptions{batch});
  const std::vector<Tensor> inputs{x, residual};
  const auto y = plan.run(inputs);
  const auto got = y[0].values<float>();
  REQUIRE(got.size() == static_cast<std::size_t>(residual.numel()));
  std::size_t i = 0;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t c = 0; c < out_channels; ++c)
      for (std::int64_t h = 0; h < out_side; ++h)
        for (std::int64_t w = 0; w < out_side; ++w, ++i) {
          const bool inside = c >= pad && c < pad + channels;
          const float shortcut =
              inside ? x.data<float>()[((b * channels + c - pad) * side + 2 * h) * side + 2 * w]
                     : 0.f;
          const float want = std::max(residual.data<float>()[i] + shortcut, 0.f);
          CHECK(std::memcmp(&want, &got[i], sizeof(float)) == 0);
        }
}

}  // namespace export_fidelity_test
