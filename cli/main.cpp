// bitplan command line. Subcommands parse their own options (Boost.Program_options) into
// the same structs the config file fills; every failure becomes one message and an exit
// code (docs/cli.md):
//   0 success, 1 internal error (a bug), 2 bad command line, 3 invalid input file or config,
//   4 well-formed input bitplan does not support (unknown op, type, attribute), 5 a rank of
//   a distributed (MPI) search failed.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include "backends/device.hpp"
#include "cli/commands.hpp"
#include "cli/export_command.hpp"
#include "cli/input_shape.hpp"
#include "cli/run_config.hpp"
#include "cli/values.hpp"
#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/parallel.hpp"
#include "core/text.hpp"
#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/metrics.hpp"
#include "executor/model.hpp"
#include "executor/quant/debug.hpp"
#include "executor/quant/simulate.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using nlohmann::json;

namespace bitplan {
namespace {

// The usage text around the subcommand list (kSubcommands, below, fills the middle).
constexpr const char* kUsageHead =
    R"(bitplan: find the best per-layer quantization plan for a network on your hardware

usage: bitplan <command> [options]

commands:
)";

constexpr const char* kUsageTail = R"(
examples:
  bitplan inspect models/fmnist_resnet.onnx
  bitplan evaluate --config configs/default.yaml
  bitplan evaluate --model models/fmnist_mlp.onnx \
      --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
      --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
      --mean 0.2860 --std 0.3530 --json

`bitplan <command> --help` shows each command's options. Exit codes: 0 ok, 1 internal
error, 2 bad command line, 3 invalid input, 4 unsupported model, 5 a rank of a distributed
search failed.
)";

po::variables_map parse(const po::options_description& desc, const std::vector<std::string>& args,
                        const po::positional_options_description* positional = nullptr) {
  return parse_options(desc, args, positional);
}

std::string human_count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

