// The public library (include/bitplan/): thin wrappers over the internal libraries, which keep
// every rule. This file only converts between the public plain types and the internal ones,
// and checks what only the public interface can get wrong (a malformed FloatTensor, a plan
// handed to another model).
#include <algorithm>
#include <numeric>
#include <optional>

#include "backends/hw_profile.hpp"
#include "bitplan/bitplan.hpp"
#include "core/error.hpp"
#include "cost_models/cost_model.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/plan.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan {

struct Model::Impl {
  std::filesystem::path file;
  std::string hash;
  Graph graph;  // free dimensions unbound: each run binds its own copy to its input
};

struct QuantizationPlan::Impl {
  QuantPlan plan;
  std::string model_hash;  // of the model it was made for (a plan file need not record one)
};

struct QuantizedModel::Impl {
  Graph simulated;
};

struct HardwareProfile::Impl {
  HwProfile profile;
};

struct LibraryAccess {
  static const Model::Impl& of(const Model& model) { return *model.impl_; }
  static const QuantizationPlan::Impl& of(const QuantizationPlan& plan) { return *plan.impl_; }
  static const HwProfile& of(const HardwareProfile& profile) { return profile.impl_->profile; }
};

namespace {

// The sample dims of `samples` ([count, sample dims...]) once its dims and values agree.
Dims sample_dims_of(const FloatTensor& samples, std::string_view action) {
  if (samples.dims.empty())
    fail(ErrorKind::usage, "{}: the tensor has no dims; give [batch, sample dims...]", action);
  for (const std::int64_t dim : samples.dims)
    if (dim < 1)
      fail(ErrorKind::usage, "{}: the tensor's dims {} have a size below 1", action,
           to_string(samples.dims));
  if (product(samples.dims) != static_cast<std::int64_t>(samples.values.size()))
    fail(ErrorKind::usage, "{}: the tensor's dims {} hold {} values but it has {}", action,
         to_string(samples.dims), product(samples.dims), samples.values.size());
  return Dims(samples.dims.begin() + 1, samples.dims.end());
}

// A caller's tensor seen as a dataset, so that feeding and calibrating go through the
// executor's own checks and loaders (bind_input_to_samples, load_batch, calibrate). It reads
// the tensor in place: the tensor must outlive it.
class SampleBatch final : public Dataset {
 public:
  SampleBatch(const FloatTensor& samples, std::string_view action)
      : SampleBatch(samples, sample_dims_of(samples, action)) {}

  void load(std::span<const std::int64_t> indices, float* dst) const override {
    const std::int64_t numel = sample_numel();
    for (std::size_t i = 0; i < indices.size(); ++i)
      std::copy_n(values_.data() + indices[i] * numel, numel,
                  dst + static_cast<std::int64_t>(i) * numel);
  }

  std::vector<std::int64_t> every_index() const {
    std::vector<std::int64_t> indices(static_cast<std::size_t>(size()));
    std::iota(indices.begin(), indices.end(), std::int64_t{0});
    return indices;
  }

 private:
  // `samples` is checked (sample_dims_of) before this runs.
  SampleBatch(const FloatTensor& samples, Dims sample_dims)
      : Dataset(std::move(sample_dims),
                std::vector<std::int64_t>(static_cast<std::size_t>(samples.dims[0]), 0), {"0"}),
        values_(samples.values) {}

  const std::vector<float>& values_;
};

// `fp32_rewrites` (PlanOptions channels_last_convs and matmul_epilogues: faster, the same
// outputs up to float rounding) for the fp32 model; a simulated graph keeps the plain plan
// its calibration and searches measured.
std::vector<FloatTensor> run_on(Graph graph, const FloatTensor& input, bool fp32_rewrites) {
  const SampleBatch samples(input, fmt::format("running '{}'", graph.name));
  bind_input_to_samples(graph, samples);
  ExecutionPlan plan(graph, PlanOptions{samples.size(), fp32_rewrites, fp32_rewrites});
  Tensor batch;
  load_batch(plan, graph, samples, samples.every_index(), batch);
  const std::vector<Tensor> outputs = plan.run(std::span<const Tensor>(&batch, 1));
  std::vector<FloatTensor> out;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].dtype() != DType::f32)
      fail_unsupported("running '{}': output '{}' is {}; the library returns float outputs",
                       graph.name, graph.outputs[i].name, dtype_name(outputs[i].dtype()));
    const std::span<const float> values = outputs[i].values<float>();
    out.push_back({outputs[i].dims(), std::vector<float>(values.begin(), values.end())});
  }
  return out;
}

void check_plan_is_for(const QuantizationPlan::Impl& plan, const Model::Impl& model,
                       std::string_view action) {
  if (plan.model_hash != model.hash)
    fail(ErrorKind::usage,
         "{}: the plan was made for the model file with hash {}, not for '{}' (hash {})", action,
         plan.model_hash, model.file.string(), model.hash);
}

}  // namespace

