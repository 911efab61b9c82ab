// Plans (YAML schema, uniform shorthands, validation) and simulated execution of plans.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "backends/device.hpp"
#include "executor/evaluate.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/debug.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"

namespace executor_quant_plan_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

// Calibration on `indices` of `dataset`, without a disk cache.
CalibrationData calibration_on(const Dataset& dataset, std::vector<std::int64_t> indices) {
  CalibrationData data;
  data.dataset = &dataset;
  data.indices = std::move(indices);
  data.selection_id = "test";
  return data;
}

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("bitplan_plan_test_" + name);
  std::ofstream(p) << text;
  return p;
}

std::string load_error(const fs::path& plan, const Graph& graph, const std::string& hash = "") {
  try {
    load_plan(plan, graph, hash);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("quantizable layers and uniform plans") {
  const LoadedModel resnet = load_model(kSource / "models/fmnist_resnet.onnx");
  const auto layers = quantizable_layers(resnet.graph);
  CHECK(layers.size() == 10);  // 9 Conv + 1 Gemm
  const QuantPlan w8a8 = uniform_plan("W8A8", resnet.graph);
  CHECK(w8a8.layers.size() == layers.size());
  const LayerQuant& q = w8a8.layers.at(layers[0].name);
  CHECK(to_string(q.weights) == "int8/channel/sym");
  CHECK(to_string(q.activations) == "uint8/tensor/asym");
  CHECK(to_string(uniform_plan("W4g32A16", resnet.graph).layers.begin()->second.weights) ==
        "int4/group32/sym");
  CHECK(uniform_plan("W4A16", resnet.graph).layers.begin()->second.activations.format ==
        FormatId::fp16);
  CHECK(uniform_plan("W8", resnet.graph).layers.begin()->second.activations.format ==
        FormatId::fp32);
  CHECK_THROWS_WITH_AS(uniform_plan("int8", resnet.graph), doctest::Contains("W<bits>"), Error);
  // z: asymmetric weights, with any group, activation part and method.
  CHECK(to_string(uniform_layer_quant("W3g32z:gptq").weights) == "int3/group32/asym");
  CHECK(uniform_layer_quant("W3g32z:gptq").method == WeightMethod::gptq);
  CHECK(to_string(uniform_layer_quant("W4z").weights) == "int4/channel/asym");
  const LayerQuant per_token = uniform_layer_quant("W4g32zA8t");
  CHECK(to_string(per_token.weights) == "int4/group32/asym");
  CHECK(to_string(per_token.activations) == "uint8/token/asym");
  CHECK(per_token.dynamic);
  CHECK_THROWS_WITH_AS(uniform_layer_quant("W4g32zA16t"), doctest::Contains("the suffix 't'"),
                       Error);
  CHECK_THROWS_WITH_AS(uniform_layer_quant("W4zg32"), doctest::Contains("z = asymmetric"), Error);
}

TEST_CASE("plan YAML: round trip, defaults, overrides and every kind of mistake") {
  const LoadedModel mlp = load_model(kSource / "models/fmnist_mlp.onnx");
  const auto layers = quantizable_layers(mlp.graph);
  REQUIRE(layers.size() == 3);
  const std::string first = layers[0].name, last = layers[2].name;

  SUBCASE("defaults with per-layer overrides, fp32 layers dropped") {
    const auto path =
        write_temp("ok.yaml",
                   "bitplan_plan: 1\n"
                   "defaults: {weights: int8/channel/sym, activations: uint8/tensor/asym}\n"
                   "layers:\n"
                   "  " +
                       first +
                       ": {weights: int4/group32/sym, calibration: mse}\n"
                       "  " +
                       last + ": fp32\n");
    const QuantPlan plan = load_plan(path, mlp.graph, "");
    CHECK(plan.layers.size() == 2);
    CHECK(to_string(plan.layers.at(first).weights) == "int4/group32/sym");
    CHECK(to_string(plan.layers.at(first).activations) == "uint8/tensor/asym");
    CHECK(plan.layers.at(first).calibration == CalibrationMethod::mse);
    CHECK(!plan.layers.count(last));
    // Round trip through the writer.
    const auto again = write_temp("again.yaml", plan_to_yaml(plan));
    CHECK(load_plan(again, mlp.graph, "").layers == plan.layers);
  }
  SUBCASE("unknown layer names are all listed with the valid ones") {
    const auto path =
        write_temp("names.yaml", "bitplan_plan: 1\nlayers:\n  nope1: fp32\n  nope2: fp32\n");
    const std::string e = load_error(path, mlp.graph);
    CHECK(e.find("nope1, nope2") != std::string::npos);
    CHECK(e.find(first) != std::string::npos);
  }
  SUBCASE("a bad spec names line and column") {
    const auto path = write_temp(
        "spec.yaml", "bitplan_plan: 1\nlayers:\n  " + first + ": {weights: int9/channel/sym}\n");
    CHECK(load_error(path, mlp.graph).find("line 3, column") != std::string::npos);
  }
  SUBCASE("weight-only formats are refused for activations") {
    const auto path = write_temp(
        "act.yaml", "bitplan_plan: 1\nlayers:\n  " + first + ": {activations: kmeans4/tensor}\n");
    CHECK(load_error(path, mlp.graph).find("weight-only") != std::string::npos);
  }
  SUBCASE("a plan for another model is refused") {
    const auto path = write_temp("hash.yaml", "bitplan_plan: 1\nmodel_hash: 0000000000000000\n");
    CHECK(load_error(path, mlp.graph, "1111111111111111").find("another model") !=
          std::string::npos);
  }
  SUBCASE("version and unknown keys") {
    CHECK(load_error(write_temp("v.yaml", "bitplan_plan: 7\n"), mlp.graph).find("version") !=
          std::string::npos);
    CHECK(load_error(write_temp("k.yaml", "bitplan_plan: 1\nlayrs: {}\n"), mlp.graph)
              .find("unknown key 'layrs'") != std::string::npos);
  }
}

TEST_CASE("simulated plans: W8A8 stays faithful, W2 does not, weights are quantized once") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({256, 7, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({600, 7, 256}, dataset->size(), "validation");

  const LoadedModel model = load_model(kSource / "models/fmnist_resnet.onnx");
  QuantSimulator simulator(model.graph, "test", calibration_on(*dataset, calibration));
  const EvalResult fp32 = evaluate(model.graph, *dataset, validation, EvalOptions{64, true});

  const Graph w8a8 = simulator.build(uniform_plan("W8A8", model.graph));
  // Every layer input is quantized: by a FakeQuant node or fused into its producer.
  int fake_quant_nodes = 0, fused = 0;
  for (const auto& n : w8a8.nodes) {
    fake_quant_nodes += n.op_type == "FakeQuant";
    fused += n.has_attr("bitplan_output_scale");
  }
  CHECK(fake_quant_nodes + fused == 10);
  CHECK(fused > 0);
  const EvalResult q8 = evaluate(w8a8, *dataset, validation, EvalOptions{64, true});
  const Fidelity f8 = compare_outputs(fp32.logits, q8.logits, fp32.classes);
  MESSAGE("W8A8: fp32 " << fp32.top1 << " -> " << q8.top1 << ", agreement " << f8.top1_agreement
                        << ", SQNR " << f8.sqnr_db << " dB");
  CHECK(std::abs(q8.top1 - fp32.top1) < 0.02);
  CHECK(f8.top1_agreement > 0.97);
  CHECK(f8.sqnr_db > 20);
  CHECK(f8.sqnr_db < 80);  // it did quantize something

  const EvalResult q2 = evaluate(simulator.build(uniform_plan("W2", model.graph)), *dataset,
                                 validation, EvalOptions{64, true});
  CHECK(q2.top1 < fp32.top1 - 0.2);

  // The cache hands back the same quantized weights for the same (layer, spec).
  const Graph again = simulator.build(uniform_plan("W8A8", model.graph));
  const auto conv = std::find_if(again.nodes.begin(), again.nodes.end(),
                                 [](const Node& n) { return n.op_type == "Conv"; });
  REQUIRE(conv != again.nodes.end());
  const std::string name = conv->inputs[1];
  REQUIRE(w8a8.initializer(name) != nullptr);
  CHECK(again.initializer(name)->raw() == w8a8.initializer(name)->raw());
}

TEST_CASE("real INT8 execution agrees with the simulation") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto calibration = select_indices({256, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({500, 3, 256}, dataset->size(), "validation");
  for (const std::string name : {"fmnist_mlp", "fmnist_resnet", "fmnist_vit"}) {
    SUBCASE(name.c_str()) {
      const LoadedModel model = load_model(kSource / "models" / (name + ".onnx"));
      QuantSimulator simulator(model.graph, "test", calibration_on(*dataset, calibration));
      // Weights of at most 7 bits run exactly on every x86 CPU (see onednn_int8.cpp); 4-bit
      // codes ride the same s8 kernels.
      for (const char* uniform : {"W7A8", "W4A8"}) {
        const QuantPlan plan = uniform_plan(uniform, model.graph);
        const auto int8 = simulator.build_int8(plan);
        CHECK(int8.int8_layers.size() == plan.layers.size());
        // Conv -> Conv (ResNet's first layer of each block) and Gemm -> Gemm (the MLP) pass
        // codes between them; the ViT's MatMuls all feed float ops (Add, Gelu, Reshape).
        if (name != "fmnist_vit") CHECK(int8.chained_tensors > 0);
        // The ResNet's residual stream stays channels-last between its integer convolutions.
        if (name == "fmnist_resnet") CHECK(int8.channels_last_tensors > 0);
        const EvalResult sim =
            evaluate(simulator.build(plan), *dataset, validation, EvalOptions{64, true});
        const EvalResult real = evaluate(int8.graph, *dataset, validation, EvalOptions{64, true});
        const Fidelity f = compare_outputs(sim.logits, real.logits, sim.classes);
        MESSAGE(name << " " << uniform << ": integer vs simulated top-1 agreement "
                     << f.top1_agreement << ", SQNR " << f.sqnr_db << " dB");
        CHECK(f.top1_agreement >= 0.995);
        CHECK(f.sqnr_db > 50);  // only float rounding of the final sums differs
      }
      // Group-wise weights have no oneDNN 2.6 kernel: simulated, with the reason.
      const auto grouped = simulator.build_int8(uniform_plan("W4g16A8", model.graph));
      REQUIRE(!grouped.why_simulated.empty());
      CHECK(grouped.why_simulated.begin()->second.find("per channel or per tensor") !=
            std::string::npos);
      // 17.15: the reason names the group granularity, not the grid.
      CHECK(grouped.why_simulated.begin()->second.find("a scale per group of 16 weights") !=
            std::string::npos);

      // bf16 convolutions run on oneDNN's bf16 kernels where the CPU has them (AVX-512 and
      // newer), agreeing with the simulation; elsewhere, and for Gemm/MatMul, simulated with
      // the reason.
      {
        const QuantPlan bf16 = uniform_plan("bf16", model.graph);
        const auto real = simulator.build_int8(bf16);
        CHECK(real.bf16_layers.size() + real.why_simulated.size() == bf16.layers.size());
        if (query_cpu().capabilities.bf16) {
          if (name == "fmnist_resnet") CHECK(real.bf16_layers.size() == 9);  // its 9 Convs
          const EvalResult sim =
              evaluate(simulator.build(bf16), *dataset, validation, EvalOptions{64, true});
          const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
          const Fidelity f = compare_outputs(sim.logits, run.logits, sim.classes);
          MESSAGE(name << " bf16: kernels vs simulated top-1 agreement " << f.top1_agreement
                       << ", SQNR " << f.sqnr_db << " dB");
          CHECK(f.top1_agreement >= 0.995);
        } else {
          REQUIRE(!real.why_simulated.empty());
          CHECK(real.bf16_layers.empty());
          if (name == "fmnist_resnet")
            CHECK(real.why_simulated.begin()->second.find("AVX-512") != std::string::npos);
        }
      }

      // 8-bit weights: integer kernels where the CPU has VNNI, otherwise simulated with the reason.
      const auto w8 = simulator.build_int8(uniform_plan("W8A8", model.graph));
      if (query_cpu().capabilities.vnni) {
        CHECK(w8.why_simulated.empty());
      } else {
        REQUIRE(!w8.why_simulated.empty());
        CHECK(w8.why_simulated.begin()->second.find("VNNI") != std::string::npos);
      }
    }
  }
}

TEST_CASE("the per-layer debugger measures isolated and cumulative error") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const auto indices = select_indices({128, 5, 0}, dataset->size(), "validation");
  const LoadedModel model = load_model(kSource / "models/fmnist_mlp.onnx");
  QuantSimulator simulator(model.graph, "test", calibration_on(*dataset, indices));
  const PlanDebug w8 =
      debug_plan(simulator, uniform_plan("W8A8", model.graph), *dataset, indices, 64);
  const PlanDebug w3 =
      debug_plan(simulator, uniform_plan("W3A8", model.graph), *dataset, indices, 64);
  REQUIRE(w8.layers.size() == 3);
  for (std::size_t i = 0; i < w8.layers.size(); ++i) {
    CHECK(std::isfinite(w8.layers[i].isolated_layer_sqnr_db));
    CHECK(w8.layers[i].isolated_layer_sqnr_db >
          w3.layers[i].isolated_layer_sqnr_db + 10);  // ~6 dB per bit
    CHECK(w8.layers[i].weight_min < 0);
    CHECK(w8.layers[i].weight_max > 0);
    CHECK(w8.layers[i].input_max > w8.layers[i].input_min);
  }
  // The first layer sees no upstream error: isolated and cumulative agree there.
  CHECK(w8.layers[0].cumulative_layer_sqnr_db ==
        doctest::Approx(w8.layers[0].isolated_layer_sqnr_db));
  // Error accumulates: the last layer is worse with the whole plan than alone.
  CHECK(w8.layers[2].cumulative_layer_sqnr_db < w8.layers[2].isolated_layer_sqnr_db);
  CHECK(w8.output_sqnr_db > w3.output_sqnr_db);

  // Groups must divide the reduction axis (784 inputs: 100 does not, 112 does).
  CHECK_THROWS_WITH_AS(simulator.build(uniform_plan("W4g100A8", model.graph)),
                       doctest::Contains("does not divide the reduction axis"), Error);
  CHECK_NOTHROW(simulator.build(uniform_plan("W4g16A8", model.graph)));
}

TEST_CASE("fake quantization fused into the producer gives the same bits as the separate op") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto random = [&](Dims dims) {
    Tensor t(DType::f32, std::move(dims));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
    return t;
  };
  auto fake_quant = [](const std::string& in, const std::string& out, float scale,
                       float zero_point) {
    Node fq{"fq", "FakeQuant", "bitplan", {in}, {out}, {}};
    fq.attrs["format"] = static_cast<std::int64_t>(FormatId::uint8);
    fq.attrs["scale"] = scale;
    fq.attrs["zero_point"] = zero_point;
    return fq;
  };
  SUBCASE("Gemm without activation, nonzero zero point") {
    Graph g;
    g.name = "gemm_fq";
    g.opset = 13;
    g.inputs.push_back({"x", DType::f32, {-1, 48}, {}});
    g.outputs.push_back({"y", DType::f32, {-1, 24}, {}});
    g.initializers["w"] = random({24, 48});
    g.initializers["b"] = random({24});
    Node gemm{"gemm", "Gemm", "", {"x", "w", "b"}, {"h"}, {}};
    gemm.attrs["transB"] = std::int64_t{1};
    g.nodes = {gemm, fake_quant("h", "y", 0.037f, 131.f)};
    Graph fused = g;
    fuse_fake_quant_into_producers(fused);
    REQUIRE(fused.nodes.size() == 1);
    const Tensor x = random({32, 48});
    ExecutionPlan a(g, PlanOptions{32}), b(fused, PlanOptions{32});
    const auto ya = a.run(std::span<const Tensor>(&x, 1)),
               yb = b.run(std::span<const Tensor>(&x, 1));
    CHECK(std::memcmp(ya[0].raw(), yb[0].raw(), ya[0].nbytes()) == 0);
    std::set<float> levels(ya[0].values<float>().begin(), ya[0].values<float>().end());
    CHECK(levels.size() > 20);  // really quantized, and not all clipped
  }
  SUBCASE("Conv with a fused ReLU6 (a second clip in the chain)") {
    Graph g;
    g.name = "conv_fq";
    g.opset = 13;
    g.inputs.push_back({"x", DType::f32, {-1, 8, 9, 9}, {}});
    g.outputs.push_back({"y", DType::f32, {-1, 16, 9, 9}, {}});
    g.initializers["w"] = random({16, 8, 3, 3});
    Node conv{"conv", "Conv", "", {"x", "w"}, {"h"}, {}};
    conv.attrs["pads"] = std::vector<std::int64_t>{1, 1, 1, 1};
    conv.attrs["bitplan_activation"] = std::string("Clip");
    conv.attrs["bitplan_clip_min"] = 0.f;
    conv.attrs["bitplan_clip_max"] = 6.f;
    g.nodes = {conv, fake_quant("h", "y", 6.f / 255.f, 0.f)};
    Graph fused = g;
    fuse_fake_quant_into_producers(fused);
    REQUIRE(fused.nodes.size() == 1);
    const Tensor x = random({4, 8, 9, 9});
    ExecutionPlan a(g, PlanOptions{4}), b(fused, PlanOptions{4});
    const auto ya = a.run(std::span<const Tensor>(&x, 1)),
               yb = b.run(std::span<const Tensor>(&x, 1));
    CHECK(std::memcmp(ya[0].raw(), yb[0].raw(), ya[0].nbytes()) == 0);
    CHECK(*std::max_element(ya[0].values<float>().begin(), ya[0].values<float>().end()) > 1.f);
  }
}

}  // namespace executor_quant_plan_test
