#include "backends/cpu/onednn_profiler.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstring>
#include <dnnl.hpp>
#include <map>
#include <random>
#include <set>

#include "backends/device.hpp"
#include "backends/workload.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "executor/kernel_list.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Calibration samples for the int8 timing run: latency does not depend on the values, but
// the scales must be finite, so a few standard-normal samples of the model's input do.
class RandomNormalDataset final : public Dataset {
 public:
  RandomNormalDataset(Dims sample_dims, std::int64_t count)
      : Dataset(std::move(sample_dims), std::vector<std::int64_t>(count, 0), {"0"}) {}
  void load(std::span<const std::int64_t> indices, float* dst) const override {
    for (std::size_t i = 0; i < indices.size(); ++i) {
      std::mt19937_64 rng(static_cast<std::uint64_t>(indices[i]) + 1);
      std::normal_distribution<float> normal;
      for (std::int64_t j = 0; j < sample_numel(); ++j)
        dst[static_cast<std::int64_t>(i) * sample_numel() + j] = normal(rng);
    }
  }
};

std::vector<std::vector<Tensor>> random_inputs(const ExecutionPlan& plan, int sets) {
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal;
  std::vector<std::vector<Tensor>> out(static_cast<std::size_t>(sets));
  for (auto& set : out)
    for (const auto& meta : plan.input_meta()) {
      Tensor t(meta.dtype, meta.dims);
      if (meta.dtype == DType::f32) {
        for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
      } else {
        // Integer inputs are indices or masks: small non-zero values stay in range.
        std::memset(t.raw(), 0, t.nbytes());
      }
      set.push_back(std::move(t));
    }
  return out;
}

struct TimedRuns {
  std::vector<std::vector<double>> step_us;  // [step][repeat]
  std::vector<double> total_us;              // whole runs
};

// Times `plans` together: rounds in which each plan runs once unrecorded (its weights and
// buffers back in cache, as in a deployment running one model back to back) and then
// kBlock recorded runs, plan after plan - so that a change in machine load reaches every
// plan alike. `per_step[i]` records plan i's steps (run_timed) besides its whole runs.
std::vector<TimedRuns> time_plans(const std::vector<ExecutionPlan*>& plans,
                                  const std::vector<bool>& per_step,
                                  const CpuProfileOptions& options) {
  constexpr std::size_t kBlock = 5;
  // Several input sets, rotated, so no layer sees the same data twice in a row.
  const auto inputs = random_inputs(*plans.front(), 3);
  for (auto* plan : plans)
    for (int i = 0; i < options.warmup_runs; ++i)
      plan->run(inputs[static_cast<std::size_t>(i) % 3]);
  std::vector<TimedRuns> out(plans.size());
  std::vector<std::vector<double>> seconds(plans.size());
  for (std::size_t p = 0; p < plans.size(); ++p) {
    out[p].step_us.resize(plans[p]->steps().size());
    seconds[p].resize(plans[p]->steps().size());
  }
  const double budget = options.budget_seconds * static_cast<double>(plans.size());
  const auto start = Clock::now();
  for (std::size_t r = 0;
       (static_cast<int>(r * kBlock) < options.min_repeats || seconds_since(start) < budget) &&
       r < 20000;
       ++r)
    for (std::size_t p = 0; p < plans.size(); ++p) {
      plans[p]->run(inputs[r % 3]);
      for (std::size_t k = 1; k <= kBlock; ++k) {
        const auto& input = inputs[(r + k) % 3];
        const auto run_start = Clock::now();
        if (per_step[p])
          plans[p]->run_timed(input, seconds[p]);
        else
          plans[p]->run(input);
        out[p].total_us.push_back(seconds_since(run_start) * 1e6);
        if (per_step[p])
          for (std::size_t st = 0; st < seconds[p].size(); ++st)
            out[p].step_us[st].push_back(seconds[p][st] * 1e6);
      }
    }
  return out;
}

TimedRuns time_plan(ExecutionPlan& plan, const CpuProfileOptions& options) {
  return std::move(time_plans({&plan}, {true}, options).front());
}

