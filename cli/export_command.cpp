#include "cli/export_command.hpp"

#include <fmt/format.h>

#include <iostream>

#include "cli/commands.hpp"
#include "core/files.hpp"
#include "core/parallel.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "export/export.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace bitplan {

int cmd_export(const std::vector<std::string>& args) {
  po::options_description desc(
      R"(bitplan export (--config RUN.yaml | --model M.onnx) --plan PLAN --format FORMAT --output FILE

Writes a quantization plan for deployment, with the scales and zero points bitplan's
simulation uses (activation ranges from the config's calibration selection, cached in
--cache-dir like evaluate's):
  onnx-qdq        the original model with QuantizeLinear/DequantizeLinear where the plan
                  quantizes, weights stored quantized; opset 13, or 19 (fp8) / 21 (4- and
                  16-bit, block-wise) when the plan needs them
  trt-precisions  TensorRT per-layer precisions (trtexec --layerPrecisions) in FILE and the
                  QDQ model next to it (FILE with extension .onnx)
  ort-overrides   ONNX Runtime's TensorQuantOverrides JSON (onnxruntime.quantization)
  json            every quantized layer's specs, scales, zero points and codebooks
A spec a format cannot express (k-means codebooks, fp4, TensorRT's symmetric-only INT8...)
stops the export with the layers, the reason and the nearest expressible spec;
--save-nearest-plan writes that plan. Outputs are written atomically; an existing file
needs --force.

examples:
  bitplan export --config configs/fmnist_resnet.yaml --plan W8A8 --format onnx-qdq --output r.onnx
  bitplan export --config configs/fmnist_vit.yaml --plan p.yaml --format trt-precisions \
      --output vit.precisions.txt
  bitplan export --config configs/fmnist_mlp.yaml --plan W4A16 --format ort-overrides \
      --output o.json --save-nearest-plan nearest.yaml

options)");
  std::string config_path, model, plan_arg, format_name, output, nearest_path;
  std::string calibration_method = "minmax", cache_dir = default_cache_dir();
  std::vector<std::string> sets;
  desc.add_options()("help,h", "show this help")("config", po::value(&config_path),
                                                 "run config (YAML): model and calibration data")(
      "set", po::value(&sets)->composing(),
      "override a config field: KEY=VALUE (repeatable; e.g. quantization.equalize=true)")(
      "model", po::value(&model), "ONNX model (overrides the config's)")(
      "plan", po::value(&plan_arg),
      "plan YAML file or uniform plan (W8A8, W4A16, W4g128A16, fp32...)")(
      "calibration", po::value(&calibration_method)->default_value("minmax"),
      "activation calibration for uniform plans: minmax | percentile | mse | entropy")(
      "format", po::value(&format_name), "onnx-qdq | trt-precisions | ort-overrides | json")(
      "output", po::value(&output), "file to write")("force", "replace existing output files")(
      "cache-dir", po::value(&cache_dir), "calibration cache folder (default ~/.cache/bitplan)")(
      "uint8-weights",
      "onnx-qdq: store 8-bit weights as uint8 + 128 (same values; ONNX Runtime then uses "
      "kernels that do not saturate on x86 CPUs without VNNI)")(
      "save-nearest-plan", po::value(&nearest_path),
      "when the format cannot express some specs, write the plan with the nearest ones here");
  const auto vm = parse_options(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (plan_arg.empty() || format_name.empty() || output.empty())
    fail(ErrorKind::usage, "export: --plan, --format and --output are required (see --help)");
  const ExportFormat format = parse_export_format(format_name);
  // A device or FIFO as the output is refused before the work (write_export checks the rest).
  for (const auto& path : export_outputs(format, output)) check_output_target(path);
  if (!nearest_path.empty()) check_output_target(nearest_path);
  if (!sets.empty() && config_path.empty())
    fail(ErrorKind::usage, "export: --set overrides fields of a --config; give one");
  RunConfig config;
  if (!config_path.empty()) config = load_run_config(config_path, sets);
  if (!model.empty()) config.model = model;
  if (config.model.empty()) fail(ErrorKind::usage, "export: give --config or --model");
  set_num_threads(config.evaluate.threads);

  LoadedModel loaded = load_model(config.model);
  // With quantization.equalize the simulation runs the equalized model, and the export writes
  // the layers and activations the pass changed (prepare_export).
  EqualizationReport equalization;
  const std::string hash = model_file_hash(config.model) +
                           prepare_fp32_model(loaded.graph, config.quantization, &equalization);
  const QuantPlan plan = resolve_plan(plan_arg, calibration_method, loaded.graph, hash);

  // Calibration as `bitplan evaluate` does it: same samples, same cache.
  CalibrationData calibration;
  std::unique_ptr<Dataset> dataset;
  if (config.has_dataset) {
    dataset = open_dataset(config.dataset);
    bind_input_to_samples(loaded.graph, *dataset);
    check_batch_fits(loaded.graph, config);
    calibration = calibration_data(config.dataset, *dataset, cache_dir, config.evaluate.batch);
  }
  QuantSimulator simulator(loaded.graph, hash, std::move(calibration));
  ExportModel exported = prepare_export(simulator, plan, config.model,
                                        config.quantization.equalize ? &equalization : nullptr);
  exported.uint8_weights = vm.count("uint8-weights") != 0;

  const auto problems = export_problems(exported, format);
  if (!problems.empty() && !nearest_path.empty()) {
    save_plan(nearest_path, nearest_expressible_plan(plan, problems));
    std::cerr << fmt::format("bitplan: wrote the plan with the nearest {} specs to {}\n",
                             format_name, nearest_path);
  }
  write_export(exported, format, output, vm.count("force") != 0);
  for (const auto& path : export_outputs(format, output))
    fmt::print("wrote {} ({} quantized layers, {} in fp32)\n", path.string(),
               exported.layers.size(), exported.float_layers.size());
  return 0;
}

}  // namespace bitplan
