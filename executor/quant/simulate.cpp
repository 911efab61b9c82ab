#include "executor/quant/simulate.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/files.hpp"
#include "core/hash.hpp"
#include "executor/evaluate.hpp"
#include "executor/kernel_list.hpp"
#include "executor/plan.hpp"
#include "executor/quant/bias_correction.hpp"

namespace bitplan {
namespace fs = std::filesystem;

void observe_activations(const Graph& graph, const Dataset& dataset,
                         std::span<const std::int64_t> indices,
                         const std::vector<std::string>& tensors, std::int64_t batch,
                         const std::function<void(const std::vector<Tensor>&)>& observe) {
  if (indices.empty())
    fail_input("calibrating '{}': the calibration selection is empty", graph.name);
  // Token inputs (integer data) of a calibration source may have another length than the
  // evaluation's ([N, 81] vs [N, 16]): the graph, bound to the evaluation data, takes the
  // calibration data's dims there (a model that fixes that length fails planning, naming it).
  Graph observed = graph;
  const std::vector<std::size_t> order = feed_order(graph, dataset);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const DataInput& data = dataset.inputs()[order[i]];
    ValueInfo& input = observed.inputs[i];
    if (data.dtype != DType::f32 && input.dims.size() == data.sample_dims.size() + 1)
      std::copy(data.sample_dims.begin(), data.sample_dims.end(), input.dims.begin() + 1);
  }
  check_model_takes_samples(observed, dataset);
  // Expose the observed activations as extra graph outputs: the planner keeps their buffers.
  observed.outputs.clear();
  for (const auto& name : tensors) observed.outputs.push_back({name, DType::f32, {}, {}});

  std::map<std::int64_t, std::unique_ptr<ExecutionPlan>> plans;
  std::vector<Tensor> inputs;  // one per model input (several for dataset.inputs)
  batch = model_batch(graph, batch);
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch)) {
    const std::int64_t n =
        std::min<std::int64_t>(batch, static_cast<std::int64_t>(indices.size() - start));
    auto& plan = plans[n];
    if (!plan) plan = std::make_unique<ExecutionPlan>(observed, PlanOptions{n});
    load_batch(*plan, observed, dataset, indices.subspan(start, static_cast<std::size_t>(n)),
               inputs);
    observe(plan->run(inputs));
  }
}

CalibrationRanges calibrate(const Graph& graph, const Dataset& dataset,
                            std::span<const std::int64_t> indices,
                            const std::vector<std::string>& tensors,
                            const CalibrationOptions& options, std::int64_t batch) {
  std::map<std::string, RangeObserver> observers;
  for (const auto& name : tensors) observers.emplace(name, RangeObserver(options));
  observe_activations(graph, dataset, indices, tensors, batch,
                      [&](const std::vector<Tensor>& outputs) {
                        for (std::size_t i = 0; i < tensors.size(); ++i)
                          observers.at(tensors[i]).observe(outputs[i].values<float>());
                      });
  CalibrationRanges ranges;
  for (const auto& [name, observer] : observers) {
    try {
      ranges[name] = observer.range();
    } catch (const Error& e) {
      fail_input("calibrating activation '{}' of '{}': {}", name, graph.name, e.what());
    }
  }
  return ranges;
}

CalibrationData token_window_calibration(const CalibrationData& full, std::int64_t tokens) {
  CalibrationData cut = full;
  cut.selection_id += fmt::format("|tokens={}", tokens);
  cut.dataset = nullptr;
  if (full.dataset) {
    // Not owned: a shared_ptr that never deletes, so that the view can hold it either way.
    std::shared_ptr<const Dataset> source(full.dataset, [](const Dataset*) {});
    cut.open = [source, indices = full.indices, tokens] {
      return CalibrationData::Samples{token_window(source, tokens), indices};
    };
  } else {
    cut.open = [open = full.open, tokens] {
      CalibrationData::Samples samples = open();
      samples.dataset = token_window(std::move(samples.dataset), tokens);
      return samples;
    };
  }
  cut.indices.clear();
  return cut;
}

CalibrationData calibration_data(const DatasetConfig& config, const Dataset& dataset,
                                 fs::path cache_dir, std::int64_t batch) {
  const CalibrationConfig& selection = config.calibration;
  const bool separate = !selection.images.empty() || !selection.inputs.empty();
  // The files the samples come from, each input's name with its file (dataset.inputs), so a
  // change of any input's file is a different cache entry.
  const auto files = [](const fs::path& images, const std::vector<NamedInput>& inputs) {
    if (inputs.empty()) return images.string();
    std::string text;
    for (const NamedInput& input : inputs)
      text += fmt::format("{}{}={}", text.empty() ? "" : ",", input.name, input.path.string());
    return text;
  };
  CalibrationData data;
  data.selection_id = fmt::format(
      "{}|{}|count={}|seed={}|offset={}",
      separate ? files(selection.images, selection.inputs) : files(config.images, config.inputs),
      (separate ? selection.labels : config.labels).string(), selection.count, selection.seed,
      selection.offset);
  // The preprocessing changes the observed values, so it enters the key where it is not the
  // one the id of earlier versions stood for (uint8 data at 1/255, no mean/std): float data
  // is no longer divided by 255 by default, and mean/std change every value.
  const std::string& note = dataset.preprocess_note();
  if (!note.empty() && note.find("1/255 (the default") == std::string::npos)
    data.selection_id += "|" + note;
  if (!config.preprocess.mean.empty() || !config.preprocess.std.empty())
    data.selection_id += fmt::format("|mean={}|std={}", fmt::join(config.preprocess.mean, ","),
                                     fmt::join(config.preprocess.std, ","));
  data.cache_dir = std::move(cache_dir);
  data.batch = batch;
  if (!separate) {
    data.dataset = &dataset;
    data.indices = select_indices(selection, dataset.size(), "calibration");
    return data;
  }
  data.open = [config, expected = dataset.inputs()] {
    std::shared_ptr<const Dataset> source = open_calibration_dataset(config, expected);
    const std::string& first = expected.size() == 1 && expected[0].name.empty()
                                   ? config.calibration.images.string()
                                   : source->inputs()[0].source;
    std::vector<std::int64_t> indices = select_indices(config.calibration, source->size(),
                                                       fmt::format("calibration ('{}')", first));
    return CalibrationData::Samples{std::move(source), std::move(indices)};
  };
  return data;
}

QuantSimulator::QuantSimulator(const Graph& graph, std::string model_hash,
                               CalibrationData calibration)
    : graph_(graph),
      model_hash_(std::move(model_hash)),
      calibration_(std::move(calibration)),
      layers_(quantizable_layers(graph)) {}

namespace {

// The in-memory key of a layer's weights under `q`: the weight spec and method, and for
// smoothquant, whose scales depend on the input's grid, the activation spec.
std::string weight_key(const QuantizableLayer& layer, const LayerQuant& q) {
  std::string key = layer.name + "|" + to_string(weight_spec_for(q.weights, layer));
  if (q.method != WeightMethod::rtn) key += "|" + std::string(weight_method_traits(q.method).name);
  if (q.method == WeightMethod::smoothquant)
    key += "|" + to_string(q.activations) + (q.dynamic ? "|dynamic" : "");
  return key;
}

}  // namespace

