// bitplan::W4A32MatMul: a Gemm/MatMul layer whose plan is <= 4-bit integer weights with
// float activations, on the W4A32 kernel (executor/kernels/w4a32.hpp).
// QuantSimulator::build_int8 writes the node: inputs
//   0 x [..., K] float32
//   1 codes [K, N] int8: the 4-bit container values (code + 8 for signed grids)
//   2 bias [N] (optional, "" when absent)
//   3 scales [G, N] float32, 4 offsets [G, N] float32 (offset = zero point + 8 or + 0)
// attribute group (weights per scale along K), and the epilogue attributes the float kernels
// read (bitplan_activation, bitplan_clip_*, bitplan_output_*). The weights are packed here,
// at plan build, for the kernel ISA of this CPU (kernels::cpu_isa()); run only computes.
#include <cmath>
#include <memory>

#include "executor/kernels/w4a32.hpp"
#include "executor/op_registry.hpp"

namespace bitplan {
namespace {

OpBuild build_w4a32_matmul(const OpContext& ctx) {
  const Node& node = ctx.node();
  const ValueMeta& x = ctx.input(0);
  const Tensor& codes = ctx.constant_input(1, "weight codes");
  if (x.dtype != DType::f32 || x.dims.empty())
    ctx.invalid("input must be a float32 tensor [..., K]; it is {} {}", dtype_name(x.dtype),
                to_string(x.dims));
  if (codes.dtype() != DType::i8 || codes.rank() != 2 || codes.dim(0) != x.dims.back() ||
      codes.dim(0) == 0 || codes.dim(1) == 0)
    ctx.invalid("weight codes {} {} must be int8 [K, N] with K = {} (the input's last axis)",
                dtype_name(codes.dtype()), to_string(codes.dims()), x.dims.back());
  const std::int64_t k = codes.dim(0), n = codes.dim(1);
  const std::int64_t group = node.attr_int("group", 0);
  if (group <= 0) ctx.invalid("group {} must be positive", group);
  const std::int64_t groups = (k + std::min(group, k) - 1) / std::min(group, k);
  const Tensor& scales = ctx.constant_input(3, "weight scales");
  const Tensor& offsets = ctx.constant_input(4, "weight offsets");
  for (const Tensor* t : {&scales, &offsets})
    if (t->dtype() != DType::f32 || t->numel() != groups * n)
      ctx.invalid("weight scales and offsets must be float32 [{}, {}]; one is {} {}", groups, n,
                  dtype_name(t->dtype()), to_string(t->dims()));
  const kernels::W4a32Source source{
      k, n, group, codes.data<std::int8_t>(), n, 1, scales.data<float>(), offsets.data<float>()};
  auto packed =
      std::make_shared<const kernels::PackedW4a32>(kernels::pack_w4a32(source, kernels::cpu_isa()));

  kernels::GemmEpilogue epilogue;
  std::shared_ptr<std::vector<float>> bias;
  if (ctx.has_input(2)) {
    const Tensor& b = ctx.constant_input(2, "bias");
    if (b.dtype() != DType::f32 || b.numel() != n)
      ctx.unsupported("the bias must be a constant of {} float32 values", n);
    bias = std::make_shared<std::vector<float>>(b.values<float>().begin(), b.values<float>().end());
  }
  const std::string act = node.attr_string("bitplan_activation", "");
  if (act == "Relu") {
    epilogue.clamp = true;
    epilogue.lo = 0.f;
    epilogue.hi = INFINITY;
  } else if (act == "Clip") {
    epilogue.clamp = true;
    epilogue.lo = node.attr_float("bitplan_clip_min", 0.f);
    epilogue.hi = node.attr_float("bitplan_clip_max", 6.f);
  } else if (!act.empty()) {
    ctx.invalid("fused activation '{}' is not Relu or Clip", act);
  }
  if (node.has_attr("bitplan_output_scale")) {
    epilogue.quantize_output = true;
    epilogue.out_scale = node.attr_float("bitplan_output_scale", 1.f);
    epilogue.out_zero_point = node.attr_float("bitplan_output_zero_point", 0.f);
    epilogue.out_qmin = node.attr_float("bitplan_output_qmin", 0.f);
    epilogue.out_qmax = node.attr_float("bitplan_output_qmax", 0.f);
    if (!(std::isfinite(epilogue.out_scale) && epilogue.out_scale > 0) ||
        !(epilogue.out_qmin < epilogue.out_qmax))
      ctx.invalid("output quantization scale {} and range [{}, {}] are invalid", epilogue.out_scale,
                  epilogue.out_qmin, epilogue.out_qmax);
  }
  const std::int64_t m = product(x.dims) / k;
  Dims out_dims = x.dims;
  out_dims.back() = n;
  OpBuild b;
  b.outputs.push_back({DType::f32, out_dims, {}});
  b.macs = m * n * k;
  b.kernel = make_kernel(
      [packed, bias, epilogue, m, k, n](std::span<const Tensor> in, std::span<Tensor> out) mutable {
        epilogue.bias = bias ? bias->data() : nullptr;
        kernels::w4a32_gemm(*packed, in[0].data<float>(), m, k, out[0].data<float>(), n, epilogue);
      });
  return b;
}

}  // namespace

void register_lowbit_ops(OpRegistry& r) {
  r.add("bitplan::W4A32MatMul", build_w4a32_matmul);
}

}  // namespace bitplan
