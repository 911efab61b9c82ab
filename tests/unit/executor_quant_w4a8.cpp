// <= 4-bit weights with dynamic per-token uint8 activations (W4g32A8t, W4A8t) in real
// execution (QuantSimulator::build_int8): the kernel list sends Gemm/MatMul layers to the
// W4A8 kernel (executor/kernels/w4a8.hpp), which quantizes each row with the simulation's
// rule and computes with exactly the simulation's weights, so real and simulated runs agree
// on every sample's top-1; other layers fall back with the reason, and specs the kernel does
// not take keep their kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "backends/device.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernel_list.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"
#include "tests/unit/executor_kernel_list_util.hpp"

namespace executor_quant_w4a8_test {

namespace fs = std::filesystem;
using namespace bitplan;
using testing::layer_quant;
using testing::matmul_layer;
using testing::onednn_target;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

CalibrationData calibration_on(const Dataset& dataset, std::vector<std::int64_t> indices) {
  CalibrationData data;
  data.dataset = &dataset;
  data.indices = std::move(indices);
  data.selection_id = "test";
  return data;
}

// Every layer with `weights` and per-token dynamic uint8 activations.
QuantPlan per_token_plan(const Graph& graph, const std::string& weights) {
  QuantPlan plan = uniform_plan("W4A8t", graph);
  for (auto& [name, q] : plan.layers) q.weights = parse_quant_spec(weights);
  return plan;
}

}  // namespace

TEST_CASE("the CPU kernel list runs <= 4-bit weights with per-token uint8 on W4A8, with reasons") {
  const KernelTarget avx2 = onednn_target("avx2");
  KernelChoice c = choose_kernel(layer_quant("int4/group32/sym", "uint8/token/asym", true),
                                 matmul_layer(), avx2);
  REQUIRE(c.kernel);
  CHECK(c.kernel->name == "cpu_w4a8");
  CHECK(c.precision() == "w4a8");
  CHECK(c.passed_over.empty());
  // The shorthands, and every 4-bit integer grid and granularity (3- and 2-bit weights go to
  // the W3A8 and W2A8 kernels before it: executor_quant_w3a8.cpp, executor_quant_w2a8.cpp).
  for (const char* shorthand : {"W4g32A8t", "W4g128A8t", "W4A8t"})
    CHECK_MESSAGE(
        choose_kernel(uniform_layer_quant(shorthand), matmul_layer(), avx2).precision() == "w4a8",
        shorthand);
  for (const char* weights :
       {"int4/channel/sym", "uint4/group128/asym", "uint4/tensor/asym", "int4/group16/sym"})
    CHECK_MESSAGE(
        choose_kernel(layer_quant(weights, "uint8/token/asym", true), matmul_layer(), avx2)
                .precision() == "w4a8",
        weights);
  CHECK(choose_kernel(layer_quant("int4/channel/sym", "uint8/token/asym", true), matmul_layer(),
                      onednn_target("avx512_core_vnni"))
            .precision() == "w4a8");
  // Specs it does not take keep their kernels: static 8-bit activations on oneDNN's int8,
  // wider weights, symmetric or per-tensor dynamic activations as before (no kernel here;
  // oneDNN's int8 entry gives the reason, never the W4A8 one).
  CHECK(choose_kernel(layer_quant("int4/channel/sym", "uint8/tensor/asym", false), matmul_layer(),
                      avx2)
            .precision() == "int8");
  for (const auto& q : {layer_quant("int8/channel/sym", "uint8/token/asym", true),
                        layer_quant("int4/channel/sym", "uint8/token/sym", true),
                        layer_quant("int4/channel/sym", "uint8/tensor/asym", true),
                        layer_quant("int4/channel/sym", "int8/token/asym", true)}) {
    c = choose_kernel(q, matmul_layer(), avx2);
    CHECK(!c.kernel);
    CHECK(c.why_not.find("W4A8") == std::string::npos);
  }
  // Declines, naming why: no AVX2, a Conv, a Gemm with other attributes, a 3-D weight, a bias
  // that is not one value per output.
  const LayerQuant q = layer_quant("int4/channel/sym", "uint8/token/asym", true);
  c = choose_kernel(q, matmul_layer(), onednn_target("sse41"));
  CHECK(!c.kernel);
  CHECK(c.why_not.find("this CPU has no AVX2") != std::string::npos);
  KernelLayer conv = matmul_layer();
  conv.op_type = "Conv";
  CHECK(choose_kernel(q, conv, avx2).why_not.find("the W4A8 kernel is a Gemm/MatMul; this Conv") !=
        std::string::npos);
  KernelLayer gemm = matmul_layer();
  gemm.op_type = "Gemm";
  gemm.gemm_default_attributes = false;
  CHECK(choose_kernel(q, gemm, avx2).why_not.find("transA") != std::string::npos);
  KernelLayer batched = matmul_layer();
  batched.weight_rank = 3;
  CHECK(choose_kernel(q, batched, avx2).why_not.find("3 dims") != std::string::npos);
  KernelLayer biased = matmul_layer();
  biased.op_type = "Gemm";
  biased.bias_per_output = false;
  CHECK(choose_kernel(q, biased, avx2).why_not.find("bias") != std::string::npos);
}