const RangeObserver::Range& QuantSimulator::input_range(const QuantizableLayer& layer,
                                                        const LayerQuant& q) {
  // SmoothQuant's layers quantize the smoothed input, whose range it derives exactly.
  if (q.method == WeightMethod::smoothquant && q.weights.format != FormatId::fp32) {
    if (auto why = method_activation_refusal(q))
      fail_input("quantizing layer '{}' by smoothquant: {}", layer.name, *why);
    quantized_weight(layer, q);
    return smoothed_ranges_.at(weight_key(layer, q));
  }
  return ranges(q.calibration, q.activations.symmetric, format_traits(q.activations.format).bits)
      .at(layer.input);
}

const CalibrationRanges& QuantSimulator::ranges(CalibrationMethod method, bool symmetric,
                                                int bits) {
  auto key = std::make_tuple(method, symmetric, bits);
  if (auto it = ranges_.find(key); it != ranges_.end()) return it->second;
  CalibrationOptions options;
  options.method = method;
  options.symmetric = symmetric;
  options.target_bits = bits;
  std::vector<std::string> tensors;
  std::set<std::string> seen;
  for (const auto& layer : layers_)
    if (seen.insert(layer.input).second) tensors.push_back(layer.input);
  fs::path cache_file;
  if (!calibration_.cache_dir.empty())
    cache_file = calibration_.cache_dir /
                 (calibration_cache_key(model_hash_, calibration_.selection_id, options) + ".json");
  if (!cache_file.empty() && fs::exists(cache_file)) {
    CalibrationRanges cached = read_calibration_cache(cache_file);
    bool complete = true;
    for (const auto& t : tensors) complete = complete && cached.count(t);
    if (complete) return ranges_[key] = std::move(cached);
  }
  // Opened first: opening fills calibration_.indices.
  const Dataset& data = calibration_dataset("static activation quantization");
  CalibrationRanges computed =
      calibrate(graph_, data, calibration_.indices, tensors, options, calibration_.batch);
  if (!cache_file.empty()) {
    fs::create_directories(cache_file.parent_path());
    write_calibration_cache(cache_file, computed);
  }
  return ranges_[key] = std::move(computed);
}

const Dataset& QuantSimulator::calibration_dataset(std::string_view purpose) {
  if (!calibration_.dataset && calibration_.open) {
    CalibrationData::Samples samples = calibration_.open();
    opened_ = std::move(samples.dataset);
    calibration_.dataset = opened_.get();
    calibration_.indices = std::move(samples.indices);
  }
  if (!calibration_.dataset)
    fail(ErrorKind::usage, "quantizing '{}': {} needs calibration data", graph_.name, purpose);
  return *calibration_.dataset;
}

namespace {

// A cache file's name: a hash of a description whose fields are length-prefixed, so no two
// different descriptions read the same.
std::string cache_name(std::initializer_list<std::string_view> fields) {
  std::string description;
  for (std::string_view field : fields) description += fmt::format("{}:{} ", field.size(), field);
  return fnv1a64_hex(description) + ".bin";
}

// Weights on a grid stored as their codes (q - qmin, one byte when the grid has at most 256
// levels, two otherwise), read back through the same reference functions; the parameters
// are those of the fp32 weights, recomputed.
constexpr char kWeightsMagic[8] = {'B', 'P', 'W', 'C', 'O', 'D', 'E', '1'};

void write_weight_codes(const fs::path& path, const QuantSpec& spec, const QuantParams& params,
                        const std::vector<std::int64_t>& slices, const Tensor& levels) {
  const FormatTraits& f = format_traits(spec.format);
  const bool wide = f.qmax - f.qmin > 255;
  std::string bytes(kWeightsMagic, sizeof kWeightsMagic);
  const float* v = levels.data<float>();
  for (std::int64_t i = 0; i < levels.numel(); ++i) {
    const auto k = static_cast<std::size_t>(slices[static_cast<std::size_t>(i)]);
    const float zero_point = params.zero_point.empty() ? 0.f : params.zero_point[k];
    const auto code =
        static_cast<std::uint32_t>(f.quantize(v[i], params.scale[k], zero_point) - float(f.qmin));
    bytes.push_back(static_cast<char>(code & 0xff));
    if (wide) bytes.push_back(static_cast<char>(code >> 8));
  }
  write_file_atomic(path, bytes);
}

std::optional<Tensor> read_weight_codes(const fs::path& path, const QuantSpec& spec,
                                        const QuantParams& params,
                                        const std::vector<std::int64_t>& slices, const Dims& dims) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return std::nullopt;
  const FormatTraits& f = format_traits(spec.format);
  const std::size_t width = f.qmax - f.qmin > 255 ? 2 : 1;
  const std::string bytes = read_file(path, std::uint64_t{1} << 34, "quantized weight cache");
  Tensor out(DType::f32, dims);
  if (bytes.size() != sizeof kWeightsMagic + static_cast<std::size_t>(out.numel()) * width ||
      bytes.compare(0, sizeof kWeightsMagic, kWeightsMagic, sizeof kWeightsMagic) != 0)
    fail_input(
        "reading quantized weight cache '{}': {} bytes, expected a header and {} code(s) of {} "
        "byte(s); delete the file to recompute it",
        path.string(), bytes.size(), out.numel(), width);
  const auto* codes = reinterpret_cast<const unsigned char*>(bytes.data() + sizeof kWeightsMagic);
  float* v = out.data<float>();
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    const auto at = static_cast<std::size_t>(i) * width;
    const std::uint32_t code =
        width == 1 ? codes[at] : codes[at] | (std::uint32_t(codes[at + 1]) << 8);
    const auto k = static_cast<std::size_t>(slices[static_cast<std::size_t>(i)]);
    const float zero_point = params.zero_point.empty() ? 0.f : params.zero_point[k];
    if (float(code) + float(f.qmin) > float(f.qmax))
      fail_input(
          "reading quantized weight cache '{}': code {} is outside the grid of {}; delete "
          "the file to recompute it",
          path.string(), code, f.name);
    v[i] = f.dequantize(float(code) + float(f.qmin), params.scale[k], zero_point);
  }
  return out;
}

// The input scaling of a method that scales the layer's input (awq, smoothquant): its scales
// (none when it kept the input as it is) and, for smoothquant, the scaled input's range.
struct InputScaling {
  std::vector<float> scale;
  RangeObserver::Range range{0.f, 0.f};
};

constexpr char kScalingMagic[8] = {'B', 'P', 'S', 'C', 'A', 'L', 'E', '1'};

void write_input_scaling(const fs::path& path, std::span<const float> scale,
                         const RangeObserver::Range& range) {
  std::string bytes(kScalingMagic, sizeof kScalingMagic);
  const auto count = static_cast<std::int64_t>(scale.size());
  bytes.append(reinterpret_cast<const char*>(&count), sizeof count);
  bytes.append(reinterpret_cast<const char*>(scale.data()), scale.size() * sizeof(float));
  bytes.append(reinterpret_cast<const char*>(&range.min), sizeof(float));
  bytes.append(reinterpret_cast<const char*>(&range.max), sizeof(float));
  write_file_atomic(path, bytes);
}

