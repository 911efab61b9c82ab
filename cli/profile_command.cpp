// bitplan profile: per-layer latencies into a hardware profile, and the cost model checked
// against end-to-end runs (--validate).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "backends/cpu/onednn_profiler.hpp"
#include "backends/device.hpp"
#include "backends/workload.hpp"
#include "cli/commands.hpp"
#include "cli/input_shape.hpp"
#include "cli/values.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/parallel.hpp"
#include "core/text.hpp"
#include "cost_models/cost_model.hpp"
#include "executor/model.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {
namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// Above this median |error| of the stored profile against measured runs, plans whose
// predicted latencies differ by less cannot be ranked (the front's plans differ by ~10 %).
constexpr double kTrustedMedianError = 0.10;

// The plans --validate runs: uniform fp32 and int8 and mixes of them.
std::vector<std::pair<std::string, QuantPlan>> validation_plans(const Graph& graph) {
  const std::string int8 = widest_int8_shorthand(graph, KernelTarget::host());
  const QuantPlan all = uniform_plan(int8, graph);
  const auto layers = quantizable_layers(graph);
  std::vector<std::pair<std::string, QuantPlan>> plans;
  plans.emplace_back("fp32", QuantPlan{});
  plans.emplace_back(int8, all);
  auto subset = [&](const std::string& name, auto&& keep) {
    QuantPlan p;
    for (std::size_t i = 0; i < layers.size(); ++i)
      if (keep(i)) p.layers[layers[i].name] = all.layers.at(layers[i].name);
    plans.emplace_back(name, std::move(p));
  };
  const std::size_t half = layers.size() / 2;
  subset(int8 + " first half", [&](std::size_t i) { return i < half; });
  subset(int8 + " second half", [&](std::size_t i) { return i >= half; });
  subset(int8 + " every other", [&](std::size_t i) { return i % 2 == 0; });
  std::mt19937_64 rng(7);
  for (int r = 0; r < 2; ++r) {
    std::vector<bool> pick(layers.size());
    for (std::size_t i = 0; i < pick.size(); ++i) pick[i] = rng() % 2 == 0;
    subset(fmt::format("{} random mix {}", int8, r + 1), [&](std::size_t i) { return pick[i]; });
  }
  return plans;
}

}  // namespace

