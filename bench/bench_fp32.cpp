// Times bitplan's fp32 executor on one model: the plan is built once, the inputs are rotated
// between a few buffers so caches do not flatter small models, then the run repeats until the
// time budget is spent. Prints one JSON line like bench/torch_peer.py.
//
//   bench_fp32 MODEL.onnx BATCH THREADS [SECONDS] [--input NAME=FILE.npy]... [--output OUT.npy]
//              [--by-op] [--plain-plan] [--fp32-gemm auto|packed|onednn]
//
// Without --input a float input gets normal noise and an integer input (token ids, attention
// masks) ones: a valid id and "attend everywhere", and the time does not depend on the values.
// `--input NAME=FILE.npy` feeds rows [0, BATCH) of FILE to input NAME instead, and its dims
// after the batch axis size the input's free dimensions (a transformer's sequence length).
// `--output OUT.npy` writes output 0 of the first run (on the given inputs) for parity checks
// against another runtime (bench/zoo_vs_ort.py). `--by-op` also prints (stderr) the time
// per op type over a few timed runs, largest first, and the slowest steps, to see where a model
// spends it. The plan keeps convolution activations channels-last and folds MatMul epilogues
// (PlanOptions::channels_last_convs, matmul_epilogues); `--plain-plan` plans without either,
// to compare. `--fp32-gemm` forces the kernel of MatMuls/Gemms with constant weights
// (PlanOptions::fp32_gemm: bitplan's packed-B SGEMM or oneDNN's matmul; default automatic).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/timing_stats.hpp"
#include "data/npy.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"

namespace {

using namespace bitplan;

struct Args {
  std::string model;
  std::int64_t batch = 1;
  int threads = 1;
  double seconds = 2.0;
  std::map<std::string, std::string> input_files;
  std::optional<std::string> output_file;
  bool by_op = false;
  bool plain_plan = false;
  Fp32Gemm fp32_gemm = Fp32Gemm::automatic;
};

Args parse_args(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--by-op") {
      args.by_op = true;
      continue;
    }
    if (arg == "--plain-plan") {
      args.plain_plan = true;
      continue;
    }
    if (arg == "--fp32-gemm" && i + 1 < argc) {
      const std::string value = argv[++i];
      if (value == "auto")
        args.fp32_gemm = Fp32Gemm::automatic;
      else if (value == "packed")
        args.fp32_gemm = Fp32Gemm::packed;
      else if (value == "onednn")
        args.fp32_gemm = Fp32Gemm::onednn;
      else
        fail(ErrorKind::usage, "--fp32-gemm '{}': expected auto, packed or onednn", value);
      continue;
    }
    if ((arg == "--input" || arg == "--output") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--output") {
        args.output_file = value;
        continue;
      }
      const std::size_t eq = value.rfind('=');
      if (eq == std::string::npos || eq == 0)
        fail(ErrorKind::usage, "--input '{}': expected NAME=FILE.npy", value);
      args.input_files[value.substr(0, eq)] = value.substr(eq + 1);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 3 || positional.size() > 4)
    fail(ErrorKind::usage,
         "usage: bench_fp32 MODEL.onnx BATCH THREADS [SECONDS] [--input NAME=FILE.npy]... "
         "[--output OUT.npy] [--by-op] [--plain-plan] [--fp32-gemm auto|packed|onednn]");
  args.model = positional[0];
  args.batch = std::stoll(positional[1]);
  args.threads = std::stoi(positional[2]);
  if (positional.size() == 4) args.seconds = std::stod(positional[3]);
  return args;
}

// Rows [0, batch) of `file`, which must have at least `batch` rows.
Tensor first_rows(const std::string& name, const std::string& file, std::int64_t batch) {
  const Tensor all = read_npy(file);
  if (all.dims().empty() || all.dims()[0] < batch)
    fail(ErrorKind::invalid_input, "--input {}={}: {} has fewer than the batch's {} rows", name,
         file, to_string(all.dims()), batch);
  Dims dims = all.dims();
  dims[0] = batch;
  Tensor rows(all.dtype(), dims);
  std::memcpy(rows.raw(), all.raw(), rows.nbytes());
  return rows;
}

// Median time per op type over `runs` timed runs, largest first, on stderr.
// The op type a step's time is summed under; MatMul and Gemm are split by whether an operand
// is a constant (weights: the packed-SGEMM candidates) or both come at run time (attention).
std::string op_row(const StepInfo& step) {
  if (step.op_type != "MatMul" && step.op_type != "Gemm") return step.op_type;
  return step.op_type + (step.params > 0 ? " (weights)" : " (two activations)");
}