std::optional<InputScaling> read_input_scaling(const fs::path& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return std::nullopt;
  const std::string bytes = read_file(path, std::uint64_t{1} << 30, "input scaling cache");
  std::int64_t count = -1;
  if (bytes.size() >= sizeof kScalingMagic + sizeof count)
    std::memcpy(&count, bytes.data() + sizeof kScalingMagic, sizeof count);
  if (bytes.compare(0, sizeof kScalingMagic, kScalingMagic, sizeof kScalingMagic) != 0 ||
      count < 0 || count > (std::int64_t{1} << 26) ||
      bytes.size() != sizeof kScalingMagic + sizeof count + (count + 2) * sizeof(float))
    fail_input(
        "reading input scaling cache '{}': {} bytes are not a header, a count and that many "
        "scales and a range; delete the file to recompute it",
        path.string(), bytes.size());
  InputScaling out;
  out.scale.resize(static_cast<std::size_t>(count));
  const char* at = bytes.data() + sizeof kScalingMagic + sizeof count;
  std::memcpy(out.scale.data(), at, out.scale.size() * sizeof(float));
  std::memcpy(&out.range.min, at + out.scale.size() * sizeof(float), sizeof(float));
  std::memcpy(&out.range.max, at + (out.scale.size() + 1) * sizeof(float), sizeof(float));
  return out;
}

}  // namespace

const InputHessian& QuantSimulator::input_hessian(const QuantizableLayer& layer) {
  const std::string key = input_hessian_key(graph_, layer);
  if (auto it = hessians_.find(key); it != hessians_.end()) return it->second;
  const auto file = [&](const std::string& k) {
    return calibration_.cache_dir / "hessians" /
           cache_name({"input hessian v4", model_hash_, calibration_.selection_id, k});
  };
  std::error_code error;
  if (!calibration_.cache_dir.empty() && fs::is_regular_file(file(key), error))
    return hessians_[key] = read_input_hessian(file(key));
  // One pass collects every layer's Hessian: the next method that needs one finds it here.
  std::vector<QuantizableLayer> missing;
  for (const auto& l : layers_)
    if (input_hessian_refusal(l).empty() && !hessians_.count(input_hessian_key(graph_, l)))
      missing.push_back(l);
  const Dataset& data = calibration_dataset("a weight method that reads the layers' inputs");
  for (auto& [k, h] :
       collect_input_hessians(graph_, data, calibration_.indices, missing, calibration_.batch)) {
    if (!calibration_.cache_dir.empty()) write_input_hessian(file(k), h);
    hessians_[k] = std::move(h);
  }
  return hessians_.at(key);
}

void QuantSimulator::correct_bias(Graph& g, Node& node, const QuantizableLayer& layer,
                                  const LayerQuant& q) {
  if (!q.bias_correction || q.weights.format == FormatId::fp32) return;
  if (auto why = bias_correction_refusal(layer.op_type, layer.gemm_beta))
    fail_input("quantizing layer '{}' with bias correction: {}", layer.name, *why);
  const Tensor* bias = node.has_input(2) ? g.initializer(node.inputs[2]) : nullptr;
  if (node.has_input(2) && !bias)
    fail_unsupported(
        "quantizing layer '{}' with bias correction: its bias '{}' is computed by the graph, "
        "not a constant the correction can be added to",
        layer.name, node.inputs[2]);
  // The weights the layer's products amount to: with an input scaled by 1/s (awq), the
  // quantized weights times 1/s per input channel.
  const Tensor& quantized = quantized_weight(layer, q);
  const std::span<const float> scale = input_scale(layer, q);
  const Tensor delta = bias_correction_delta(
      layer, *graph_.initializer(layer.weight),
      scale.empty() ? quantized
                    : scale_input_channels(quantized, layer, inverse_input_scale(scale)),
      input_hessian(layer));
  const std::string name = fmt::format("{}/bias@{}@{}@bc", layer.name, to_string(q.weights),
                                       weight_method_traits(q.method).name);
  g.initializers[name] = corrected_bias(layer, bias, delta);
  if (node.inputs.size() < 3) node.inputs.resize(3);
  node.inputs[2] = name;
}

