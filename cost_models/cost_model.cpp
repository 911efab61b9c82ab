#include "cost_models/cost_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "backends/cuda/precision.hpp"
#include "core/error.hpp"
#include "executor/model.hpp"
#include "executor/plan.hpp"
#include "executor/quant/formats.hpp"

namespace bitplan {
CostContext CostContext::build(const Graph& graph, std::string model_hash, std::int64_t batch) {
  CostContext c;
  c.model_hash = std::move(model_hash);
  c.batch = batch;
  c.inputs = input_dims_text(graph);
  c.layers = quantizable_layers(graph);
  for (const auto& layer : c.layers) c.kernel_layers.push_back(KernelLayer::of(graph, layer));
  const ExecutionPlan plan(graph, PlanOptions{batch});
  const auto workloads = layer_workloads(graph, plan);
  c.ops = op_workloads(graph, plan);
  std::set<std::string> weights;
  for (const auto& layer : c.layers) {
    auto it = std::find_if(workloads.begin(), workloads.end(),
                           [&](const LayerWorkload& w) { return w.layer == layer.name; });
    if (it == workloads.end())
      fail(ErrorKind::internal, "costing: layer '{}' has no workload (not executed?)", layer.name);
    c.workloads.push_back(*it);
    c.weight_dims.push_back(graph.initializer(layer.weight)->dims());
    weights.insert(layer.weight);
  }
  for (const auto& [name, tensor] : graph.initializers)
    if (!weights.count(name)) c.float_bytes_outside += static_cast<std::int64_t>(tensor.nbytes());
  return c;
}

PlanCost CostModel::plan_cost(const QuantPlan& plan) const {
  PlanCost out;
  out.fixed = fixed_cost();
  out.total = out.fixed;
  const LayerQuant fp32{};
  const LayerQuant* previous = nullptr;
  for (std::size_t i = 0; i < context_.layers.size(); ++i) {
    auto it = plan.layers.find(context_.layers[i].name);
    const LayerQuant& spec = it == plan.layers.end() ? fp32 : it->second;
    const LayerCost cost = layer_cost(i, spec);
    if (!cost.unsupported.empty())
      out.unsupported.emplace_back(context_.layers[i].name, cost.unsupported);
    out.estimated_layers += cost.estimated;
    double value = cost.value;
    if (previous) value += boundary_cost(i, *previous, spec);
    out.per_layer.push_back(value);
    out.total += value;
    previous = &spec;
  }
  return out;
}

namespace {

class LatencyModel final : public CostModel {
 public:
  LatencyModel(const CostContext& context, const HwProfile& profile)
      : CostModel(context), profile_(profile), target_(kernel_target(profile)) {
    // A CUDA profile prices the model's other ops once it holds any of their entries (a
    // profile measured before ops were profiled prices the layers alone, as it did); ops
    // still missing then make the layer they follow "estimated".
    ops_after_.resize(context_.layers.size() + 1);
    if (profile_.backend != "cuda") return;
    if (const Ceiling* c = profile_.find_ceiling("step_overhead_us")) step_overhead_us_ = c->value;
    if (const Ceiling* c = profile_.find_ceiling("graph_step_us")) graph_step_us_ = c->value;
    std::set<std::string> keys;
    for (const auto& op : context_.ops) {
      ops_after_[std::min(op.layers_before, context_.layers.size())].push_back(&op);
      if (!op.key.empty()) keys.insert(op.key);
    }
    // One pass over the profile (thousands of entries) instead of a search per op and plan.
    for (const auto& e : profile_.entries)
      if (keys.count(e.key)) op_entries_.emplace(e.key + " " + e.precision, &e);
    prices_ops_ = !op_entries_.empty();
  }
  std::string name() const override { return "latency"; }
  std::string unit() const override { return "ms"; }

  double fixed_cost() const override {
    const ModelOverhead* m =
        profile_.find_model(context_.model_hash, context_.batch, context_.inputs);
    return m ? m->other_us / 1e3 : 0.0;
  }

