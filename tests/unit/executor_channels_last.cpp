// PlanOptions::channels_last_convs: fp32 convolutions keep their activations NHWC between
// them and absorb residual Adds (+ ReLU) as post-ops (keep_channels_last with float convs,
// build_conv in executor/ops/onednn.cpp). On the committed CNN fixtures (depthwise and 1x1
// convolutions, ReLU6, residual Adds with and without a ReLU after them) the outputs must
// equal the NCHW plan's up to float rounding: the same sums in another order, bounded here
// by 1e-5 of the largest output magnitude.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "executor/model.hpp"
#include "executor/plan.hpp"

namespace executor_channels_last_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

const fs::path kModels = fs::path(BITPLAN_SOURCE_DIR) / "models";

// Largest |a - b| over the largest |b|.
double relative_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(double(a.data<float>()[i]) - double(b.data<float>()[i])));
    scale = std::max(scale, std::abs(double(b.data<float>()[i])));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("channels-last fp32 convolutions match the NCHW plan") {
  for (const std::string name : {"fmnist_resnet", "fmnist_mobilenetv2", "cifar10_resnet20"}) {
    CAPTURE(name);
    const LoadedModel model = load_model(kModels / (name + ".onnx"));
    for (const std::int64_t batch : {1, 3}) {
      CAPTURE(batch);
      ExecutionPlan nchw(model.graph, PlanOptions{batch, false});
      ExecutionPlan nhwc(model.graph, PlanOptions{batch, true});
      // Fewer steps: every residual Add (and a ResNet's ReLU after it) became a post-op.
      CHECK(nhwc.steps().size() < nchw.steps().size());
      const ValueMeta& in = nchw.input_meta().at(0);
      Tensor x(DType::f32, in.dims);
      std::mt19937 rng(3);
      std::normal_distribution<float> normal(0.f, 1.f);
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
      const std::vector<Tensor> feeds{x};
      const Tensor want = nchw.run(feeds).at(0).clone();
      const Tensor got = nhwc.run(feeds).at(0).clone();
      CHECK(relative_difference(got, want) <= 1e-5);
    }
  }
}

}  // namespace executor_channels_last_test
