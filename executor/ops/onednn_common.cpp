#include "executor/ops/onednn_common.hpp"

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

memory reorder_constant(const Tensor& value, const memory::desc& plain, const memory::desc& target) {
  memory src(plain, cpu_engine(), const_cast<void*>(value.raw()));
  memory dst(target, cpu_engine());
  dnnl::reorder(src, dst).execute(cpu_stream(), src, dst);
  cpu_stream().wait();
  return dst;
}

dnnl::post_ops fused_post_ops(const OpContext& ctx) {
  dnnl::post_ops po;
  const std::string act = ctx.node().attr_string("bitplan_activation", "");
  if (act == "Relu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  else if (act == "Clip")
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, ctx.node().attr_float("bitplan_clip_min", 0.f),
                      ctx.node().attr_float("bitplan_clip_max", 6.f));
  else if (!act.empty()) ctx.invalid("fused activation '{}' is not Relu or Clip", act);
  return po;
}

}  // namespace bitplan::onednn
