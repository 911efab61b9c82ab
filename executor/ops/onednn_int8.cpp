// Real integer execution of INT8 layers through oneDNN: bitplan::Int8Conv and
// bitplan::Int8MatMul (Gemm/MatMul with constant weights).
//
// A layer whose plan says "int8 weights (symmetric, per channel or per tensor) + 8-bit
// static activations" computes exactly what the simulation computes, but in integers:
//   simulation:  y[c] = sum_k dq(x_k) * dq(w_ck),   dq(x) = (q_x - zp_x) s_x,  dq(w) = q_w s_w[c]
//              = s_x s_w[c] * sum_k (q_x,k - zp_x) q_w,ck
// so oneDNN runs sum_k (q_x - zp_x) q_w in int32 (zp_x as a source zero point, which also
// makes padded borders contribute zero), and scales by s_x s_w[c] ("output scales") into a
// float32 output, followed by the bias and any fused activation. The input codes are made
// here with the simulation's own quantize_to_grid, so both paths see identical codes; the
// only difference left is the float rounding of the final sum (int32 is exact, the
// simulation's float32 accumulation is not).
//
// Chained layers (attributes set by chain_int8_layers, executor/quant/simulate.hpp): when
// every reader of a layer's output is an integer layer with the same input quantization,
// the producer writes the readers' codes itself and they read them as they are, so the
// float tensor, its quantization pass and the layout reorders between the two disappear:
//   producer:  q_y = sat(round_half_even(y / s_y) + zp_y)     (y: the float output above)
// computed as post-ops (y / s_y, + zp_y) followed by oneDNN's rounding, saturating
// conversion to u8/s8, which is the simulation's quantize_to_grid for 8-bit grids. Codes
// between convolutions are channels-last (the layout oneDNN's int8 convolutions read and
// write); the tensor's dims stay the logical NCHW ones, and only integer layers read it.
#include <cmath>
#include <optional>

#include "core/parallel.hpp"
#include "executor/ops/onednn_common.hpp"
#include "executor/ops/window.hpp"
#include "executor/quant/formats.hpp"