int cmd_inspect(const std::vector<std::string>& args) {
  po::options_description desc(R"(bitplan inspect MODEL.onnx [options]

Loads the model (with bitplan's import simplifications), plans it for one batch size and
prints every executed layer with its ONNX node name, op, shapes, parameters and MACs.

example:
  bitplan inspect models/cifar10_resnet20.onnx --batch 1 --json

options)");
  std::string model;
  std::vector<std::string> input_shapes;
  desc.add_options()("help,h", "show this help")("model", po::value(&model), "ONNX model file")(
      "batch", po::value<std::string>()->default_value("1"), "batch size to plan for")(
      "input-shape", po::value(&input_shapes)->composing(), kInputShapeHelp)("json", "print JSON");
  po::positional_options_description pos;
  pos.add("model", 1);
  const auto vm = parse(desc, args, &pos);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (model.empty())
    fail(ErrorKind::usage, "inspect: a model file is required (bitplan inspect MODEL.onnx)");
  const ValueOrigin batch_flag = ValueOrigin::flag("--batch");
  const std::int64_t batch = parse_batch(*flag_text(vm, "batch"), batch_flag);
  const LoadedModel loaded = load_model(model, parse_input_shapes(input_shapes, "--input-shape"));
  check_batch_fits(loaded.graph, batch, batch_flag);
  const ExecutionPlan plan(loaded.graph, PlanOptions{batch});
  std::int64_t total_params = 0, total_macs = 0;
  for (const auto& s : plan.steps()) {
    total_params += s.params;
    total_macs += s.macs;
  }
  if (vm.count("json")) {
    json layers = json::array();
    for (const auto& s : plan.steps())
      layers.push_back({{"name", s.name},
                        {"op", s.op_type},
                        {"inputs", s.input_dims},
                        {"outputs", s.output_dims},
                        {"params", s.params},
                        {"macs", s.macs}});
    json out = {{"model", model},
                {"graph", loaded.graph.name},
                {"opset", loaded.graph.opset},
                {"batch", batch},
                {"layers", layers},
                {"total_params", total_params},
                {"total_macs", total_macs},
                {"arena_bytes", plan.arena_bytes()},
                {"simplifications", loaded.simplification.notes}};
    std::cout << json_text(out, 2) << "\n";
    return 0;
  }
  fmt::print("model {} (graph '{}', opset {}), batch {}\n", model, loaded.graph.name,
             loaded.graph.opset, batch);
  fmt::print("{:<40} {:<20} {:<24} {:<20} {:>10} {:>10}\n", "layer", "op", "input", "output",
             "params", "MACs");
  for (const auto& s : plan.steps())
    fmt::print("{:<40} {:<20} {:<24} {:<20} {:>10} {:>10}\n", s.name, s.op_type,
               s.input_dims.empty() ? "" : to_string(s.input_dims[0]),
               s.output_dims.empty() ? "" : to_string(s.output_dims[0]),
               human_count(static_cast<double>(s.params)),
               human_count(static_cast<double>(s.macs)));
  fmt::print("{} layers, {} parameters, {} MACs per batch of {}, {:.1f} KiB activation memory\n",
             plan.steps().size(), human_count(static_cast<double>(total_params)),
             human_count(static_cast<double>(total_macs)), batch,
             static_cast<double>(plan.arena_bytes()) / 1024.0);
  if (!loaded.simplification.notes.empty())
    fmt::print(
        "import simplifications: {} BatchNorm folded, {} LayerNorm and {} GELU recognised, {} "
        "activations fused, {} Identity/Dropout removed\n",
        loaded.simplification.folded_batchnorm, loaded.simplification.fused_layernorm,
        loaded.simplification.fused_gelu, loaded.simplification.fused_activation,
        loaded.simplification.removed_identity);
  return 0;
}

int cmd_devices(const std::vector<std::string>& args) {
  po::options_description desc(R"(bitplan devices [--json]

Lists the hardware bitplan can profile: the CPU with the ISA oneDNN dispatches to, and the
CUDA GPUs (or why none is usable).

options)");
  desc.add_options()("help,h", "show this help")("json", "print JSON");
  const auto vm = parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  const CpuDevice cpu = query_cpu();
  const CudaInventory cuda = query_cuda();
  if (vm.count("json")) {
    json gpus = json::array();
    for (const auto& d : cuda.devices)
      gpus.push_back({{"index", d.index},
                      {"name", d.name},
                      {"sm", fmt::format("{}.{}", d.sm_major, d.sm_minor)},
                      {"multiprocessors", d.multiprocessors},
                      {"memory_bytes", d.memory_bytes},
                      {"clock_khz", d.clock_khz},
                      {"memory_bus_bits", d.memory_bus_bits}});
    json out = {
        {"cpu",
         {{"model", cpu.model},
          {"logical_cores", cpu.logical_cores},
          {"onednn_isa", cpu.onednn_isa},
          {"onednn_version", cpu.onednn_version},
          {"flags", cpu.flags},
          {"capabilities",
           {{"vnni", cpu.capabilities.vnni},
            {"avx512", cpu.capabilities.avx512},
            {"bf16", cpu.capabilities.bf16},
            {"amx", cpu.capabilities.amx}}},
          {"cache_bytes", {{"l1d", cpu.l1d_bytes}, {"l2", cpu.l2_bytes}, {"l3", cpu.l3_bytes}}}}},
        {"cuda",
         {{"built", cuda.built},
          {"driver_version", cuda.driver_version},
          {"runtime_version", cuda.runtime_version},
          {"unavailable", cuda.unavailable},
          {"devices", gpus}}}};
    std::cout << json_text(out, 2) << "\n";
    return 0;
  }
  fmt::print("cpu   {} ({} logical cores)\n      oneDNN {} dispatches to {}; flags: {}\n",
             cpu.model, cpu.logical_cores, cpu.onednn_version, cpu.onednn_isa,
             fmt::join(cpu.flags, " "));
  // What the kernel lists decline on (executor/kernel_list.hpp), and the caches.
  fmt::print(
      "      kernels: VNNI {}, AVX-512 {}, bf16 {}, AMX {}; caches L1d {} KiB, L2 {} KiB, L3 "
      "{} KiB\n",
      cpu.capabilities.vnni ? "yes" : "no", cpu.capabilities.avx512 ? "yes" : "no",
      cpu.capabilities.bf16 ? "yes" : "no", cpu.capabilities.amx ? "yes" : "no",
      cpu.l1d_bytes >> 10, cpu.l2_bytes >> 10, cpu.l3_bytes >> 10);
  if (!cuda.unavailable.empty()) fmt::print("cuda  {}\n", cuda.unavailable);
  for (const auto& d : cuda.devices)
    fmt::print("cuda  #{} {} (sm_{}{}, {} SMs, {:.1f} GiB, driver {}, runtime {})\n", d.index,
               d.name, d.sm_major, d.sm_minor, d.multiprocessors,
               static_cast<double>(d.memory_bytes) / (1 << 30), cuda.driver_version,
               cuda.runtime_version);
  return 0;
}

int cmd_debug(const std::vector<std::string>& args) {
  po::options_description desc(R"(bitplan debug --config RUN.yaml [--plan PLAN] [options]

Where a plan's error comes from, layer by layer, on a subset of the validation samples:
the SQNR of each layer's output and of the model output when only that layer is quantized
(isolated), the SQNR of each layer's output with the whole plan (cumulative), the weight
range with its outlier ratio (max|w| / std) and the calibrated input range.

examples:
  bitplan debug --config configs/default.yaml --plan W4A8
  bitplan debug --config configs/default.yaml --plan my_plan.yaml --count 512 --csv debug.csv --json

options)");
  std::string config_path, plan_arg = "W8A8", calibration = "minmax", csv_path,
                           cache_dir = default_cache_dir();
  desc.add_options()("help,h", "show this help")("config", po::value(&config_path),
                                                 "run config (YAML)")(
      "plan", po::value(&plan_arg)->default_value("W8A8"),
      "plan YAML file or uniform plan (W8A8, W4A16, fp32...)")(
      "calibration", po::value(&calibration)->default_value("minmax"),
      "calibration for uniform plans")("count", po::value<std::string>()->default_value("256"),
                                       "validation samples to measure on (0 = all)")(
      "cache-dir", po::value(&cache_dir), "calibration cache folder")(
      "csv", po::value(&csv_path), "also write the table as CSV")("json", "print JSON");
  const auto vm = parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (config_path.empty()) fail(ErrorKind::usage, "debug: --config RUN.yaml is required");
  if (!csv_path.empty()) check_output_target(csv_path);  // before the work, not after it
  const std::int64_t count = parse_count(*flag_text(vm, "count"), ValueOrigin::flag("--count"));
  RunConfig config = load_run_config(config_path);
  if (!config.has_dataset) fail_input("config '{}': debug needs a dataset section", config_path);
  set_num_threads(config.evaluate.threads);
  LoadedModel loaded = load_model(config.model);
  const std::string hash_suffix = prepare_fp32_model(loaded.graph, config.quantization);
  const auto dataset = open_dataset(config.dataset);
  bind_input_to_samples(loaded.graph, *dataset);
  Selection sel = config.dataset.validation;
  if (count > 0) sel.count = std::min<std::int64_t>(count, dataset->size() - sel.offset);
  const auto indices = select_indices(sel, dataset->size(), "validation");
  check_batch_fits(loaded.graph, config, static_cast<std::int64_t>(indices.size()));
  const std::string hash = model_file_hash(config.model) + hash_suffix;
  const QuantPlan plan = resolve_plan(plan_arg, calibration, loaded.graph, hash);
  QuantSimulator simulator(
      loaded.graph, hash,
      calibration_data(config.dataset, *dataset, cache_dir, config.evaluate.batch));
  const PlanDebug d = debug_plan(simulator, plan, *dataset, indices, config.evaluate.batch);

  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  if (!csv_path.empty()) {
    std::string csv =
        "layer,op,weights,activations,isolated_layer_sqnr_db,isolated_output_sqnr_db,"
        "cumulative_layer_sqnr_db,weight_min,weight_max,weight_outlier_ratio,input_min,input_max\n";
    for (const auto& l : d.layers)
      csv += fmt::format("{},{},{},{},{:.3f},{:.3f},{:.3f},{},{},{:.3f},{},{}\n", csv_field(l.name),
                         csv_field(l.op_type), l.weights, l.activations, l.isolated_layer_sqnr_db,
                         l.isolated_output_sqnr_db, l.cumulative_layer_sqnr_db, l.weight_min,
                         l.weight_max, l.weight_outlier_ratio, l.input_min, l.input_max);
    write_file_atomic(csv_path, csv);
  }
  if (vm.count("json")) {
    json layers = json::array();
    for (const auto& l : d.layers)
      layers.push_back({{"name", l.name},
                        {"op", l.op_type},
                        {"weights", l.weights},
                        {"activations", l.activations},
                        {"isolated_layer_sqnr_db", num(l.isolated_layer_sqnr_db)},
                        {"isolated_output_sqnr_db", num(l.isolated_output_sqnr_db)},
                        {"cumulative_layer_sqnr_db", num(l.cumulative_layer_sqnr_db)},
                        {"weight_min", l.weight_min},
                        {"weight_max", l.weight_max},
                        {"weight_outlier_ratio", l.weight_outlier_ratio},
                        {"input_min", num(l.input_min)},
                        {"input_max", num(l.input_max)}});
    std::cout << json_text(json{{"model", config.model.string()},
                                {"plan", plan_arg},
                                {"samples", d.samples},
                                {"output_sqnr_db", num(d.output_sqnr_db)},
                                {"layers", layers}},
                           2)
              << "\n";
    return 0;
  }
  fmt::print("model {} plan {} on {} samples: model output SQNR {:.1f} dB\n", config.model.string(),
             plan_arg, d.samples, d.output_sqnr_db);
  fmt::print("{:<36} {:<18} {:<18} {:>9} {:>9} {:>9} {:>19} {:>7} {:>17}\n", "layer", "weights",
             "activations", "iso.layer", "iso.out", "cumul.", "weight range", "w.out",
             "input range");
  for (const auto& l : d.layers)
    fmt::print(
        "{:<36} {:<18} {:<18} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.3f},{:<9.3f} {:>7.1f} "
        "{:>8.3f},{:<8.3f}\n",
        l.name, l.weights, l.activations, l.isolated_layer_sqnr_db, l.isolated_output_sqnr_db,
        l.cumulative_layer_sqnr_db, l.weight_min, l.weight_max, l.weight_outlier_ratio, l.input_min,
        l.input_max);
  fmt::print(
      "SQNR in dB (higher is better): iso.layer/iso.out = the layer's output / the model output "
      "with only "
      "this layer quantized; cumul. = the layer's output with the whole plan\n");
  return 0;
}

// Comma-separated finite numbers ("0.485,0.456,0.406"), each checked like a config's.
std::vector<float> parse_floats(const std::string& text, const char* flag) {
  const ValueOrigin origin = ValueOrigin::flag(flag);
  std::vector<float> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const double value = parse_finite(text.substr(pos, comma - pos), origin);
    if (std::abs(value) > std::numeric_limits<float>::max())
      origin.fail(text.substr(pos, comma - pos), "is out of the float range");
    out.push_back(static_cast<float>(value));
    pos = comma + 1;
  }
  return out;
}