// The entries of one precision from one timed plan: samples of steps with the same workload
// key are pooled.
void record_layers(const std::vector<LayerWorkload>& workloads, const ExecutionPlan& plan,
                   TimedRuns& runs, const std::string& precision, const std::string& implementation,
                   const std::set<std::string>& layers, HwProfile& profile) {
  std::map<std::string, std::size_t> step_of;
  for (std::size_t s = 0; s < plan.steps().size(); ++s) step_of[plan.steps()[s].name] = s;
  std::map<std::string, std::vector<double>> pooled;
  for (const auto& w : workloads) {
    if (!layers.count(w.layer)) continue;
    auto it = step_of.find(w.layer);
    BITPLAN_ASSERT(it != step_of.end());
    auto& samples = pooled[w.key];
    const auto& mine = runs.step_us[it->second];
    samples.insert(samples.end(), mine.begin(), mine.end());
  }
  for (auto& [key, samples] : pooled) {
    const Spread spread = median_and_iqr(samples);
    ProfileEntry e;
    e.key = key;
    e.precision = precision;
    e.median_us = spread.median;
    e.iqr_us = spread.iqr;
    e.repeats = static_cast<int>(samples.size());
    e.implementation = implementation;
    profile.put(std::move(e));
  }
}

// Why the integer, bf16 and low-bit plans of `graph` cannot be timed with `options`, or "":
// their static activation ranges need samples - the run's calibration selection when the
// caller has one, else random normal samples, which only a single float input can take.
std::string why_no_timing_samples(const Graph& graph, const CpuProfileOptions& options) {
  if (options.calibration) return "";
  if (graph.inputs.size() == 1 && graph.inputs[0].dtype == DType::f32) return "";
  std::vector<std::string> names;
  for (const auto& input : graph.inputs) names.push_back(input.name);
  return fmt::format(
      "timing quantized plans: the model's input ({}) is not one float tensor, and without a "
      "run config's calibration data the activation ranges come from random samples, which "
      "only a single float input takes (bitplan search passes its calibration selection)",
      fmt::join(names, ", "));
}

// The graph running `plan` on the integer kernels where it can, calibrated on the options'
// calibration samples, or else on random normal samples of the (single, float) model input.
QuantSimulator::Int8Build int8_build(const Graph& graph, const std::string& model_hash,
                                     const QuantPlan& plan, const CpuProfileOptions& options) {
  if (const std::string why = why_no_timing_samples(graph, options); !why.empty())
    fail_unsupported("{}", why);
  if (options.calibration) {
    QuantSimulator simulator(graph, model_hash, *options.calibration);
    return simulator.build_int8(plan);
  }
  const ExecutionPlan probe(graph, PlanOptions{1});
  Dims sample_dims = probe.input_meta()[0].dims;
  sample_dims.erase(sample_dims.begin());
  const RandomNormalDataset samples(sample_dims, 8);
  CalibrationData calibration;
  calibration.dataset = &samples;
  calibration.indices = {0, 1, 2, 3, 4, 5, 6, 7};
  calibration.selection_id = "normal-8";
  calibration.batch = 8;
  QuantSimulator simulator(graph, model_hash, std::move(calibration));
  return simulator.build_int8(plan);
}

std::set<std::string> layer_names(const std::vector<LayerWorkload>& workloads) {
  std::set<std::string> out;
  for (const auto& w : workloads) out.insert(w.layer);
  return out;
}