namespace bitplan {
namespace {

using namespace onednn;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

// The 8-bit grid of a layer's input ("input_*" attributes) or of the codes it writes for
// chained readers ("output_codes_*").
struct CodeGrid {
  float scale = 1.f;
  float zero_point = 0.f;
  bool is_signed = false;  // s8 codes in [-128, 127], else u8 in [0, 255]
  float qmin() const { return is_signed ? -128.f : 0.f; }
  float qmax() const { return is_signed ? 127.f : 255.f; }
  memory::data_type type() const {
    return is_signed ? memory::data_type::s8 : memory::data_type::u8;
  }
  DType dtype() const { return is_signed ? DType::i8 : DType::u8; }
};

CodeGrid code_grid(const OpContext& ctx, const std::string& prefix) {
  const Node& node = ctx.node();
  CodeGrid q{node.attr_float(prefix + "scale", 0.f), node.attr_float(prefix + "zero_point", 0.f),
             node.attr_int(prefix + "signed", 0) != 0};
  if (!(std::isfinite(q.scale) && q.scale > 0))
    ctx.invalid("{}scale {} must be finite and positive", prefix, q.scale);
  if (q.zero_point < q.qmin() || q.zero_point > q.qmax() ||
      q.zero_point != std::nearbyint(q.zero_point))
    ctx.invalid("{}zero_point {} must be an integer code in [{}, {}]", prefix, q.zero_point,
                q.qmin(), q.qmax());
  return q;
}

// How a layer's input and output travel: float, or 8-bit codes shared with its neighbours;
// a convolution's float input and output may also be channels-last (keep_channels_last).
struct Int8Io {
  CodeGrid input;
  bool input_is_codes = false;        // the producer wrote our codes (chained)
  std::optional<CodeGrid> out_codes;  // we write our readers' codes (chained)
  bool float_input_channels_last = false;
  bool float_output_channels_last = false;
  // A residual Add (input 3, same shape and layout as the output) and the ReLU after it,
  // fused by fuse_residual_into_int8_conv: dst = relu(conv(x) + residual).
  memory::desc residual_md;
  bool residual_relu = false;
};

Int8Io int8_io(const OpContext& ctx) {
  const Node& node = ctx.node();
  Int8Io io;
  io.input = code_grid(ctx, "input_");
  io.input_is_codes = node.attr_int("input_is_codes", 0) != 0;
  io.float_input_channels_last = node.attr_int("input_channels_last", 0) != 0;
  io.float_output_channels_last = node.attr_int("output_channels_last", 0) != 0;
  if (node.has_attr("output_codes_scale")) io.out_codes = code_grid(ctx, "output_codes_");
  io.residual_relu = node.attr_string("residual_activation", "") == "Relu";
  const ValueMeta& x = ctx.input(0);
  const DType expected = io.input_is_codes ? io.input.dtype() : DType::f32;
  if (x.dtype != expected)
    ctx.invalid("input is {}, expected {} ({})", dtype_name(x.dtype), dtype_name(expected),
                io.input_is_codes ? "the codes its producer writes for it" : "float activations");
  return io;
}

// The simulation's quantize_to_grid for one run of floats, into u8 or s8 codes. Compiled
// again for AVX2, where std::nearbyint becomes vroundps (same rounding, half to even) and the
// loop vectorises; the baseline x86-64 build calls libm's nearbyint per element, which made
// quantizing a 56x56x24 input take longer than the convolution reading it. Locals, not the
// grid's fields: a byte store could alias them, which keeps GCC from vectorising. The
// clamped value is an integer in the code range, so going through int32 is exact.
template <typename Code>
inline void quantize_codes_run(const float* x, Code* q, std::int64_t n, float scale,
                               float zero_point, float qmin, float qmax) {
  for (std::int64_t i = 0; i < n; ++i)
    q[i] = static_cast<Code>(
        static_cast<std::int32_t>(quantize_to_grid(x[i], scale, zero_point, qmin, qmax)));
}
[[gnu::target_clones("avx2", "default")]] void quantize_u8_codes(const float* x, std::uint8_t* q,
                                                                 std::int64_t n, float scale,
                                                                 float zero_point) {
  quantize_codes_run(x, q, n, scale, zero_point, 0.f, 255.f);
}
[[gnu::target_clones("avx2", "default")]] void quantize_s8_codes(const float* x, std::int8_t* q,
                                                                 std::int64_t n, float scale,
                                                                 float zero_point) {
  quantize_codes_run(x, q, n, scale, zero_point, -128.f, 127.f);
}

// Output scales s_x * s_w[c]: one per output channel, or one for the whole tensor.
std::vector<float> output_scales(const OpContext& ctx, float input_scale, std::int64_t channels) {
  std::vector<float> w = ctx.node().attr_floats("weight_scales");
  if (w.size() != 1 && static_cast<std::int64_t>(w.size()) != channels)
    ctx.invalid("weight_scales has {} values; expected 1 or one per output channel ({})", w.size(),
                channels);
  for (float& s : w) s *= input_scale;
  return w;
}

void require_int8_weights(const OpContext& ctx, std::size_t i) {
  const ValueMeta& w = ctx.input(i);
  if (w.dtype != DType::i8 || !w.constant)
    ctx.invalid("weights must be a constant int8 code tensor, got {}{}", dtype_name(w.dtype),
                w.constant ? "" : " computed at run time");
}

// Quantizes the float input into codes laid out as the primitive wants them (or takes the
// codes its producer wrote), runs it with a run-time source zero point, and reorders a float
// output back to plain if needed.
class Int8Kernel final : public Kernel {
 public:
  Int8Kernel(dnnl::primitive prim, std::unordered_map<int, memory> args, Int8Io io, memory codes,
             memory dst_plain, memory dst_primitive)
      : prim_(std::move(prim)),
        args_(std::move(args)),
        quant_(io.input),
        input_is_codes_(io.input_is_codes),
        codes_(codes),
        dst_plain_(dst_plain),
        dst_primitive_(dst_primitive),
        zero_point_(memory({{1}, memory::data_type::s32, tag::x}, cpu_engine())) {
    *static_cast<std::int32_t*>(zero_point_.get_data_handle()) =
        static_cast<std::int32_t>(quant_.zero_point);
    // Float inputs are quantized in their own (plain) order, a contiguous pass that
    // vectorises, and the bytes are then reordered to the primitive's layout (a quarter of
    // the float traffic) instead of quantizing through a strided transpose.
    const memory::dims dims = codes_.get_desc().dims();
    const memory::desc plain_codes = plain_desc(Dims(dims.begin(), dims.end()), quant_.type());
    if (!input_is_codes_ && !io.float_input_channels_last && codes_.get_desc() != plain_codes) {
      plain_codes_ = memory(plain_codes, cpu_engine());
      codes_reorder_ = dnnl::reorder(plain_codes_, codes_);
    }
    args_[DNNL_ARG_SRC] = codes_;
    args_[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = zero_point_;
    if (dst_plain_.get_desc() != dst_primitive_.get_desc())
      dst_reorder_ = dnnl::reorder(dst_primitive_, dst_plain_);
    args_[DNNL_ARG_DST] = dst_primitive_;
    if (!io.residual_md.is_zero())
      for (const auto& [arg, mem] : args_)
        if (arg >= DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE && mem.get_desc() == io.residual_md)
          residual_ = mem;
  }

  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    if (input_is_codes_) {
      codes_.set_data_handle(const_cast<void*>(in[0].raw()));
    } else {
      memory& plain = codes_reorder_ ? plain_codes_ : codes_;
      const float* x = in[0].data<float>();
      const std::int64_t n = in[0].numel();
      // On the OpenMP pool, with the oneDNN primitives around it: a TBB loop here would wake
      // the other pool's sleeping threads at every layer (core/parallel.hpp).
      parallel_for_openmp(n, 16384, [&](std::int64_t b, std::int64_t e) {
        if (quant_.is_signed)
          quantize_s8_codes(x + b, static_cast<std::int8_t*>(plain.get_data_handle()) + b, e - b,
                            quant_.scale, quant_.zero_point);
        else
          quantize_u8_codes(x + b, static_cast<std::uint8_t*>(plain.get_data_handle()) + b, e - b,
                            quant_.scale, quant_.zero_point);
      });
      if (codes_reorder_) codes_reorder_.execute(cpu_stream(), plain_codes_, codes_);
    }
    if (residual_) residual_.set_data_handle(const_cast<void*>(in[3].raw()));
    dst_plain_.set_data_handle(out[0].raw());
    if (!dst_reorder_) dst_primitive_.set_data_handle(out[0].raw());
    prim_.execute(cpu_stream(), args_);
    if (dst_reorder_) dst_reorder_.execute(cpu_stream(), dst_primitive_, dst_plain_);
    cpu_stream().wait();
  }