const Tensor& QuantSimulator::quantized_weight(const QuantizableLayer& layer, const LayerQuant& q) {
  const QuantSpec s = weight_spec_for(q.weights, layer);
  const WeightMethod method = q.method;
  const WeightMethodTraits& m = weight_method_traits(method);
  const std::string key = weight_key(layer, q);
  if (auto it = weight_cache_.find(key); it != weight_cache_.end()) return it->second;
  if (auto why = weight_method_refusal(method, s))
    fail_input("quantizing layer '{}' with '{}' by {}: {}", layer.name, to_string(s), m.name, *why);
  if (auto why = weight_method_layer_refusal(method, layer.op_type))
    fail_input("quantizing layer '{}' by {}: {}", layer.name, m.name, *why);
  if (m.needs_calibration && !input_hessian_refusal(layer).empty())
    fail_input("quantizing layer '{}' by {}: {}", layer.name, m.name, input_hessian_refusal(layer));
  const Tensor& w = *graph_.initializer(layer.weight);
  if (s.granularity == Granularity::per_group) {
    const std::int64_t depth = w.dim(static_cast<std::size_t>(layer.reduction_axis));
    // One group spanning a short axis is per-channel quantization; otherwise every group
    // must be whole, as kernels and exporters (ONNX block_size) expect.
    if (s.group_size < depth && depth % s.group_size != 0)
      fail_input(
          "quantizing layer '{}' with '{}': group size {} does not divide the reduction axis ({} "
          "values of "
          "weight '{}' {}); use a divisor of {} or a group of at least {}",
          layer.name, to_string(s), s.group_size, depth, layer.weight, to_string(w.dims()), depth,
          depth);
  }
  const QuantParams params = choose_weight_params(s, w, layer.reduction_axis);
  Tensor out;
  switch (method) {
    case WeightMethod::rtn:
      fake_quantize(s, params, w, out, layer.reduction_axis);
      break;
    case WeightMethod::gptq: {
      const std::vector<std::int64_t> slices = slice_indices(s, w.dims(), layer.reduction_axis);
      // The result depends on the weights (model hash), the calibration samples (Hessian),
      // the spec and the method's version and options.
      fs::path file;
      if (!calibration_.cache_dir.empty())
        file = calibration_.cache_dir / "weights" /
               cache_name({"weights", model_hash_, calibration_.selection_id, layer.name,
                           to_string(s), m.name, std::to_string(m.version),
                           fmt::format("damping={} block={} act_order={}", gptq_options.damping,
                                       gptq_options.block, gptq_options.act_order)});
      if (!file.empty()) {
        if (auto cached = read_weight_codes(file, s, params, slices, w.dims()))
          return weight_cache_[key] = std::move(*cached);
      }
      // Factors are shared by the layers of one input and by every spec: the last few stay.
      const std::string hessian_key = input_hessian_key(graph_, layer);
      auto factors = std::find_if(gptq_factors_.begin(), gptq_factors_.end(),
                                  [&](const auto& entry) { return entry.first == hessian_key; });
      if (factors == gptq_factors_.end()) {
        std::string warning;
        gptq_factors_.emplace_back(hessian_key,
                                   gptq_factors(input_hessian(layer), gptq_options, &warning));
        if (!warning.empty())
          fmt::print(stderr, "bitplan: warning: GPTQ on layer '{}': {}\n", layer.name, warning);
        if (gptq_factors_.size() > 4) gptq_factors_.erase(gptq_factors_.begin());
        factors = std::prev(gptq_factors_.end());
      }
      out = gptq_quantize(s, params, w, layer, *factors->second, gptq_options);
      if (!file.empty()) write_weight_codes(file, s, params, slices, out);
      break;
    }
    case WeightMethod::adaround: {
      // Keyed and cached like GPTQ's: codes on the spec's grid, the options in the key.
      const std::vector<std::int64_t> slices = slice_indices(s, w.dims(), layer.reduction_axis);
      const AdaroundOptions& o = adaround_options;
      fs::path file;
      if (!calibration_.cache_dir.empty())
        file = calibration_.cache_dir / "weights" /
               cache_name(
                   {"weights", model_hash_, calibration_.selection_id, layer.name, to_string(s),
                    m.name, std::to_string(m.version),
                    fmt::format("iterations={} lr={} lambda={} beta={}..{} warmup={}", o.iterations,
                                o.learning_rate, o.lambda, o.beta_start, o.beta_end, o.warmup)});
      if (!file.empty()) {
        if (auto cached = read_weight_codes(file, s, params, slices, w.dims()))
          return weight_cache_[key] = std::move(*cached);
      }
      std::string warning;
      out = adaround_quantize(s, params, w, layer, input_hessian(layer), o, &warning).quantized;
      if (!warning.empty())
        fmt::print(stderr, "bitplan: warning: AdaRound on layer '{}': {}\n", layer.name, warning);
      if (!file.empty()) write_weight_codes(file, s, params, slices, out);
      break;
    }
    case WeightMethod::awq:
    case WeightMethod::smoothquant: {
      // Cached on disk as the input scales (and smoothquant's input range) plus the codes of
      // the scaled weights on their grid, keyed like GPTQ's with the method's options.
      const bool smoothquant = method == WeightMethod::smoothquant;
      const std::vector<std::int64_t> slices = slice_indices(s, w.dims(), layer.reduction_axis);
      fs::path file;
      if (!calibration_.cache_dir.empty())
        file = calibration_.cache_dir / "weights" /
               cache_name({"weights", model_hash_, calibration_.selection_id, layer.name,
                           to_string(s), m.name, std::to_string(m.version),
                           smoothquant ? fmt::format("grid={} activations={} dynamic={}",
                                                     smoothquant_options.grid,
                                                     to_string(q.activations), q.dynamic)
                                       : fmt::format("grid={}", awq_options.grid)});
      const fs::path scale_file = file.empty() ? file : fs::path(file.string() + ".scale");
      if (auto cached = file.empty() ? std::nullopt : read_input_scaling(scale_file)) {
        Tensor scaled =
            cached->scale.empty() ? w.clone() : scale_input_channels(w, layer, cached->scale);
        const QuantParams scaled_params = choose_weight_params(s, scaled, layer.reduction_axis);
        if (auto codes = read_weight_codes(file, s, scaled_params, slices, w.dims())) {
          scaled_weights_[key] = std::move(scaled);
          input_scales_[key] = std::move(cached->scale);
          if (smoothquant) smoothed_ranges_[key] = cached->range;
          return weight_cache_[key] = std::move(*codes);
        }
      }
      RangeObserver::Range range{0.f, 0.f};
      if (smoothquant) {
        SmoothQuantResult r = smoothquant_quantize(s, q.activations, w, layer, input_hessian(layer),
                                                   smoothquant_options);
        scaled_weights_[key] = std::move(r.scaled_weights);
        input_scales_[key] = std::move(r.input_scale);
        range = smoothed_ranges_[key] = {r.input_min, r.input_max};
        out = std::move(r.quantized);
      } else {
        AwqResult r = awq_quantize(s, w, layer, input_hessian(layer), awq_options);
        scaled_weights_[key] = std::move(r.scaled_weights);
        input_scales_[key] = std::move(r.input_scale);
        out = std::move(r.quantized);
      }
      if (!file.empty()) {
        write_input_scaling(scale_file, input_scales_[key], range);
        write_weight_codes(file, s,
                           choose_weight_params(s, scaled_weights_[key], layer.reduction_axis),
                           slices, out);
      }
      break;
    }
  }
  return weight_cache_[key] = std::move(out);
}

const Tensor& QuantSimulator::method_float_weight(const QuantizableLayer& layer,
                                                  const LayerQuant& q) {
  if (!weight_method_traits(q.method).scales_inputs || q.weights.format == FormatId::fp32)
    return *graph_.initializer(layer.weight);
  quantized_weight(layer, q);
  return scaled_weights_.at(weight_key(layer, q));
}

std::span<const float> QuantSimulator::input_scale(const QuantizableLayer& layer,
                                                   const LayerQuant& q) {
  if (!weight_method_traits(q.method).scales_inputs || q.weights.format == FormatId::fp32)
    return {};
  quantized_weight(layer, q);
  return input_scales_.at(weight_key(layer, q));
}

std::optional<Node> QuantSimulator::input_scaling_node(Graph& g, const QuantizableLayer& layer,
                                                       const LayerQuant& q) {
  const std::span<const float> scale = input_scale(layer, q);
  if (scale.empty()) return std::nullopt;
  Tensor inverse(DType::f32, input_scale_dims(layer, static_cast<std::int64_t>(scale.size())));
  const std::vector<float> values = inverse_input_scale(scale);
  std::copy(values.begin(), values.end(), inverse.data<float>());
  const std::string name = fmt::format("{}/input_scale@{}@{}", layer.name, to_string(q.weights),
                                       weight_method_traits(q.method).name);
  g.initializers[name] = std::move(inverse);
  Node mul;
  mul.name = layer.name + "/input_scaling";
  mul.op_type = "Mul";
  mul.inputs = {layer.input, name};
  mul.outputs = {layer.input + "@scaled@" + layer.name};
  return mul;
}

void fuse_fake_quant_into_producers(Graph& g) {
  const auto uses = g.consumer_counts();
  std::set<std::size_t> fused;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& fq = g.nodes[i];
    if (fq.domain != "bitplan" || fq.op_type != "FakeQuant" || fq.attr_int("dynamic", 0) != 0)
      continue;
    const FormatTraits& format = format_traits(static_cast<FormatId>(fq.attr_int("format", 0)));
    if (format.kind != FormatKind::integer) continue;
    const auto producer = g.producer(fq.inputs[0]);
    if (!producer || uses.at(fq.inputs[0]) != 1) continue;
    Node& layer = g.nodes[*producer];
    if (!layer.domain.empty() ||
        !(layer.op_type == "Conv" || layer.op_type == "Gemm" || layer.op_type == "MatMul") ||
        layer.outputs.size() != 1 || layer.has_attr("bitplan_output_scale"))
      continue;
    layer.attrs["bitplan_output_scale"] = fq.attr_float("scale", 1.f);
    layer.attrs["bitplan_output_zero_point"] = fq.attr_float("zero_point", 0.f);
    layer.attrs["bitplan_output_qmin"] = static_cast<float>(format.qmin);
    layer.attrs["bitplan_output_qmax"] = static_cast<float>(format.qmax);
    // The layer keeps its output name (reports follow it) and the FakeQuant's readers read
    // it directly, unless the FakeQuant's output is a graph output, whose name must stay.
    const bool graph_output =
        std::any_of(g.outputs.begin(), g.outputs.end(),
                    [&](const ValueInfo& v) { return v.name == fq.outputs[0]; });
    if (graph_output) {
      layer.outputs[0] = fq.outputs[0];
    } else {
      for (auto& n : g.nodes)
        for (auto& in : n.inputs)
          if (in == fq.outputs[0]) in = fq.inputs[0];
    }
    fused.insert(i);
  }
  std::vector<Node> kept;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (!fused.count(i)) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

