// <= 2-bit weights with dynamic per-token uint8 activations (W2A8t, W2g32A8t) in real
// execution (QuantSimulator::build_int8): the kernel list sends Gemm/MatMul layers to the
// W2A8 kernel (executor/kernels/w2a8.hpp) before the W4A8 one, which would take them too; the
// kernel computes with exactly the simulation's weights and activation codes, so real and
// simulated runs agree on every sample's top-1; other layers fall back with the reason.
#include <doctest/doctest.h>

#include <filesystem>

#include "backends/device.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernel_list.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/simulate.hpp"
#include "fashion_mnist.hpp"

namespace executor_quant_w2a8_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

LayerQuant spec(const std::string& weights, const std::string& activations, bool dynamic) {
  LayerQuant q;
  q.weights = parse_quant_spec(weights);
  q.activations = parse_quant_spec(activations);
  q.dynamic = dynamic;
  return q;
}

KernelLayer matmul_layer() {
  KernelLayer layer;
  layer.name = "fc";
  layer.op_type = "MatMul";
  return layer;
}

KernelTarget cpu_target(const std::string& onednn_isa) {
  return {"onednn", CpuCapabilities::of_onednn_isa(onednn_isa)};
}
}  // namespace

TEST_CASE("the CPU kernel list runs <= 2-bit weights with per-token uint8 on W2A8, with reasons") {
  const KernelTarget avx2 = cpu_target("avx2");
  for (const char* shorthand : {"W2A8t", "W2g32A8t", "W2g128A8t"})
    CHECK_MESSAGE(
        choose_kernel(uniform_layer_quant(shorthand), matmul_layer(), avx2).precision() == "w2a8",
        shorthand);
  for (const char* weights : {"int2/channel/sym", "uint2/group64/asym", "int2/tensor/sym"}) {
    const KernelChoice c = choose_kernel(spec(weights, "uint8/token/asym", true), matmul_layer(),
                                         cpu_target("avx512_core_vnni"));
    REQUIRE(c.kernel);
    CHECK_MESSAGE(c.kernel->name == "cpu_w2a8", weights);
    CHECK(c.passed_over.empty());
  }
  // Wider weights go to W3A8 and W4A8; 2-bit weights with other activations keep their kernels.
  CHECK(choose_kernel(uniform_layer_quant("W3g64A8t"), matmul_layer(), avx2).precision() == "w3a8");
  CHECK(choose_kernel(uniform_layer_quant("W4g64A8t"), matmul_layer(), avx2).precision() == "w4a8");
  CHECK(choose_kernel(spec("int2/channel/sym", "uint8/tensor/asym", false), matmul_layer(), avx2)
            .precision() == "int8");
  CHECK(choose_kernel(spec("int2/group32/sym", "fp32", false), matmul_layer(), avx2).precision() ==
        "w4a32");
  // Declines name the W2A8 kernel, then the W4A8 one (which declines the same layers).
  const LayerQuant q = spec("int2/group32/sym", "uint8/token/asym", true);
  KernelChoice c = choose_kernel(q, matmul_layer(), cpu_target("sse41"));
  CHECK(!c.kernel);
  CHECK(c.why_not.find("the W2A8 kernel's portable path") != std::string::npos);
  KernelLayer conv = matmul_layer();
  conv.op_type = "Conv";
  c = choose_kernel(q, conv, avx2);
  CHECK(c.why_not.find("the W2A8 kernel is a Gemm/MatMul; this Conv") != std::string::npos);
  CHECK(c.why_not.find("the W4A8 kernel is a Gemm/MatMul; this Conv") != std::string::npos);
  KernelLayer batched = matmul_layer();
  batched.weight_rank = 3;
  CHECK(choose_kernel(q, batched, avx2).why_not.find("3 dims") != std::string::npos);
}

TEST_CASE("real W2A8 execution agrees with the simulation") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  const bool listed =
      kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) != kernels::Isa::scalar;
  MESSAGE("W2A8 kernel path: " << kernels::isa_name(kernels::cpu_isa()));
  CalibrationData calibration;
  calibration.dataset = &*dataset;
  calibration.indices = select_indices({64, 3, 0}, dataset->size(), "calibration");
  calibration.selection_id = "test";
  const auto validation = select_indices({500, 3, 256}, dataset->size(), "validation");
  // The MLP's Gemms (K = 784 = 49 groups of 16), the ViT's MatMuls (a token per row).
  struct Case {
    std::string model, weights;
  };
  for (const Case& c :
       {Case{"fmnist_mlp", "int2/group16/sym"}, Case{"fmnist_mlp", "uint2/channel/asym"},
        Case{"fmnist_vit", "int2/group32/sym"}, Case{"fmnist_vit", "int2/channel/sym"},
        Case{"fmnist_vit", "uint2/group128/asym"}}) {
    CAPTURE(c.model);
    CAPTURE(c.weights);
    const LoadedModel model = load_model(kSource / "models" / (c.model + ".onnx"));
    QuantSimulator simulator(model.graph, "test", calibration);
    QuantPlan plan = uniform_plan("W2A8t", model.graph);
    for (auto& [name, q] : plan.layers) q.weights = parse_quant_spec(c.weights);
    const auto real = simulator.build_int8(plan);
    CHECK(real.w4a8_layers.empty());
    std::size_t matmuls = 0;
    for (const auto& layer : simulator.layers()) matmuls += layer.op_type != "Conv";
    CHECK(real.w2a8_layers.size() == (listed ? matmuls : 0));
    CHECK(real.w2a8_layers.size() + real.why_simulated.size() == plan.layers.size());
    const EvalResult sim =
        evaluate(simulator.build(plan), *dataset, validation, EvalOptions{64, true});
    const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
    const Fidelity f = compare_outputs(sim.logits, run.logits, sim.classes);
    MESSAGE(c.model << " " << c.weights << ": W2A8 vs simulated top-1 agreement "
                    << f.top1_agreement << ", SQNR " << f.sqnr_db << " dB");
    CHECK(f.top1_agreement == 1.0);
    // The same codes and weights: only the order of the float sums differs.
    CHECK(f.sqnr_db > 50);
  }
}

}  // namespace executor_quant_w2a8_test