 private:
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
  CodeGrid quant_;
  bool input_is_codes_;
  memory codes_, plain_codes_, dst_plain_, dst_primitive_, zero_point_;
  memory residual_;  // the fused residual Add's operand, bound to input 3 at each run
  dnnl::reorder codes_reorder_, dst_reorder_;
};

// oneDNN on x86 CPUs without VNNI stores int8 weights halved (memory-descriptor flag
// scale_adjust = 0.5), so that the 16-bit pair sums of vpmaddubsw cannot saturate, and
// undoes the factor after accumulation. Halving an odd code would lose its last bit, so
// weights must fit 7 bits there (|code| <= 63) and are handed over doubled: the stored
// value is then the code itself and the integer sum is exact. The kernel list
// (executor/kernel_list.cpp) declines 8-bit weights on such CPUs; the check below is the
// kernel's own, on the descriptor oneDNN actually chose.
float weights_scale_adjust(const memory::desc& md) {
  const auto& extra = md.data.extra;
  return (extra.flags & dnnl_memory_extra_flag_scale_adjust) ? extra.scale_adjust : 1.f;
}

Tensor codes_for_adjust(const OpContext& ctx, const Tensor& codes, float adjust) {
  if (adjust == 1.f) return codes;
  Tensor out = codes.clone();
  for (std::int8_t& c : std::span(out.data<std::int8_t>(), static_cast<std::size_t>(out.numel()))) {
    if (c < -63 || c > 63)
      ctx.unsupported(
          "this CPU has no VNNI, so oneDNN's int8 kernels halve the weights (scale_adjust {}); the "
          "8-bit weight code {} would lose its last bit. Quantize this layer's weights to int7 for "
          "exact integer execution here",
          adjust, c);
    c = static_cast<std::int8_t>(static_cast<float>(c) / adjust);
  }
  return out;
}

// oneDNN 2.x int8 convolutions and matmuls add the bias to the int32 accumulator before
// the output scales (dst = scale * (acc + bias)), so the float bias goes in divided by each
// output channel's scale s_x s_w[c].
Tensor bias_before_scales(const Tensor& bias, const std::vector<float>& scales) {
  Tensor out = bias.clone();
  float* b = out.data<float>();
  for (std::int64_t c = 0; c < out.numel(); ++c)
    b[c] /= scales[scales.size() == 1 ? 0 : static_cast<std::size_t>(c)];
  return out;
}

// Output scales, the run-time source zero point and the fused epilogue (whose constant
// operands go to `args`); for chained readers, then y / s_y + zp_y, which the conversion to
// the 8-bit destination rounds half to even and saturates.
dnnl::primitive_attr int8_attr(const OpContext& ctx, const Int8Io& io,
                               const std::vector<float>& scales, int channel_mask,
                               std::size_t dst_rank, std::unordered_map<int, memory>& args) {
  dnnl::primitive_attr attr;
  attr.set_output_scales(scales.size() == 1 ? 0 : channel_mask, scales);
  attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  dnnl::post_ops post_ops;
  append_fused_epilogue(ctx, dst_rank, post_ops, args);
  if (!io.residual_md.is_zero()) {
    // Int8Kernel::run binds the residual tensor (input 3) to this operand.
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_ops.len()) | DNNL_ARG_SRC_1] =
        memory(io.residual_md, cpu_engine(), DNNL_MEMORY_NONE);
    post_ops.append_binary(dnnl::algorithm::binary_add, io.residual_md);
    if (io.residual_relu) post_ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  }
  if (io.out_codes) {
    append_scalar_binary(dnnl::algorithm::binary_div, io.out_codes->scale, dst_rank, post_ops,
                         args);
    if (io.out_codes->zero_point != 0.f)
      append_scalar_binary(dnnl::algorithm::binary_add, io.out_codes->zero_point, dst_rank,
                           post_ops, args);
  }
  attr.set_post_ops(post_ops);
  return attr;
}