Node QuantSimulator::fake_quant_node(const QuantizableLayer& layer, const LayerQuant& q) {
  Node fq;
  fq.name = layer.name + "/input_quant";
  fq.op_type = "FakeQuant";
  fq.domain = "bitplan";
  fq.inputs = {layer.input};
  fq.outputs = {layer.input + "@q@" + layer.name};
  fq.attrs["format"] = static_cast<std::int64_t>(q.activations.format);
  fq.attrs["symmetric"] = static_cast<std::int64_t>(q.activations.symmetric);
  if (q.activations.granularity == Granularity::per_token) {
    // load_plan refuses this already; plans built in code (search, tests) meet it here.
    if (!q.dynamic)
      fail_input(
          "quantizing the input of layer '{}' with '{}': per-token ranges are taken at run time, "
          "so the plan must say dynamic: true",
          layer.name, to_string(q.activations));
    fq.attrs["per_token"] = std::int64_t{1};
    fq.attrs["axis"] = static_cast<std::int64_t>(layer.input_reduction_axis);
  }
  if (q.dynamic) {
    fq.attrs["dynamic"] = std::int64_t{1};
  } else if (!format_traits(q.activations.format).has_scale()) {
    // fp16 / bf16: plain rounding, nothing to calibrate.
    fq.attrs["scale"] = 1.f;
    fq.attrs["zero_point"] = 0.f;
  } else {
    const auto& range = input_range(layer, q);
    const AffineParams p = affine_params_from_range(q.activations.format, q.activations.symmetric,
                                                    range.min, range.max);
    fq.attrs["scale"] = p.scale;
    fq.attrs["zero_point"] = p.zero_point;
  }
  return fq;
}

struct QuantSimulator::LowbitWeights {
  Tensor codes, scales, offsets;
  std::int64_t group = 0;
  ExecutorPath path = ExecutorPath::cpu_w4a32;  // or cpu_w4a8, cpu_w3a8, cpu_w2a8, cpu_w8a8
  std::string why;  // non-empty: the weights have no codes for the kernel (a NaN), and why
};

namespace {

// The inputs of a bitplan::W4A32MatMul, W4A8MatMul, W3A8MatMul, W2A8MatMul or W8A8MatMul node
// (executor/kernels/lowbit_ops.cpp) for a 2-D weight `w` whose simulation is `wq`
// (fake-quantized with `spec` and `params`): container codes [K, N], and per (group, column)
// scales and offsets [G, N], such that
//   (code - offset) * scale == wq   bit for bit, for every weight
// (the 4-bit kernels: code = q + 8 and offset = zero point + 8 on signed grids, both + 0 on
// unsigned ones; W3A8 and W2A8: code = q - qmin and offset = zero point - qmin, in [0, 7]
// and [0, 3]; W8A8: code = q and offset = zero point, signed grids only; the
// difference is q - zero point, exact, so the product is dequantize_from_grid's). Returns
// why not where that fails (a NaN weight has no code), naming the kernel.
using LowbitWeights = QuantSimulator::LowbitWeights;

// The node's op type for `path`, which also names the kernel in messages.
std::string_view lowbit_op_type(ExecutorPath path) {
  return path == ExecutorPath::cpu_w2a8   ? "W2A8MatMul"
         : path == ExecutorPath::cpu_w3a8 ? "W3A8MatMul"
         : path == ExecutorPath::cpu_w8a8 ? "W8A8MatMul"
         : path == ExecutorPath::cpu_w4a8 ? "W4A8MatMul"
                                          : "W4A32MatMul";
}

std::optional<std::string> w4a32_weights(const Tensor& w, const Tensor& wq, const QuantSpec& spec,
                                         const QuantizableLayer& layer, LowbitWeights& out) {
  const QuantParams params = choose_weight_params(spec, w, layer.reduction_axis);
  const FormatTraits& f = format_traits(spec.format);
  const int r = layer.reduction_axis, c = layer.channel_axis;
  BITPLAN_ASSERT(w.rank() == 2 && r + c == 1);
  const std::int64_t k = w.dim(static_cast<std::size_t>(r)), n = w.dim(static_cast<std::size_t>(c));
  const bool grouped = spec.granularity == Granularity::per_group && spec.group_size < k;
  out.group = grouped ? spec.group_size : k;
  const std::int64_t groups = (k + out.group - 1) / out.group;
  const bool from_qmin = out.path == ExecutorPath::cpu_w2a8 || out.path == ExecutorPath::cpu_w3a8;
  const float base = from_qmin                            ? static_cast<float>(f.qmin)
                     : out.path == ExecutorPath::cpu_w8a8 ? 0.f
                     : f.is_signed                        ? -8.f
                                                          : 0.f;
  out.codes = Tensor(DType::i8, {k, n});
  out.scales = Tensor(DType::f32, {groups, n});
  out.offsets = Tensor(DType::f32, {groups, n});
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t j = 0; j < n; ++j) {
      std::size_t slice = 0;
      if (spec.granularity == Granularity::per_channel) slice = static_cast<std::size_t>(j);
      // A group of at least K is still sliced per group by the quantizer: one slice per
      // column (groups == 1), not one for the tensor.
      if (spec.granularity == Granularity::per_group)
        slice = static_cast<std::size_t>(r == 0 ? g * n + j : j * groups + g);
      out.scales.data<float>()[g * n + j] = params.scale[slice];
      out.offsets.data<float>()[g * n + j] = params.zero_point[slice] - base;
    }
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    const std::int64_t i0 = i / w.dim(1), i1 = i % w.dim(1);
    const std::int64_t kk = r == 0 ? i0 : i1, j = r == 0 ? i1 : i0;
    const std::int64_t at = (kk / out.group) * n + j;
    const float s = out.scales.data<float>()[at], zp = out.offsets.data<float>()[at] + base;
    const float v = wq.data<float>()[i];
    const float q = std::nearbyint(v / s) + zp;
    if (!(q >= f.qmin && q <= f.qmax) || dequantize_from_grid(q, s, zp) != v)
      return fmt::format(
          "weight ({}, {}) of '{}' is {} after quantization, which is not a code of the grid "
          "(a NaN weight has none): the {} kernel cannot hold it",
          i0, i1, layer.weight, v, lowbit_op_type(out.path));
    out.codes.data<std::int8_t>()[kk * n + j] = static_cast<std::int8_t>(q - base);
  }
  return std::nullopt;
}

