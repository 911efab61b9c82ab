// Times bitplan's fp32 executor on one model: the plan is built once, a random (not zero)
// input is rotated between a few buffers so caches do not flatter small models, then the
// run repeats until the time budget is spent. Prints one JSON line like bench/torch_peer.py.
//
//   bench_fp32 MODEL.onnx BATCH THREADS [SECONDS]
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <random>
#include <vector>

#include "core/parallel.hpp"
#include "core/timing_stats.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"

int main(int argc, char** argv) {
  using namespace bitplan;
  using Clock = std::chrono::steady_clock;
  limit_openmp_spinning(argv);
  if (argc < 4) {
    std::cerr << "usage: bench_fp32 MODEL.onnx BATCH THREADS [SECONDS]\n";
    return 2;
  }
  try {
    const std::int64_t batch = std::stoll(argv[2]);
    set_num_threads(std::stoi(argv[3]));
    const double budget = argc > 4 ? std::stod(argv[4]) : 2.0;
    const LoadedModel model = load_model(argv[1]);
    ExecutionPlan plan(model.graph, PlanOptions{batch});
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<Tensor> inputs;
    for (int i = 0; i < 4; ++i) {
      Tensor t(plan.input_meta()[0].dtype, plan.input_meta()[0].dims);
      for (std::int64_t j = 0; j < t.numel(); ++j) t.data<float>()[j] = normal(rng);
      inputs.push_back(std::move(t));
    }
    for (int i = 0; i < 3; ++i) plan.run(std::span<const Tensor>(&inputs[0], 1));
    std::vector<double> ms;
    const auto start = Clock::now();
    while (ms.size() < 5 || std::chrono::duration<double>(Clock::now() - start).count() < budget) {
      const Tensor& in = inputs[ms.size() % inputs.size()];
      const auto t = Clock::now();
      plan.run(std::span<const Tensor>(&in, 1));
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    }
    const Spread spread = median_and_iqr(ms);
    fmt::print(
        "{{\"model\": \"{}\", \"batch\": {}, \"threads\": {}, \"median_ms\": {:.4f}, \"iqr_ms\": "
        "{:.4f}, "
        "\"runs\": {}}}\n",
        argv[1], batch, num_threads(), spread.median, spread.iqr, ms.size());
  } catch (const std::exception& e) {
    std::cerr << "bench_fp32: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