// Creates the primitive descriptor with `make_pd(scales)`, learns whether oneDNN halves the
// weights on this CPU, and if so recreates it with scales that undo the halving (see
// codes_for_adjust). Returns it with the weights and bias bound as constants.
template <typename MakePd>
auto int8_primitive(const OpContext& ctx, const Int8Io& io, const std::vector<float>& scales,
                    const memory::desc& weights_plain, const memory::desc& bias_md,
                    std::size_t dst_rank, MakePd make_pd) {
  std::unordered_map<int, memory> args;
  auto pd = make_pd(int8_attr(ctx, io, scales, 1 << 1, dst_rank, args));
  const float adjust = weights_scale_adjust(pd.weights_desc());
  if (adjust != 1.f) {
    std::vector<float> adjusted = scales;
    for (float& v : adjusted) v *= adjust;
    args.clear();
    pd = make_pd(int8_attr(ctx, io, adjusted, 1 << 1, dst_rank, args));
  }
  args[DNNL_ARG_WEIGHTS] = reorder_constant(codes_for_adjust(ctx, *ctx.input(1).constant, adjust),
                                            weights_plain, pd.weights_desc());
  if (ctx.has_input(2))
    args[DNNL_ARG_BIAS] =
        reorder_constant(bias_before_scales(*ctx.input(2).constant, scales), bias_md, bias_md);
  return std::make_pair(pd, std::move(args));
}

