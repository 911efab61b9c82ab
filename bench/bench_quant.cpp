// Cost of running a quantization plan, next to fp32, in one run: the simulated plan
// (fake-quantized weights, FakeQuant on layer inputs) and the real integer path. Plans are
// built once; each timing is the median of repeated runs over rotating random inputs.
// Model, dataset and calibration selection come from a run config.
//
//   bench_quant CONFIG.yaml PLAN BATCH THREADS [SECONDS] [--steps]   PLAN: W8A8, W7A8, plan.yaml...
//
// --steps also prints each step's median time in the fp32 and the integer plan (stderr),
// to see where the integer path spends its time.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>

#include "cli/run_config.hpp"
#include "core/parallel.hpp"
#include "core/timing_stats.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/simulate.hpp"

using namespace bitplan;

namespace {
double median_ms(ExecutionPlan& plan, const std::vector<Tensor>& inputs, double budget) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < 3; ++i) plan.run(std::span<const Tensor>(&inputs[0], 1));
  std::vector<double> ms;
  const auto start = Clock::now();
  while (ms.size() < 5 || std::chrono::duration<double>(Clock::now() - start).count() < budget) {
    const auto t = Clock::now();
    plan.run(std::span<const Tensor>(&inputs[ms.size() % inputs.size()], 1));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  return median_and_iqr(ms).median;
}
void print_steps(const char* title, ExecutionPlan& plan, const std::vector<Tensor>& inputs) {
  const std::size_t steps = plan.steps().size();
  std::vector<std::vector<double>> seconds(steps);
  std::vector<double> one(steps);
  for (int r = 0; r < 51; ++r) {
    plan.run_timed(std::span<const Tensor>(&inputs[static_cast<std::size_t>(r) % inputs.size()], 1),
                   one);
    for (std::size_t i = 0; i < steps; ++i) seconds[i].push_back(one[i]);
  }
  fmt::print(stderr, "{}\n", title);
  for (std::size_t i = 0; i < steps; ++i) {
    fmt::print(stderr, "  {:9.4f} ms  {:<16} {}\n", 1e3 * median_and_iqr(seconds[i]).median,
               plan.steps()[i].op_type, plan.steps()[i].name);
  }
}
}  // namespace

int main(int argc, char** argv) {
  limit_openmp_spinning(argv);
  if (argc < 5) {
    std::cerr << "usage: bench_quant CONFIG.yaml PLAN BATCH THREADS [SECONDS]\n";
    return 2;
  }
  try {
    const RunConfig config = load_run_config(argv[1]);
    const std::filesystem::path model_path = config.model;
    const std::string plan_arg = argv[2];
    const std::int64_t batch = std::stoll(argv[3]);
    set_num_threads(std::stoi(argv[4]));
    const double budget = argc > 5 ? std::stod(argv[5]) : 2.0;
    const bool steps = argc > 6 && std::string(argv[6]) == "--steps";
    const LoadedModel model = load_model(model_path);
    const auto dataset = open_dataset(config.dataset);
    const std::string hash = model_file_hash(model_path);
    QuantSimulator simulator(model.graph, hash,
                             calibration_data(config.dataset, *dataset, {}, config.evaluate.batch));
    const QuantPlan plan = plan_arg.ends_with(".yaml") ? load_plan(plan_arg, model.graph, hash)
                                                       : uniform_plan(plan_arg, model.graph);
    ExecutionPlan fp32(model.graph, PlanOptions{batch});
    ExecutionPlan simulated(simulator.build(plan), PlanOptions{batch});
    const auto int8 = simulator.build_int8(plan);
    ExecutionPlan integer(int8.graph, PlanOptions{batch});

    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<Tensor> inputs;
    for (int i = 0; i < 4; ++i) {
      Tensor t(DType::f32, fp32.input_meta()[0].dims);
      for (std::int64_t j = 0; j < t.numel(); ++j) t.data<float>()[j] = normal(rng);
      inputs.push_back(std::move(t));
    }
    const double t_fp32 = median_ms(fp32, inputs, budget);
    const double t_sim = median_ms(simulated, inputs, budget);
    const double t_int8 = median_ms(integer, inputs, budget);
    if (steps) {
      print_steps("fp32 steps", fp32, inputs);
      print_steps("integer steps", integer, inputs);
    }
    fmt::print(
        "{{\"model\": \"{}\", \"plan\": \"{}\", \"batch\": {}, \"threads\": {}, \"fp32_ms\": "
        "{:.4f}, "
        "\"simulated_ms\": {:.4f}, \"int8_ms\": {:.4f}, \"simulated_over_fp32\": {:.3f}, "
        "\"fp32_over_int8\": {:.3f}, \"int8_layers\": {}, \"chained_tensors\": {}, "
        "\"channels_last_tensors\": {}, \"simulated_layers\": {}}}\n",
        model_path.filename().string(), plan_arg, batch, num_threads(), t_fp32, t_sim, t_int8,
        t_sim / t_fp32, t_fp32 / t_int8, int8.int8_layers.size(), int8.chained_tensors,
        int8.channels_last_tensors, int8.why_simulated.size());
  } catch (const std::exception& e) {
    std::cerr << "bench_quant: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
