#include "executor/plan.hpp"

#include <chrono>

#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "core/checked.hpp"
#include "executor/quant/simulate.hpp"
#include "ir/passes.hpp"

namespace bitplan {
namespace {

// A value's size in bytes, or nullopt when it does not fit in 64 bits.
std::optional<std::size_t> byte_size(const ValueMeta& meta) {
  const auto count = checked_product(meta.dims);
  if (!count || *count < 0) return std::nullopt;
  return checked_mul(static_cast<std::size_t>(*count), dtype_size(meta.dtype));
}

}  // namespace

void check_supported(const Graph& graph) {
  const auto& registry = OpRegistry::instance();
  std::map<std::string, std::vector<std::string>> missing;  // op type -> node names
  for (const auto& node : graph.nodes)
    if (!registry.find(node.domain, node.op_type))
      missing[node.domain.empty() ? node.op_type : node.domain + "::" + node.op_type].push_back(
          node.name);
  if (missing.empty()) return;
  std::string list;
  std::size_t nodes = 0;
  for (const auto& [op, names] : missing) {
    nodes += names.size();
    std::vector<std::string> shown(names.begin(),
                                   names.begin() + std::min<std::size_t>(names.size(), 5));
    list += fmt::format("\n  {} ({} node{}: {}{})", op, names.size(), names.size() == 1 ? "" : "s",
                        fmt::join(shown, ", "), names.size() > shown.size() ? ", ..." : "");
  }
  fail_unsupported("model '{}' uses {} op type{} bitplan does not support ({} nodes):{}",
                   graph.name, missing.size(), missing.size() == 1 ? "" : "s", nodes, list);
}

namespace {

// A free input dimension after the batch axis has no size the plan could take: planning it
// with the batch size (as bitplan once did) ran detectors at 1x1 pixels without a word.
[[noreturn]] void fail_free_dimension(const Graph& graph, const ValueInfo& input,
                                      std::size_t axis) {
  auto shown = [&](std::size_t i) -> std::string {
    if (i == 0) return "N";
    if (input.dims[i] >= 0) return std::to_string(input.dims[i]);
    const bool named = i < input.dim_names.size() && !input.dim_names[i].empty();
    return named ? input.dim_names[i] : fmt::format("D{}", i);
  };
  std::vector<std::string> example;
  for (std::size_t i = 0; i < input.dims.size(); ++i) example.push_back(shown(i));
  fail(ErrorKind::usage,
       "planning '{}': dimension {} ({}) of input '{}' [{}] is free (symbolic) and only the "
       "first, the batch axis, takes the batch size; give its size with --input-shape "
       "{}={} (N = the batch), or run on data, whose samples set it",
       graph.name, axis, shown(axis), input.name, fmt::join(example, ", "), input.name,
       fmt::join(example, ","));
}

}  // namespace

ExecutionPlan::~ExecutionPlan() = default;

ExecutionPlan::ExecutionPlan(const Graph& source, const PlanOptions& options) : options_(options) {
  std::optional<Graph> rewritten;
  if (options.channels_last_convs || options.matmul_epilogues) {
    rewritten = source;
    if (options.matmul_epilogues) {
      std::vector<std::string> notes;
      fuse_matmul_epilogues(*rewritten, notes);
    }
    if (options.channels_last_convs) keep_channels_last(*rewritten, true);
  }
  const Graph& graph = rewritten ? *rewritten : source;
  check_supported(graph);
  if (options.batch < 1)
    fail(ErrorKind::usage, "building a plan: batch {} must be >= 1", options.batch);

  std::map<std::string, int> slot_of;
  auto new_slot = [&](const std::string& name, ValueMeta meta) {
    slot_of[name] = static_cast<int>(slot_meta_.size());
    slot_meta_.push_back(std::move(meta));
    return slot_of[name];
  };
  for (const auto& in : graph.inputs) {
    ValueMeta meta{in.dtype, in.dims, std::nullopt};
    for (std::size_t axis = 0; axis < meta.dims.size(); ++axis) {
      if (meta.dims[axis] >= 0) continue;
      if (axis > 0) fail_free_dimension(graph, in, axis);
      meta.dims[axis] = options.batch;
    }
    // Every size the plan computes from this input (buffers, MACs) stays far from overflow.
    std::int64_t elements = 1;
    for (const std::int64_t d : meta.dims) {
      if (d != 0 && elements > (std::int64_t{1} << 40) / d)
        fail_input("planning '{}': input '{}' of shape {} has more than 2^40 elements", graph.name,
                   in.name, to_string(meta.dims));
      elements *= d;
    }
    input_slots_.push_back(new_slot(in.name, meta));
    input_names_.push_back(in.name);
    input_meta_.push_back(slot_meta_.back());
  }
  for (const auto& [name, tensor] : graph.initializers)
    new_slot(name, ValueMeta{tensor.dtype(), tensor.dims(), tensor});

  const auto& registry = OpRegistry::instance();
  for (const auto& node : graph.nodes) {
    std::vector<const ValueMeta*> in_meta;
    std::vector<int> in_slots;
    bool all_constant = true;
    std::int64_t params = 0;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        in_meta.push_back(nullptr);
        in_slots.push_back(-1);
        continue;
      }
      auto it = slot_of.find(name);
      BITPLAN_ASSERT(it != slot_of.end());  // topological order guarantees it
      in_meta.push_back(&slot_meta_[it->second]);
      in_slots.push_back(it->second);
      const bool is_const = slot_meta_[it->second].constant.has_value();
      all_constant = all_constant && is_const;
      if (is_const && graph.initializer(name)) params += slot_meta_[it->second].constant->numel();
    }
    OpContext ctx(node, graph.opset, in_meta);
    ctx.set_fp32_gemm(options.fp32_gemm);
    OpBuild build;
    try {
      build = (*registry.find(node.domain, node.op_type))(ctx);
    } catch (const ShapeOverflow& e) {
      ctx.invalid("{}", e.what());
    }
    BITPLAN_ASSERT(build.outputs.size() <= node.outputs.size());
    // Every size the memory plan and later steps compute from these dims must fit.
    for (std::size_t i = 0; i < build.outputs.size(); ++i)
      if (!byte_size(build.outputs[i]))
        ctx.invalid("output '{}' of shape {}: its size in bytes does not fit in 64 bits",
                    node.outputs[i], to_string(build.outputs[i].dims));