OpBuild build_int8_conv(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  require_int8_weights(ctx, 1);
  const ValueMeta& w = ctx.input(1);
  Int8Io io = int8_io(ctx);
  const std::size_t rank = x.dims.size();
  if (rank < 3 || rank > 5 || w.dims.size() != rank)
    ctx.unsupported("input {} and weights {}: int8 convolutions take 1-D to 3-D inputs",
                    to_string(x.dims), to_string(w.dims));
  const std::int64_t group = ctx.node().attr_int("group", 1);
  const std::int64_t c_in = x.dims[1], c_out = w.dims[0];
  if (group < 1 || c_in % group || c_out % group || checked_mul(w.dims[1], group) != c_in)
    ctx.invalid("weights {} do not match {} input channels with group {}", to_string(w.dims), c_in,
                group);
  const Dims spatial(x.dims.begin() + 2, x.dims.end()), kernel(w.dims.begin() + 2, w.dims.end());
  const WindowGeometry g = resolve_window(ctx, spatial, kernel, false);
  Dims out_dims{x.dims[0], c_out};
  out_dims.insert(out_dims.end(), g.output.begin(), g.output.end());
  // Before any oneDNN descriptor: oneDNN multiplies these sizes without overflow checks.
  check_output_size(ctx, out_dims);
  const std::int64_t macs = mac_count(ctx, {product(out_dims), product(kernel), c_in / group});
  Dims wdims = group > 1 ? Dims{group, c_out / group, c_in / group} : Dims{c_out, c_in};
  wdims.insert(wdims.end(), kernel.begin(), kernel.end());
  Dims dil = g.dilations;
  for (auto& d : dil) d -= 1;

  // Channels-last codes: what oneDNN's integer convolutions are built for.
  const tag channels_last = rank == 3 ? tag::nwc : rank == 4 ? tag::nhwc : tag::ndhwc;
  if (ctx.has_input(3)) {
    const ValueMeta& residual = ctx.input(3);
    if (residual.dtype != DType::f32 || residual.dims != out_dims ||
        !io.float_output_channels_last || io.out_codes)
      ctx.invalid(
          "the fused residual {} {} must be float32 of the output's dims {}, with a "
          "channels-last float output",
          dtype_name(residual.dtype), to_string(residual.dims), to_string(out_dims));
    io.residual_md = memory::desc(to_dnnl(out_dims), memory::data_type::f32, channels_last);
  }
  const memory::desc src_md(to_dnnl(x.dims), io.input.type(), channels_last);
  const memory::desc w_any(to_dnnl(wdims), memory::data_type::s8, tag::any);
  const memory::desc dst_md =
      io.out_codes ? memory::desc(to_dnnl(out_dims), io.out_codes->type(), channels_last)
      : io.float_output_channels_last
          ? memory::desc(to_dnnl(out_dims), memory::data_type::f32, channels_last)
          : memory::desc(to_dnnl(out_dims), memory::data_type::f32, tag::any);
  const bool has_bias = ctx.has_input(2);
  if (has_bias && !ctx.input(2).constant)
    ctx.unsupported("the bias must be constant for int8 execution");
  const memory::desc bias_md = has_bias ? plain_desc({c_out}) : memory::desc();
  const std::vector<float> scales = output_scales(ctx, io.input.scale, c_out);
  auto [pd, args] = int8_primitive(
      ctx, io, scales, plain_desc(wdims, memory::data_type::s8), bias_md, out_dims.size(),
      [&](const dnnl::primitive_attr& attr) {
        return create_or_explain(ctx, "int8 convolution", [&] {
          dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                            dnnl::algorithm::convolution_direct, src_md, w_any,
                                            bias_md, dst_md, to_dnnl(g.strides), to_dnnl(dil),
                                            to_dnnl(g.pads_begin), to_dnnl(g.pads_end));
          return dnnl::convolution_forward::primitive_desc(d, attr, cpu_engine());
        });
      });
  // Float outputs go back to plain NCHW unless kept channels-last; chained codes stay
  // channels-last.
  const memory::desc dst_plain =
      io.out_codes || io.float_output_channels_last ? dst_md : plain_desc(out_dims);
  memory dst_primitive = pd.dst_desc() == dst_plain
                             ? memory(dst_plain, cpu_engine(), DNNL_MEMORY_NONE)
                             : memory(pd.dst_desc(), cpu_engine());
  OpBuild b;
  b.outputs.push_back({io.out_codes ? io.out_codes->dtype() : DType::f32, out_dims, {}});
  b.kernel = std::make_unique<Int8Kernel>(
      dnnl::convolution_forward(pd), std::move(args), io,
      io.input_is_codes ? memory(src_md, cpu_engine(), DNNL_MEMORY_NONE)
                        : memory(src_md, cpu_engine()),
      memory(dst_plain, cpu_engine(), DNNL_MEMORY_NONE), dst_primitive);
  b.macs = macs;
  return b;
}