// fp32 entries and the model's overhead: everything that is not a quantizable layer runs
// the same under every plan.
void record_fp32(const std::vector<LayerWorkload>& workloads, const ExecutionPlan& plan,
                 TimedRuns& runs, const std::string& model_name, const std::string& model_hash,
                 std::int64_t batch, const std::string& inputs, HwProfile& profile) {
  const std::set<std::string> layers = layer_names(workloads);
  record_layers(workloads, plan, runs, "fp32", "oneDNN fp32 (bitplan executor)", layers, profile);
  // The whole run minus its quantizable layers: the other ops and the executor's own per-run
  // work (binding inputs, views), which a sum of steps would miss.
  std::vector<double> other = runs.total_us;
  for (std::size_t s = 0; s < plan.steps().size(); ++s)
    if (layers.count(plan.steps()[s].name))
      for (std::size_t r = 0; r < other.size(); ++r) other[r] -= runs.step_us[s][r];
  const Spread other_spread = median_and_iqr(other);
  const Spread total = median_and_iqr(runs.total_us);
  profile.put(ModelOverhead{model_hash, model_name, batch, other_spread.median, other_spread.iqr,
                            total.median, inputs});
}

const char* const kInt8Implementation =
    "oneDNN u8 x s8 -> s32, per-channel scales, between float layers: input quantized and "
    "output reordered in the step";
const char* const kInt8ChainedImplementation =
    "oneDNN u8 x s8 -> s32 between integer layers (codes or channels-last floats passed on, "
    "residual Add fused): the layer's share of the all-int8 run";

// The plans int8 entries come from. A layer's int8 time depends on its neighbours
// (QuantSimulator::build_int8): between float layers it quantizes its input and reorders its
// output; between integer layers it passes codes or channels-last floats on and may absorb a
// residual Add. So every layer is timed between float layers (every other layer int8, in two
// plans) for the "int8" entries, and all layers int8 for "int8_chained".
struct Int8ContextPlans {
  std::vector<QuantPlan> plans;  // every other layer from the first, from the second, all
};

Int8ContextPlans int8_context_plans(const Graph& graph) {
  const QuantPlan all = uniform_plan(widest_int8_shorthand(graph, KernelTarget::host()), graph);
  QuantPlan even, odd;
  std::size_t i = 0;
  for (const auto& layer : quantizable_layers(graph)) {
    auto it = all.layers.find(layer.name);
    if (it == all.layers.end()) continue;
    (i++ % 2 == 0 ? even : odd).layers[layer.name] = it->second;
  }
  return {{even, odd, all}};
}

// "int8" entries from the two every-other runs, "int8_chained" from the all-int8 run. Per
// step, the all-int8 run misattributes what fusion moved (a residual Add now inside a
// convolution, reorders now separate steps), so the chained entries are the int8 entries
// minus each layer's step saving, scaled so that the model's overhead plus its layers'
// chained entries give the all-int8 run's measured total.
void record_int8(const std::vector<LayerWorkload>& workloads,
                 const std::vector<QuantSimulator::Int8Build>& builds,
                 const std::vector<const ExecutionPlan*>& plans, std::vector<TimedRuns*> runs,
                 double other_us, HwProfile& profile) {
  for (std::size_t p = 0; p < 2; ++p)
    record_layers(workloads, *plans[p], *runs[p], "int8", kInt8Implementation,
                  std::set<std::string>(builds[p].int8_layers.begin(), builds[p].int8_layers.end()),
                  profile);
  HwProfile chained;
  record_layers(workloads, *plans[2], *runs[2], "int8_chained", kInt8ChainedImplementation,
                std::set<std::string>(builds[2].int8_layers.begin(), builds[2].int8_layers.end()),
                chained);
  std::map<std::string, double> saving;  // per workload key, from the steps
  double predicted_unchained = other_us, raw_saving = 0;
  for (const auto& w : workloads) {
    const ProfileEntry* iso = profile.find(w.key, "int8");
    const ProfileEntry* ch = chained.find(w.key, "int8_chained");
    if (!iso || !iso->unsupported.empty() || !ch) continue;
    saving[w.key] = std::max(0.0, iso->median_us - ch->median_us);
    predicted_unchained += iso->median_us;
    raw_saving += saving[w.key];
  }
  const double measured = median_and_iqr(runs[2]->total_us).median;
  const double scale =
      raw_saving > 0 ? std::max(0.0, predicted_unchained - measured) / raw_saving : 0.0;
  for (const auto& [key, s] : saving) {
    ProfileEntry e = *chained.find(key, "int8_chained");
    // A noisy total can ask for more saving than a layer has: keep a floor of 5 %.
    const double alone = profile.find(key, "int8")->median_us;
    e.median_us = std::max(alone - scale * s, 0.05 * alone);
    profile.put(std::move(e));
  }
}

