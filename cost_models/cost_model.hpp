// Cost models: what a plan costs on a target, as numbers the search can minimise.
//
// Every model is additive over layers - total = fixed + sum of per-layer costs - which is
// what lets the exact solver (search/exact_solver) treat a plan as a multiple-choice
// knapsack. Models:
//   latency - from a measured hardware profile (backends/hw_profile.hpp): each layer's entry
//             for the precision of the kernel that runs its spec on the profile's target
//             (executor/kernel_list.hpp), plus precision conversions between
//             layers where the profile keeps them separately (CUDA), plus the model's
//             time outside the quantizable layers: a CPU profile's measured remainder of the
//             whole run, or on a CUDA profile the entries of the model's other ops (Add,
//             Softmax, attention's products, ...), each charged to the layer it follows in
//             the float type that layer writes (the ops before the first layer to it). A shape
//             missing from the table is estimated from the profile's ceilings (roofline) and
//             flagged as estimated; a spec with no kernel on the target is unsupported, with the
//             reason - never a made-up latency.
//   size    - bytes of the stored model: packed codes, scales, zero points, codebooks, and
//             every initializer that stays float.
//   bops    - bit operations: MACs x weight bits x activation bits.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/hw_profile.hpp"
#include "backends/workload.hpp"
#include "executor/quant/plan.hpp"

namespace bitplan {

struct LayerCost {
  double value = 0;
  bool estimated = false;   // roofline, not measured
  std::string unsupported;  // non-empty: no kernel; value is meaningless
  double other_ops = 0;     // the part of value that is the model's other ops charged to it
};

struct PlanCost {
  double total = 0;
  double fixed = 0;
  std::vector<double> per_layer;  // in the model's layer order
  int estimated_layers = 0;
  std::vector<std::pair<std::string, std::string>> unsupported;  // layer, reason
  bool supported() const { return unsupported.empty(); }
};

// What every model needs to know about the model being planned, computed once.
struct CostContext {
  std::string model_hash;
  std::int64_t batch = 1;
  std::string inputs;  // input_dims_text: with the batch, what the model's overhead is keyed by
  std::vector<QuantizableLayer> layers;    // plan order
  std::vector<KernelLayer> kernel_layers;  // same order: what kernels decline on
  std::vector<LayerWorkload> workloads;    // same order
  std::vector<OpWorkload> ops;             // the other ops, in execution order
  std::vector<Dims> weight_dims;           // same order
  std::int64_t float_bytes_outside = 0;    // initializers that are not a layer's weight

  static CostContext build(const Graph& graph, std::string model_hash, std::int64_t batch);
};

class CostModel {
 public:
  virtual ~CostModel() = default;
  virtual std::string name() const = 0;  // "latency", "size", "bops"
  virtual std::string unit() const = 0;  // "ms", "bytes", "GBOPs"
  virtual double fixed_cost() const = 0;
  virtual LayerCost layer_cost(std::size_t layer, const LayerQuant& spec) const = 0;
  // Cost between two consecutive layers (precision conversions); 0 for most models.
  virtual double boundary_cost(std::size_t /*layer*/, const LayerQuant& /*previous*/,
                               const LayerQuant& /*spec*/) const {
    return 0;
  }
  PlanCost plan_cost(const QuantPlan& plan) const;

 protected:
  explicit CostModel(const CostContext& context) : context_(context) {}
  const CostContext& context_;
};

// `context` and `profile` must outlive the models.
std::unique_ptr<CostModel> make_latency_model(const CostContext& context, const HwProfile& profile);
std::unique_ptr<CostModel> make_size_model(const CostContext& context);
std::unique_ptr<CostModel> make_bops_model(const CostContext& context);

}  // namespace bitplan