  LayerCost layer_cost(std::size_t layer, const LayerQuant& spec) const override {
    const KernelChoice kernel = choose_kernel(spec, context_.kernel_layers[layer], target_);
    if (!kernel.kernel) return {0, false, kernel.why_not};
    LayerCost cost = layer_entry_cost(layer, kernel.precision());
    if (prices_ops_ && cost.unsupported.empty()) {
      const auto precision = cuda::find_precision(kernel.precision());
      if (precision) {
        add_ops(ops_after_[layer + 1], cuda::output_type(*precision), cost);
        if (layer == 0 && !ops_after_[0].empty()) {
          // The leading ops run in the float type beside the first layer's input; an int8 or
          // fp8 first layer then quantizes their output, as it does between layers.
          add_ops(ops_after_[0], cuda::input_type(*precision), cost);
          const std::string read = cuda::precision_name(cuda::input_type(*precision));
          const std::string written =
              cuda::precision_name(cuda::float_beside(cuda::input_type(*precision)));
          if (read != written) cost.value += conversion_cost(0, written, read);
        }
      }
    }
    return cost;
  }

  LayerCost layer_entry_cost(std::size_t layer, const std::string& precision) const {
    const LayerWorkload& w = context_.workloads[layer];
    if (const ProfileEntry* e = profile_.find(w.key, precision)) {
      if (!e->unsupported.empty()) return {0, false, e->unsupported};
      return {step_ms(e->median_us), false, ""};
    }
    // A profile measured before the W4A32 / W4A8 / W3A8 / W2A8 / W8A8 kernels existed has no
    // w4a32 / w4a8 / w3a8 / w2a8 / w8a8 entries: the layer costs fp32 on decompressed weights (what
    // W4A32 layers cost then), flagged estimated until the profile is re-measured (`bitplan
    // profile`, or `target: host` on first use).
    if (precision == "w4a32" || precision == "w4a8" || precision == "w3a8" || precision == "w2a8" ||
        precision == "w8a8")
      if (const ProfileEntry* e = profile_.find(w.key, "fp32"); e && e->unsupported.empty())
        return {e->median_us / 1e3, true, ""};
    return roofline(w, precision);
  }

  // Adds the entries of `ops`, run in the float type beside `activations` (cuda::float_beside),
  // to `cost`; an op without an entry marks it estimated.
  void add_ops(const std::vector<const OpWorkload*>& ops, cuda::ElementType activations,
               LayerCost& cost) const {
    const std::string type = cuda::precision_name(cuda::float_beside(activations));
    for (const OpWorkload* op : ops) {
      const auto found = op_entries_.find(op->key + " " + type);
      const ProfileEntry* e = found == op_entries_.end() ? nullptr : found->second;
      if (e && e->unsupported.empty()) {
        cost.value += step_ms(e->median_us);
        cost.other_ops += step_ms(e->median_us);
      } else {
        cost.estimated = true;
      }
    }
  }