bool complete(const HwProfile& profile, const std::vector<LayerWorkload>& workloads,
              const std::string& precision) {
  for (const auto& w : workloads)
    if (!profile.find(w.key, precision)) return false;
  return true;
}

}  // namespace

const std::vector<std::string>& onednn_precisions() {
  static const std::vector<std::string> names{"fp32", "int8", "bf16", "w4a32",
                                              "w4a8", "w3a8", "w2a8", "w8a8"};
  return names;
}

HwProfile open_host_profile(const std::filesystem::path& path, const std::string& target,
                            const std::string& chooser) {
  HwProfile profile;
  if (!std::filesystem::exists(path)) {
    profile.target = target;
    return profile;
  }
  profile = load_hw_profile(path);
  if (profile.backend != "onednn")
    fail_input("profile '{}' is of backend {}, not this CPU (onednn); give another {}",
               path.string(), profile.backend, chooser);
  if (const auto differences = cpu_differences_from_host(profile); !differences.empty())
    fail_input(
        "profile '{}' was measured on another CPU ({}); give another {} (the default, "
        "hw_profiles/{}.yaml, names this one)",
        path.string(), fmt::join(differences, "; "), chooser, host_profile_name(num_threads()));
  if (profile.device["threads"] != std::to_string(num_threads()))
    fail_input(
        "profile '{}' was measured with {} threads, this run uses {}; use {} threads or another {}",
        path.string(), profile.device["threads"], num_threads(), profile.device["threads"],
        chooser);
  return profile;
}

void prepare_host_profile(HwProfile& profile, const CpuProfileOptions& options,
                          const std::function<void(const std::string&)>& progress) {
  describe_cpu_target(profile, options);
  if (!profile.ceilings.empty() && !options.remeasure) return;
  if (progress) progress("measuring the CPU's ceilings");
  measure_cpu_ceilings(profile);
}

void describe_cpu_target(HwProfile& profile, const CpuProfileOptions& options) {
  const CpuDevice& cpu = query_cpu();
  profile.backend = "onednn";
  profile.device["name"] = cpu.model;
  profile.device["logical_cores"] = std::to_string(cpu.logical_cores);
  profile.device["threads"] = std::to_string(num_threads());
  profile.device["onednn_isa"] = cpu.onednn_isa;
  std::string flags;
  for (const auto& f : cpu.flags) flags += (flags.empty() ? "" : " ") + f;
  profile.device["isa_flags"] = flags;
  profile.device["vnni"] = cpu.capabilities.vnni ? "yes" : "no";
  profile.libraries["onednn"] = cpu.onednn_version;
  profile.timing["warmup_runs"] = std::to_string(options.warmup_runs);
  profile.timing["min_repeats"] = std::to_string(options.min_repeats);
  profile.timing["budget_s"] = fmt::format("{}", options.budget_seconds);
  profile.timing["statistic"] = "median";
  profile.timing["spread"] = "iqr";
  profile.timing["clock"] = "steady_clock around each step of whole-model runs";
  profile.timing["inputs"] = "3 standard-normal input sets, rotated";
}