int cmd_evaluate(const std::vector<std::string>& args) {
  po::options_description desc(
      R"(bitplan evaluate (--config RUN.yaml | --model M.onnx --images ...) [options]

Runs the model in fp32 on the validation selection of a dataset and reports top-1/top-5
accuracy, per-class accuracy and throughput. Flags override the config file.

examples:
  bitplan evaluate --config configs/default.yaml
  bitplan evaluate --config configs/default.yaml --count 1000 --batch 128 --json
  bitplan evaluate --model models/cifar10_resnet20.onnx --format image_folder \
      --images ../shared/data/cifar10/test --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
  bitplan evaluate --config configs/default.yaml --plan W8A8              # uniform plan
  bitplan evaluate --config configs/default.yaml --plan my_plan.yaml --json
  bitplan evaluate --config configs/default.yaml --plan W4A8 --calibration mse --save-plan w4a8.yaml
  bitplan evaluate --model minilm.onnx --format npy --input input_ids=x_ids.npy \
      --input attention_mask=x_mask.npy --metric embedding

With --plan, the model also runs in fp32 and the report adds the plan's accuracy and its
fidelity to fp32 (top-1 agreement, KL divergence, SQNR, cosine, worst-class drop).
The metric (config `metric:`, or --metric) judges the run: top1 (labels; the default when
there are labels), fidelity (no labels: agreement, KL, SQNR, cosine vs fp32), embedding
(cosine to fp32; Spearman on metric.pairs/scores; nearest-centroid accuracy with labels) or
perplexity (causal LM logits [N, T, V]: perplexity of the tokens, next-token KL vs fp32).
uint8 data is scaled by 1/255 and float data is fed as it is unless --scale (or
preprocess.scale) says otherwise; the output says which applied. A model whose batch axis
is fixed (a static export) runs at that batch.
Activation ranges come from the config's calibration selection (dataset.calibration: its
own images, e.g. a train split, or else a subset of the evaluation images) and are cached
in --cache-dir.

options)");
  std::string config_path, model, images, labels, format, mean, std_dev, plan_arg,
      calibration = "minmax", save_plan_path, predictions_path, metric;
  std::vector<std::string> named_inputs, sets;
  std::string cache_dir = default_cache_dir();
  desc.add_options()("help,h", "show this help")("config", po::value(&config_path),
                                                 "run config (YAML)")(
      "set", po::value(&sets)->composing(),
      "override a config field: KEY=VALUE (repeatable; e.g. dataset.calibration.count=32)")(
      "model", po::value(&model), "ONNX model (overrides the config's)")(
      "images", po::value(&images), "images: IDX/NPY file or image folder")(
      "input", po::value(&named_inputs)->composing(),
      "NAME=FILE: the data of the model input NAME (repeat for each input; instead of --images)")(
      "labels", po::value(&labels),
      "labels: IDX/NPY file (image folders: the subfolders); without, the metric is fidelity")(
      "format", po::value(&format), "idx | npy | image_folder (default: guessed from --images)")(
      "metric", po::value(&metric),
      "top1 | fidelity | embedding | perplexity (overrides metric.kind)")(
      "scale", po::value<std::string>(),
      "multiply raw values by this before mean/std (default: 1/255 for uint8 data, 1 for float)")(
      "mean", po::value(&mean), "per-channel mean after scaling, comma-separated")(
      "std", po::value(&std_dev), "per-channel std, comma-separated")(
      "count", po::value<std::string>(), "validation samples (0 = all)")(
      "seed", po::value<std::string>(), "validation selection seed (0 = dataset order)")(
      "batch", po::value<std::string>(), "batch size (default 64)")(
      "threads", po::value<std::string>(), "threads (0 = all cores)")(
      "plan", po::value(&plan_arg),
      "quantization plan: a plan YAML file or a uniform plan (W8A8, W4A16, W4g32A8, fp32...)")(
      "calibration", po::value(&calibration)->default_value("minmax"),
      "activation calibration for uniform plans: minmax | percentile | mse | entropy")(
      "cache-dir", po::value(&cache_dir), "calibration cache folder (default ~/.cache/bitplan)")(
      "save-plan", po::value(&save_plan_path), "write the resolved plan as YAML")(
      "predictions", po::value(&predictions_path),
      "write each sample's top-1 class (int64 .npy, selection order; the plan's with --plan)")(
      "real",
      "also run the plan on this CPU's real kernels where the kernel list has one (oneDNN "
      "int8/bf16, bitplan's W4A32 and W4A8; the other layers simulated, each with the reason) "
      "and compare with the simulation")("int8", "the former name of --real")(
      "equalize",
      "cross-layer equalization of the fp32 model before calibration and the plan "
      "(quantization.equalize)")(
      "relu6-to-relu",
      "with --equalize: replace the ReLU6 that stops a pair with ReLU (changes the fp32 model; "
      "quantization.relu6_to_relu)")("json", "print JSON");
  const auto vm = parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (!sets.empty() && config_path.empty())
    fail(ErrorKind::usage, "evaluate: --set overrides fields of a --config; give one");
  RunConfig config;
  if (!config_path.empty()) config = load_run_config(config_path, sets);
  if (!model.empty()) config.model = model;
  if (!images.empty() && !named_inputs.empty())
    fail(ErrorKind::usage, "evaluate: --images and --input exclude each other");
  if (!images.empty() || !named_inputs.empty()) {
    config.has_dataset = true;
    config.dataset.images = images;
    config.dataset.inputs.clear();
    for (const std::string& item : named_inputs) {
      const auto eq = item.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
        ValueOrigin::flag("--input").fail(item, "must be NAME=FILE (a model input and its file)");
      config.dataset.inputs.push_back({item.substr(0, eq), item.substr(eq + 1)});
    }
    const std::string first = images.empty() ? config.dataset.inputs[0].path.string() : images;
    config.dataset.labels = labels;
    config.dataset.format = !format.empty()           ? format
                            : fs::is_directory(first) ? "image_folder"
                            : first.ends_with(".npy") ? "npy"
                                                      : "idx";
  }
  if (!metric.empty()) {
    if (!metric_from_name(metric, config.metric.kind))
      ValueOrigin::flag("--metric")
          .fail(metric, "is not one of top1, fidelity, embedding, perplexity");
    config.metric.kind_given = true;
  }
  if (const auto text = flag_text(vm, "scale")) {
    const double value = parse_finite(*text, ValueOrigin::flag("--scale"));
    if (value == 0 || std::abs(value) > std::numeric_limits<float>::max())
      ValueOrigin::flag("--scale").fail(*text, "must be a non-zero float");
    config.dataset.preprocess.scale = static_cast<float>(value);
  }
  if (!mean.empty()) config.dataset.preprocess.mean = parse_floats(mean, "--mean");
  if (!std_dev.empty()) {
    config.dataset.preprocess.std = parse_floats(std_dev, "--std");
    for (const float v : config.dataset.preprocess.std)
      if (v == 0) ValueOrigin::flag("--std").fail(std_dev, "has a 0: every std must be non-zero");
  }
  if (const auto text = flag_text(vm, "count"))
    config.dataset.validation.count = parse_count(*text, ValueOrigin::flag("--count"));
  if (const auto text = flag_text(vm, "seed"))
    config.dataset.validation.seed = parse_seed(*text, ValueOrigin::flag("--seed"));
  if (const auto text = flag_text(vm, "batch")) {
    config.evaluate.batch_origin = ValueOrigin::flag("--batch");
    config.evaluate.batch = parse_batch(*text, *config.evaluate.batch_origin);
  }
  if (const auto text = flag_text(vm, "threads"))
    config.evaluate.threads = parse_threads(*text, ValueOrigin::flag("--threads"));
  if (vm.count("equalize")) config.quantization.equalize = true;
  if (vm.count("relu6-to-relu")) {
    if (!config.quantization.equalize)
      fail(ErrorKind::usage,
           "evaluate --relu6-to-relu: it applies with --equalize (or quantization.equalize: true); "
           "it only replaces the ReLU6 that stops a pair from being equalized");
    config.quantization.relu6_to_relu = true;
  }
  if (config.model.empty()) fail(ErrorKind::usage, "evaluate: give --config or --model");
  if (!config.has_dataset)
    fail(ErrorKind::usage,
         "evaluate: give a dataset (--config with a dataset section, or --images)");
  // Accuracy needs the true classes: top-1 asked for on IDX/NPY data without labels.
  if (!images.empty() && config.dataset.format != "image_folder" && labels.empty() &&
      config.metric.kind_given && config.metric.kind == MetricKind::top1)
    fail(ErrorKind::usage,
         "evaluate --images {}: --metric top1 needs --labels (an IDX/NPY file of the samples' "
         "classes); without labels, --metric fidelity compares a --plan with fp32",
         images);

  // Output targets before the work, not after it.
  for (const auto& output : {save_plan_path, predictions_path})
    if (!output.empty()) check_output_target(output);
  set_num_threads(config.evaluate.threads);
  LoadedModel loaded = load_model(config.model);
  const std::string hash_suffix = prepare_fp32_model(loaded.graph, config.quantization);
  const auto dataset = open_dataset(config.dataset);
  bind_input_to_samples(loaded.graph, *dataset);
  const auto indices = select_indices(config.dataset.validation, dataset->size(), "validation");
  std::string batch_note;
  config.evaluate.batch = model_batch(loaded.graph, config.evaluate.batch, &batch_note);
  check_batch_fits(loaded.graph, config, static_cast<std::int64_t>(indices.size()));
  const MetricKind kind = resolved_metric(config.metric, dataset->has_labels());
  if (kind == MetricKind::top1 && !dataset->has_labels())
    fail_input(
        "evaluating '{}': metric top1 needs labels (dataset.labels); without labels use "
        "metric.kind fidelity, embedding or perplexity",
        config.model.string());
  const bool top1 = kind == MetricKind::top1;
  const bool with_plan = !plan_arg.empty();
  const bool run_real = vm.count("real") || vm.count("int8");
  if (run_real && !with_plan)
    fail(ErrorKind::usage, "--{} runs a plan's layers on real kernels: give --plan too",
         vm.count("real") ? "real" : "int8");
  if (!vm["calibration"].defaulted() && (!with_plan || is_plan_file(plan_arg)))
    fail(ErrorKind::usage,
         "--calibration {} applies to uniform plans (--plan W8A8...); plan files set it per layer",
         calibration);
  // What the metric keeps: the judged rows for comparisons and embeddings (an LLM's logits
  // are not kept: its reference is the top-k next-token distributions, executor/metrics.hpp).
  std::vector<std::int64_t> labels_of_selection;
  if (dataset->has_labels())
    for (const auto i : indices) labels_of_selection.push_back(dataset->label(i));
  std::optional<EmbeddingPairs> pairs;
  if (kind == MetricKind::embedding && !config.metric.pairs.empty())
    pairs = load_embedding_pairs(config.metric, indices, dataset->size());
  NextTokenReference token_reference;
  NextTokenOptions fp32_tokens{config.metric.tokens_input, config.metric.mask_input, nullptr,
                               with_plan ? &token_reference : nullptr};
  NextTokenOptions plan_tokens{config.metric.tokens_input, config.metric.mask_input,
                               &token_reference, nullptr};
  const bool perplexity = kind == MetricKind::perplexity;
  const auto options = [&](bool keep, const NextTokenOptions* tokens) {
    EvalOptions o;
    o.batch = config.evaluate.batch;
    o.keep_logits = keep && !perplexity;
    o.output = config.metric.output;
    o.score_labels = top1;
    o.next_token = perplexity ? tokens : nullptr;
    return o;
  };
  const EvalResult r = evaluate(loaded.graph, *dataset, indices,
                                options(with_plan || kind == MetricKind::embedding, &fp32_tokens));
  const double throughput = static_cast<double>(r.samples) / std::max(r.model_seconds, 1e-9);
  const MetricValues fp32_values =
      metric_values(kind, r, nullptr, labels_of_selection, pairs ? &*pairs : nullptr);

  // The plan's run, next to fp32.
  std::optional<EvalResult> q;
  std::optional<Fidelity> fidelity, real_vs_sim;
  std::optional<MetricValues> plan_values;
  std::optional<QuantSimulator::Int8Build> int8_build;
  std::optional<EvalResult> real;
  // The real run's metric where it is not top-1 (the LLM's perplexity): what the simulation
  // must predict, printed next to it.
  std::optional<MetricValues> real_values;
  QuantPlan plan;
  if (with_plan) {
    const std::string hash = model_file_hash(config.model) + hash_suffix;
    plan = resolve_plan(plan_arg, calibration, loaded.graph, hash);
    if (!save_plan_path.empty()) save_plan(save_plan_path, plan);
    QuantSimulator simulator(
        loaded.graph, hash,
        calibration_data(config.dataset, *dataset, cache_dir, config.evaluate.batch));
    const Graph simulated = simulator.build(plan);
    q = evaluate(simulated, *dataset, indices, options(true, &plan_tokens));
    plan_values = metric_values(kind, *q, &r, labels_of_selection, pairs ? &*pairs : nullptr);
    if (plan_values->has_fidelity) fidelity = plan_values->fidelity;
    if (run_real) {
      int8_build = simulator.build_int8(plan);
      real = evaluate(int8_build->graph, *dataset, indices, options(true, &plan_tokens));
      if (!q->logits.empty()) real_vs_sim = compare_outputs(q->logits, real->logits, q->width);
      if (!top1)
        real_values =
            metric_values(kind, *real, &r, labels_of_selection, pairs ? &*pairs : nullptr);
    }
  }
  if (!predictions_path.empty()) {
    const std::vector<std::int64_t>& top1 = q ? q->predictions : r.predictions;
    write_npy(predictions_path,
              Tensor::from_values<std::int64_t>({static_cast<std::int64_t>(top1.size())}, top1));
  }
  const std::string calibration_text =
      needs_calibration(plan) ? calibration_summary(config.dataset)
                              : "none needed (no layer quantizes its input with a static range)";
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  // The configured metric's values, as JSON (null where they do not apply).
  auto metric_json = [&](const MetricValues& m) {
    json out = {{"kind", metric_name(m.kind)}, {"samples", m.samples}};
    if (m.kind == MetricKind::top1) {
      out["top1"] = num(m.top1);
      out["top5"] = num(m.top5);
    }
    if (m.has_fidelity)
      out["fidelity"] = {{"top1_agreement", m.fidelity.top1_agreement},
                         {"kl_divergence", m.fidelity.kl_divergence},
                         {"sqnr_db", num(m.fidelity.sqnr_db)},
                         {"cosine", m.fidelity.cosine}};
    if (m.kind == MetricKind::embedding) {
      out["cosine_mean"] = num(m.cosine_mean);
      out["cosine_worst"] = num(m.cosine_worst);
      out["spearman"] = num(m.spearman);
      out["pairs"] = m.pairs;
      out["centroid_accuracy"] = num(m.centroid_accuracy);
    }
    if (m.kind == MetricKind::perplexity) {
      out["perplexity"] = num(m.perplexity);
      out["next_token_kl"] = num(m.next_token_kl);
      out["positions"] = m.positions;
    }
    return out;
  };
  // The metric's values as one text line.
  auto metric_text = [&](const MetricValues& m) {
    std::string text;
    const auto add = [&](std::string part) { text += (text.empty() ? "" : ", ") + part; };
    if (m.kind == MetricKind::fidelity && !m.has_fidelity)
      add("fidelity to fp32 is measured for a plan (--plan)");
    if (m.kind == MetricKind::embedding) {
      if (std::isfinite(m.cosine_mean) && m.has_fidelity)
        add(fmt::format("cosine to fp32 mean {:.5f}, worst {:.5f}", m.cosine_mean, m.cosine_worst));
      if (std::isfinite(m.spearman))
        add(fmt::format("Spearman {:.4f} on {} pairs", m.spearman, m.pairs));
      if (std::isfinite(m.centroid_accuracy))
        add(fmt::format("nearest-centroid accuracy {:.2f}%", 100 * m.centroid_accuracy));
      if (text.empty())
        add(dataset->has_labels()
                ? "no metric.pairs, and the selection's labels hold fewer than two classes (no "
                  "centroid accuracy): cosine to fp32 is measured for a plan (--plan)"
                : "no metric.pairs or labels: cosine to fp32 is measured for a plan (--plan)");
    }
    if (m.kind == MetricKind::perplexity) {
      add(fmt::format("perplexity {:.4f} over {} next tokens", m.perplexity, m.positions));
      if (std::isfinite(m.next_token_kl))
        add(fmt::format("next-token KL to fp32 {:.3e} nats", m.next_token_kl));
    }
    return text;
  };
  const auto label_num = [&](double v) { return r.labelled ? json(v) : json(nullptr); };
  if (vm.count("json")) {
    auto per_class = [&](const EvalResult& e) {
      json classes = json::array();
      for (std::size_t c = 0; c < e.class_accuracy.size(); ++c)
        classes.push_back({{"class", dataset->class_names()[c]},
                           {"samples", e.class_samples[c]},
                           {"top1", std::isnan(e.class_accuracy[c]) ? json(nullptr)
                                                                    : json(e.class_accuracy[c])}});
      return classes;
    };
    json out = {{"model", config.model.string()},
                {"samples", r.samples},
                {"top1", label_num(r.top1)},
                {"top5", label_num(r.top5)},
                {"per_class", per_class(r)},
                {"metric", metric_json(fp32_values)},
                {"preprocess", dataset->preprocess_note()},
                {"batch", config.evaluate.batch},
                {"batch_note", batch_note},
                {"threads", num_threads()},
                {"model_seconds", r.model_seconds},
                {"load_seconds", r.load_seconds},
                {"plan_seconds", r.plan_seconds},
                {"samples_per_second", throughput},
                {"arena_bytes", r.arena_bytes}};
    if (q) {
      out["quantized"] = {
          {"plan", plan_arg},
          {"layers_quantized", plan.layers.size()},
          {"top1", label_num(q->top1)},
          {"top5", label_num(q->top5)},
          {"per_class", per_class(*q)},
          {"model_seconds", q->model_seconds},
          {"top1_agreement", fidelity ? json(fidelity->top1_agreement) : json(nullptr)},
          {"kl_divergence", fidelity ? json(fidelity->kl_divergence) : json(nullptr)},
          {"sqnr_db", fidelity ? num(fidelity->sqnr_db) : json(nullptr)},
          {"cosine", fidelity ? json(fidelity->cosine) : json(nullptr)},
          {"worst_class_drop", worst_class_drop(r, *q)},
          {"metric", metric_json(*plan_values)},
          {"calibration", calibration_text}};
      if (real)
        out["real"] = {
            {"layers", int8_build->int8_layers},
            {"simulated_layers", int8_build->why_simulated},
            {"bf16_layers", int8_build->bf16_layers},
            {"w4a32_layers", int8_build->w4a32_layers},
            {"w4a8_layers", int8_build->w4a8_layers},
            {"w3a8_layers", int8_build->w3a8_layers},
            {"w2a8_layers", int8_build->w2a8_layers},
            {"w8a8_layers", int8_build->w8a8_layers},
            {"chained_tensors", int8_build->chained_tensors},
            {"channels_last_tensors", int8_build->channels_last_tensors},
            {"top1", label_num(real->top1)},
            {"model_seconds", real->model_seconds},
            {"agreement_with_simulation",
             real_vs_sim ? json(real_vs_sim->top1_agreement) : json(nullptr)},
            {"sqnr_vs_simulation_db", real_vs_sim ? num(real_vs_sim->sqnr_db) : json(nullptr)},
            {"metric", real_values ? metric_json(*real_values) : json(nullptr)}};
    }
    std::cout << json_text(out, 2) << "\n";
    return 0;
  }
  fmt::print("model    {}\nsamples  {} (batch {}, {} threads)\n", config.model.string(), r.samples,
             config.evaluate.batch, num_threads());
  if (!batch_note.empty()) fmt::print("         {}\n", batch_note);
  if (!dataset->preprocess_note().empty()) fmt::print("data     {}\n", dataset->preprocess_note());
  if (top1)
    fmt::print("top-1    {:.2f}%\ntop-5    {:.2f}%\n", 100 * r.top1, 100 * r.top5);
  else
    fmt::print("metric   {}: {}\n", metric_name(kind), metric_text(fp32_values));
  fmt::print(
      "speed    {:.0f} samples/s in the model ({:.3f} s), {:.3f} s loading data, {:.3f} s "
      "planning\n",
      throughput, r.model_seconds, r.load_seconds, r.plan_seconds);
  if (q) {
    fmt::print("plan     {} ({} of {} quantizable layers quantized)\n", plan_arg,
               plan.layers.size(), quantizable_layers(loaded.graph).size());
    if (needs_calibration(plan))
      fmt::print("  calibrated on {}\n", calibration_summary(config.dataset));
    else
      fmt::print("  calibration: {}\n", calibration_text);
    if (top1)
      fmt::print("  top-1 {:.2f}% ({:+.2f} pt), top-5 {:.2f}%, worst class drop {:.2f} pt\n",
                 100 * q->top1, 100 * (q->top1 - r.top1), 100 * q->top5,
                 100 * worst_class_drop(r, *q));
    else
      fmt::print("  {}: {}\n", metric_name(kind), metric_text(*plan_values));
    if (fidelity)
      fmt::print(
          "  fidelity to fp32: top-1 agreement {:.2f}%, KL {:.2e}, SQNR {:.1f} dB, cosine "
          "{:.5f}\n",
          100 * fidelity->top1_agreement, fidelity->kl_divergence, fidelity->sqnr_db,
          fidelity->cosine);
    fmt::print("  simulated run {:.3f} s ({:.2f}x the fp32 time)\n", q->model_seconds,
               q->model_seconds / std::max(r.model_seconds, 1e-9));
  }
  if (real) {
    fmt::print(
        "real     {} layers on integer kernels ({} activations passed between them as codes, {} "
        "kept channels-last), {} on bf16 kernels, {} on the W4A32 kernel, {} on the W4A8 kernel, "
        "{} on the W3A8 kernel, {} on the W2A8 kernel, {} on the W8A8 kernel, {} simulated\n",
        int8_build->int8_layers.size(), int8_build->chained_tensors,
        int8_build->channels_last_tensors, int8_build->bf16_layers.size(),
        int8_build->w4a32_layers.size(), int8_build->w4a8_layers.size(),
        int8_build->w3a8_layers.size(), int8_build->w2a8_layers.size(),
        int8_build->w8a8_layers.size(), int8_build->why_simulated.size());
    // One line per reason: a uniform plan gives every layer the same one.
    std::map<std::string, std::vector<std::string>> layers_by_reason;
    for (const auto& [layer, why] : int8_build->why_simulated)
      layers_by_reason[why].push_back(layer);
    for (const auto& [why, layers] : layers_by_reason)
      fmt::print("  simulated {}: {}\n",
                 layers.size() == 1 ? layers[0]
                                    : fmt::format("{} layers ({} ... {})", layers.size(),
                                                  layers.front(), layers.back()),
                 why);
    if (real_vs_sim)
      fmt::print(
          "  top-1 {:.2f}%, same top-1 as the simulation on {:.2f}% of samples, SQNR vs "
          "simulation {:.1f} dB\n",
          100 * real->top1, 100 * real_vs_sim->top1_agreement, real_vs_sim->sqnr_db);
    if (real_values) fmt::print("  {}: {}\n", metric_name(kind), metric_text(*real_values));
    fmt::print("  real run {:.3f} s ({:.2f}x the fp32 time)\n", real->model_seconds,
               real->model_seconds / std::max(r.model_seconds, 1e-9));
  }
  if (!top1) return 0;
  // With a plan, each class's top-1 under the plan next to fp32's.
  // Classes without a sample are left out (the 20 ImageNet sanity images cover 20 of 1000).
  const auto empty = std::count(r.class_samples.begin(), r.class_samples.end(), 0);
  const std::string omitted =
      empty ? fmt::format(" ({} classes without samples omitted)", empty) : "";
  fmt::print(
      "{}{}\n",
      q ? fmt::format("per class (top-1 fp32 -> plan {}):", plan_arg) : std::string("per class:"),
      omitted);
  for (std::size_t c = 0; c < r.class_accuracy.size(); ++c) {
    if (r.class_samples[c] == 0) continue;
    fmt::print("  {:<16} {:>6} samples  top-1 {:.2f}%", dataset->class_names()[c],
               r.class_samples[c], 100 * r.class_accuracy[c]);
    if (q)
      fmt::print(" -> {:.2f}% ({:+.2f} pt)", 100 * q->class_accuracy[c],
                 100 * (q->class_accuracy[c] - r.class_accuracy[c]));
    fmt::print("\n");
  }
  return 0;
}