  // CUDA entries take activations in the type their precision reads and write the type it
  // writes, so a conversion is priced where the two differ; CPU entries convert inside.
  double boundary_cost(std::size_t layer, const LayerQuant& previous,
                       const LayerQuant& spec) const override {
    const std::string from =
        choose_kernel(previous, context_.kernel_layers[layer - 1], target_).precision();
    const std::string to = choose_kernel(spec, context_.kernel_layers[layer], target_).precision();
    if (profile_.backend == "onednn" && from == "int8" && to == "int8")
      return -chain_saving(layer - 1, true) - chain_saving(layer, false);
    if (from.empty() || to.empty()) return 0;
    const auto [written, read] = activations_between(from, to);
    const double conversion = written == read ? 0.0 : conversion_cost(layer, written, read);
    const auto precision = cuda::find_precision(from);
    const auto chained_as = precision ? cuda::chained_precision(*precision) : std::nullopt;
    // With the model's other ops priced, an op between the two layers (a residual add, a
    // softmax) needs the float output, so the first layer cannot write codes for the second.
    const bool op_between = prices_ops_ && !ops_after_[layer].empty();
    if (profile_.backend == "cuda" && from == to && chained_as && !op_between) {
      // Between two int8 (fp8) layers the first can write the second's codes itself (its
      // int8_chained / fp8_e4m3_chained entry: the (re)quantization in the GEMM's epilogue),
      // which replaces its fp16 output and the conversion after it; a deployment takes
      // whichever is faster.
      const std::string& key = context_.workloads[layer - 1].key;
      const ProfileEntry* alone = profile_.find(key, from);
      const ProfileEntry* chained = profile_.find(key, cuda::to_string(*chained_as));
      if (alone && chained && alone->unsupported.empty() && chained->unsupported.empty())
        return std::min(conversion, step_ms(chained->median_us) - step_ms(alone->median_us));
    }
    return conversion;
  }

 private:
  // A conversion of layer `layer`'s input from `written` to `read`, from the profile's
  // nearest measured size; 0 when the profile has none.
  double conversion_cost(std::size_t layer, const std::string& written,
                         const std::string& read) const {
    const std::int64_t elements = context_.workloads[layer].input_elements;
    const ConversionEntry* nearest = nullptr;
    for (const auto& c : profile_.conversions)
      if (c.from == written && c.to == read &&
          (!nearest ||
           std::llabs(c.elements - elements) < std::llabs(nearest->elements - elements)))
        nearest = &c;
    if (!nearest || nearest->elements == 0) return 0;
    // Conversions are bandwidth-bound: scale the nearest measured size linearly.
    return step_ms(nearest->median_us) * static_cast<double>(elements) /
           static_cast<double>(nearest->elements);
  }

  // A CUDA entry's time as one step of the whole model. Entries were timed alone between two
  // events; the profile's "step_overhead_us" ceiling is what those events add over the same
  // kernel as a step of a CUDA graph (the profiler's measure_step_overhead), taken off every
  // entry, down to the graph's floor for a step ("graph_step_us"). Profiles without the
  // ceiling (CPU ones, CUDA ones measured before it) count entries as measured.
  double step_ms(double median_us) const {
    return std::max(median_us - step_overhead_us_, graph_step_us_) / 1e3;
  }

  // The activations that pass from a layer at precision `from` to one at `to`, by the names a
  // profile's conversions use. A CUDA layer reads and writes the types its entry was timed
  // with (backends/cuda/precision.hpp): int8 and fp8 layers read their quantized activations
  // and write fp16, so int8 -> int8 converts fp16 to int8 and int8 -> fp16 converts nothing.
  // Other backends name conversions by the precisions themselves.
  std::pair<std::string, std::string> activations_between(const std::string& from,
                                                          const std::string& to) const {
    if (profile_.backend == "cuda") {
      const auto writer = cuda::find_precision(from), reader = cuda::find_precision(to);
      if (writer && reader)
        return {cuda::precision_name(cuda::output_type(*writer)),
                cuda::precision_name(cuda::input_type(*reader))};
    }
    return {from, to};
  }

  // On oneDNN, an int8 entry is the layer between float layers ("int8"), and "int8_chained"
  // the same layer between integer layers (onednn_profiler.cpp): chaining saves the input's
  // quantization and the output's reorder. Each edge between two int8 layers takes its
  // share of both layers' saving: half from each side, or all of it where the layer has no
  // other side (the first layer's input and the last layer's output are always float), so
  // an all-int8 plan costs exactly its layers' chained entries.
  double chain_saving(std::size_t layer, bool output_side) const {
    const std::string& key = context_.workloads[layer].key;
    const ProfileEntry* alone = profile_.find(key, "int8");
    const ProfileEntry* chained = profile_.find(key, "int8_chained");
    if (!alone || !chained || !alone->unsupported.empty() || !chained->unsupported.empty())
      return 0;
    const bool edge_layer = output_side ? layer == 0 : layer + 1 == context_.workloads.size();
    return (alone->median_us - chained->median_us) / 1e3 * (edge_layer ? 1.0 : 0.5);
  }

