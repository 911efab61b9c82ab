// oneDNN plumbing shared by the fp32 and int8 kernels: the engine and stream, plain
// descriptors, one-off reorders of constants, fused activations as post-ops, and turning
// oneDNN's refusals into bitplan's "cannot run node ... because ..." errors.
#pragma once

#include <dnnl.hpp>

#include <fmt/ranges.h>

#include <initializer_list>
#include <memory>
#include <unordered_map>

#include "core/checked.hpp"
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

// The multiply-accumulate count of a kernel (the product of `factors`), refusing shapes for
// which it does not fit in 64 bits: the sizes come from the model and the batch.
inline std::int64_t mac_count(const OpContext& ctx, std::initializer_list<std::int64_t> factors) {
  const auto macs = checked_product(factors);
  if (!macs)
    ctx.invalid("the multiply-accumulate count {} does not fit in 64 bits",
                fmt::join(factors, " x "));
  return *macs;
}

// Refuses an output shape whose float32 size in bytes does not fit in 64 bits, before oneDNN
// (which multiplies sizes without overflow checks) sees it.
inline void check_output_size(const OpContext& ctx, const Dims& dims) {
  const auto count = checked_product(dims);
  if (!count || !checked_mul(*count, std::int64_t{4}))
    ctx.invalid("output shape {}: its size in bytes does not fit in 64 bits", to_string(dims));
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

// Vectorised float32 kernels for the ops bitplan otherwise runs as scalar loops over libm
// (std::erf, std::exp): oneDNN's JIT eltwise and softmax, created once at plan time for the
// planned shape. Each returns nullptr where oneDNN has no implementation (an empty tensor, an
// ISA without one), and the caller keeps its scalar loop; the unit tests
// (tests/unit/executor_vector_ops.cpp) bound their error against that scalar reference.
//
// `dst = alg(src)` elementwise over `count` float32 values (dnnl::eltwise_forward with
// oneDNN's alpha/beta parameters).
std::unique_ptr<Kernel> eltwise_kernel(std::int64_t count, dnnl::algorithm alg, float alpha = 0.f,
                                       float beta = 0.f);
// Softmax over each row of a row-major [rows, n] float32 tensor.
std::unique_ptr<Kernel> softmax_kernel(std::int64_t rows, std::int64_t n);

}  // namespace bitplan::onednn
