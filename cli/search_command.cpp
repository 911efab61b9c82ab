// bitplan search / bitplan sensitivity: a run config's `search:` section to a Pareto front.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <set>
#include <thread>

#include "backends/cpu/onednn_profiler.hpp"
#include "backends/hw_profile.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/parallel.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernel_list.hpp"
#include "executor/model.hpp"
#include "search/driver.hpp"
#include "search/mpi_runner.hpp"
#include "search/objectives.hpp"
#include "search/output.hpp"
#include "search/policy.hpp"

namespace bitplan {
namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

std::atomic<bool> g_interrupted{false};

// `target: host`: this machine's profile, cached by its identity under hw_profiles/ in the
// working directory (where `bitplan profile` writes by default), so another CPU or thread
// count never reads or extends it.
fs::path host_profile_path() {
  return fs::path("hw_profiles") / (host_profile_name(num_threads()) + ".yaml");
}

// The profile precisions the space's options run in on this CPU (the kernel list's answer
// for every layer and option), plus fp32 for the model's other layers and overhead.
std::vector<std::string> precisions_of_space(const Graph& graph,
                                             const search::SearchOptions& search) {
  std::vector<std::string> labels = search.options;
  for (const auto& o : search.overrides)
    labels.insert(labels.end(), o.options.begin(), o.options.end());
  std::set<std::string> precisions{"fp32"};
  const KernelTarget host = KernelTarget::host();
  for (const auto& layer : quantizable_layers(graph)) {
    const KernelLayer kernel_layer = KernelLayer::of(graph, layer);
    for (const auto& label : labels) {
      LayerQuant spec;
      try {
        spec = search::option_spec(label, graph, layer);
      } catch (const Error&) {
        continue;  // the search names a bad label, with its rule
      }
      if (const KernelChoice choice = choose_kernel(spec, kernel_layer, host); choice.kernel)
        precisions.insert(choice.precision());
    }
  }
  return {precisions.begin(), precisions.end()};
}

// Opens (or starts) this machine's profile and measures what the search needs and it lacks:
// the ceilings, and the model at the latency batch in the space's precisions. A dry run
// measures only the ceilings when there are none (its latencies are then roofline
// estimates) and writes nothing.
HwProfile host_profile_for_space(const Graph& graph, const std::string& model_name,
                                 const std::string& model_hash, const RunConfig& config,
                                 const CalibrationData& calibration, bool dry_run) {
  const fs::path path = host_profile_path();
  HwProfile profile = open_host_profile(path, host_profile_name(num_threads()), "profile file");
  CpuProfileOptions options;
  options.batches = {config.search.latency_batch};
  options.precisions = precisions_of_space(graph, config.search);
  options.calibration = &calibration;
  bool measured = false;
  auto say = [&](const std::string& what) {
    measured = true;
    fmt::print(stderr, "target host ({}): {}\n", path.string(), what);
  };
  prepare_host_profile(profile, options, say);
  if (dry_run) return profile;
  profile_model_onednn(graph, model_name, model_hash, options, profile, say);
  if (measured) {
    fs::create_directories(path.parent_path());
    save_hw_profile(path, profile);
  }
  return profile;
}

// Threads per rank: under an MPI launcher the ranks of one machine share its cores, so
// evaluate.threads 0 ("all cores") becomes a rank's share of them, and an explicit count
// above that share is warned about.
void set_rank_threads(std::int64_t threads, const search::MpiJob* mpi) {
  if (!mpi || mpi->size() == 1) {
    set_num_threads(threads);
    return;
  }
  // A rank's share: the machine's cores over its ranks, or fewer where the launcher bound
  // the rank to fewer (mpirun binds each of 2 ranks to one core by default).
  const int ranks = mpi->ranks_on_this_host();
  const int machine = static_cast<int>(std::thread::hardware_concurrency());
  const int share = std::max(1, std::min(available_cores(), machine / ranks));
  if (threads == 0) {
    threads = share;
    if (mpi->rank() == 0)
      fmt::print(stderr, "mpi: {} threads per rank ({} cores, {} ranks on this machine)\n", threads,
                 machine, ranks);
  } else if (threads > share && mpi->rank() == 0) {
    fmt::print(stderr,
               "bitplan: warning: {} ranks x {} threads exceed this machine's {} cores (or the "
               "cores each rank is bound to): the ranks slow each other down "
               "(evaluate.threads, --threads)\n",
               ranks, threads, machine);
  }
  set_num_threads(threads);
}

// `mpi`: the MPI job this process is a rank of (null: none). Rank 0 runs the search; another
// rank loads the model and data, serves the evaluations rank 0 sends it and returns 0.
int run(const std::vector<std::string>& args, bool sensitivity_only, search::MpiJob* mpi) {
  const bool worker = mpi && mpi->rank() != 0;
  const char* name = sensitivity_only ? "sensitivity" : "search";
  po::options_description desc(fmt::format(
      R"(bitplan {} --config RUN.yaml [options]

{}
Every field of the config can be overridden: --set search.policy=random --set
search.constraints.max_accuracy_drop=0.5 (repeatable). Results go to search.output
(default results/<config name>/); every evaluation is stored in the results database
(search.database, default results/bitplan.sqlite), which later runs and resumed runs reuse.
Ctrl-C writes the partial front and exits with 130; running the same command again resumes.

options)",
      name,
      sensitivity_only
          ? "Per-layer sensitivity: the metric change when only one layer takes one "
            "candidate\nspec, for every layer and candidate of the search space (sensitivity.csv, "
            "report.html).\n"
          : "Searches per-layer quantization plans and writes the Pareto front over "
            "the\nconfigured objectives (accuracy, predicted latency on the target, size...).\n"));
  std::string config_path, policy, output, target;
  std::vector<std::string> sets;
  desc.add_options()("help,h", "show this help")(
      "config", po::value(&config_path), "run config (YAML)")("set", po::value(&sets)->composing(),
                                                              "override a config field: KEY=VALUE")(
      "policy", po::value(&policy),
      "exact, nsga2, reinforce or random (= --set search.policy=...)")(
      "evaluations", po::value<std::string>(), "evaluation budget (0 = no limit)")(
      "seconds", po::value<std::string>(), "wall-clock budget of the policy loop (0 = no limit)")(
      "seed", po::value<std::string>(), "random seed")("output", po::value(&output),
                                                       "results folder")(
      "target", po::value(&target),
      "hardware profile (YAML), or host: this machine, profiled on first use")(
      "threads", po::value<std::string>(), "threads (0 = all cores)")(
      "dry-run", "print the resolved run and the size of the space, evaluate nothing");
  const auto vm = parse_options(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (config_path.empty()) fail(ErrorKind::usage, "{}: --config RUN.yaml is required", name);
  const auto evaluations = flag_text(vm, "evaluations"), seconds = flag_text(vm, "seconds"),
             seed = flag_text(vm, "seed"), threads = flag_text(vm, "threads");
  // The flags become --set overrides, checked first by the same rules as the config keys so
  // that an error names the flag the user typed.
  if (!policy.empty()) {
    const auto policies = search::policy_names();
    if (std::find(policies.begin(), policies.end(), policy) == policies.end())
      ValueOrigin::flag("--policy")
          .fail(fmt::format("'{}'", policy),
                fmt::format("is not one of {}", fmt::join(policies, ", ")));
    sets.push_back("search.policy=" + policy);
  }
  if (evaluations)
    sets.push_back(fmt::format("search.budget.evaluations={}",
                               parse_count(*evaluations, ValueOrigin::flag("--evaluations"))));
  if (seconds)
    sets.push_back(fmt::format("search.budget.seconds={}",
                               parse_seconds(*seconds, ValueOrigin::flag("--seconds"))));
  if (seed)
    sets.push_back(fmt::format("search.seed={}", parse_seed(*seed, ValueOrigin::flag("--seed"))));
  if (threads)
    sets.push_back(fmt::format("evaluate.threads={}",
                               parse_threads(*threads, ValueOrigin::flag("--threads"))));
  RunConfig config = load_run_config(config_path, sets);
  // Paths given on the command line are relative to the working directory, not the config.
  if (!output.empty()) config.search.output = output;
  if (!target.empty()) {
    config.target_is_host = target == kHostTarget;
    config.target = config.target_is_host ? fs::path() : fs::path(target);
  }
  if (config.search.output.empty())
    config.search.output = fs::path("results") / fs::path(config_path).stem();
  if (config.search.database.empty())
    config.search.database = config.search.output.parent_path() / "bitplan.sqlite";
  if (!config.has_dataset)
    fail_input("config '{}': a search needs a dataset section (calibration and validation)",
               config_path);
  // Outputs first: an unusable results folder or database would otherwise fail only after
  // calibration, sensitivity and the search. A dry run writes nothing.
  if (!vm.count("dry-run") && !worker) {
    search::prepare_results_folder(config.search.output);
    check_output_target(config.search.database);
    prepare_output_folder(config.search.database.parent_path(),
                          "results database folder (search.database)");
  }
  set_rank_threads(config.evaluate.threads, mpi);

  LoadedModel model = load_model(config.model);
  const std::string hash =
      model_file_hash(config.model) + prepare_fp32_model(model.graph, config.quantization);
  const std::shared_ptr<const Dataset> dataset = open_dataset(config.dataset);
  // search.latency_sequence: the latency is costed and measured on a copy of the model whose
  // token inputs hold that many tokens, bound (as the model is to the data) to the data's
  // first tokens, zero-padded where the data's sequences are shorter.
  std::optional<Graph> latency_graph;
  if (config.search.latency_sequence > 0) {
    latency_graph = model.graph;
    try {
      bind_input_to_samples(*latency_graph, *token_window(dataset, config.search.latency_sequence));
    } catch (const Error& e) {
      fail_input("config '{}': search.latency_sequence {}: {}", config_path,
                 config.search.latency_sequence, e.what());
    }
  }
  bind_input_to_samples(model.graph, *dataset);
  const Graph& costed_graph = latency_graph ? *latency_graph : model.graph;
  search::DriverInputs in;
  in.latency_graph = latency_graph ? &*latency_graph : nullptr;
  in.graph = &model.graph;
  in.model_name = config.model.filename().string();
  in.model_hash = hash;
  in.dataset = dataset.get();
  in.validation = select_indices(config.dataset.validation, dataset->size(), "validation");
  check_batch_fits(model.graph, config, static_cast<std::int64_t>(in.validation.size()));
  if (config.latency_batch_origin)  // the cost models plan the model at this batch
    check_batch_fits(model.graph, config.search.latency_batch, *config.latency_batch_origin);
  // The metric judges every plan: without search.objectives, "accuracy" stands for the
  // metric's own quality objective; named objectives must be ones the metric measures.
  in.metric = config.metric;
  const MetricKind metric = resolved_metric(config.metric, dataset->has_labels());
  if (!config.search.objectives_given)
    for (std::string& objective : config.search.objectives)
      if (objective == "accuracy") objective = std::string(search::quality_objective(metric));
  search::check_objectives_fit_metric(config.search.objectives, metric);
  if (metric != MetricKind::top1 &&
      (config.search.max_accuracy_drop || config.search.max_worst_class_drop))
    fail_input(
        "config '{}': search.constraints.max_accuracy_drop and max_worst_class_drop apply to "
        "metric top1, not {} (use max_perplexity_increase, min_cosine or max_kl)",
        config_path, metric_name(metric));
  const Selection& val = config.dataset.validation;
  std::string data_files = config.dataset.images.string();
  for (const NamedInput& input : config.dataset.inputs)
    data_files +=
        fmt::format("{}{}={}", data_files.empty() ? "" : ",", input.name, input.path.string());
  in.dataset_id = fmt::format("{}|{}|count={}|seed={}|offset={}", data_files,
                              config.dataset.labels.string(), val.count, val.seed, val.offset);
  // Another metric stores other values: its rows are its own (top1 keeps the key of before).
  if (metric != MetricKind::top1 || !config.metric.output.empty())
    in.dataset_id +=
        fmt::format("|metric={}|output={}|tokens={}|mask={}", metric_name(metric),
                    config.metric.output, config.metric.tokens_input, config.metric.mask_input);
  in.calibration =
      calibration_data(config.dataset, *dataset, default_cache_dir(), config.evaluate.batch);
  std::optional<CalibrationData> latency_calibration;
  if (latency_graph)
    in.latency_calibration = &latency_calibration.emplace(
        token_window_calibration(in.calibration, config.search.latency_sequence));
  in.eval_batch = config.evaluate.batch;
  in.options = config.search;
  if (worker) {
    search::serve_search_evaluations(
        in, [&](search::Evaluator& evaluator, const search::MeasureSingleLayer& measure_single) {
          mpi->serve(evaluator, measure_single, model.graph, hash);
        });
    return 0;
  }
  if (!config.target.empty()) in.profile = load_hw_profile(config.target);
  if (config.target_is_host) {
    config.target = host_profile_path();
    in.profile =
        host_profile_for_space(costed_graph, in.model_name, hash, config,
                               in.latency_calibration ? *in.latency_calibration : in.calibration,
                               vm.count("dry-run") != 0);
  }
  in.dry_run = vm.count("dry-run") != 0;
  in.sensitivity_only = sensitivity_only;
  if (in.profile) {
    // A profile of another CPU predicts that CPU's latencies, not this one's: say so once.
    for (const auto& warning : profile_warnings(*in.profile, config.target.string()))
      fmt::print(stderr, "bitplan: warning: {}\n", warning);
    // The latency batch (and inputs) must have been profiled for this model (else roofline
    // estimates).
    const std::string inputs = input_dims_text(costed_graph);
    const bool measured =
        in.profile->find_model(hash, config.search.latency_batch, inputs) != nullptr;
    if (config.target_is_host && in.dry_run && !measured)
      fmt::print(stderr,
                 "target host: this CPU has no measurement of {} at batch {} with inputs {} yet "
                 "(a search measures it first); the dry run's latencies are roofline estimates\n",
                 in.model_name, config.search.latency_batch, inputs);
    else if (!measured && in.profile->backend == "onednn") {
      std::string shapes;
      for (const ValueInfo& input : costed_graph.inputs)
        shapes += fmt::format(" --input-shape {}=N,{}", input.name,
                              fmt::join(input.dims.begin() + 1, input.dims.end(), ","));
      fmt::print(stderr,
                 "bitplan: warning: profile '{}' has no measurement of {} at batch {} with inputs "
                 "{}: latencies are roofline estimates; run `bitplan profile --model {} --batch "
                 "{}{} --out {}` (or search with target: host)\n",
                 config.target.string(), in.model_name, config.search.latency_batch, inputs,
                 config.model.string(), config.search.latency_batch, shapes,
                 config.target.string());
    }
  }

  const bool tty = isatty(STDERR_FILENO);
  search::Progress progress;
  progress.line = [&](const std::string& s) {
    if (tty) std::cerr << "\r\033[K";
    std::cerr << s << "\n";
  };
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  progress.status = [&, tty](const std::string& s) {
    if (tty) {
      std::cerr << "\r\033[K" << s << std::flush;
    } else if (std::chrono::steady_clock::now() - last > std::chrono::seconds(5)) {
      std::cerr << s << "\n";
      last = std::chrono::steady_clock::now();
    }
  };
  if (mpi && mpi->size() > 1)
    in.make_runner = [&](search::ExecutorEvaluator& local,
                         search::MeasureSingleLayer local_single) {
      return mpi->runner(local, std::move(local_single), config.search.mpi_evaluation_timeout,
                         progress.line);
    };
  set_interrupt_flag(&g_interrupted);  // Ctrl-C now stops the search cleanly
  const search::SearchResult result = search::run_search(in, progress, g_interrupted);
  if (tty) std::cerr << "\r\033[K";
  if (in.dry_run) {
    fmt::print("model    {} ({})\ntarget   {}\npolicy   {} (seed {})\nspace    {}\n", in.model_name,
               hash, config.target.empty() ? "(none)" : config.target.string(),
               config.search.policy, config.search.seed, result.space_description);
    fmt::print("calibration {}\n", calibration_summary(config.dataset));
    fmt::print("objectives {}\nbudget   {} evaluations, {} s\noutput   {}\ndatabase {}\n",
               fmt::join(config.search.objectives, ", "), config.search.max_evaluations,
               config.search.max_seconds, config.search.output.string(),
               config.search.database.string());
    // Options the target cannot run are marked with a note number; each distinct reason
    // (the kernel list's, or the simulator's) is printed once below the table.
    std::vector<std::string> reasons;
    for (std::size_t l = 0; l < result.space.layers.size(); ++l) {
      fmt::print("  {:<40}", result.space.layers[l].layer);
      for (std::size_t o = 0; o < result.space.layers[l].options.size(); ++o) {
        const std::string& why = result.unsupported[l][o];
        std::string mark;
        if (!why.empty()) {
          auto it = std::find(reasons.begin(), reasons.end(), why);
          if (it == reasons.end()) it = reasons.insert(reasons.end(), why);
          mark = fmt::format("(unsupported [{}])", it - reasons.begin() + 1);
        }
        fmt::print(" {}{}", result.space.layers[l].options[o], mark);
      }
      fmt::print("\n");
    }
    for (std::size_t i = 0; i < reasons.size(); ++i) fmt::print("  [{}] {}\n", i + 1, reasons[i]);
    return 0;
  }
  std::string command = "bitplan";
  command += sensitivity_only ? " sensitivity" : " search";
  for (const auto& a : args) command += " " + a;
  search::write_results(config.search.output, result, {in.model_name, hash, config_path, command});
  fmt::print(
      "{}: {} evaluations ({} from the database) in {:.1f} s (sensitivity {:.1f} s, "
      "search {:.1f} s, final {:.1f} s); {}\n",
      name, result.evaluations.size(), result.evaluations_reused,
      result.seconds_sensitivity + result.seconds_search + result.seconds_final,
      result.seconds_sensitivity, result.seconds_search, result.seconds_final, result.stop_reason);
  if (!result.runner_summary.empty() && sensitivity_only)
    fmt::print("{}\n", result.runner_summary);
  else if (!result.runner_summary.empty())
    fmt::print("{}; the policy itself {:.2f} s of the search's {:.2f} s\n", result.runner_summary,
               result.seconds_search - result.seconds_evaluating, result.seconds_search);
  if (!sensitivity_only) {
    // The quality each plan is judged by: the metric's (top-1, perplexity, cosine, KL).
    const auto quality = [&](const search::PlanMetrics& m) -> std::string {
      switch (metric) {
        case MetricKind::top1:
          return fmt::format("top-1 {:.2f}%", 100 * m.top1);
        case MetricKind::perplexity:
          return fmt::format("perplexity {:.4f}, next-token KL {:.3e}", m.perplexity, m.kl);
        case MetricKind::embedding:
          return fmt::format("cosine to fp32 {:.5f} (worst {:.5f})", m.cosine, m.cosine_worst);
        case MetricKind::fidelity:
          return fmt::format("KL to fp32 {:.3e}, top-1 agreement {:.2f}%", m.kl, 100 * m.agreement);
      }
      return "";
    };
    if (metric == MetricKind::top1)
      fmt::print("fp32 top-1 {:.2f}%; front of {} plans (hypervolume {:.4f}):\n",
                 100 * result.fp32.top1, result.front.size(), result.hypervolume);
    else
      fmt::print("metric {}: fp32 {}; front of {} plans (hypervolume {:.4f}):\n",
                 metric_name(metric), quality(result.fp32), result.front.size(),
                 result.hypervolume);
    for (std::size_t k = 0; k < result.front.size(); ++k) {
      const auto& e = result.evaluations[result.front[k]];
      const auto& m = e.final_metrics ? *e.final_metrics : e.metrics;
      // Without a target profile there is no latency to show.
      const std::string latency =
          std::isfinite(e.metrics.latency_ms)
              ? fmt::format("  latency {:.4f} ms{}", e.metrics.latency_ms,
                            e.measured_latency_ms
                                ? fmt::format(" (measured {:.4f})", *e.measured_latency_ms)
                                : "")
              : "";
      if (metric == MetricKind::top1)
        fmt::print("  plan_{:03d}  top-1 {:.2f}% ({:+.2f} pt){}  size {:.4f} MB ({:.2f} bpw)\n", k,
                   100 * m.top1, 100 * (m.top1 - result.fp32.top1), latency,
                   e.metrics.size_bytes / 1e6, e.metrics.bits_per_weight);
      else
        fmt::print("  plan_{:03d}  {}{}  size {:.4f} MB ({:.2f} bpw)\n", k, quality(m), latency,
                   e.metrics.size_bytes / 1e6, e.metrics.bits_per_weight);
    }
  }
  fmt::print("results in {}/ (report.html, pareto.json, pareto.csv, plan_NNN.yaml)\n",
             config.search.output.string());
  return result.interrupted ? 130 : 0;
}

// One process, or one rank of an MPI job (search/mpi_runner.hpp).
int run_rank(const std::vector<std::string>& args, bool sensitivity_only) {
  const std::unique_ptr<search::MpiJob> mpi = search::start_mpi_job();
  if (!mpi) return run(args, sensitivity_only, nullptr);
  try {
    return run(args, sensitivity_only, mpi.get());
  } catch (const Error& e) {
    if (mpi->rank() == 0) {
      // A hung or waiting worker would never see a clean end: every rank goes now.
      std::cerr << "bitplan: error: " << e.what() << "\n";
      mpi->abort(static_cast<int>(e.kind()));
    }
    // Rank 0 names this rank and the error, and ends the job.
    mpi->report_setup_failure(e);
    return static_cast<int>(e.kind());
  }
}

}  // namespace

int cmd_search(const std::vector<std::string>& args) {
  return run_rank(args, false);
}
int cmd_sensitivity(const std::vector<std::string>& args) {
  return run_rank(args, true);
}

}  // namespace bitplan