  // max(compute time at the precision's peak, traffic time at memory bandwidth).
  LayerCost roofline(const LayerWorkload& w, const std::string& precision) const {
    const Ceiling* compute = nullptr;
    for (const auto& c : profile_.ceilings)
      if (c.name.rfind("gemm_" + precision + "_", 0) == 0) compute = &c;
    const Ceiling* bandwidth = profile_.find_ceiling("memory_bandwidth_gbs");
    if (!bandwidth) bandwidth = profile_.find_ceiling("dram_bandwidth");
    if (!compute || !bandwidth)
      return {0, false,
              fmt::format("workload {} has no {} entry in the profile and the profile lacks the "
                          "ceilings to estimate it; run `bitplan profile` for this model",
                          w.key, precision)};
    const double unit_scale = compute->unit.rfind("T", 0) == 0 ? 1e12 : 1e9;
    const double compute_s = 2.0 * static_cast<double>(w.macs) / (compute->value * unit_scale);
    const double act_bytes = precision == "fp32"                                ? 4
                             : (precision == "int8" || precision == "fp8_e4m3") ? 1
                                                                                : 2;
    const double weight_bytes = precision == "w4a16" ? 0.5 : precision == "w8a16" ? 1 : act_bytes;
    const double bytes = static_cast<double>(w.input_elements + w.output_elements) * act_bytes +
                         static_cast<double>(w.weight_elements) * weight_bytes;
    const double memory_s = bytes / (bandwidth->value * 1e9);
    return {std::max(compute_s, memory_s) * 1e3, true, ""};
  }

  const HwProfile& profile_;
  const KernelTarget target_;
  // ops_after_[i]: the other ops that run after i layers (0: before the first layer).
  std::vector<std::vector<const OpWorkload*>> ops_after_;
  std::map<std::string, const ProfileEntry*> op_entries_;  // "key precision" -> entry
  bool prices_ops_ = false;
  double step_overhead_us_ = 0, graph_step_us_ = 0;
};

class SizeModel final : public CostModel {
 public:
  explicit SizeModel(const CostContext& context) : CostModel(context) {}
  std::string name() const override { return "size"; }
  std::string unit() const override { return "bytes"; }
  double fixed_cost() const override { return static_cast<double>(context_.float_bytes_outside); }
  LayerCost layer_cost(std::size_t layer, const LayerQuant& spec) const override {
    const QuantSpec w = weight_spec_for(spec.weights, context_.layers[layer]);
    return {static_cast<double>(storage_bytes(w, context_.weight_dims[layer],
                                              context_.layers[layer].reduction_axis)),
            false, ""};
  }
};

class BopsModel final : public CostModel {
 public:
  explicit BopsModel(const CostContext& context) : CostModel(context) {}
  std::string name() const override { return "bops"; }
  std::string unit() const override { return "GBOPs"; }
  double fixed_cost() const override { return 0; }
  LayerCost layer_cost(std::size_t layer, const LayerQuant& spec) const override {
    const double wbits = format_traits(spec.weights.format).storage_bits();
    const double abits = format_traits(spec.activations.format).storage_bits();
    return {static_cast<double>(context_.workloads[layer].macs) * wbits * abits / 1e9, false, ""};
  }
};

}  // namespace

std::unique_ptr<CostModel> make_latency_model(const CostContext& context,
                                              const HwProfile& profile) {
  return std::make_unique<LatencyModel>(context, profile);
}
std::unique_ptr<CostModel> make_size_model(const CostContext& context) {
  return std::make_unique<SizeModel>(context);
}
std::unique_ptr<CostModel> make_bops_model(const CostContext& context) {
  return std::make_unique<BopsModel>(context);
}

}  // namespace bitplan
