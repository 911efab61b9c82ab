// How an op joins the executor: one builder per op type, looked up by name.
//
// A builder runs once per plan (plan once, run many): it validates attributes, infers
// output dtypes and shapes from the input metadata (and constant inputs), and creates a
// Kernel holding everything the run needs (oneDNN primitives, packed weights, loop bounds).
// Kernel::run then only computes. A builder that cannot handle a node's attributes fails
// with ErrorKind::unsupported and says why.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace bitplan {

// What the planner knows about a value: dtype, concrete dims (batch substituted) and, when
// it is known before running (initializers, folded subgraphs, shapes), its value.
struct ValueMeta {
  DType dtype = DType::f32;
  Dims dims;
  std::optional<Tensor> constant;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // `inputs` has one entry per node input (an empty Tensor for omitted optional inputs);
  // `outputs` are preallocated with the planned dtype and dims.
  virtual void run(std::span<const Tensor> inputs, std::span<Tensor> outputs) = 0;
};

// A kernel from a lambda `void(std::span<const Tensor>, std::span<Tensor>)` that captured
// its plan-time state.
template <typename Fn>
class LambdaKernel final : public Kernel {
 public:
  explicit LambdaKernel(Fn fn) : fn_(std::move(fn)) {}
  void run(std::span<const Tensor> inputs, std::span<Tensor> outputs) override {
    fn_(inputs, outputs);
  }

 private:
  Fn fn_;
};

template <typename Fn>
std::unique_ptr<Kernel> make_kernel(Fn fn) {
  return std::make_unique<LambdaKernel<Fn>>(std::move(fn));
}

// Which kernel runs a float32 MatMul or Gemm whose B is a constant (PlanOptions::fp32_gemm):
// bitplan's packed-B SGEMM (executor/kernels/sgemm_packed.hpp) where it measured faster,
// always, or oneDNN's matmul always. Nodes the packed kernel cannot take (B computed at run
// time, a transposed A, an addend C, fused output quantization, an activation other than
// Gelu) run on oneDNN whatever this says.
enum class Fp32Gemm : unsigned char { automatic, packed, onednn };

// Plan-time view of one node.
class OpContext {
 public:
  OpContext(const Node& node, std::int64_t opset, std::vector<const ValueMeta*> inputs)
      : node_(node), opset_(opset), inputs_(std::move(inputs)) {}

  const Node& node() const { return node_; }
  std::int64_t opset() const { return opset_; }
  Fp32Gemm fp32_gemm() const { return fp32_gemm_; }
  void set_fp32_gemm(Fp32Gemm choice) { fp32_gemm_ = choice; }
  std::size_t num_inputs() const { return inputs_.size(); }
  bool has_input(std::size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  const ValueMeta& input(std::size_t i) const;
  // The value of input i, which must be known at plan time (e.g. a Reshape target shape).
  const Tensor& constant_input(std::size_t i, std::string_view role) const;

  template <typename... Args>
  [[noreturn]] void unsupported(fmt::format_string<Args...> format, Args&&... args) const {
    fail_unsupported("cannot run node '{}' ({}): {}", node_.name, node_.op_type,
                     fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  [[noreturn]] void invalid(fmt::format_string<Args...> format, Args&&... args) const {
    fail_input("invalid node '{}' ({}): {}", node_.name, node_.op_type,
               fmt::format(format, std::forward<Args>(args)...));
  }
  // Normalises a possibly negative axis against `rank`, failing when out of range.
  std::int64_t axis(std::int64_t axis, std::int64_t rank) const;

 private:
  const Node& node_;
  std::int64_t opset_;
  std::vector<const ValueMeta*> inputs_;
  Fp32Gemm fp32_gemm_ = Fp32Gemm::automatic;
};

struct OpBuild {
  std::vector<ValueMeta> outputs;  // dtype and dims; `constant` set when the builder knows it
  std::unique_ptr<Kernel> kernel;  // null for views (see below) and fully constant outputs
  // Output 0 is input 0's data under new dims (Reshape, Flatten, Squeeze...): no copy.
  bool output_is_view_of_input = false;
  std::int64_t macs = 0;  // multiply-accumulates, for reports and cost models
};

using OpBuilder = std::function<OpBuild(const OpContext&)>;

class OpRegistry {
 public:
  static const OpRegistry& instance();
  const OpBuilder* find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> op_types() const;
  void add(std::string op_type, OpBuilder builder);

 private:
  OpRegistry() = default;
  std::map<std::string, OpBuilder> builders_;
};

// Registration functions, one per ops/ source file.
void register_elementwise_ops(OpRegistry& registry);
void register_shape_ops(OpRegistry& registry);
void register_reduce_ops(OpRegistry& registry);
void register_nn_ops(OpRegistry& registry);
void register_onednn_ops(OpRegistry& registry);
void register_quant_ops(OpRegistry& registry);  // bitplan::FakeQuant
void register_int8_ops(OpRegistry& registry);   // bitplan::Int8Conv, bitplan::Int8MatMul
// bitplan::W4A32MatMul, W4A8MatMul, W3A8MatMul, W2A8MatMul, W8A8MatMul (executor/kernels/)
void register_lowbit_ops(OpRegistry& registry);

}  // namespace bitplan