// Every subcommand once: its name and arguments, what it does (the usage text's lines) and
// the function that runs it. A new command is one new row.
struct Subcommand {
  std::string_view synopsis;  // the name, then its arguments
  std::string_view summary;   // lines of the usage text, '\n'-separated
  int (*run)(const std::vector<std::string>& args);
  std::string_view name() const { return synopsis.substr(0, synopsis.find(' ')); }
};

constexpr Subcommand kSubcommands[] = {
    {"inspect MODEL.onnx", "layer table: name, op, shapes, parameters, MACs", cmd_inspect},
    {"evaluate",
     "fp32 accuracy, throughput and per-class accuracy on a dataset;\nwith --plan, a "
     "quantization plan's accuracy and fidelity",
     cmd_evaluate},
    {"debug", "per-layer quantization error of a plan (isolated and cumulative)", cmd_debug},
    {"devices", "the CPU (ISA oneDNN uses) and CUDA GPUs bitplan can target", cmd_devices},
    {"search",
     "find the Pareto-optimal per-layer plans (accuracy x latency x\nsize) for a model on a "
     "target; results/<run>/report.html",
     cmd_search},
    {"sensitivity",
     "per-layer sensitivity of every candidate spec (the search's\nfirst step, on its own)",
     cmd_sensitivity},
    {"profile",
     "measure per-layer latencies on a backend into hw_profiles/,\nand check the latency cost "
     "model against end-to-end runs",
     cmd_profile},
    {"cost", "a plan's predicted latency, size and BOPs on a target, per layer", cmd_cost},
    {"export",
     "write a plan for deployment: ONNX QDQ model, TensorRT layer\nprecisions, ONNX Runtime "
     "quantization overrides, JSON",
     cmd_export},
};