    StepInfo info{node.name, node.op_type, {}, {}, params, build.macs, {}, false};
    for (const auto* m : in_meta) {
      info.input_dims.push_back(m ? m->dims : Dims{});
      info.input_constant.push_back(m && m->constant.has_value());
    }
    info.view = build.output_is_view_of_input;
    for (const auto& m : build.outputs) info.output_dims.push_back(m.dims);

    // Fold: when every input is known, run the kernel now and keep the results as constants.
    const bool outputs_known =
        std::all_of(build.outputs.begin(), build.outputs.end(),
                    [](const ValueMeta& m) { return m.constant.has_value(); });
    if (!outputs_known && all_constant) {
      std::vector<Tensor> ins;
      for (const auto* m : in_meta) ins.push_back(m ? *m->constant : Tensor());
      if (build.output_is_view_of_input) {
        build.outputs[0].constant = ins[0].reshaped(build.outputs[0].dims);
      } else {
        std::vector<Tensor> outs;
        for (const auto& m : build.outputs) outs.emplace_back(m.dtype, m.dims);
        build.kernel->run(ins, outs);
        for (std::size_t i = 0; i < outs.size(); ++i)
          build.outputs[i].constant = std::move(outs[i]);
      }
    }
    Step step;
    step.inputs = in_slots;
    for (std::size_t i = 0; i < build.outputs.size(); ++i)
      step.outputs.push_back(node.outputs[i].empty() ? -1
                                                     : new_slot(node.outputs[i], build.outputs[i]));
    const bool folded = std::all_of(build.outputs.begin(), build.outputs.end(),
                                    [](const ValueMeta& m) { return m.constant.has_value(); });
    if (folded) continue;
    step.kernel = build.output_is_view_of_input ? nullptr : std::move(build.kernel);
    BITPLAN_ASSERT(step.kernel || build.output_is_view_of_input);
    steps_.push_back(std::move(step));
    step_info_.push_back(std::move(info));
  }
  for (const auto& out : graph.outputs) {
    output_slots_.push_back(slot_of.at(out.name));
    output_meta_.push_back(slot_meta_[output_slots_.back()]);
  }

  // Memory plan. A view shares its source's buffer, so buffers are tracked by "root" slot.
  slots_.resize(slot_meta_.size());
  for (std::size_t s = 0; s < slot_meta_.size(); ++s)
    slots_[s] = slot_meta_[s].constant
                    ? *slot_meta_[s].constant
                    : Tensor::view(slot_meta_[s].dtype, slot_meta_[s].dims, nullptr);
  std::vector<int> root(slot_meta_.size());
  for (std::size_t s = 0; s < root.size(); ++s) root[s] = static_cast<int>(s);
  std::vector<int> last_use(slot_meta_.size(), -1);
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const Step& step = steps_[i];
    if (!step.kernel && step.outputs[0] >= 0) root[step.outputs[0]] = root[step.inputs[0]];
    for (int s : step.inputs)
      if (s >= 0) last_use[root[s]] = std::max(last_use[root[s]], static_cast<int>(i));
  }
  for (int s : output_slots_) last_use[root[s]] = static_cast<int>(steps_.size());  // kept

  std::multimap<std::size_t, int> free_buffers;  // bytes -> buffer index
  std::vector<int> buffer_of(slot_meta_.size(), -1);
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const Step& step = steps_[i];
    if (step.kernel) {
      for (int s : step.outputs) {
        if (s < 0 || slot_meta_[s].constant) continue;
        const std::size_t bytes = *byte_size(slot_meta_[s]);  // checked when the slot was made
        auto fit = free_buffers.lower_bound(bytes);
        if (fit != free_buffers.end()) {
          buffer_of[s] = fit->second;
          free_buffers.erase(fit);
        } else {
          buffer_of[s] = static_cast<int>(buffers_.size());
          buffers_.emplace_back(DType::u8, Dims{static_cast<std::int64_t>(bytes)});
          const auto arena_bytes = checked_add(arena_bytes_, bytes);
          if (!arena_bytes)
            fail_input(
                "building a plan for model '{}' at batch {}: the activations need more "
                "than 2^64 bytes",
                graph.name, options.batch);
          arena_bytes_ = *arena_bytes;
        }
        slots_[s] =
            Tensor::view(slot_meta_[s].dtype, slot_meta_[s].dims, buffers_[buffer_of[s]].raw());
        // An output nobody reads is released at once (after this step).
        if (last_use[s] < 0) last_use[s] = static_cast<int>(i);
      }
    }
    std::set<int> released;
    for (int s : step.inputs)
      if (s >= 0 && last_use[root[s]] == static_cast<int>(i)) released.insert(root[s]);
    for (int s : step.outputs)
      if (s >= 0 && root[s] == s && last_use[s] == static_cast<int>(i)) released.insert(s);
    for (int r : released)
      if (buffer_of[r] >= 0) free_buffers.emplace(buffers_[buffer_of[r]].nbytes(), buffer_of[r]);
  }
  for (auto& step : steps_) {
    for (int s : step.inputs) step.input_args.push_back(s >= 0 ? slots_[s] : Tensor());
    for (int s : step.outputs) step.output_args.push_back(s >= 0 ? slots_[s] : Tensor());
  }
}