void measure_cpu_ceilings(HwProfile& profile) {
  using namespace dnnl;
  const engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  const memory::dim n = 1024;
  auto gemm_rate = [&](memory::data_type a, memory::data_type b, memory::data_type c) {
    const matmul::desc desc(memory::desc({n, n}, a, memory::format_tag::ab),
                            memory::desc({n, n}, b, memory::format_tag::any),
                            memory::desc({n, n}, c, memory::format_tag::ab));
    const matmul::primitive_desc pd(desc, eng);
    memory src(pd.src_desc(), eng), wei(pd.weights_desc(), eng), dst(pd.dst_desc(), eng);
    std::memset(src.get_data_handle(), 1, pd.src_desc().get_size());
    std::memset(wei.get_data_handle(), 1, pd.weights_desc().get_size());
    const matmul prim(pd);
    auto once = [&] {
      prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
      strm.wait();
    };
    once();
    std::vector<double> samples;
    const auto start = Clock::now();
    while (samples.size() < 5 || seconds_since(start) < 1.0) {
      const auto t = Clock::now();
      once();
      samples.push_back(seconds_since(t));
    }
    std::sort(samples.begin(), samples.end());
    return 2.0 * static_cast<double>(n * n * n) / samples.front() / 1e9;  // best run
  };
  const std::string how = fmt::format("oneDNN matmul {}^3, best of 1 s of runs", n);
  profile.ceilings.clear();
  profile.ceilings.push_back(
      {"gemm_fp32_gflops",
       gemm_rate(memory::data_type::f32, memory::data_type::f32, memory::data_type::f32), "GFLOP/s",
       how});
  profile.ceilings.push_back(
      {"gemm_int8_gops",
       gemm_rate(memory::data_type::u8, memory::data_type::s8, memory::data_type::s32), "GOP/s",
       how + " (u8 x s8 -> s32)"});
  // Memory bandwidth: a parallel copy far larger than the caches, bytes read + written.
  const std::size_t bytes = std::size_t{256} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t = Clock::now();
    parallel_for(static_cast<std::int64_t>(bytes), 1 << 22, [&](std::int64_t s, std::int64_t e) {
      std::memcpy(b.data() + s, a.data() + s, static_cast<std::size_t>(e - s));
    });
    best = std::min(best, seconds_since(t));
  }
  profile.ceilings.push_back({"memory_bandwidth_gbs", 2.0 * static_cast<double>(bytes) / best / 1e9,
                              "GB/s",
                              "parallel memcpy of 256 MiB, bytes read + written, best of 5"});
}