void print_time_by_op(ExecutionPlan& plan, const std::vector<Tensor>& inputs, int runs) {
  const std::size_t steps = plan.steps().size();
  std::map<std::string, std::vector<double>> per_op;
  std::vector<std::vector<double>> per_step(steps);
  std::vector<double> one(steps);
  for (int r = 0; r < runs; ++r) {
    plan.run_timed(inputs, one);
    std::map<std::string, double> total;
    for (std::size_t i = 0; i < steps; ++i) {
      total[op_row(plan.steps()[i])] += one[i];
      per_step[i].push_back(one[i]);
    }
    for (const auto& [op, seconds] : total) per_op[op].push_back(seconds);
  }
  std::vector<std::pair<double, std::string>> rows;
  for (auto& [op, seconds] : per_op) rows.emplace_back(median_and_iqr(seconds).median, op);
  std::sort(rows.rbegin(), rows.rend());
  for (const auto& [seconds, op] : rows)
    fmt::print(stderr, "  {:10.3f} ms  {}\n", 1e3 * seconds, op);
  std::vector<std::pair<double, std::size_t>> slowest;
  for (std::size_t i = 0; i < steps; ++i)
    slowest.emplace_back(median_and_iqr(per_step[i]).median, i);
  std::sort(slowest.rbegin(), slowest.rend());
  fmt::print(stderr, "slowest steps:\n");
  for (std::size_t k = 0; k < std::min<std::size_t>(12, slowest.size()); ++k) {
    const StepInfo& step = plan.steps()[slowest[k].second];
    fmt::print(stderr, "  {:10.3f} ms  {:<10} {} {} -> {}\n", 1e3 * slowest[k].first, step.op_type,
               step.name, step.input_dims.empty() ? "" : to_string(step.input_dims[0]),
               step.output_dims.empty() ? "" : to_string(step.output_dims[0]));
  }
}

}  // namespace

int main(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  limit_openmp_spinning(argv);
  try {
    const Args args = parse_args(argc, argv);
    set_num_threads(args.threads);
    LoadedModel model = load_model(args.model);
    std::map<std::string, Tensor> given;
    std::vector<InputShape> shapes;
    for (const auto& [name, file] : args.input_files) {
      Tensor rows = first_rows(name, file, args.batch);
      Dims dims = rows.dims();
      dims[0] = InputShape::kBatchAxis;
      shapes.push_back({name, dims});
      given.emplace(name, std::move(rows));
    }
    bind_input_shapes(model.graph, shapes, "--input");
    PlanOptions options{args.batch, !args.plain_plan, !args.plain_plan};
    options.fp32_gemm = args.fp32_gemm;
    ExecutionPlan plan(model.graph, options);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    // A few input sets to rotate; the given files are the same in each.
    std::vector<std::vector<Tensor>> input_sets(4);
    for (auto& set : input_sets) {
      for (std::size_t i = 0; i < plan.input_meta().size(); ++i) {
        const ValueMeta& meta = plan.input_meta()[i];
        const std::string& name = model.graph.inputs[i].name;
        if (const auto file = given.find(name); file != given.end()) {
          set.push_back(file->second.clone());
          continue;
        }
        Tensor t(meta.dtype, meta.dims);
        if (meta.dtype == DType::f32) {
          for (std::int64_t j = 0; j < t.numel(); ++j) t.data<float>()[j] = normal(rng);
        } else if (meta.dtype == DType::i64) {
          for (std::int64_t j = 0; j < t.numel(); ++j) t.data<std::int64_t>()[j] = 1;
        } else if (meta.dtype == DType::i32) {
          for (std::int64_t j = 0; j < t.numel(); ++j) t.data<std::int32_t>()[j] = 1;
        } else {
          fail(ErrorKind::unsupported, "input '{}' of dtype {}: give it with --input {}=FILE.npy",
               name, dtype_name(meta.dtype), name);
        }
        set.push_back(std::move(t));
      }
    }
    {
      const std::vector<Tensor> outputs = plan.run(input_sets[0]);
      if (args.output_file) write_npy(*args.output_file, outputs.at(0));
    }
    for (int i = 0; i < 2; ++i) plan.run(input_sets[0]);
    std::vector<double> ms;
    const auto start = Clock::now();
    while (ms.size() < 5 ||
           std::chrono::duration<double>(Clock::now() - start).count() < args.seconds) {
      const std::vector<Tensor>& in = input_sets[ms.size() % input_sets.size()];
      const auto t = Clock::now();
      plan.run(in);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    }
    if (args.by_op) print_time_by_op(plan, input_sets[0], 5);
    const Spread spread = median_and_iqr(ms);
    fmt::print(
        "{{\"model\": \"{}\", \"batch\": {}, \"threads\": {}, \"median_ms\": {:.4f}, \"iqr_ms\": "
        "{:.4f}, \"runs\": {}}}\n",
        args.model, args.batch, num_threads(), spread.median, spread.iqr, ms.size());
  } catch (const std::exception& e) {
    std::cerr << "bench_fp32: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