int cmd_profile(const std::vector<std::string>& args) {
  po::options_description desc(R"(bitplan profile --backend onednn --model MODEL.onnx [options]

Measures the latency of every quantizable layer (Conv, Gemm, MatMul) of the models at each
batch size and precision on the backend, plus the time of everything else in the model, the
device's ceilings (peak GEMM rates, memory bandwidth) and its identity, into a hardware profile
(YAML). Re-running with the same --out measures only what is missing. --validate then runs
fp32, int8 and mixed plans end to end and compares the measured latency with the cost model's
prediction from the profile.

--backend cuda runs where a GPU is: there, use bitplan-cuda-profile with the workloads this
command writes (--emit-workloads DIR); see docs/cuda_backend.md.

options)");
  std::vector<std::string> models, input_shape_texts;
  std::string backend = "onednn", batches_text = "1", precisions_text = "fp32,int8,bf16", out,
              target, emit_dir, validate_json;
  desc.add_options()("help,h", "show this help")("backend", po::value(&backend),
                                                 "onednn (this CPU) or cuda")(
      "model", po::value(&models)->composing(), "ONNX model (repeatable)")(
      "input-shape", po::value(&input_shape_texts)->composing(), kInputShapeHelp)(
      "batch", po::value(&batches_text), "batch sizes, comma-separated (default 1)")(
      "precisions", po::value(&precisions_text), "precisions to time (default fp32,int8,bf16)")(
      "out", po::value(&out), "profile to write or extend (default hw_profiles/<target>.yaml)")(
      "target", po::value(&target), "target name recorded in the profile")(
      "threads", po::value<std::string>()->default_value("0"), "threads (0 = all cores)")(
      "budget", po::value<std::string>()->default_value("1.5"),
      "seconds of timed runs per model, batch and precision")(
      "remeasure", "time again what the profile already has")(
      "emit-workloads", po::value(&emit_dir),
      "write the layer workloads as JSON (DIR/<model>_b<batch>.json) for external profilers "
      "and stop")("validate", "compare predicted and measured end-to-end latency")(
      "validate-json", po::value(&validate_json), "write the --validate table as JSON");
  const auto vm = parse_options(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (models.empty()) fail(ErrorKind::usage, "profile: give at least one --model (see --help)");
  if (backend != "onednn" && backend != "cuda")
    fail(ErrorKind::usage, "profile: --backend '{}' is not one of onednn, cuda", backend);
  const ValueOrigin budget_flag = ValueOrigin::flag("--budget");
  const std::string budget_text = *flag_text(vm, "budget");
  const double budget = parse_finite(budget_text, budget_flag);
  if (!(budget > 0) || budget > 600) budget_flag.fail(budget_text, "must lie in (0, 600] seconds");
  if (!validate_json.empty()) check_output_target(validate_json);  // before the measuring
  set_num_threads(parse_threads(*flag_text(vm, "threads"), ValueOrigin::flag("--threads")));
  CpuProfileOptions options;
  options.batches = parse_batch_list(batches_text, "--batch");
  options.precisions = split_list(precisions_text);
  options.budget_seconds = budget;
  options.remeasure = vm.count("remeasure") != 0;
  const std::vector<InputShape> input_shapes =
      parse_input_shapes(input_shape_texts, "--input-shape");  // for every --model

  if (!emit_dir.empty()) {
    prepare_output_folder(emit_dir, "--emit-workloads");
    for (const auto& model_path : models) {
      const LoadedModel model = load_model(model_path, input_shapes);
      for (const auto batch : options.batches) {
        const ExecutionPlan plan(model.graph, PlanOptions{batch});
        const fs::path file =
            fs::path(emit_dir) /
            fmt::format("{}_b{}.json", fs::path(model_path).stem().string(), batch);
        write_workloads_json(file, fs::path(model_path).filename().string(), batch,
                             options.precisions, layer_workloads(model.graph, plan),
                             op_workloads(model.graph, plan));
        fmt::print("wrote {}\n", file.string());
      }
    }
    return 0;
  }
  if (backend == "cuda") {
    const CudaInventory cuda = query_cuda();
    fail_unsupported(
        "profile --backend cuda: {}; measure on a GPU machine with "
        "bitplan-cuda-profile and the workloads from --emit-workloads "
        "(docs/cuda_backend.md)",
        cuda.unavailable.empty()
            ? "this command times the CPU; GPU layers are timed by bitplan-cuda-profile"
            : cuda.unavailable);
  }
  for (const auto& p : options.precisions)
    if (std::find(onednn_precisions().begin(), onednn_precisions().end(), p) ==
        onednn_precisions().end())
      fail(ErrorKind::usage, "profile: precision '{}' is not one the onednn backend knows ({})", p,
           fmt::join(onednn_precisions(), ", "));

  if (target.empty()) target = host_profile_name(num_threads());
  if (out.empty()) out = "hw_profiles/" + target + ".yaml";
  HwProfile profile = open_host_profile(out, target, "--out");
  // Load every model first: a bad path or model fails before minutes of measuring.
  std::vector<LoadedModel> loaded;
  for (const auto& model_path : models) loaded.push_back(load_model(model_path, input_shapes));
  prepare_host_profile(profile, options, [](const std::string& what) { fmt::print("{}\n", what); });
  for (std::size_t i = 0; i < models.size(); ++i) {
    const std::string& model_path = models[i];
    const LoadedModel& model = loaded[i];
    profile_model_onednn(model.graph, fs::path(model_path).filename().string(),
                         model_file_hash(model_path), options, profile,
                         [](const std::string& what) { fmt::print("  {}\n", what); });
    save_hw_profile(out, profile);  // after each model: an interrupted run keeps the rest
  }
  std::set<std::string> distinct_models;
  for (const auto& m : profile.models) distinct_models.insert(m.model_hash);
  fmt::print("profile {}: {} entries, {} model{} ({} model/batch pair{})\n", out,
             profile.entries.size(), distinct_models.size(), distinct_models.size() == 1 ? "" : "s",
             profile.models.size(), profile.models.size() == 1 ? "" : "s");
  for (const auto& c : profile.ceilings)
    fmt::print("  ceiling {} = {:.1f} {}\n", c.name, c.value, c.unit);
  if (const std::string noisy = assess_noise(profile).summary(); !noisy.empty())
    fmt::print(stderr, "bitplan: warning: profile {}: {}\n", out, noisy);

  if (!vm.count("validate")) return 0;
  json rows = json::array();
  std::vector<double> errors, stored_errors;
  fmt::print("\n{:<24} {:>5} {:<22} {:>11} {:>17} {:>8}   {:>11} {:>8}\n", "model", "batch", "plan",
             "predicted", "measured (IQR)", "error", "stored prof", "error");
  for (const auto& model_path : models) {
    const LoadedModel model = load_model(model_path, input_shapes);
    const std::string hash = model_file_hash(model_path);
    for (const auto batch : options.batches) {
      const CostContext context = CostContext::build(model.graph, hash, batch);
      const auto latency = make_latency_model(context, profile);
      const auto plans = validation_plans(model.graph);
      std::vector<QuantPlan> runnable;
      std::vector<std::pair<std::string, PlanCost>> predicted;
      for (const auto& [name, plan] : plans) {
        PlanCost cost = latency->plan_cost(plan);
        if (!cost.supported()) continue;
        runnable.push_back(plan);
        predicted.emplace_back(name, std::move(cost));
      }
      // Entries re-timed in the same interleaved session (see validate_plans_onednn).
      HwProfile fresh = profile;
      const auto measured =
          validate_plans_onednn(model.graph, fs::path(model_path).filename().string(), hash,
                                runnable, batch, options, fresh);
      const auto fresh_latency = make_latency_model(context, fresh);
      for (std::size_t i = 0; i < runnable.size(); ++i) {
        const auto& [name, cost] = predicted[i];
        const double same_session = fresh_latency->plan_cost(runnable[i]).total;
        const double measured_ms = measured[i].median / 1e3;
        const double error = (same_session - measured_ms) / measured_ms;
        const double stored_error = (cost.total - measured_ms) / measured_ms;
        errors.push_back(std::abs(error));
        stored_errors.push_back(std::abs(stored_error));
        fmt::print(
            "{:<24} {:>5} {:<22} {:>8.3f} ms {:>8.3f} ({:.3f}) ms {:>+7.1f}%   {:>8.3f} ms "
            "{:>+7.1f}%\n",
            fs::path(model_path).filename().string(), batch, name, same_session, measured_ms,
            measured[i].iqr / 1e3, 100 * error, cost.total, 100 * stored_error);
        rows.push_back({{"model", fs::path(model_path).filename().string()},
                        {"batch", batch},
                        {"plan", name},
                        {"predicted_ms", same_session},
                        {"measured_ms", measured_ms},
                        {"measured_iqr_ms", measured[i].iqr / 1e3},
                        {"error", error},
                        {"predicted_from_stored_profile_ms", cost.total},
                        {"error_vs_stored_profile", stored_error},
                        {"estimated_layers", cost.estimated_layers}});
      }
    }
  }
  const double median = median_and_iqr(errors).median,
               stored_median = median_and_iqr(stored_errors).median;
  fmt::print(
      "median |error| {:.1f}% over {} runs (max {:.1f}%) against the stored profile; {:.1f}% "
      "(max {:.1f}%) with entries timed in the same session\n",
      100 * stored_median, stored_errors.size(),
      stored_errors.empty() ? 0
                            : 100 * *std::max_element(stored_errors.begin(), stored_errors.end()),
      100 * median, errors.empty() ? 0 : 100 * *std::max_element(errors.begin(), errors.end()));
  // The same-session figure flatters: its entries were timed next to the runs they
  // predict. What a search will see is the stored profile's error.
  const double stored_max =
      stored_errors.empty() ? 0 : *std::max_element(stored_errors.begin(), stored_errors.end());
  if (stored_median > kTrustedMedianError)
    fmt::print(stderr,
               "bitplan: warning: the stored profile {} mispredicts these runs by a median "
               "{:.1f}% (max {:.1f}%), above the {:.0f}% a search can rank plans with; "
               "re-measure it on an idle machine with fewer threads (--threads 1 on a 2-core "
               "machine) and --remeasure\n",
               out, 100 * stored_median, 100 * stored_max, 100 * kTrustedMedianError);
  if (!validate_json.empty())
    write_file_atomic(validate_json,
                      json_text(json{{"profile", out},
                                     {"threads", num_threads()},
                                     {"median_abs_error", median},
                                     {"median_abs_error_vs_stored_profile", stored_median},
                                     {"rows", rows}},
                                1) +
                          "\n");
  return 0;
}

}  // namespace bitplan