TEST_CASE("real W4A8 execution agrees with the simulation") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  // The list declines W4A8 where oneDNN's ISA is below AVX2 (the layers then stay
  // simulated); BITPLAN_MAX_CPU_ISA only narrows the path the kernel runs (ctest's
  // unit_executor_kernels_w4a8_avx2 / _scalar entries).
  const bool listed =
      kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) != kernels::Isa::scalar;
  MESSAGE("W4A8 kernel path: " << kernels::isa_name(kernels::cpu_isa()));
  const auto calibration = select_indices({64, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({500, 3, 256}, dataset->size(), "validation");
  // The MLP's Gemms (K = 784 = 49 groups of 16), the ViT's MatMuls (3-D activations: a token
  // per row) and the ResNet's classifier Gemm after its (simulated) convolutions.
  struct Case {
    std::string model, weights;
  };
  for (const Case& c :
       {Case{"fmnist_mlp", "int4/group16/sym"}, Case{"fmnist_mlp", "int4/channel/sym"},
        Case{"fmnist_mlp", "uint4/group16/asym"}, Case{"fmnist_vit", "int4/group32/sym"},
        Case{"fmnist_vit", "int4/group128/sym"}, Case{"fmnist_vit", "int4/channel/sym"},
        Case{"fmnist_vit", "uint4/group32/asym"}, Case{"fmnist_resnet", "int4/channel/sym"}}) {
    CAPTURE(c.model);
    CAPTURE(c.weights);
    const LoadedModel model = load_model(kSource / "models" / (c.model + ".onnx"));
    QuantSimulator simulator(model.graph, "test", calibration_on(*dataset, calibration));
    const QuantPlan plan = per_token_plan(model.graph, c.weights);
    const auto real = simulator.build_int8(plan);
    CHECK(real.int8_layers.empty());
    CHECK(real.w4a32_layers.empty());
    std::size_t matmuls = 0;
    for (const auto& layer : simulator.layers()) matmuls += layer.op_type != "Conv";
    CHECK(real.w4a8_layers.size() == (listed ? matmuls : 0));
    CHECK(real.w4a8_layers.size() + real.why_simulated.size() == plan.layers.size());
    // Not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE's lambda.
    for (const auto& entry : real.why_simulated)
      CHECK_MESSAGE(
          entry.second.find(listed ? "this Conv has none" : "has no AVX2") != std::string::npos,
          entry.first << ": " << entry.second);
    // The simulation computes the same layers with the kernel's integer sums, and no other.
    const Graph simulated = simulator.build(plan);
    CHECK(static_cast<std::size_t>(std::count_if(
              simulated.nodes.begin(), simulated.nodes.end(),
              [](const Node& n) { return n.op_type == "W4A8MatMul"; })) == real.w4a8_layers.size());
    const EvalResult sim = evaluate(simulated, *dataset, validation, EvalOptions{64, true});
    const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
    const Fidelity f = compare_outputs(sim.logits, run.logits, sim.classes);
    MESSAGE(c.model << " " << c.weights << ": W4A8 vs simulated top-1 agreement "
                    << f.top1_agreement << ", SQNR " << f.sqnr_db << " dB");
    CHECK(f.top1_agreement == 1.0);
    // The simulation runs these layers on the same kernel (simulate.hpp: their spec is
    // defined by its integer sums), and every other node is the same in both graphs: the
    // outputs agree bit for bit. (Fake quantization, which the simulation used before, gave
    // 65-72 dB on the ViT: a value on a rounding boundary of a later layer's per-token grid
    // moved by one code.)
    CHECK(sim.logits == run.logits);
  }
}

// y [4, 64] = x [4, 96] · W on the W4A8 kernel: codes in [1, 15] from `seed`, a scale per 32.
Graph w4a8_node(const Tensor& codes) {
  Graph g;
  g.name = "w4a8";
  g.opset = 17;
  g.inputs.push_back({"x", DType::f32, {4, 96}, {}});
  g.outputs.push_back({"y", DType::f32, {}, {}});
  Tensor scales(DType::f32, {3, 64}), offsets(DType::f32, {3, 64});
  std::fill_n(scales.data<float>(), scales.numel(), 0.01f);
  std::fill_n(offsets.data<float>(), offsets.numel(), 8.f);
  g.initializers = {{"codes", codes}, {"scales", scales}, {"offsets", offsets}};
  Node node{"layer", "W4A8MatMul", "bitplan", {"x", "codes", "", "scales", "offsets"}, {"y"}, {}};
  node.attrs["group"] = std::int64_t{32};
  g.nodes.push_back(std::move(node));
  return g;
}

Tensor random_codes(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(1, 15);
  Tensor codes(DType::i8, {96, 64});
  for (std::int64_t i = 0; i < codes.numel(); ++i)
    codes.data<std::int8_t>()[i] = static_cast<std::int8_t>(code(rng));
  return codes;
}

std::vector<float> run_once(const Graph& g, const Tensor& x) {
  ExecutionPlan plan(g, PlanOptions{4});
  const auto values = plan.run(std::span<const Tensor>(&x, 1))[0].values<float>();
  return {values.begin(), values.end()};
}

TEST_CASE("plans of the same low-bit weights share one packing; other weights are packed anew") {
  if (kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) == kernels::Isa::scalar) {
    testing::skip("the W4A8 kernel needs AVX2 here");
    return;
  }
  Tensor x(DType::f32, {4, 96});
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
  std::vector<float> first;
  {
    const Graph g = w4a8_node(random_codes(1));
    first = run_once(g, x);
    CHECK(run_once(g, x) == first);  // the second plan takes the first one's packing
  }
  // The first weights are gone; new ones (maybe at the same address) must not meet their
  // packing: the result equals that of a copy in a buffer of its own, packed for itself.
  const Graph g2 = w4a8_node(random_codes(2));
  const std::vector<float> second = run_once(g2, x);
  CHECK(second != first);
  CHECK(run_once(w4a8_node(g2.initializers.at("codes").clone()), x) == second);
}

TEST_CASE("the simulator makes a layer's low-bit weights once, for every build") {
  const LoadedModel model = load_model(kSource / "models" / "fmnist_mlp.onnx");
  QuantSimulator simulator(model.graph, "test", CalibrationData{});
  const QuantPlan plan = per_token_plan(model.graph, "int4/group16/sym");
  const Graph a = simulator.build(plan), b = simulator.build(plan);
  int shared = 0;
  for (const auto& [name, tensor] : a.initializers)
    if (name.ends_with("@w4a8codes")) {
      CHECK(b.initializers.at(name).raw() == tensor.raw());
      ++shared;
    }
  CHECK(shared ==
        (kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) == kernels::Isa::scalar ? 0
                                                                                             : 3));
}

}  // namespace executor_quant_w4a8_test
