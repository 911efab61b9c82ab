// ExecutionPlan: a graph compiled for one batch size.
//
// Building the plan does all the setup once: concrete shapes for every value, constant
// folding (anything computable from initializers and shapes, e.g. the Shape->Gather->
// Concat->Reshape chains of torch exports), kernel creation (oneDNN primitives, packed
// weights) and a memory plan in which activations share buffers once their last reader has
// run. `run` then executes the kernels in order with no allocation on the hot path.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "executor/op_registry.hpp"

namespace bitplan {

// Fails with one message listing every op type bitplan cannot run and the nodes using it.
void check_supported(const Graph& graph);

struct PlanOptions {
  // The size of every input's first dimension when that is free (symbolic): the batch axis.
  // A free dimension anywhere else has no value here; it must be bound before planning
  // (bind_input_shapes, bind_input_to_samples), or the plan fails naming it.
  std::int64_t batch = 1;
  // Keep fp32 convolutions' activations channels-last between them (keep_channels_last,
  // executor/quant/simulate.hpp): no layout reorder around each convolution, and a residual
  // Add (+ ReLU) after one becomes its post-op. The plan's steps then no longer match the
  // graph's nodes one to one and a fused convolution's own output tensor disappears, so
  // plans that observe intermediate tensors or report per-node steps leave it off; the
  // graph outputs are the same up to float rounding.
  bool channels_last_convs = false;
  // Fold a MatMul's scalar scale, constant bias and Gelu into it (fuse_matmul_epilogues,
  // ir/passes.hpp): the same caveats as channels_last_convs.
  bool matmul_epilogues = false;
  // The kernel of float32 MatMuls and Gemms with a constant B (op_registry.hpp): automatic
  // takes bitplan's packed-B SGEMM where it measured faster than oneDNN's matmul; tests force
  // either. One step per node either way.
  Fp32Gemm fp32_gemm = Fp32Gemm::automatic;
};

// One executed node, for reports (`bitplan inspect`) and cost models.
struct StepInfo {
  std::string name;
  std::string op_type;
  std::vector<Dims> input_dims;
  std::vector<Dims> output_dims;
  std::int64_t params = 0;  // elements of constant inputs (weights, biases)
  std::int64_t macs = 0;
  std::vector<bool> input_constant;  // per input: known when planning (initializer or folded)
  bool view = false;                 // the output is a view of the input: no kernel runs
};

class ExecutionPlan {
 public:
  ExecutionPlan(const Graph& graph, const PlanOptions& options);
  ~ExecutionPlan();
  ExecutionPlan(const ExecutionPlan&) = delete;
  ExecutionPlan& operator=(const ExecutionPlan&) = delete;

  const std::vector<ValueMeta>& input_meta() const { return input_meta_; }
  const std::vector<ValueMeta>& output_meta() const { return output_meta_; }
  const std::vector<StepInfo>& steps() const { return step_info_; }
  std::int64_t batch() const { return options_.batch; }
  // Bytes of activation memory the plan holds (after buffer sharing).
  std::size_t arena_bytes() const { return arena_bytes_; }

  // Runs the graph. Inputs are read in place (no copy); the returned outputs are views into
  // the plan's buffers, valid until the next run. An input whose dtype or dims differ from
  // the planned ones fails (invalid input) naming it, both shapes and both types.
  std::vector<Tensor> run(std::span<const Tensor> inputs);
  // The same run, recording each step's wall time (seconds, index = steps()) into
  // `step_seconds`: the hardware profiler times layers in their real context this way, with
  // the caches as a whole-model run leaves them.
  std::vector<Tensor> run_timed(std::span<const Tensor> inputs, std::span<double> step_seconds);

 private:
  struct Step {
    std::unique_ptr<Kernel> kernel;  // null: output 0 is a view of input 0
    std::vector<int> inputs;         // slot per node input, -1 when omitted
    std::vector<int> outputs;
    // The kernel's arguments with their planned dtype and dims, made once; each run only
    // rebinds their data pointers, so running allocates nothing.
    std::vector<Tensor> input_args, output_args;
  };

  std::vector<Tensor> run_steps(std::span<const Tensor> inputs, double* step_seconds);

  PlanOptions options_;
  std::vector<Step> steps_;
  std::vector<StepInfo> step_info_;
  std::vector<ValueMeta> slot_meta_;
  std::vector<Tensor> slots_;  // run-time tensors (constants filled at plan time)
  std::vector<int> input_slots_, output_slots_;
  std::vector<std::string> input_names_;  // for messages
  std::vector<ValueMeta> input_meta_, output_meta_;
  std::vector<Tensor> buffers_;  // shared activation buffers
  std::size_t arena_bytes_ = 0;
};

}  // namespace bitplan
