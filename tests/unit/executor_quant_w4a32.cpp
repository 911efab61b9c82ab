// Weight-only <= 4-bit layers in real execution (QuantSimulator::build_int8): the kernel
// list sends Gemm/MatMul layers to the W4A32 kernel (executor/kernels/w4a32.hpp), which
// computes with exactly the simulation's weights, so real and simulated runs agree on every
// sample's top-1; other layers fall back with the reason.
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
#include "tests/unit/executor_kernel_list_util.hpp"

namespace executor_quant_w4a32_test {

namespace fs = std::filesystem;
using namespace bitplan;
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

// `shorthand`'s layers with their weights replaced by `weights` (activations stay fp32).
QuantPlan weight_only(const Graph& graph, const std::string& weights) {
  QuantPlan plan = uniform_plan("W4", graph);
  for (auto& [name, q] : plan.layers) q.weights = parse_quant_spec(weights);
  return plan;
}

}  // namespace

TEST_CASE("the CPU kernel list runs <= 4-bit weight-only Gemm/MatMul on W4A32, with reasons") {
  LayerQuant q;
  q.weights = parse_quant_spec("int4/group32/sym");
  const KernelTarget avx2 = onednn_target("avx2");
  KernelChoice c = choose_kernel(q, matmul_layer(), avx2);
  REQUIRE(c.kernel);
  CHECK(c.kernel->name == "cpu_w4a32");
  CHECK(c.precision() == "w4a32");
  CHECK(c.passed_over.empty());
  // Every <= 4-bit integer grid and granularity; 5-bit and wider weights stay on fp32.
  for (const char* spec : {"int4/channel/sym", "uint4/group128/asym", "int3/group64/asym",
                           "int2/tensor/sym", "int4/group16/sym"}) {
    q.weights = parse_quant_spec(spec);
    CHECK_MESSAGE(choose_kernel(q, matmul_layer(), avx2).precision() == "w4a32", spec);
  }
  q.weights = parse_quant_spec("int5/channel/sym");
  CHECK(choose_kernel(q, matmul_layer(), avx2).precision() == "fp32");
  q.weights = parse_quant_spec("int4/channel/sym");
  // Falls back to fp32 on decompressed weights, naming why.
  c = choose_kernel(q, matmul_layer(), onednn_target("sse41"));
  REQUIRE(c.kernel);
  CHECK(c.kernel->name == "onednn_fp32");
  CHECK(c.passed_over.find("cpu_w4a32: this CPU has no AVX2") != std::string::npos);
  KernelLayer conv = matmul_layer();
  conv.op_type = "Conv";
  c = choose_kernel(q, conv, avx2);
  CHECK(c.kernel->name == "onednn_fp32");
  CHECK(c.passed_over.find("this Conv has none") != std::string::npos);
  KernelLayer gemm = matmul_layer();
  gemm.op_type = "Gemm";
  gemm.gemm_default_attributes = false;
  CHECK(choose_kernel(q, gemm, avx2).passed_over.find("transA") != std::string::npos);
  KernelLayer batched = matmul_layer();
  batched.weight_rank = 3;
  CHECK(choose_kernel(q, batched, avx2).passed_over.find("3 dims") != std::string::npos);
}

TEST_CASE("real W4A32 execution agrees with the simulation") {
  const auto dataset = testing::open_fashion_mnist_test();
  if (!dataset) {
    testing::skip(testing::kFashionMnistMissing);
    return;
  }
  // The list declines W4A32 where oneDNN's ISA is below AVX2 (the layers then stay on fp32);
  // BITPLAN_MAX_CPU_ISA only narrows the path the kernel runs (ctest's
  // unit_executor_kernels_avx2 / _scalar entries).
  const bool listed =
      kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) != kernels::Isa::scalar;
  MESSAGE("W4A32 kernel path: " << kernels::isa_name(kernels::cpu_isa()));
  const auto calibration = select_indices({256, 3, 0}, dataset->size(), "calibration");
  const auto validation = select_indices({500, 3, 256}, dataset->size(), "validation");
  // The MLP's Gemms (K = 784 = 49 groups of 16), the ViT's MatMuls (3-D activations) and the
  // ResNet's classifier Gemm after its (simulated) convolutions.
  struct Case {
    std::string model, weights;
  };
  for (const Case& c :
       {Case{"fmnist_mlp", "int4/channel/sym"}, Case{"fmnist_mlp", "int4/group16/sym"},
        Case{"fmnist_mlp", "uint4/group16/asym"}, Case{"fmnist_vit", "int4/channel/sym"},
        Case{"fmnist_vit", "int4/group32/sym"}, Case{"fmnist_vit", "int4/group32/asym"},
        Case{"fmnist_vit", "int4/group128/sym"},  // a group longer than K: one per column
        Case{"fmnist_vit", "int3/group32/sym"}, Case{"fmnist_vit", "int2/channel/asym"},
        Case{"fmnist_resnet", "int4/channel/sym"}}) {
    CAPTURE(c.model);
    CAPTURE(c.weights);
    const LoadedModel model = load_model(kSource / "models" / (c.model + ".onnx"));
    QuantSimulator simulator(model.graph, "test", calibration_on(*dataset, calibration));
    const QuantPlan plan = weight_only(model.graph, c.weights);
    const auto real = simulator.build_int8(plan);
    CHECK(real.int8_layers.empty());
    std::size_t matmuls = 0;
    for (const auto& layer : simulator.layers()) matmuls += layer.op_type != "Conv";
    CHECK(real.w4a32_layers.size() == (listed ? matmuls : 0));
    CHECK(real.w4a32_layers.size() + real.why_simulated.size() == plan.layers.size());
    // Not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE's lambda.
    for (const auto& entry : real.why_simulated)
      CHECK_MESSAGE(
          entry.second.find(listed ? "this Conv has none" : "has no AVX2") != std::string::npos,
          entry.first << ": " << entry.second);
    const EvalResult sim =
        evaluate(simulator.build(plan), *dataset, validation, EvalOptions{64, true});
    const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
    const Fidelity f = compare_outputs(sim.logits, run.logits, sim.classes);
    MESSAGE(c.model << " " << c.weights << ": W4A32 vs simulated top-1 agreement "
                    << f.top1_agreement << ", SQNR " << f.sqnr_db << " dB");
    CHECK(f.top1_agreement == 1.0);
    CHECK(f.sqnr_db > 80);  // the same weights: only the order of the float sums differs
  }
}

}  // namespace executor_quant_w4a32_test