// Weights are codes [K, N] (Gemm with transB is converted when the plan is applied).
OpBuild build_int8_matmul(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  require_int8_weights(ctx, 1);
  const ValueMeta& w = ctx.input(1);
  const Int8Io io = int8_io(ctx);
  if (x.dims.size() < 2 || w.dims.size() != 2 || x.dims.back() != w.dims[0] || w.dims[0] == 0)
    ctx.invalid("input {} and weights {} must be [..., K] x [K, N] with K >= 1", to_string(x.dims),
                to_string(w.dims));
  const std::int64_t k = w.dims[0], n = w.dims[1], m = product(x.dims) / k;
  check_output_size(ctx, {m, n});  // before any oneDNN descriptor
  const std::int64_t macs = mac_count(ctx, {m, n, k});
  const memory::desc src_md = plain_desc({m, k}, io.input.type());
  const memory::desc w_any({k, n}, memory::data_type::s8, tag::any);
  const memory::desc dst_md =
      plain_desc({m, n}, io.out_codes ? io.out_codes->type() : memory::data_type::f32);
  const bool has_bias = ctx.has_input(2);
  if (has_bias && (!ctx.input(2).constant || product(ctx.input(2).dims) != n))
    ctx.unsupported("the bias must be a constant of {} values for int8 execution", n);
  const memory::desc bias_md = has_bias ? plain_desc({1, n}) : memory::desc();
  const std::vector<float> scales = output_scales(ctx, io.input.scale, n);
  auto [pd, args] = int8_primitive(ctx, io, scales, plain_desc({k, n}, memory::data_type::s8),
                                   bias_md, 2, [&](const dnnl::primitive_attr& attr) {
                                     return create_or_explain(ctx, "int8 matmul", [&] {
                                       return dnnl::matmul::primitive_desc(
                                           dnnl::matmul::desc(src_md, w_any, bias_md, dst_md), attr,
                                           cpu_engine());
                                     });
                                   });
  Dims out_dims = x.dims;
  out_dims.back() = n;
  memory dst(dst_md, cpu_engine(), DNNL_MEMORY_NONE);
  OpBuild b;
  b.outputs.push_back({io.out_codes ? io.out_codes->dtype() : DType::f32, out_dims, {}});
  b.kernel = std::make_unique<Int8Kernel>(dnnl::matmul(pd), std::move(args), io,
                                          io.input_is_codes
                                              ? memory(src_md, cpu_engine(), DNNL_MEMORY_NONE)
                                              : memory(src_md, cpu_engine()),
                                          dst, dst);
  b.macs = macs;
  return b;
}

// A float tensor kept channels-last between integer convolutions, back to plain NCHW for a
// reader that needs it (keep_channels_last, executor/quant/simulate.hpp). Dims are logical.
OpBuild build_channels_last_to_plain(const OpContext& ctx) {
  const ValueMeta& x = ctx.input(0);
  const std::size_t rank = x.dims.size();
  if (x.dtype != DType::f32 || rank < 3 || rank > 5)
    ctx.invalid("input {} {} is not a float32 1-D to 3-D feature map", dtype_name(x.dtype),
                to_string(x.dims));
  const tag channels_last = rank == 3 ? tag::nwc : rank == 4 ? tag::nhwc : tag::ndhwc;
  memory src({to_dnnl(x.dims), memory::data_type::f32, channels_last}, cpu_engine(),
             DNNL_MEMORY_NONE);
  memory dst(plain_desc(x.dims), cpu_engine(), DNNL_MEMORY_NONE);
  OpBuild b;
  b.outputs.push_back({DType::f32, x.dims, {}});
  b.kernel = make_kernel([src, dst, reorder = dnnl::reorder(src, dst)](
                             std::span<const Tensor> in, std::span<Tensor> out) mutable {
    src.set_data_handle(const_cast<void*>(in[0].raw()));
    dst.set_data_handle(out[0].raw());
    reorder.execute(cpu_stream(), src, dst);
    cpu_stream().wait();
  });
  return b;
}

}  // namespace

void register_int8_ops(OpRegistry& r) {
  r.add("bitplan::Int8Conv", build_int8_conv);
  r.add("bitplan::Int8MatMul", build_int8_matmul);
  r.add("bitplan::ChannelsLastToPlain", build_channels_last_to_plain);
}

}  // namespace bitplan