namespace bitplan {

int cmd_cost(const std::vector<std::string>& args) {
  po::options_description desc(
      R"(bitplan cost --model MODEL.onnx --plan PLAN --target PROFILE.yaml [options]

What a plan costs on a target, layer by layer: the kernel precision each layer's spec runs on,
its latency from the profile (measured, or a flagged roofline estimate), its size and BOPs,
and the totals. A layer whose spec has no kernel on the target is named with the reason, and
the command exits with 4.

options)");
  std::string model_path, plan_arg, target;
  std::vector<std::string> input_shapes;
  desc.add_options()("help,h", "show this help")("model", po::value(&model_path), "ONNX model")(
      "plan", po::value(&plan_arg),
      "plan YAML, a uniform shorthand (W8A8, W4A8, ...), fp32 or fp8, as in search.options")(
      "target", po::value(&target), "hardware profile (YAML)")(
      "batch", po::value<std::string>()->default_value("1"), "batch size")(
      "input-shape", po::value(&input_shapes)->composing(), kInputShapeHelp)("json", "print JSON");
  const auto vm = parse_options(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (model_path.empty() || plan_arg.empty() || target.empty())
    fail(ErrorKind::usage, "cost: --model, --plan and --target are required (see --help)");
  const ValueOrigin batch_flag = ValueOrigin::flag("--batch");
  const std::int64_t batch = parse_batch(*flag_text(vm, "batch"), batch_flag);
  const LoadedModel model =
      load_model(model_path, parse_input_shapes(input_shapes, "--input-shape"));
  check_batch_fits(model.graph, batch, batch_flag);
  const std::string hash = model_file_hash(model_path);
  const HwProfile profile = load_hw_profile(target);
  for (const auto& warning : profile_warnings(profile, target))
    fmt::print(stderr, "bitplan: warning: {}\n", warning);
  const QuantPlan plan = resolve_plan(plan_arg, "minmax", model.graph, hash);
  const CostContext context = CostContext::build(model.graph, hash, batch);
  const auto latency = make_latency_model(context, profile);
  const auto size = make_size_model(context);
  const auto bops = make_bops_model(context);
  const PlanCost lat = latency->plan_cost(plan), bytes = size->plan_cost(plan),
                 ops = bops->plan_cost(plan);
  json layers = json::array();
  const LayerQuant fp32{};
  const LayerQuant* previous = nullptr;
  const KernelTarget kernels_of_target = kernel_target(profile);
  for (std::size_t i = 0; i < context.layers.size(); ++i) {
    auto it = plan.layers.find(context.layers[i].name);
    const LayerQuant& q = it == plan.layers.end() ? fp32 : it->second;
    const KernelChoice kernel = choose_kernel(q, context.kernel_layers[i], kernels_of_target);
    const LayerCost c = latency->layer_cost(i, q);
    // The edge from the previous layer (a conversion's cost, or the credit of int8 layers
    // passing codes to each other) is shown apart from the layer's own time: both add up
    // to the total, but only the first is the layer's.
    const double edge = previous ? latency->boundary_cost(i, *previous, q) : 0.0;
    previous = &q;
    layers.push_back({{"layer", context.layers[i].name},
                      {"key", context.workloads[i].key},
                      {"weights", to_string(q.weights)},
                      {"activations", to_string(q.activations)},
                      {"kernel", kernel.kernel ? json(kernel.kernel->name) : json(nullptr)},
                      {"precision", kernel.precision()},
                      {"latency_ms", c.unsupported.empty() ? json(c.value) : json(nullptr)},
                      {"other_ops_ms", c.other_ops},
                      {"edge_ms", edge},
                      {"estimated", c.estimated},
                      {"unsupported", c.unsupported},
                      {"size_bytes", bytes.per_layer[i]},
                      {"gbops", ops.per_layer[i]}});
  }
  // A CUDA profile's entries are priced as steps of a CUDA graph, this much less than timed
  // (cost_model.cpp, step_ms): said beside the total so that nobody reads it as eager time.
  const Ceiling* step_overhead =
      profile.backend == "cuda" ? profile.find_ceiling("step_overhead_us") : nullptr;
  const json out = {
      {"model", fs::path(model_path).filename().string()},
      {"target", profile.target},
      {"batch", batch},
      {"latency_ms", lat.supported() ? json(lat.total) : json(nullptr)},
      {"latency_fixed_ms", lat.fixed},
      {"estimated_layers", lat.estimated_layers},
      {"step_overhead_us", step_overhead ? json(step_overhead->value) : json(nullptr)},
      {"size_bytes", bytes.total},
      {"gbops", ops.total},
      {"layers", layers}};
  if (vm.count("json")) {
    std::cout << json_text(out, 2) << "\n";
  } else {
    fmt::print("{:<40} {:<36} {:<8} {:>12} {:>12} {:>12}\n", "layer", "spec (w / a)", "kernel",
               "latency ms", "edge ms", "size bytes");
    double edges = 0;
    for (const auto& l : layers) {
      const double edge = l["edge_ms"].get<double>();
      edges += edge;
      fmt::print("{:<40} {:<36} {:<8} {:>12} {:>12} {:>12.0f}\n", l["layer"].get<std::string>(),
                 l["weights"].get<std::string>() + " / " + l["activations"].get<std::string>(),
                 l["kernel"].get<std::string>(),
                 l["latency_ms"].is_null() ? std::string("-")
                                           : fmt::format("{:.4f}{}", l["latency_ms"].get<double>(),
                                                         l["estimated"].get<bool>() ? "*" : ""),
                 edge == 0 ? std::string("") : fmt::format("{:+.4f}", edge),
                 l["size_bytes"].get<double>());
    }
    if (std::any_of(layers.begin(), layers.end(),
                    [](const json& l) { return l["edge_ms"].get<double>() != 0; }))
      fmt::print(
          "edge ms: the edge from the previous layer (precision conversions; a negative value "
          "is the saving of int8 layers passing codes to each other), {:+.4f} ms in all\n",
          edges);
    if (step_overhead)
      fmt::print(
          "latency as a CUDA graph runs the model: {:.3f} us of timing events taken off each "
          "entry (the profile's step_overhead_us)\n",
          step_overhead->value);
    double charged = 0;
    for (const auto& l : layers) charged += l["other_ops_ms"].get<double>();
    if (charged > 0)
      fmt::print(
          "latency ms: a layer's entry plus the model's other ops that run after it (before the "
          "first layer: charged to it), {:.4f} ms in all\n",
          charged);
    fmt::print("other ops {:.4f} ms; total latency {} ms{}, size {:.0f} bytes, {:.4g} GBOPs\n",
               lat.fixed + charged, lat.supported() ? fmt::format("{:.4f}", lat.total) : "n/a",
               lat.estimated_layers
                   ? fmt::format(" ({} layers estimated from ceilings, *)", lat.estimated_layers)
                   : "",
               bytes.total, ops.total);
  }
  if (!lat.supported()) {
    std::string list;
    for (const auto& [layer, why] : lat.unsupported) list += fmt::format("\n  {}: {}", layer, why);
    fail_unsupported("plan '{}' has layers with no kernel on {}:{}", plan_arg, profile.target,
                     list);
  }
  return 0;
}

}  // namespace bitplan