void profile_model_onednn(const Graph& graph, const std::string& model_name,
                          const std::string& model_hash, const CpuProfileOptions& options,
                          HwProfile& profile,
                          const std::function<void(const std::string&)>& progress) {
  for (const auto& precision : options.precisions)
    if (std::find(onednn_precisions().begin(), onednn_precisions().end(), precision) ==
        onednn_precisions().end())
      fail_input("profiling on oneDNN: precision '{}' is not one of {}", precision,
                 fmt::join(onednn_precisions(), ", "));
  const std::string inputs = input_dims_text(graph);
  for (const std::int64_t batch : options.batches) {
    ExecutionPlan fp32_plan(graph, PlanOptions{batch});
    const auto workloads = layer_workloads(graph, fp32_plan);
    auto say = [&](const std::string& what) {
      if (progress) progress(fmt::format("{} batch {}: {}", model_name, batch, what));
    };

    const bool want_fp32 = std::count(options.precisions.begin(), options.precisions.end(), "fp32");
    if (want_fp32 && (options.remeasure || !complete(profile, workloads, "fp32") ||
                      !profile.find_model(model_hash, batch, inputs))) {
      say("timing fp32");
      TimedRuns runs = time_plan(fp32_plan, options);
      record_fp32(workloads, fp32_plan, runs, model_name, model_hash, batch, inputs, profile);
    }

    const bool want_int8 = std::count(options.precisions.begin(), options.precisions.end(), "int8");
    if (want_int8 && (options.remeasure || !complete(profile, workloads, "int8"))) {
      const std::string refusal = why_no_timing_samples(graph, options);
      if (!refusal.empty()) {
        for (const auto& w : workloads)
          profile.put(ProfileEntry{w.key, "int8", 0, 0, 0, "", refusal});
      } else {
        say("timing int8 (between float layers, and chained)");
        const Int8ContextPlans contexts = int8_context_plans(graph);
        std::vector<QuantSimulator::Int8Build> builds;
        std::vector<std::unique_ptr<ExecutionPlan>> executables;
        std::vector<ExecutionPlan*> raw;
        for (const auto& plan : contexts.plans) {
          builds.push_back(int8_build(graph, model_hash, plan, options));
          executables.push_back(
              std::make_unique<ExecutionPlan>(builds.back().graph, PlanOptions{batch}));
          raw.push_back(executables.back().get());
        }
        auto runs = time_plans(raw, {true, true, true}, options);
        const ModelOverhead* overhead = profile.find_model(model_hash, batch, inputs);
        record_int8(workloads, builds, {raw.begin(), raw.end()}, {&runs[0], &runs[1], &runs[2]},
                    overhead ? overhead->other_us : 0.0, profile);
        for (const auto& w : workloads)
          if (auto it = builds[2].why_simulated.find(w.layer); it != builds[2].why_simulated.end())
            if (!profile.find(w.key, "int8"))
              profile.put(ProfileEntry{w.key, "int8", 0, 0, 0, "", it->second});
      }
    }

    const bool want_bf16 = std::count(options.precisions.begin(), options.precisions.end(), "bf16");
    if (want_bf16 && (options.remeasure || !complete(profile, workloads, "bf16"))) {
      if (const std::string refusal = why_no_timing_samples(graph, options); !refusal.empty()) {
        for (const auto& w : workloads)
          profile.put(ProfileEntry{w.key, "bf16", 0, 0, 0, "", refusal});
      } else {
        // Layers no bf16 kernel takes here (the kernel list's reason) are simulated in the
        // build; their entries record why.
        auto build = int8_build(graph, model_hash, uniform_plan("bf16", graph), options);
        if (!build.bf16_layers.empty()) {
          say("timing bf16");
          ExecutionPlan bf16_plan(build.graph, PlanOptions{batch});
          TimedRuns runs = time_plan(bf16_plan, options);
          record_layers(workloads, bf16_plan, runs, "bf16",
                        "oneDNN bf16 input and weights, f32 accumulation and output",
                        std::set<std::string>(build.bf16_layers.begin(), build.bf16_layers.end()),
                        profile);
        }
        for (const auto& w : workloads)
          if (auto it = build.why_simulated.find(w.layer); it != build.why_simulated.end())
            if (!profile.find(w.key, "bf16"))
              profile.put(ProfileEntry{w.key, "bf16", 0, 0, 0, "", it->second});
      }
    }

    // bitplan's own low-bit kernels, each timed in one run of a uniform plan over every layer
    // the kernel list gives it: W4A32 (packed <= 4-bit weights, float activations) under the
    // weight-only int4 plan, W4A8 (the same weights, per-token uint8 activations) under W4A8t,
    // W3A8 (int3 weights, the same activations) under W3A8t, W2A8 (int2) under W2A8t, W8A8
    // (int8) under W8A8t.
    // Their time does not depend on the scale granularity's bookkeeping beyond a few percent
    // (bench/bench_lowbit.cpp), so one granularity (per channel) stands for all.
    const auto time_lowbit = [&](const std::string& precision, const std::string& shorthand,
                                 std::vector<std::string> QuantSimulator::Int8Build::*layers,
                                 const std::string& implementation) {
      if (!std::count(options.precisions.begin(), options.precisions.end(), precision) ||
          (!options.remeasure && complete(profile, workloads, precision)))
        return;
      if (const std::string refusal = why_no_timing_samples(graph, options); !refusal.empty()) {
        for (const auto& w : workloads)
          profile.put(ProfileEntry{w.key, precision, 0, 0, 0, "", refusal});
        return;
      }
      auto build = int8_build(graph, model_hash, uniform_plan(shorthand, graph), options);
      const std::vector<std::string>& timed = build.*layers;
      if (!timed.empty()) {
        say("timing " + precision);
        ExecutionPlan plan(build.graph, PlanOptions{batch});
        TimedRuns runs = time_plan(plan, options);
        record_layers(workloads, plan, runs, precision,
                      fmt::format("{} ({})", implementation, kernels::isa_name(kernels::cpu_isa())),
                      std::set<std::string>(timed.begin(), timed.end()), profile);
      }
      for (const auto& w : workloads)
        if (auto it = build.why_simulated.find(w.layer); it != build.why_simulated.end())
          if (!profile.find(w.key, precision))
            profile.put(ProfileEntry{w.key, precision, 0, 0, 0, "", it->second});
    };
    time_lowbit("w4a32", "W4", &QuantSimulator::Int8Build::w4a32_layers,
                "bitplan W4A32: int4 codes packed two per byte, dequantized in registers, fp32 "
                "FMA");
    time_lowbit("w4a8", "W4A8t", &QuantSimulator::Int8Build::w4a8_layers,
                "bitplan W4A8: int4 codes packed two per byte, activations quantized per token "
                "to uint8, int32 dot products");
    time_lowbit("w3a8", "W3A8t", &QuantSimulator::Int8Build::w3a8_layers,
                "bitplan W3A8: int3 codes in a 2-bit and a 1-bit plane, activations quantized per "
                "token to uint8, int32 dot products");
    time_lowbit("w2a8", "W2A8t", &QuantSimulator::Int8Build::w2a8_layers,
                "bitplan W2A8: int2 codes packed four per byte, activations quantized per token "
                "to uint8, int32 dot products");
    time_lowbit("w8a8", "W8A8t", &QuantSimulator::Int8Build::w8a8_layers,
                "bitplan W8A8: int8 codes, activations quantized per token to uint8, int32 dot "
                "products");
  }
}

