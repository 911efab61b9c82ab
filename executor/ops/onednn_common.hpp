// oneDNN plumbing shared by the fp32 and int8 kernels: the engine and stream, plain
// descriptors, one-off reorders of constants, fused activations as post-ops, and turning
// oneDNN's refusals into bitplan's "cannot run node ... because ..." errors.
#pragma once

#include <dnnl.hpp>

#include <unordered_map>

#include "executor/op_registry.hpp"

namespace bitplan::onednn {

dnnl::engine& cpu_engine();
dnnl::stream& cpu_stream();

inline dnnl::memory::dims to_dnnl(const Dims& d) {
  return dnnl::memory::dims(d.begin(), d.end());
}

// Plain row-major layout for any rank.
dnnl::memory::desc plain_desc(const Dims& dims,
                              dnnl::memory::data_type type = dnnl::memory::data_type::f32);

// Turns oneDNN's exception into bitplan's "cannot run node" error, naming the reason.
template <typename Fn>
auto create_or_explain(const OpContext& ctx, const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    ctx.unsupported("oneDNN has no {} implementation for these shapes/attributes ({})", what,
                    e.what());
  }
}

// Reorders constant data given in `plain` layout into `target` layout once.
dnnl::memory reorder_constant(const Tensor& value, const dnnl::memory::desc& plain,
                              const dnnl::memory::desc& target);

// Appends `dst = dst <alg> value` (a broadcast scalar operand, bound in `args`) to `post_ops`.
void append_scalar_binary(dnnl::algorithm alg, float value, std::size_t dst_rank,
                          dnnl::post_ops& post_ops, std::unordered_map<int, dnnl::memory>& args);

// Appends what bitplan's passes fused into a Conv/Gemm/MatMul to `post_ops`: the
// activation (Relu / Clip), then an output fake quantization (see append_fake_quant).
// Constant post-op operands are added to `args`; `dst_rank` is the output's rank.
void append_fused_epilogue(const OpContext& ctx, std::size_t dst_rank, dnnl::post_ops& post_ops,
                           std::unordered_map<int, dnnl::memory>& args);

}  // namespace bitplan::onednn