// Rewrites `node` (the layer's Gemm/MatMul in `g`) into the bitplan::W*MatMul node of
// `weights.path`, reading the packed weights, which become initializers of `g`. The bias
// input keeps its index (2), so bias correction applies to the node as to the float one.
void install_lowbit_node(Graph& g, Node& node, const QuantizableLayer& layer,
                         const LowbitWeights& weights) {
  const std::string prefix = layer.weight + "@" + layer.name +
                             (weights.path == ExecutorPath::cpu_w2a8   ? "@w2a8"
                              : weights.path == ExecutorPath::cpu_w3a8 ? "@w3a8"
                              : weights.path == ExecutorPath::cpu_w8a8 ? "@w8a8"
                              : weights.path == ExecutorPath::cpu_w4a8 ? "@w4a8"
                                                                       : "@w4a32");
  // Handles to the simulator's tensors, not copies: the kernels key their packed weights by them.
  g.initializers[prefix + "codes"] = weights.codes;
  g.initializers[prefix + "scales"] = weights.scales;
  g.initializers[prefix + "offsets"] = weights.offsets;
  const std::string bias = node.inputs.size() > 2 ? node.inputs[2] : "";
  node.domain = "bitplan";
  node.op_type = std::string(lowbit_op_type(weights.path));
  node.inputs = {node.inputs[0], prefix + "codes", bias, prefix + "scales", prefix + "offsets"};
  node.attrs["group"] = weights.group;
}

}  // namespace

bool QuantSimulator::simulate_with_integer_sums(const LayerQuant& q, const QuantizableLayer& layer,
                                                const KernelTarget& host, Graph& g, Node& node) {
  const KernelChoice choice = choose_kernel(q, KernelLayer::of(graph_, layer), host);
  if (!choice.kernel) return false;
  const ExecutorPath path = choice.kernel->path;
  if (path != ExecutorPath::cpu_w4a8 && path != ExecutorPath::cpu_w3a8 &&
      path != ExecutorPath::cpu_w2a8 && path != ExecutorPath::cpu_w8a8)
    return false;
  const LowbitWeights& weights = lowbit_weights(layer, q, path);
  // A weight off the grid (NaN): fake quantization shows what it does.
  if (!weights.why.empty()) return false;
  install_lowbit_node(g, node, layer, weights);
  return true;
}

const QuantSimulator::LowbitWeights& QuantSimulator::lowbit_weights(const QuantizableLayer& layer,
                                                                    const LayerQuant& q,
                                                                    ExecutorPath path) {
  const std::string key = fmt::format("{}|{}", weight_key(layer, q), static_cast<int>(path));
  if (auto it = lowbit_cache_.find(key); it != lowbit_cache_.end()) return *it->second;
  auto weights = std::make_shared<LowbitWeights>();
  weights->path = path;
  if (auto why = w4a32_weights(method_float_weight(layer, q), quantized_weight(layer, q),
                               weight_spec_for(q.weights, layer), layer, *weights))
    weights->why = *why;
  return *(lowbit_cache_[key] = std::move(weights));
}

Graph QuantSimulator::build(const QuantPlan& plan, bool fuse) {
  Graph g = graph_;
  std::map<std::string, std::size_t> node_index;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) node_index[g.nodes[i].name] = i;
  std::vector<Node> added_nodes;  // input scaling and quantization, wired before the layers
  const KernelTarget host = KernelTarget::host();
  for (const auto& layer : layers_) {
    auto it = plan.layers.find(layer.name);
    if (it == plan.layers.end() || !it->second.quantized()) continue;
    const LayerQuant& q = it->second;
    Node& node = g.nodes[node_index.at(layer.name)];
    if (simulate_with_integer_sums(q, layer, host, g, node)) {
      if (auto mul = input_scaling_node(g, layer, q)) {
        node.inputs[0] = mul->outputs[0];
        added_nodes.push_back(std::move(*mul));
      }
      correct_bias(g, node, layer, q);
      continue;
    }
    if (q.weights.format != FormatId::fp32) {
      const std::string name =
          layer.weight + "@" + layer.name + "@" + to_string(q.weights) +
          (q.method == WeightMethod::rtn ? ""
                                         : "@" + std::string(weight_method_traits(q.method).name));
      g.initializers[name] = quantized_weight(layer, q);
      node.inputs[1] = name;
      correct_bias(g, node, layer, q);
    }
    std::string input = layer.input;
    if (auto mul = input_scaling_node(g, layer, q)) {
      input = node.inputs[0] = mul->outputs[0];
      added_nodes.push_back(std::move(*mul));
    }
    if (q.activations.format != FormatId::fp32) {
      Node fq = fake_quant_node(layer, q);
      fq.inputs[0] = input;
      node.inputs[0] = fq.outputs[0];
      added_nodes.push_back(std::move(fq));
    }
  }
  g.nodes.insert(g.nodes.end(), added_nodes.begin(), added_nodes.end());
  topological_sort(g);
  if (fuse) fuse_fake_quant_into_producers(g);
  remove_dead_nodes(g);
  return g;
}