Spread measure_plan_onednn(const Graph& graph, const std::string& model_hash, const QuantPlan& plan,
                           std::int64_t batch, const CpuProfileOptions& options) {
  return measure_plans_onednn(graph, model_hash, {plan}, batch, options).at(0);
}

std::vector<Spread> measure_plans_onednn(const Graph& graph, const std::string& model_hash,
                                         const std::vector<QuantPlan>& plans, std::int64_t batch,
                                         const CpuProfileOptions& options) {
  HwProfile unused;
  return validate_plans_onednn(graph, "", model_hash, plans, batch, options, unused, false);
}

std::vector<Spread> validate_plans_onednn(const Graph& graph, const std::string& model_name,
                                          const std::string& model_hash,
                                          const std::vector<QuantPlan>& plans, std::int64_t batch,
                                          const CpuProfileOptions& options, HwProfile& fresh,
                                          bool retime_entries) {
  std::vector<Graph> graphs;
  std::vector<std::unique_ptr<ExecutionPlan>> executables;
  std::vector<bool> per_step;
  std::vector<QuantSimulator::Int8Build> int8_builds;
  if (retime_entries) {
    graphs.push_back(graph);
    for (const auto& plan : int8_context_plans(graph).plans) {
      int8_builds.push_back(int8_build(graph, model_hash, plan, options));
      graphs.push_back(int8_builds.back().graph);
    }
    per_step = {true, true, true, true};
  }
  for (const auto& plan : plans) {
    graphs.push_back(int8_build(graph, model_hash, plan, options).graph);
    per_step.push_back(false);
  }
  std::vector<ExecutionPlan*> raw;
  for (const auto& g : graphs) {
    executables.push_back(std::make_unique<ExecutionPlan>(g, PlanOptions{batch}));
    raw.push_back(executables.back().get());
  }
  auto runs = time_plans(raw, per_step, options);
  const std::size_t first_plan = retime_entries ? 4 : 0;
  if (retime_entries) {
    const auto workloads = layer_workloads(graph, *raw[0]);
    record_fp32(workloads, *raw[0], runs[0], model_name, model_hash, batch, input_dims_text(graph),
                fresh);
    record_int8(workloads, int8_builds, {raw[1], raw[2], raw[3]}, {&runs[1], &runs[2], &runs[3]},
                fresh.find_model(model_hash, batch, input_dims_text(graph))->other_us, fresh);
  }
  std::vector<Spread> out;
  for (std::size_t p = first_plan; p < runs.size(); ++p)
    out.push_back(median_and_iqr(runs[p].total_us));
  return out;
}

}  // namespace bitplan