std::vector<Tensor> ExecutionPlan::run(std::span<const Tensor> inputs) {
  return run_steps(inputs, nullptr);
}

std::vector<Tensor> ExecutionPlan::run_timed(std::span<const Tensor> inputs,
                                             std::span<double> step_seconds) {
  if (step_seconds.size() != steps_.size())
    fail(ErrorKind::internal, "timing a run: {} step slots for {} steps", step_seconds.size(),
         steps_.size());
  return run_steps(inputs, step_seconds.data());
}

std::vector<Tensor> ExecutionPlan::run_steps(std::span<const Tensor> inputs, double* step_seconds) {
  if (inputs.size() != input_slots_.size())
    fail(ErrorKind::usage, "running the model: got {} inputs, the model takes {}", inputs.size(),
         input_slots_.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const ValueMeta& meta = input_meta_[i];
    // Kernels read exactly the planned bytes: any other shape would be read past its end.
    if (inputs[i].dtype() != meta.dtype || inputs[i].dims() != meta.dims)
      fail_input("running the model: input '{}' is planned as {} {} but the data is {} {}",
                 input_names_[i], dtype_name(meta.dtype), to_string(meta.dims),
                 dtype_name(inputs[i].dtype()), to_string(inputs[i].dims()));
    slots_[input_slots_[i]].alias_data_of(inputs[i]);
  }
  // Graph inputs and views change their data pointer from run to run: rebind everything.
  for (std::size_t index = 0; index < steps_.size(); ++index) {
    Step& step = steps_[index];
    if (!step.kernel) {
      slots_[step.outputs[0]].alias_data_of(slots_[step.inputs[0]]);
      if (step_seconds) step_seconds[index] = 0;
      continue;
    }
    for (std::size_t j = 0; j < step.inputs.size(); ++j)
      if (step.inputs[j] >= 0) step.input_args[j].alias_data_of(slots_[step.inputs[j]]);
    for (std::size_t j = 0; j < step.outputs.size(); ++j)
      if (step.outputs[j] >= 0) step.output_args[j].alias_data_of(slots_[step.outputs[j]]);
    if (!step_seconds) {
      step.kernel->run(step.input_args, step.output_args);
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    step.kernel->run(step.input_args, step.output_args);
    step_seconds[index] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::vector<Tensor> results;
  for (int s : output_slots_) results.push_back(slots_[s]);
  return results;
}

}  // namespace bitplan
