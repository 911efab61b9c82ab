#include "executor/ops/onednn_common.hpp"

#include <cmath>

namespace bitplan::onednn {

using dnnl::memory;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& cpu_stream() {
  static dnnl::stream stream(cpu_engine());
  return stream;
}

memory::desc plain_desc(const Dims& dims, memory::data_type type) {
  return memory::desc(to_dnnl(dims), type, to_dnnl(contiguous_strides(dims)));
}

memory reorder_constant(const Tensor& value, const memory::desc& plain,
                        const memory::desc& target) {
  memory src(plain, cpu_engine(), const_cast<void*>(value.raw()));
  memory dst(target, cpu_engine());
  dnnl::reorder(src, dst).execute(cpu_stream(), src, dst);
  cpu_stream().wait();
  return dst;
}

namespace {

// A primitive whose only arguments are one plain float32 source and a destination of the
// same shape: a run binds the two pointers and executes.
class SrcDstKernel final : public Kernel {
 public:
  SrcDstKernel(dnnl::primitive prim, const memory::desc& md)
      : prim_(std::move(prim)),
        src_(md, cpu_engine(), DNNL_MEMORY_NONE),
        dst_(md, cpu_engine(), DNNL_MEMORY_NONE) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    src_.set_data_handle(const_cast<void*>(in[0].raw()));
    dst_.set_data_handle(out[0].raw());
    prim_.execute(cpu_stream(), {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}});
    cpu_stream().wait();
  }

 private:
  dnnl::primitive prim_;
  memory src_, dst_;
};

}  // namespace

std::unique_ptr<Kernel> eltwise_kernel(std::int64_t count, dnnl::algorithm alg, float alpha,
                                       float beta) {
  if (count < 1) return nullptr;
  const memory::desc md = plain_desc({count});
  try {
    const dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference, alg, md, alpha,
                                           beta);
    const dnnl::eltwise_forward::primitive_desc pd(desc, cpu_engine());
    return std::make_unique<SrcDstKernel>(dnnl::eltwise_forward(pd), md);
  } catch (const dnnl::error&) {
    return nullptr;  // the caller's scalar loop runs instead
  }
}

std::unique_ptr<Kernel> softmax_kernel(std::int64_t rows, std::int64_t n) {
  if (rows < 1 || n < 1) return nullptr;
  const memory::desc md = plain_desc({rows, n});
  try {
    const dnnl::softmax_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, md, 1},
                                                   cpu_engine());
    return std::make_unique<SrcDstKernel>(dnnl::softmax_forward(pd), md);
  } catch (const dnnl::error&) {
    return nullptr;  // the caller's scalar loop runs instead
  }
}

void append_scalar_binary(dnnl::algorithm alg, float value, std::size_t dst_rank,
                          dnnl::post_ops& po, std::unordered_map<int, memory>& args) {
  const memory::desc scalar_md(memory::dims(dst_rank, 1), memory::data_type::f32,
                               memory::dims(dst_rank, 1));
  memory scalar(scalar_md, cpu_engine());
  *static_cast<float*>(scalar.get_data_handle()) = value;
  args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(po.len()) | DNNL_ARG_SRC_1] = scalar;
  po.append_binary(alg, scalar_md);
}

void append_fused_epilogue(const OpContext& ctx, std::size_t dst_rank, dnnl::post_ops& po,
                           std::unordered_map<int, memory>& args) {
  const Node& node = ctx.node();
  const std::string act = node.attr_string("bitplan_activation", "");
  if (act == "Relu")
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  else if (act == "Clip")
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, node.attr_float("bitplan_clip_min", 0.f),
                      node.attr_float("bitplan_clip_max", 6.f));
  else if (act == "Gelu" || act == "GeluTanh")  // fp32 MatMuls (fuse_matmul_epilogues)
    po.append_eltwise(
        1.f, act == "Gelu" ? dnnl::algorithm::eltwise_gelu_erf : dnnl::algorithm::eltwise_gelu_tanh,
        0.f, 0.f);
  else if (!act.empty())
    ctx.invalid("fused activation '{}' is not Relu, Clip, Gelu or GeluTanh", act);

  if (!node.has_attr("bitplan_output_scale")) return;
  // The simulation's integer fake quantization of this output (the next layer's input),
  // step for step as quantize_to_grid / dequantize_from_grid compute it, so the fused and
  // the separate FakeQuant give the same bits:
  //   q = clamp(round_half_even(x / s) + zp, qmin, qmax);   y = (q - zp) * s
  // Divisions, additions and multiplications by the scale and zero point are binary
  // post-ops with broadcast scalars (x / s is a true division, not x * (1/s); the integer
  // sums are exact in float). Each eltwise algorithm appears once in the chain: oneDNN 2.6's
  // JIT kernels keep one injector per eltwise algorithm, so a second eltwise_clip (after a
  // fused ReLU6) or a second eltwise_linear would silently reuse the first one's bounds.
  const float scale = node.attr_float("bitplan_output_scale", 1.f);
  const float zero_point = node.attr_float("bitplan_output_zero_point", 0.f);
  const float qmin = node.attr_float("bitplan_output_qmin", 0.f),
              qmax = node.attr_float("bitplan_output_qmax", 0.f);
  if (!(std::isfinite(scale) && scale > 0) || !(qmin < qmax))
    ctx.invalid("output quantization scale {} and range [{}, {}] are invalid", scale, qmin, qmax);
  auto binary = [&](dnnl::algorithm alg, float value) {
    append_scalar_binary(alg, value, dst_rank, po, args);
  };
  binary(dnnl::algorithm::binary_div, scale);
  po.append_eltwise(1.f, dnnl::algorithm::eltwise_round, 0.f, 0.f);
  if (zero_point != 0.f) binary(dnnl::algorithm::binary_add, zero_point);
  po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip_v2, qmin, qmax);
  if (zero_point != 0.f) binary(dnnl::algorithm::binary_sub, zero_point);
  binary(dnnl::algorithm::binary_mul, scale);
}

}  // namespace bitplan::onednn
