// Cost of running a quantization plan, next to fp32, in one run: the simulated plan
// (fake-quantized weights, FakeQuant on layer inputs) and the real path (int8, bf16 and the
// W4A32/W4A8/W3A8/W2A8/W8A8 kernels where they take a layer; "int8_ms" in the output). Plans are
// built once; each timing is the median of repeated runs over rotating inputs: the config's
// evaluation samples (four batches of BATCH, so token ids, attention masks and a transformer's
// sequence length are the data's), the model's free dimensions bound to the samples' as
// `bitplan evaluate` does. Model, dataset and calibration selection come from a run config.
//
//   bench_quant CONFIG.yaml PLAN BATCH THREADS [SECONDS] [--steps] [--sequence T] [--builds N]
//   PLAN: W8A8, W7A8, plan.yaml...
//
// --builds N first builds and plans the simulated graph N times (stderr: seconds of each
// build and plan), as a search does once per candidate: the first pays the quantization and
// packing, later ones reuse them.
// --steps also prints each step's median time in the fp32 and the integer plan (stderr),
// to see where the integer path spends its time. --sequence T runs a token model (integer
// inputs [batch, S]) on the first T tokens of each sample, zero-padded past S (mask 0, id 0,
// as a tokenizer pads to a fixed length): T = 1 is the shape of one decoding step without a KV
// cache (one row per linear layer), T = 128 an encoder's usual deployment length.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "cli/run_config.hpp"
#include "core/parallel.hpp"
#include "core/timing_stats.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/simulate.hpp"

using namespace bitplan;

namespace {
// One set of model inputs per batch; runs rotate between them.
using InputSets = std::vector<std::vector<Tensor>>;

double median_ms(ExecutionPlan& plan, const InputSets& inputs, double budget) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < 3; ++i) plan.run(inputs[0]);
  std::vector<double> ms;
  const auto start = Clock::now();
  while (ms.size() < 5 || std::chrono::duration<double>(Clock::now() - start).count() < budget) {
    const auto t = Clock::now();
    plan.run(inputs[ms.size() % inputs.size()]);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  return median_and_iqr(ms).median;
}
void print_steps(const char* title, ExecutionPlan& plan, const InputSets& inputs) {
  const std::size_t steps = plan.steps().size();
  std::vector<std::vector<double>> seconds(steps);
  std::vector<double> one(steps);
  for (int r = 0; r < 51; ++r) {
    plan.run_timed(inputs[static_cast<std::size_t>(r) % inputs.size()], one);
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
    std::cerr << "usage: bench_quant CONFIG.yaml PLAN BATCH THREADS [SECONDS] [--steps] "
                 "[--builds N] "
                 "[--sequence T]\n";
    return 2;
  }
  try {
    const RunConfig config = load_run_config(argv[1]);
    const std::filesystem::path model_path = config.model;
    const std::string plan_arg = argv[2];
    const std::int64_t batch = std::stoll(argv[3]);
    set_num_threads(std::stoi(argv[4]));
    double budget = 2.0;
    bool steps = false;
    int builds = 0;
    std::int64_t sequence = 0;  // 0: the data's
    for (int i = 5; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--steps") {
        steps = true;
      } else if (arg == "--builds" && i + 1 < argc) {
        builds = std::stoi(argv[++i]);
      } else if (arg == "--sequence" && i + 1 < argc) {
        sequence = std::stoll(argv[++i]);
        if (sequence < 1) throw std::invalid_argument("--sequence must be at least 1");
      } else {
        budget = std::stod(arg);
      }
    }
    LoadedModel model = load_model(model_path);
    // With --sequence, the model is bound to (and fed) the data's first T tokens (zero-padded
    // past a sample's end), and its static activation ranges come from the calibration samples
    // taken alike.
    std::shared_ptr<const Dataset> dataset = open_dataset(config.dataset);
    CalibrationData calibration =
        calibration_data(config.dataset, *dataset, {}, config.evaluate.batch);
    const std::shared_ptr<const Dataset> full = dataset;
    if (sequence > 0) {
      dataset = token_window(full, sequence);
      calibration = token_window_calibration(calibration, sequence);
    }
    bind_input_to_samples(model.graph, *dataset);
    const std::string hash = model_file_hash(model_path);
    QuantSimulator simulator(model.graph, hash, std::move(calibration));
    const QuantPlan plan = plan_arg.ends_with(".yaml") ? load_plan(plan_arg, model.graph, hash)
                                                       : uniform_plan(plan_arg, model.graph);
    ExecutionPlan fp32(model.graph, PlanOptions{batch});
    for (int b = 0; b < builds; ++b) {
      const auto t0 = std::chrono::steady_clock::now();
      const Graph graph = simulator.build(plan);
      const auto t1 = std::chrono::steady_clock::now();
      const ExecutionPlan built(graph, PlanOptions{batch});
      const auto t2 = std::chrono::steady_clock::now();
      fmt::print(stderr, "build {}: simulated graph {:.3f} s, plan {:.3f} s\n", b + 1,
                 std::chrono::duration<double>(t1 - t0).count(),
                 std::chrono::duration<double>(t2 - t1).count());
    }
    ExecutionPlan simulated(simulator.build(plan), PlanOptions{batch});
    const auto int8 = simulator.build_int8(plan);
    ExecutionPlan integer(int8.graph, PlanOptions{batch});

    check_plan_takes_batch(fp32, model.graph, *dataset, batch);
    InputSets inputs(4);
    for (std::size_t set = 0; set < inputs.size(); ++set) {
      std::vector<std::int64_t> indices(static_cast<std::size_t>(batch));
      for (std::int64_t i = 0; i < batch; ++i)
        indices[std::size_t(i)] = (std::int64_t(set) * batch + i) % dataset->size();
      load_batch(fp32, model.graph, *dataset, indices, inputs[set]);
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
        "\"fp32_over_int8\": {:.3f}, \"int8_layers\": {}, \"bf16_layers\": {}, "
        "\"w4a32_layers\": {}, \"w4a8_layers\": {}, \"w3a8_layers\": {}, \"w2a8_layers\": {}, "
        "\"w8a8_layers\": {}, "
        "\"chained_tensors\": {}, \"channels_last_tensors\": {}, \"simulated_layers\": {}, "
        "\"sequence\": {}}}\n",
        model_path.filename().string(), plan_arg, batch, num_threads(), t_fp32, t_sim, t_int8,
        t_sim / t_fp32, t_fp32 / t_int8, int8.int8_layers.size(), int8.bf16_layers.size(),
        int8.w4a32_layers.size(), int8.w4a8_layers.size(), int8.w3a8_layers.size(),
        int8.w2a8_layers.size(), int8.w8a8_layers.size(), int8.chained_tensors,
        int8.channels_last_tensors, int8.why_simulated.size(),
        sequence > 0 ? fmt::format("{}", sequence) : "\"data\"");
  } catch (const std::exception& e) {
    std::cerr << "bench_quant: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
