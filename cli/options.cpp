#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/values.hpp"
#include "core/error.hpp"
#include "executor/plan.hpp"
#include "executor/quant/equalize.hpp"
#include "search/driver.hpp"

namespace bitplan {

namespace po = boost::program_options;

po::variables_map parse_options(const po::options_description& desc,
                                const std::vector<std::string>& args,
                                const po::positional_options_description* positional) {
  po::variables_map vm;
  try {
    auto parser = po::command_line_parser(args).options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail(ErrorKind::usage, "{} (see --help)", e.what());
  }
  return vm;
}

std::optional<std::string> flag_text(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return std::nullopt;
  return vm[name].as<std::string>();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::vector<std::int64_t> parse_batch_list(const std::string& text, const char* flag) {
  std::vector<std::int64_t> out;
  for (const auto& item : split_list(text))
    out.push_back(parse_batch(item, ValueOrigin::flag(flag)));
  if (out.empty()) fail(ErrorKind::usage, "{} is empty (give e.g. 1,64)", flag);
  return out;
}

bool is_plan_file(const std::string& plan_arg) {
  return plan_arg.ends_with(".yaml") || plan_arg.ends_with(".yml") ||
         std::filesystem::exists(plan_arg);
}

QuantPlan resolve_plan(const std::string& plan_arg, const std::string& calibration,
                       const Graph& graph, const std::string& model_hash) {
  QuantPlan plan;
  if (is_plan_file(plan_arg)) {
    plan = load_plan(plan_arg, graph, model_hash);
  } else if (plan_arg == "fp32" || plan_arg == "fp8") {
    // Search options that are no uniform shorthand: take each layer's as the search does.
    const CalibrationMethod method = parse_calibration_method(calibration);
    for (const auto& layer : quantizable_layers(graph)) {
      LayerQuant q = search::option_spec(plan_arg, graph, layer);
      q.calibration = method;
      if (q.quantized()) plan.layers[layer.name] = q;
    }
  } else {
    plan = uniform_plan(plan_arg, graph, parse_calibration_method(calibration));
  }
  plan.model_hash = model_hash;
  return plan;
}

bool needs_calibration(const QuantPlan& plan) {
  return std::any_of(plan.layers.begin(), plan.layers.end(), [](const auto& entry) {
    const LayerQuant& q = entry.second;
    return q.activations.format != FormatId::fp32 && !q.dynamic &&
           format_traits(q.activations.format).has_scale();
  });
}

std::string prepare_fp32_model(Graph& graph, const QuantizationSection& quantization,
                               EqualizationReport* report_out) {
  if (!quantization.equalize) return "";
  EqualizeOptions options;
  options.relu6_to_relu = quantization.relu6_to_relu;
  const EqualizationReport report = equalize_cross_layer(graph, options);
  std::cerr << fmt::format(
      "bitplan: cross-layer equalization: {} pairs equalized, {} skipped, {} ReLU6 replaced by "
      "ReLU, {} sweeps{}\n",
      report.equalized.size(), report.skipped.size(), report.relu6_replaced.size(), report.sweeps,
      report.converged
          ? ""
          : fmt::format(" (not converged: max |log s| {:.2e})", report.last_max_log_scale));
  for (const std::string& line : report.lines()) std::cerr << "  " << line << "\n";
  if (report_out) *report_out = report;
  return quantization.relu6_to_relu ? "+cle-relu" : "+cle";
}

namespace {

// Activation bytes of one sample (the planned arena and the inputs), or 0 when the model
// cannot be planned as is: the run's own planning then reports why.
double activation_bytes_per_sample(const Graph& graph) {
  try {
    const ExecutionPlan one(graph, PlanOptions{1});
    double bytes = static_cast<double>(one.arena_bytes());
    for (const ValueMeta& input : one.input_meta())
      bytes +=
          static_cast<double>(product(input.dims)) * static_cast<double>(dtype_size(input.dtype));
    return bytes;
  } catch (const Error&) {
    return 0;
  }
}

}  // namespace

void check_batch_fits(const Graph& graph, std::int64_t batch, const ValueOrigin& origin) {
  check_batch_memory(batch, batch, activation_bytes_per_sample(graph), origin);
}

void check_batch_fits(const Graph& graph, const RunConfig& config, std::int64_t samples) {
  const std::int64_t batch = config.evaluate.batch;
  check_batch_memory(batch, samples > 0 ? std::min(batch, samples) : batch,
                     activation_bytes_per_sample(graph),
                     config.evaluate.batch_origin.value_or(ValueOrigin::flag("--batch")));
}

std::string calibration_summary(const DatasetConfig& dataset) {
  const CalibrationConfig& c = dataset.calibration;
  std::string samples = c.count == 0 ? "all samples" : fmt::format("{} samples", c.count);
  samples += c.seed == 0 ? " (dataset order" : fmt::format(" (seed {}", c.seed);
  if (c.offset != 0) samples += fmt::format(", offset {}", c.offset);
  // Named inputs: the files of each, by input name.
  const auto files = [](const std::vector<NamedInput>& inputs) {
    std::string text;
    for (const NamedInput& input : inputs)
      text += fmt::format("{}{}={}", text.empty() ? "" : ", ", input.name, input.path.string());
    return text;
  };
  if (!c.inputs.empty()) return fmt::format("{}) of {}", samples, files(c.inputs));
  if (c.images.empty() && !dataset.inputs.empty())
    return fmt::format("{}) of the evaluation inputs {}", samples, files(dataset.inputs));
  if (c.images.empty())
    return fmt::format("{}) of the evaluation images {}", samples, dataset.images.string());
  return fmt::format("{}) of {}", samples, c.images.string());
}

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME")) return std::string(xdg) + "/bitplan";
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.cache/bitplan";
  return ".bitplan-cache";
}

}  // namespace bitplan