std::string usage_text() {
  std::string text = kUsageHead;
  for (const Subcommand& command : kSubcommands) {
    std::string_view summary = command.summary;
    std::string_view first = summary.substr(0, summary.find('\n'));
    text += fmt::format("  {:<26}{}\n", command.synopsis, first);
    while (first.size() < summary.size()) {
      summary.remove_prefix(first.size() + 1);
      first = summary.substr(0, summary.find('\n'));
      text += fmt::format("{:28}{}\n", "", first);
    }
  }
  return text + kUsageTail;
}

}  // namespace
}  // namespace bitplan

int main(int argc, char** argv) {
  using namespace bitplan;
  limit_openmp_spinning(argv);
  install_interrupt_handling();  // before any worker thread exists
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << usage_text();
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    for (const Subcommand& subcommand : kSubcommands)
      if (subcommand.name() == command) return subcommand.run(args);
    std::vector<std::string_view> names;
    for (const Subcommand& subcommand : kSubcommands) names.push_back(subcommand.name());
    fail(ErrorKind::usage, "unknown command '{}'; commands are {} (bitplan --help)", command,
         fmt::join(names, ", "));
  } catch (const Error& e) {
    std::cerr << "bitplan: error: " << e.what() << "\n";
    return static_cast<int>(e.kind());
  } catch (const std::bad_alloc&) {
    std::cerr << "bitplan: error: out of memory\n";
    return static_cast<int>(ErrorKind::internal);
  } catch (const std::exception& e) {
    std::cerr << "bitplan: internal error: " << e.what() << "\n";
    return static_cast<int>(ErrorKind::internal);
  }
}