int keep_channels_last(Graph& g, bool float_convs) {
  // fp32 Convs qualify with constant weights (the only kind build_conv reorders) and float32
  // compute; the 2-D ones alone, the shapes measured to gain (docs/performance.md).
  const auto is_conv = [&g, float_convs](const Node& n) {
    if (n.domain == "bitplan" && n.op_type == "Int8Conv") return true;
    return float_convs && n.domain.empty() && n.op_type == "Conv" && n.inputs.size() >= 2 &&
           g.initializers.count(n.inputs[1]) && g.initializers.at(n.inputs[1]).rank() == 4 &&
           n.attr_string("bitplan_compute", "f32") == "f32";
  };
  std::set<std::string> graph_outputs;
  for (const auto& v : g.outputs) graph_outputs.insert(v.name);
  // Convolutions whose float output is kept channels-last; everything else follows from them.
  std::set<const Node*> sources;
  for (auto& n : g.nodes)
    if (is_conv(n) && !n.has_attr("output_codes_scale") && n.outputs.size() == 1 &&
        !graph_outputs.count(n.outputs[0]))
      sources.insert(&n);
  if (sources.empty()) return 0;  // no plan of the graph needed below
  // Elementwise ops compute the same thing in any layout when every input is a same-shaped
  // channels-last tensor (no broadcasting); their dims come from a plan of the graph.
  std::map<std::string, std::vector<Dims>> input_dims;
  {
    const ExecutionPlan probe(g, PlanOptions{1});
    for (const auto& step : probe.steps()) input_dims[step.name] = step.input_dims;
  }
  const auto elementwise = [&](const Node& n) {
    if (!n.domain.empty() || n.outputs.size() != 1 || graph_outputs.count(n.outputs[0]))
      return false;
    if (n.op_type == "Relu") return n.inputs.size() == 1;
    if (n.op_type != "Add" && n.op_type != "Mul" && n.op_type != "Sub") return false;
    const auto it = input_dims.find(n.name);
    return it != input_dims.end() && it->second.size() == 2 && it->second[0] == it->second[1];
  };
  std::map<std::string, std::vector<Node*>> readers;
  for (auto& n : g.nodes)
    for (const auto& in : n.inputs) readers[in].push_back(&n);

  std::set<std::string> channels_last;
  const auto propagate = [&] {
    channels_last.clear();
    for (const auto& n : g.nodes) {  // topological order
      const bool all_inputs = elementwise(n) && std::all_of(n.inputs.begin(), n.inputs.end(),
                                                            [&](const std::string& in) {
                                                              return channels_last.count(in) > 0;
                                                            });
      if (sources.count(&n) || all_inputs) channels_last.insert(n.outputs[0]);
    }
  };
  const auto accepts = [&](const Node& reader, const std::string& tensor) {
    return (is_conv(reader) && reader.inputs[0] == tensor &&
            std::count(reader.inputs.begin(), reader.inputs.end(), tensor) == 1) ||
           (elementwise(reader) && channels_last.count(reader.outputs[0]));
  };
  // A source none of whose readers takes channels-last would only move its reorder into a
  // separate node: it stays plain. Dropping one can strand others, hence the loop.
  for (bool changed = true; changed;) {
    propagate();
    changed = false;
    for (auto it = sources.begin(); it != sources.end();) {
      const std::string& out = (*it)->outputs[0];
      const auto& rs = readers[out];
      if (std::none_of(rs.begin(), rs.end(), [&](const Node* r) { return accepts(*r, out); })) {
        it = sources.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
  }
  propagate();

  std::vector<Node> conversions;
  for (auto& n : g.nodes) {
    if (sources.count(&n)) n.attrs["output_channels_last"] = std::int64_t{1};
    if (is_conv(n) && channels_last.count(n.inputs[0]))
      n.attrs["input_channels_last"] = std::int64_t{1};
  }
  for (const auto& tensor : channels_last) {
    const std::string plain = tensor + "@plain";
    bool needed = false;
    for (Node* r : readers[tensor])
      if (!accepts(*r, tensor)) {
        for (auto& in : r->inputs)
          if (in == tensor) in = plain;
        needed = true;
      }
    if (needed)
      conversions.push_back(
          {tensor + "/to_plain", "ChannelsLastToPlain", "bitplan", {tensor}, {plain}, {}});
  }
  g.nodes.insert(g.nodes.end(), conversions.begin(), conversions.end());

  // A channels-last residual Add whose one input is a kept-channels-last convolution's
  // output (read by nothing else) becomes that convolution's binary post-op, with the ReLU
  // after it: relu(conv(x) + residual) in one pass over the output, in the same float
  // operations as the separate ops.
  std::map<std::string, std::vector<Node*>> readers_now;
  std::map<std::string, Node*> producer;
  for (auto& n : g.nodes) {
    for (const auto& in : n.inputs) readers_now[in].push_back(&n);
    for (const auto& out : n.outputs) producer[out] = &n;
  }
  const auto single_reader = [&](const std::string& t) -> Node* {
    const auto& rs = readers_now[t];
    return rs.size() == 1 && !graph_outputs.count(t) ? rs[0] : nullptr;
  };
  std::set<const Node*> absorbed;
  for (auto& add : g.nodes) {
    if (add.op_type != "Add" || !add.domain.empty() || !channels_last.count(add.outputs[0]))
      continue;
    for (std::size_t i = 0; i < 2; ++i) {
      Node* conv = producer.count(add.inputs[i]) ? producer[add.inputs[i]] : nullptr;
      const std::string& residual = add.inputs[1 - i];
      // By attribute, not by `sources`: inserting the conversions above may have moved the
      // nodes, leaving those pointers stale.
      if (!conv || !is_conv(*conv) || conv->attr_int("output_channels_last", 0) == 0 ||
          conv->inputs.size() > 3 || residual == add.inputs[i] ||
          single_reader(add.inputs[i]) != &add)
        continue;
      conv->inputs.resize(4);
      conv->inputs[3] = residual;
      conv->outputs[0] = add.outputs[0];
      absorbed.insert(&add);
      Node* relu = single_reader(add.outputs[0]);
      if (relu && relu->op_type == "Relu" && relu->domain.empty() &&
          channels_last.count(relu->outputs[0])) {
        conv->attrs["residual_activation"] = std::string("Relu");
        conv->outputs[0] = relu->outputs[0];
        absorbed.insert(relu);
      }
      break;
    }
  }
  std::vector<Node> kept;
  for (auto& n : g.nodes)
    if (!absorbed.count(&n)) kept.push_back(std::move(n));
  g.nodes = std::move(kept);
  topological_sort(g);
  return static_cast<int>(channels_last.size());
}

QuantSimulator::Int8Build QuantSimulator::build_int8(const QuantPlan& plan) {
  // Layers that cannot run in integers are simulated: start from the simulated graph of the
  // plan restricted to them, then add the integer layers.
  QuantPlan simulated_part;
  std::vector<std::pair<const QuantizableLayer*, LayerQuant>> integer_layers;
  std::vector<const QuantizableLayer*> bf16_layers;
  std::vector<std::pair<const QuantizableLayer*, const LowbitWeights*>> lowbit_layers;
  Int8Build out;
  const KernelTarget host = KernelTarget::host();
  for (const auto& layer : layers_) {
    auto it = plan.layers.find(layer.name);
    if (it == plan.layers.end() || !it->second.quantized()) continue;
    const KernelChoice choice = choose_kernel(it->second, KernelLayer::of(graph_, layer), host);
    const ExecutorPath path = choice.kernel ? choice.kernel->path : ExecutorPath::float_kernel;
    if (path == ExecutorPath::onednn_int8) {
      integer_layers.emplace_back(&layer, it->second);
      out.int8_layers.push_back(layer.name);
    } else if (path == ExecutorPath::onednn_bf16) {
      bf16_layers.push_back(&layer);
      out.bf16_layers.push_back(layer.name);
    } else if (path == ExecutorPath::cpu_w4a32 || path == ExecutorPath::cpu_w4a8 ||
               path == ExecutorPath::cpu_w3a8 || path == ExecutorPath::cpu_w2a8 ||
               path == ExecutorPath::cpu_w8a8) {
      const LowbitWeights& packed = lowbit_weights(layer, it->second, path);
      if (!packed.why.empty()) {
        out.why_simulated[layer.name] = packed.why;
        simulated_part.layers[layer.name] = it->second;
        continue;
      }
      // All read the float input: W4A8, W3A8, W2A8 and W8A8 quantize it per token themselves, with
      // the rule of the simulation's FakeQuant, which this layer therefore does not get.
      lowbit_layers.emplace_back(&layer, &packed);
      (path == ExecutorPath::cpu_w2a8   ? out.w2a8_layers
       : path == ExecutorPath::cpu_w3a8 ? out.w3a8_layers
       : path == ExecutorPath::cpu_w8a8 ? out.w8a8_layers
       : path == ExecutorPath::cpu_w4a8 ? out.w4a8_layers
                                        : out.w4a32_layers)
          .push_back(layer.name);
    } else {
      out.why_simulated[layer.name] =
          choice.kernel ? fmt::format(
                              "weights '{}' with float activations (weight-only): {} runs it on "
                              "the simulation's decompressed weights{}",
                              to_string(it->second.weights), choice.kernel->name,
                              choice.passed_over.empty() ? "" : " (" + choice.passed_over + ")")
                        : choice.why_not;
      simulated_part.layers[layer.name] = it->second;
    }
  }
  Graph g = build(simulated_part);
  for (const QuantizableLayer* layer : bf16_layers) {
    // The name by value: clang 14 (the fuzz preset) cannot capture a structured binding.
    auto node = std::find_if(g.nodes.begin(), g.nodes.end(),
                             [name = layer->name](const Node& n) { return n.name == name; });
    BITPLAN_ASSERT(node != g.nodes.end());
    // The simulation's bf16 weights (exact in bf16) and no FakeQuant: the kernel's own
    // rounding of its input to bf16 is the simulation's.
    const std::string name = layer->weight + "@" + layer->name + "@bf16";
    LayerQuant bf16;
    bf16.weights = parse_quant_spec("bf16");
    g.initializers[name] = quantized_weight(*layer, bf16);
    node->inputs[1] = name;
    node->attrs["bitplan_compute"] = std::string("bf16");
  }
  for (const auto& [layer, q] : integer_layers) {
    // The name by value: clang 14 (the fuzz preset) cannot capture a structured binding.
    auto node = std::find_if(g.nodes.begin(), g.nodes.end(),
                             [name = layer->name](const Node& n) { return n.name == name; });
    BITPLAN_ASSERT(node != g.nodes.end());
    // Integer codes of the weights: the fake-quantized values are exactly code * scale[c].
    const QuantSpec spec = weight_spec_for(q.weights, *layer);
    const Tensor& w = method_float_weight(*layer, q);
    const QuantParams params = choose_weight_params(spec, w, layer->reduction_axis);
    const Tensor& wq = quantized_weight(*layer, q);
    const bool per_channel = spec.granularity == Granularity::per_channel;
    const Dims strides = contiguous_strides(w.dims());
    const std::int64_t channels = w.dim(static_cast<std::size_t>(layer->channel_axis));
    // Gemm/MatMul kernels take codes [K, N]: Gemm with transB stores [N, K] and is transposed.
    const bool transpose = layer->op_type == "Gemm" && layer->channel_axis == 0;
    Tensor codes(DType::i8, transpose ? Dims{w.dim(1), w.dim(0)} : w.dims());
    for (std::int64_t i = 0; i < w.numel(); ++i) {
      const std::int64_t c =
          (i / strides[static_cast<std::size_t>(layer->channel_axis)]) % channels;
      const float s = params.scale[per_channel ? static_cast<std::size_t>(c) : 0];
      const std::int64_t dst = transpose ? (i % w.dim(1)) * w.dim(0) + i / w.dim(1) : i;
      codes.data<std::int8_t>()[dst] =
          static_cast<std::int8_t>(std::nearbyint(wq.data<float>()[i] / s));
    }
    const std::string codes_name = layer->weight + "@" + layer->name + "@int8codes";
    g.initializers[codes_name] = std::move(codes);
    const Node fq = fake_quant_node(*layer, q);  // its scale and zero point, not the node
    node->domain = "bitplan";
    node->op_type = layer->op_type == "Conv" ? "Int8Conv" : "Int8MatMul";
    node->inputs[1] = codes_name;
    node->attrs["input_scale"] = fq.attr_float("scale", 1.f);
    node->attrs["input_zero_point"] = fq.attr_float("zero_point", 0.f);
    node->attrs["input_signed"] = static_cast<std::int64_t>(q.activations.format == FormatId::int8);
    node->attrs["weight_scales"] = per_channel ? params.scale : std::vector<float>{params.scale[0]};
  }
  for (auto& [layer, weights] : lowbit_layers) {
    // The name by value: clang 14 (the fuzz preset) cannot capture a structured binding.
    auto node = std::find_if(g.nodes.begin(), g.nodes.end(),
                             [name = layer->name](const Node& n) { return n.name == name; });
    BITPLAN_ASSERT(node != g.nodes.end());
    install_lowbit_node(g, *node, *layer, *weights);
  }
  // The layers built here in place of their float node keep the bias input (index 2).
  for (const auto* names : {&out.int8_layers, &out.bf16_layers, &out.w4a32_layers, &out.w4a8_layers,
                            &out.w3a8_layers, &out.w2a8_layers, &out.w8a8_layers})
    for (const std::string& name : *names) {
      const LayerQuant& q = plan.layers.at(name);
      if (!q.bias_correction) continue;
      auto node = std::find_if(g.nodes.begin(), g.nodes.end(),
                               [&name](const Node& n) { return n.name == name; });
      auto layer = std::find_if(layers_.begin(), layers_.end(),
                                [&name](const QuantizableLayer& l) { return l.name == name; });
      BITPLAN_ASSERT(node != g.nodes.end() && layer != layers_.end());
      correct_bias(g, *node, *layer, q);
    }
  // Layers whose method scales their input (awq) read it through its Mul, as in build().
  std::vector<Node> scaling_nodes;
  for (const auto* names : {&out.int8_layers, &out.w4a32_layers, &out.w4a8_layers, &out.w3a8_layers,
                            &out.w2a8_layers, &out.w8a8_layers})
    for (const std::string& name : *names) {
      auto node = std::find_if(g.nodes.begin(), g.nodes.end(),
                               [&name](const Node& n) { return n.name == name; });
      auto layer = std::find_if(layers_.begin(), layers_.end(),
                                [&name](const QuantizableLayer& l) { return l.name == name; });
      BITPLAN_ASSERT(node != g.nodes.end() && layer != layers_.end());
      if (auto mul = input_scaling_node(g, *layer, plan.layers.at(name))) {
        node->inputs[0] = mul->outputs[0];
        scaling_nodes.push_back(std::move(*mul));
      }
    }
  if (!scaling_nodes.empty()) {
    g.nodes.insert(g.nodes.end(), scaling_nodes.begin(), scaling_nodes.end());
    topological_sort(g);
  }
  out.chained_tensors = chain_int8_layers(g);
  out.channels_last_tensors = keep_channels_last(g);
  remove_dead_nodes(g);
  out.graph = std::move(g);
  return out;
}

int chain_int8_layers(Graph& g) {
  const auto is_int8 = [](const Node& n) {
    return n.domain == "bitplan" && (n.op_type == "Int8Conv" || n.op_type == "Int8MatMul");
  };
  std::map<std::string, std::vector<std::pair<Node*, std::size_t>>> readers;
  for (auto& n : g.nodes)
    for (std::size_t i = 0; i < n.inputs.size(); ++i) readers[n.inputs[i]].emplace_back(&n, i);
  std::set<std::string> graph_outputs;
  for (const auto& v : g.outputs) graph_outputs.insert(v.name);
  int chained = 0;
  for (auto& producer : g.nodes) {
    if (!is_int8(producer) || producer.outputs.size() != 1 ||
        graph_outputs.count(producer.outputs[0]))
      continue;
    const auto& rs = readers[producer.outputs[0]];
    if (rs.empty()) continue;
    // Every reader must take this tensor as its activation, in the producer's layout
    // (convolutions: channels-last codes; matmuls: plain rows) and on the same grid.
    const Node& first = *rs.front().first;
    const bool same_grid = std::all_of(rs.begin(), rs.end(), [&](const auto& r) {
      const Node& n = *r.first;
      return r.second == 0 && is_int8(n) && n.op_type == producer.op_type &&
             n.attr_float("input_scale", 0.f) == first.attr_float("input_scale", 0.f) &&
             n.attr_float("input_zero_point", 0.f) == first.attr_float("input_zero_point", 0.f) &&
             n.attr_int("input_signed", 0) == first.attr_int("input_signed", 0);
    });
    if (!same_grid) continue;
    producer.attrs["output_codes_scale"] = first.attr_float("input_scale", 0.f);
    producer.attrs["output_codes_zero_point"] = first.attr_float("input_zero_point", 0.f);
    producer.attrs["output_codes_signed"] = first.attr_int("input_signed", 0);
    for (const auto& r : rs) r.first->attrs["input_is_codes"] = std::int64_t{1};
    ++chained;
  }
  return chained;
}

}  // namespace bitplan