Model::Model(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(const Model&) = default;
Model& Model::operator=(const Model&) = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::load(const std::filesystem::path& onnx_file) {
  LoadedModel loaded = load_model(onnx_file);
  return Model(std::make_shared<const Impl>(
      Impl{onnx_file, model_file_hash(onnx_file), std::move(loaded.graph)}));
}

const std::filesystem::path& Model::file() const {
  return impl_->file;
}
const std::string& Model::file_hash() const {
  return impl_->hash;
}
std::vector<std::int64_t> Model::input_dims() const {
  return sample_input(impl_->graph).dims;
}

std::vector<std::string> Model::quantizable_layers() const {
  std::vector<std::string> names;
  for (const QuantizableLayer& layer : bitplan::quantizable_layers(impl_->graph))
    names.push_back(layer.name);
  return names;
}

std::vector<FloatTensor> Model::run(const FloatTensor& input) const {
  return run_on(impl_->graph, input, true);
}

QuantizationPlan::QuantizationPlan(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
QuantizationPlan::~QuantizationPlan() = default;
QuantizationPlan::QuantizationPlan(const QuantizationPlan&) = default;
QuantizationPlan& QuantizationPlan::operator=(const QuantizationPlan&) = default;
QuantizationPlan::QuantizationPlan(QuantizationPlan&&) noexcept = default;
QuantizationPlan& QuantizationPlan::operator=(QuantizationPlan&&) noexcept = default;

QuantizationPlan QuantizationPlan::fp32(const Model& model) {
  const Model::Impl& m = LibraryAccess::of(model);
  return QuantizationPlan(std::make_shared<const Impl>(Impl{QuantPlan{m.hash, {}}, m.hash}));
}

QuantizationPlan QuantizationPlan::uniform(const Model& model, std::string_view shorthand,
                                           std::string_view calibration) {
  const Model::Impl& m = LibraryAccess::of(model);
  QuantPlan plan = uniform_plan(shorthand, m.graph, parse_calibration_method(calibration));
  plan.model_hash = m.hash;
  return QuantizationPlan(std::make_shared<const Impl>(Impl{std::move(plan), m.hash}));
}

QuantizationPlan QuantizationPlan::load(const Model& model,
                                        const std::filesystem::path& yaml_file) {
  const Model::Impl& m = LibraryAccess::of(model);
  return QuantizationPlan(
      std::make_shared<const Impl>(Impl{load_plan(yaml_file, m.graph, m.hash), m.hash}));
}

std::vector<std::string> QuantizationPlan::quantized_layers() const {
  std::vector<std::string> names;
  for (const auto& [layer, spec] : impl_->plan.layers)
    if (spec.quantized()) names.push_back(layer);
  return names;
}

std::string QuantizationPlan::to_yaml() const {
  return plan_to_yaml(impl_->plan);
}
void QuantizationPlan::save(const std::filesystem::path& yaml_file) const {
  save_plan(yaml_file, impl_->plan);
}

QuantizedModel::QuantizedModel(const Model& model, const QuantizationPlan& plan,
                               const FloatTensor& calibration_samples) {
  const Model::Impl& m = LibraryAccess::of(model);
  const QuantizationPlan::Impl& p = LibraryAccess::of(plan);
  check_plan_is_for(p, m, fmt::format("quantizing '{}'", m.graph.name));
  Graph graph = m.graph;
  CalibrationData calibration;  // none: the simulator says so if the plan needs it
  std::optional<SampleBatch> samples;
  if (!calibration_samples.dims.empty() || !calibration_samples.values.empty()) {
    samples.emplace(calibration_samples, fmt::format("calibrating '{}'", m.graph.name));
    bind_input_to_samples(graph, *samples);
    calibration.dataset = &*samples;
    calibration.indices = samples->every_index();
  }
  QuantSimulator simulator(graph, m.hash, std::move(calibration));
  impl_ = std::make_shared<const Impl>(Impl{simulator.build(p.plan)});
}

QuantizedModel::~QuantizedModel() = default;
QuantizedModel::QuantizedModel(const QuantizedModel&) = default;
QuantizedModel& QuantizedModel::operator=(const QuantizedModel&) = default;
QuantizedModel::QuantizedModel(QuantizedModel&&) noexcept = default;
QuantizedModel& QuantizedModel::operator=(QuantizedModel&&) noexcept = default;

std::vector<FloatTensor> QuantizedModel::run(const FloatTensor& input) const {
  return run_on(impl_->simulated, input, false);
}

HardwareProfile::HardwareProfile(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
HardwareProfile::~HardwareProfile() = default;
HardwareProfile::HardwareProfile(const HardwareProfile&) = default;
HardwareProfile& HardwareProfile::operator=(const HardwareProfile&) = default;
HardwareProfile::HardwareProfile(HardwareProfile&&) noexcept = default;
HardwareProfile& HardwareProfile::operator=(HardwareProfile&&) noexcept = default;

HardwareProfile HardwareProfile::load(const std::filesystem::path& yaml_file) {
  return HardwareProfile(std::make_shared<const Impl>(Impl{load_hw_profile(yaml_file)}));
}

const std::string& HardwareProfile::target() const {
  return impl_->profile.target;
}
const std::string& HardwareProfile::backend() const {
  return impl_->profile.backend;
}

CostEstimate estimate_cost(const Model& model, const QuantizationPlan& plan,
                           const HardwareProfile& profile, std::int64_t batch) {
  const Model::Impl& m = LibraryAccess::of(model);
  const QuantizationPlan::Impl& p = LibraryAccess::of(plan);
  const std::string action = fmt::format("estimating the cost of a plan for '{}'", m.graph.name);
  check_plan_is_for(p, m, action);
  if (batch < 1) fail(ErrorKind::usage, "{}: batch {} is below 1", action, batch);
  const CostContext context = CostContext::build(m.graph, m.hash, batch);
  const PlanCost latency =
      make_latency_model(context, LibraryAccess::of(profile))->plan_cost(p.plan);
  CostEstimate estimate;
  estimate.batch = batch;
  estimate.size_bytes = make_size_model(context)->plan_cost(p.plan).total;
  estimate.gbops = make_bops_model(context)->plan_cost(p.plan).total;
  if (latency.supported()) estimate.latency_ms = latency.total;
  estimate.estimated_layers = latency.estimated_layers;
  estimate.unsupported_layers = latency.unsupported;
  return estimate;
}

}  // namespace bitplan
