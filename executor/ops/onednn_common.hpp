// oneDNN plumbing shared by the fp32 and int8 kernels: the engine and stream, plain
// descriptors, one-off reorders of constants, fused activations as post-ops, and turning
// oneDNN's refusals into bitplan's "cannot run node ... because ..." errors.
#pragma once

#include <dnnl.hpp>

#include "executor/op_registry.hpp"

namespace bitplan::onednn {

dnnl::engine& cpu_engine();
dnnl::stream& cpu_stream();

inline dnnl::memory::dims to_dnnl(const Dims& d) { return dnnl::memory::dims(d.begin(), d.end()); }

// Plain row-major layout for any rank.
dnnl::memory::desc plain_desc(const Dims& dims, dnnl::memory::data_type type = dnnl::memory::data_type::f32);

// Turns oneDNN's exception into bitplan's "cannot run node" error, naming the reason.
template <typename Fn>
auto create_or_explain(const OpContext& ctx, const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    ctx.unsupported("oneDNN has no {} implementation for these shapes/attributes ({})", what, e.what());
  }
}

// Reorders constant data given in `plain` layout into `target` layout once.
dnnl::memory reorder_constant(const Tensor& value, const dnnl::memory::desc& plain, const dnnl::memory::desc& target);

// The activation bitplan's fusion pass attached to a Conv/Gemm/MatMul, as post-ops.
dnnl::post_ops fused_post_ops(const OpContext& ctx);

}  // namespace bitplan::onednn
