// Real execution of the per-token integer kernels against the simulation, shared by the W3A8,
// W2A8 and W8A8 tests (executor_quant_w3a8.cpp, executor_quant_w2a8.cpp,
// executor_quant_w8a8.cpp): each case's uniform plan (the kernel's shorthand, with the case's
// weight spec) built with QuantSimulator::build_int8 sends every Gemm/MatMul layer to the
// kernel (where oneDNN's ISA is at least the kernel's `needs`: AVX2, or AVX-512 VNNI for W8A8;
// none below), no layer to another low-bit kernel, and the rest is simulated with a reason; on 500
// test samples real and simulated runs give the same outputs bit for bit (the simulation runs
// those layers on the same kernel: simulate.hpp).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "backends/device.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/simulate.hpp"
#include "tests/unit/fashion_mnist.hpp"

namespace bitplan::testing {

struct RealCase {
  std::string model, weights;  // models/<model>.onnx, its layers' weight spec
};

// `kernel` names it in messages ("W3A8"), `shorthand` is its plan ("W3A8t"), `layers` the
// build's list of its layers.
inline void check_real_per_token_kernel(const std::string& kernel, const std::string& shorthand,
                                        std::vector<std::string> QuantSimulator::Int8Build::*layers,
                                        const std::vector<RealCase>& cases,
                                        kernels::Isa needs = kernels::Isa::avx2) {
  const auto dataset = open_fashion_mnist_test();
  if (!dataset) {
    skip(kFashionMnistMissing);
    return;
  }
  const bool listed = kernels::isa_of_onednn(query_cpu().capabilities.onednn_isa) >= needs;
  MESSAGE(kernel << " kernel path: " << kernels::isa_name(kernels::cpu_isa()));
  CalibrationData calibration;
  calibration.dataset = &*dataset;
  calibration.indices = select_indices({64, 3, 0}, dataset->size(), "calibration");
  calibration.selection_id = "test";
  const auto validation = select_indices({500, 3, 256}, dataset->size(), "validation");
  for (const RealCase& c : cases) {
    CAPTURE(c.model);
    CAPTURE(c.weights);
    const LoadedModel model =
        load_model(std::filesystem::path(BITPLAN_SOURCE_DIR) / "models" / (c.model + ".onnx"));
    QuantSimulator simulator(model.graph, "test", calibration);
    QuantPlan plan = uniform_plan(shorthand, model.graph);
    for (auto& [name, q] : plan.layers) q.weights = parse_quant_spec(c.weights);
    auto real = simulator.build_int8(plan);
    const std::vector<std::string> mine = real.*layers;
    (real.*layers).clear();
    CHECK(real.w4a32_layers.empty());
    CHECK(real.w4a8_layers.empty());
    CHECK(real.w3a8_layers.empty());
    CHECK(real.w2a8_layers.empty());
    CHECK(real.w8a8_layers.empty());
    std::size_t matmuls = 0;
    for (const auto& layer : simulator.layers()) matmuls += layer.op_type != "Conv";
    CHECK(mine.size() == (listed ? matmuls : 0));
    CHECK(mine.size() + real.why_simulated.size() == plan.layers.size());
    const EvalResult sim =
        evaluate(simulator.build(plan), *dataset, validation, EvalOptions{64, true});
    const EvalResult run = evaluate(real.graph, *dataset, validation, EvalOptions{64, true});
    const Fidelity f = compare_outputs(sim.logits, run.logits, sim.classes);
    MESSAGE(c.model << " " << c.weights << ": " << kernel << " vs simulated top-1 agreement "
                    << f.top1_agreement << ", SQNR " << f.sqnr_db << " dB");
    CHECK(f.top1_agreement == 1.0);
    CHECK(sim.logits == run.logits);
  }
}

}  // namespace bitplan::testing
