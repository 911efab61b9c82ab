// Conv, ConvTranspose, Gemm and MatMul through oneDNN primitives.
//
// Each kernel creates its primitive once at plan time for the plan's concrete shapes; when
// the weights are constant it lets oneDNN pick their layout ("any") and reorders them once
// into it, so the run only binds the activation pointers and executes. oneDNN (Debian's
// build) uses the OpenMP runtime; see core/parallel.hpp for how that shares the cores.
#include <dnnl.hpp>

#include <optional>
#include <unordered_map>

#include "executor/kernels/sgemm_packed.hpp"
#include "executor/op_registry.hpp"
#include "executor/ops/onednn_common.hpp"
#include "executor/ops/window.hpp"

namespace bitplan {
namespace {

using namespace onednn;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

// A primitive plus the argument slots the run binds. `bindings` maps an executor input (or
// -1 - output index) to a oneDNN argument; constant arguments are bound at plan time.
class DnnlKernel final : public Kernel {
 public:
  struct Binding {
    int arg;
    int tensor;  // >= 0: input index; < 0: output (-1 - index)
    memory mem;
  };
  DnnlKernel(dnnl::primitive prim, std::vector<Binding> bindings,
             std::unordered_map<int, memory> constants)
      : prim_(std::move(prim)), bindings_(std::move(bindings)), args_(std::move(constants)) {
    for (auto& b : bindings_) args_[b.arg] = b.mem;
  }
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    for (auto& b : bindings_) {
      void* ptr = b.tensor >= 0 ? const_cast<void*>(in[static_cast<std::size_t>(b.tensor)].raw())
                                : out[static_cast<std::size_t>(-1 - b.tensor)].raw();
      b.mem.set_data_handle(ptr);
    }
    prim_.execute(cpu_stream(), args_);
    cpu_stream().wait();
  }

 private:
  dnnl::primitive prim_;
  std::vector<Binding> bindings_;
  std::unordered_map<int, memory> args_;
};

// Runs a primitive whose src/dst oneDNN wants in a blocked layout (nChw16c...) on bitplan's
// plain activations: reorder in, compute, reorder out. The scratch tensors and reorder
// primitives are made once at plan time. For the channel counts of typical CNNs the direct
// JIT convolution on blocked data beats im2col+GEMM on plain data by far more than the two
// reorders cost.
class BlockedDnnlKernel final : public Kernel {
 public:
  // `runtime` binds arguments that arrive as inputs (weights or bias computed at run time).
  BlockedDnnlKernel(dnnl::primitive prim, std::unordered_map<int, memory> args, memory src_plain,
                    memory src_blocked, memory dst_plain, memory dst_blocked,
                    std::vector<DnnlKernel::Binding> runtime)
      : prim_(std::move(prim)),
        args_(std::move(args)),
        src_plain_(src_plain),
        src_blocked_(src_blocked),
        dst_plain_(dst_plain),
        dst_blocked_(dst_blocked),
        runtime_(std::move(runtime)) {
    if (src_plain_.get_desc() != src_blocked_.get_desc())
      src_reorder_ = dnnl::reorder(src_plain_, src_blocked_);
    if (dst_plain_.get_desc() != dst_blocked_.get_desc())
      dst_reorder_ = dnnl::reorder(dst_blocked_, dst_plain_);
    args_[DNNL_ARG_SRC] = src_reorder_ ? src_blocked_ : src_plain_;
    args_[DNNL_ARG_DST] = dst_reorder_ ? dst_blocked_ : dst_plain_;
    for (auto& b : runtime_) args_[b.arg] = b.mem;
  }
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    auto& stream = cpu_stream();
    src_plain_.set_data_handle(const_cast<void*>(in[0].raw()));
    dst_plain_.set_data_handle(out[0].raw());
    for (auto& b : runtime_)
      b.mem.set_data_handle(const_cast<void*>(in[static_cast<std::size_t>(b.tensor)].raw()));
    if (src_reorder_) src_reorder_.execute(stream, src_plain_, src_blocked_);
    prim_.execute(stream, args_);
    if (dst_reorder_) dst_reorder_.execute(stream, dst_blocked_, dst_plain_);
    stream.wait();
  }

 private:
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
  memory src_plain_, src_blocked_, dst_plain_, dst_blocked_;
  dnnl::reorder src_reorder_, dst_reorder_;
  std::vector<DnnlKernel::Binding> runtime_;
};

void require_f32(const OpContext& ctx, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (ctx.has_input(i) && ctx.input(i).dtype != DType::f32)
      ctx.unsupported(
          "input {} has type {}; the fp32 path takes float32 (quantized types come "
          "through the quantized executor)",
          i, dtype_name(ctx.input(i).dtype));
}

// ---------------------------------------------------------------- Conv / ConvTranspose

OpBuild build_conv(const OpContext& ctx, bool transposed) {
  require_f32(ctx, 3);
  const ValueMeta& x = ctx.input(0);
  const ValueMeta& w = ctx.input(1);
  const std::size_t rank = x.dims.size();
  if (rank < 3 || rank > 5 || w.dims.size() != rank)
    ctx.unsupported("input {} and weights {} must be 1-D, 2-D or 3-D convolutions of equal rank",
                    to_string(x.dims), to_string(w.dims));
  const std::int64_t group = ctx.node().attr_int("group", 1);
  const std::int64_t n = x.dims[0], c_in = x.dims[1];
  // Conv W: [C_out, C_in/group, k...]; ConvTranspose W: [C_in, C_out/group, k...]. `group`
  // comes from the model: -1 marks an overflowing product, refused below.
  const std::int64_t grouped = checked_mul(w.dims[1], group).value_or(-1);
  const std::int64_t c_out = transposed ? grouped : w.dims[0];
  if (group < 1 || grouped < 0 || c_in % group != 0 || c_out % group != 0 ||
      (transposed ? w.dims[0] != c_in : grouped != c_in))
    ctx.invalid("weights {} do not match {} input channels with group {}", to_string(w.dims), c_in,
                group);
  const Dims spatial(x.dims.begin() + 2, x.dims.end());
  const Dims kernel(w.dims.begin() + 2, w.dims.end());
  if (ctx.node().has_attr("kernel_shape") && ctx.node().attr_ints("kernel_shape") != kernel)
    ctx.invalid("kernel_shape {} disagrees with weights {}",
                to_string(ctx.node().attr_ints("kernel_shape")), to_string(w.dims));

  WindowGeometry g;
  Dims out_spatial(spatial.size());
  if (!transposed) {
    g = resolve_window(ctx, spatial, kernel, false);
    out_spatial = g.output;
  } else {
    const std::size_t nd = spatial.size();
    g.kernel = kernel;
    g.strides = ctx.node().attr_ints("strides", Dims(nd, 1));
    g.dilations = ctx.node().attr_ints("dilations", Dims(nd, 1));
    const Dims out_pad = ctx.node().attr_ints("output_padding", Dims(nd, 0));
    Dims pads = ctx.node().attr_ints("pads", Dims(2 * nd, 0));
    const Dims out_shape = ctx.node().attr_ints("output_shape");
    const std::string auto_pad = ctx.node().attr_string("auto_pad", "NOTSET");
    if (g.strides.size() != nd || g.dilations.size() != nd || out_pad.size() != nd ||
        pads.size() != 2 * nd || (!out_shape.empty() && out_shape.size() < nd))
      ctx.invalid(
          "strides {}, dilations {}, output_padding {}, pads {} and output_shape {} must have "
          "{} (pads {}) entries for a {}-d input",
          to_string(g.strides), to_string(g.dilations), to_string(out_pad), to_string(pads),
          to_string(out_shape), nd, 2 * nd, nd);
    for (std::size_t i = 0; i < nd; ++i)
      if (kernel[i] < 1 || g.strides[i] < 1 || g.dilations[i] < 1 || out_pad[i] < 0 ||
          pads[i] < 0 || pads[i + nd] < 0 ||
          (!out_shape.empty() && out_shape[out_shape.size() - nd + i] < 1))
        ctx.invalid(
            "kernel {}, strides {}, dilations {} and output_shape {} must be >= 1, "
            "output_padding {} and pads {} >= 0",
            to_string(kernel), to_string(g.strides), to_string(g.dilations), to_string(out_shape),
            to_string(out_pad), to_string(pads));
    // The attributes come from the model: every step is checked for overflow.
    const CheckedSizes sizes([&] {
      ctx.invalid(
          "strides {}, dilations {}, output_padding {} on input {}: the output size "
          "overflows 64 bits",
          to_string(g.strides), to_string(g.dilations), to_string(out_pad), to_string(x.dims));
    });
    g.pads_begin.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(nd));
    g.pads_end.assign(pads.begin() + static_cast<std::ptrdiff_t>(nd), pads.end());
    for (std::size_t i = 0; i < nd; ++i) {
      const std::int64_t span = sizes.add(sizes.mul(kernel[i] - 1, g.dilations[i]), 1);
      const std::int64_t full =
          sizes.add(sizes.add(sizes.mul(g.strides[i], spatial[i] - 1), out_pad[i]), span);
      if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        const std::int64_t target = !out_shape.empty() ? out_shape[out_shape.size() - nd + i]
                                                       : sizes.mul(spatial[i], g.strides[i]);
        // A negative total (output_shape larger than the natural size) extends the end,
        // like output_padding does.
        const std::int64_t total = full - target;
        // ONNX: SAME_UPPER puts the smaller half first, otherwise the larger half first.
        g.pads_begin[i] = total < 0 ? 0 : auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
        g.pads_end[i] = total - g.pads_begin[i];
      }
      out_spatial[i] = full - g.pads_begin[i] - g.pads_end[i];
      if (out_spatial[i] < 1)
        ctx.invalid("pads {} leave no output of input size {}", to_string(pads), spatial[i]);
      // oneDNN has no output_padding: the extra rows are end padding taken back.
      g.pads_end[i] -= out_pad[i];
    }
  }
  Dims out_dims{n, c_out};
  out_dims.insert(out_dims.end(), out_spatial.begin(), out_spatial.end());
  // Before any oneDNN descriptor: oneDNN multiplies these sizes without overflow checks.
  check_output_size(ctx, out_dims);
  const std::int64_t macs =
      transposed ? mac_count(ctx, {product(x.dims), product(kernel), c_out / group})
                 : mac_count(ctx, {product(out_dims), product(kernel), c_in / group});

  // oneDNN weights: [G, O/G, I/G, k...] when grouped. ONNX's ConvTranspose stores I before O,
  // which is oneDNN's "io" order (iohw / giohw...).
  Dims wdims;
  if (group > 1)
    wdims = {group, c_out / group, c_in / group};
  else
    wdims = {c_out, c_in};
  wdims.insert(wdims.end(), kernel.begin(), kernel.end());
  memory::desc w_plain;
  if (!transposed) {
    w_plain = plain_desc(wdims);
  } else {
    // Strides of the ONNX layout [C_in (= G * I/G), O/G, k...] expressed in oneDNN's dims.
    const Dims ks = contiguous_strides(w.dims);  // strides of [C_in, O/G, k...]
    Dims s;
    if (group > 1)
      s = {(c_in / group) * ks[0], ks[1], ks[0]};
    else
      s = {ks[1], ks[0]};
    for (std::size_t i = 2; i < w.dims.size(); ++i) s.push_back(ks[i]);
    w_plain = memory::desc(to_dnnl(wdims), memory::data_type::f32, to_dnnl(s));
  }
  const bool const_w = w.constant.has_value();
  // bf16 compute (a plan's real bf16 layer, QuantSimulator::build_int8): bf16 input and
  // weights, f32 accumulation and output. The weights are already bf16 values, so their
  // conversion is exact; the input's conversion rounds half to even, as the simulation does.
  const std::string compute = ctx.node().attr_string("bitplan_compute", "f32");
  if (compute != "f32" && compute != "bf16")
    ctx.invalid("bitplan_compute '{}' is not f32 or bf16", compute);
  if (compute == "bf16" && (!const_w || transposed))
    ctx.unsupported("bf16 compute takes a Conv with constant weights");
  const auto compute_type = compute == "bf16" ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc w_any =
      const_w ? memory::desc(to_dnnl(wdims), compute_type, tag::any) : w_plain;
  // Channels-last input and output (keep_channels_last with float convolutions, set by
  // PlanOptions::channels_last_convs): the tensor between two such convolutions stays NHWC,
  // which oneDNN's AVX2/AVX-512 direct, 1x1 and depthwise kernels read and write as fast as
  // their blocked layouts, so the reorders in and out disappear.
  const bool input_cl = ctx.node().attr_int("input_channels_last", 0) != 0;
  const bool output_cl = ctx.node().attr_int("output_channels_last", 0) != 0;
  if ((input_cl || output_cl) && (transposed || rank != 4 || compute != "f32"))
    ctx.invalid("channels-last activations take a float32 2-D Conv");
  // Only 2-D convolutions have an NHWC tag (oneDNN refuses it for other ranks).
  const auto nhwc = [rank](const Dims& dims) {
    return rank == 4 ? memory::desc(to_dnnl(dims), memory::data_type::f32, tag::nhwc)
                     : memory::desc();
  };
  const memory::desc nhwc_src = nhwc(x.dims), nhwc_dst = nhwc(out_dims);
  const memory::desc src_md = input_cl ? nhwc_src : plain_desc(x.dims);
  const memory::desc dst_md = output_cl ? nhwc_dst : plain_desc(out_dims);
  // Activations: let oneDNN choose (blocked) layouts; the kernel reorders at its edges.
  const memory::desc src_any(to_dnnl(x.dims), compute_type, tag::any);
  const memory::desc dst_any(to_dnnl(out_dims), memory::data_type::f32, tag::any);
  const bool has_bias = ctx.has_input(2);
  const memory::desc bias_md = has_bias ? plain_desc({c_out}) : memory::desc();
  Dims dil = g.dilations;
  for (auto& d : dil) d -= 1;  // oneDNN counts dilation from 0

  std::unordered_map<int, memory> constants;
  std::vector<DnnlKernel::Binding> runtime;
  dnnl::post_ops post_ops;
  append_fused_epilogue(ctx, out_dims.size(), post_ops, constants);
  // A residual Add (input 3) and the ReLU after it, fused by keep_channels_last:
  // dst = relu(epilogue(conv(x)) + residual), in the operations of the separate ops.
  if (ctx.has_input(3)) {
    const ValueMeta& residual = ctx.input(3);
    if (residual.dtype != DType::f32 || residual.dims != out_dims || !output_cl)
      ctx.invalid(
          "the fused residual {} {} must be float32 of the output's dims {}, with a "
          "channels-last output",
          dtype_name(residual.dtype), to_string(residual.dims), to_string(out_dims));
    runtime.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_ops.len()) | DNNL_ARG_SRC_1, 3,
                       memory(nhwc_dst, cpu_engine(), DNNL_MEMORY_NONE)});
    post_ops.append_binary(dnnl::algorithm::binary_add, nhwc_dst);
    if (ctx.node().attr_string("residual_activation", "") == "Relu")
      post_ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(post_ops);
  dnnl::primitive prim;
  memory::desc w_final, src_final, dst_final;
  create_or_explain(ctx, transposed ? "deconvolution" : "convolution", [&] {
    if (!transposed) {
      auto make = [&](const memory::desc& src, const memory::desc& dst) {
        dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                          dnnl::algorithm::convolution_direct, src, w_any, bias_md,
                                          dst, to_dnnl(g.strides), to_dnnl(dil),
                                          to_dnnl(g.pads_begin), to_dnnl(g.pads_end));
        return dnnl::convolution_forward::primitive_desc(d, attr, cpu_engine());
      };
      // Channels-last sides are asked for as such, the other side NHWC too where oneDNN
      // takes it (one reorder at the plain side instead of two), else its own choice; where
      // oneDNN has only its reference kernel (or none) for these, the blocked layouts it
      // picks and the reorders win.
      std::vector<std::pair<memory::desc, memory::desc>> layouts;
      if (input_cl || output_cl) layouts.emplace_back(nhwc_src, nhwc_dst);
      if (input_cl && !output_cl) layouts.emplace_back(nhwc_src, dst_any);
      if (output_cl && !input_cl) layouts.emplace_back(src_any, nhwc_dst);
      std::optional<dnnl::convolution_forward::primitive_desc> pd;
      for (const auto& [src, dst] : layouts) {
        try {
          pd = make(src, dst);
          if (std::string(pd->impl_info_str()).rfind("ref", 0) != 0) break;
        } catch (const dnnl::error&) {
        }
        pd.reset();
      }
      if (!pd) pd = make(src_any, dst_any);
      w_final = pd->weights_desc();
      src_final = pd->src_desc();
      dst_final = pd->dst_desc();
      prim = dnnl::convolution_forward(*pd);
    } else {
      dnnl::deconvolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                          dnnl::algorithm::deconvolution_direct, src_any, w_any,
                                          bias_md, dst_any, to_dnnl(g.strides), to_dnnl(dil),
                                          to_dnnl(g.pads_begin), to_dnnl(g.pads_end));
      dnnl::deconvolution_forward::primitive_desc pd(d, attr, cpu_engine());
      w_final = pd.weights_desc();
      src_final = pd.src_desc();
      dst_final = pd.dst_desc();
      prim = dnnl::deconvolution_forward(pd);
    }
    return 0;
  });
  if (const_w) constants[DNNL_ARG_WEIGHTS] = reorder_constant(*w.constant, w_plain, w_final);
  if (has_bias) {
    if (ctx.input(2).constant)
      constants[DNNL_ARG_BIAS] = reorder_constant(*ctx.input(2).constant, bias_md, bias_md);
    else
      runtime.push_back({DNNL_ARG_BIAS, 2, memory(bias_md, cpu_engine(), DNNL_MEMORY_NONE)});
  }
  memory src_plain(src_md, cpu_engine(), DNNL_MEMORY_NONE),
      dst_plain(dst_md, cpu_engine(), DNNL_MEMORY_NONE);
  memory src_blocked = src_final == src_md ? src_plain : memory(src_final, cpu_engine());
  memory dst_blocked = dst_final == dst_md ? dst_plain : memory(dst_final, cpu_engine());
  // Non-constant weights arrive in ONNX layout: only valid when oneDNN accepted it as is.
  if (!const_w && w_final != w_plain)
    ctx.unsupported("weights computed at run time need a reorder; Conv weights are initializers");
  if (!const_w)
    runtime.push_back({DNNL_ARG_WEIGHTS, 1, memory(w_plain, cpu_engine(), DNNL_MEMORY_NONE)});
  OpBuild b;
  b.outputs.push_back({DType::f32, out_dims, {}});
  b.kernel =
      std::make_unique<BlockedDnnlKernel>(std::move(prim), std::move(constants), src_plain,
                                          src_blocked, dst_plain, dst_blocked, std::move(runtime));
  b.macs = macs;
  return b;
}

// ---------------------------------------------------------------- Gemm / MatMul

// C = alpha * A x B (+ binary post-op / bias), A [..., M, K], B [..., K, N], given as
// oneDNN memory descriptors that may carry transposing strides.
struct MatmulSpec {
  memory::desc a, b, c;
  memory::desc bias;    // {1, N} bias argument (fast path) or empty
  memory::desc addend;  // binary-add post-op operand or empty
  float alpha = 1.f;
  float post_scale = 1.f;  // applied after the addend (see Gemm's beta)
  int a_input = 0, b_input = 1, addend_input = -1, bias_input = -1;
  std::optional<Tensor> addend_value;  // when constant (pre-scaled by beta)
  bool a_transposed = false;           // Gemm transA
  bool b_transposed = false;           // Gemm transB: B stored [N, K]
};

// bitplan's packed-B SGEMM for a MatMul/Gemm with a constant B (sgemm_packed.hpp): A's rows
// (all of A's leading dims flattened) times B packed at plan build, alpha and the bias in the
// microkernel's last step, a fused Gelu as one oneDNN eltwise pass over C in place.
class PackedSgemmKernel final : public Kernel {
 public:
  PackedSgemmKernel(kernels::PackedSgemmB b, std::int64_t m, float alpha, std::vector<float> bias,
                    std::unique_ptr<Kernel> activation)
      : b_(std::move(b)),
        m_(m),
        alpha_(alpha),
        bias_(std::move(bias)),
        activation_(std::move(activation)) {}
  void run(std::span<const Tensor> in, std::span<Tensor> out) override {
    float* c = out[0].data<float>();
    kernels::sgemm_packed(b_, in[0].data<float>(), m_, b_.k, c, b_.n, alpha_,
                          bias_.empty() ? nullptr : bias_.data());
    if (activation_) activation_->run(std::span<const Tensor>(out.data(), 1), out);
  }

 private:
  kernels::PackedSgemmB b_;
  std::int64_t m_;
  float alpha_;
  std::vector<float> bias_;
  std::unique_ptr<Kernel> activation_;
};

// Whether the fp32 GEMM selection (PlanOptions::fp32_gemm, automatic) gives an [M, K] x
// [K, N] product with constant B to the packed kernel rather than oneDNN's matmul: for
// kMinRows <= M <= kMaxRows on a CPU with the AVX2 kernel or wider. Measured on the 2-vCPU
// AMD EPYC (AVX2), 2 threads, under other jobs' load (docs/performance.md, "Packed-B
// SGEMM"): with bench/bench_sgemm at M = 128 (the zoo transformers at batch 1, sequence
// 128), the packed kernel took 0.6-0.8x oneDNN's time where N >= 1536 (oneDNN 2.6's gemm
// copies B into its blocks on every call; SmolLM2's lm_head, [128 x 576] x [576 x 49152],
// 0.2-0.35x) and 0.9-1.1x elsewhere; at M = 1 and 32 (the CNN classifiers, GEMV-like: few
// rows' sums cannot hide the FMA latency) 1.15-1.8x. Whole models with bench_fp32
// --fp32-gemm: SmolLM2 at batch 4 (M = 512) ran 5-8 % slower with the packed kernel.
// AVX2 only: on a Sapphire Rapids Xeon (AVX-512, 2 threads, bench/run_packed.sh's sgemm
// stage, 2026-12-07) the AVX-512 kernel took 0.97-1.24x oneDNN's time on the same M = 128
// shapes (1.04x on the lm_head): oneDNN 2.6's AVX-512 gemm keeps up there.
constexpr std::int64_t kMinRows = 64, kMaxRows = 256;

bool packed_sgemm_pays(std::int64_t m, std::int64_t /*k*/, std::int64_t /*n*/) {
  return kernels::cpu_isa() == kernels::Isa::avx2 && m >= kMinRows && m <= kMaxRows;
}

// The packed kernel for this product, or nullopt when the node is not one it takes or the
// selection keeps oneDNN.
std::optional<OpBuild> packed_sgemm(const OpContext& ctx, const MatmulSpec& spec,
                                    const Dims& out_dims) {
  if (ctx.fp32_gemm() == Fp32Gemm::onednn) return std::nullopt;
  const ValueMeta& bmeta = ctx.input(static_cast<std::size_t>(spec.b_input));
  if (!bmeta.constant || spec.a_transposed || !spec.addend.is_zero() || spec.post_scale != 1.f)
    return std::nullopt;
  const Node& node = ctx.node();
  const std::string act = node.attr_string("bitplan_activation", "");
  if ((!act.empty() && act != "Gelu" && act != "GeluTanh") || node.has_attr("bitplan_output_scale"))
    return std::nullopt;
  // B must be one matrix: every batch dim 1.
  const memory::dims bd = spec.b.dims(), cd = spec.c.dims();
  const std::size_t rank = bd.size();
  for (std::size_t i = 0; i + 2 < rank; ++i)
    if (bd[i] != 1) return std::nullopt;
  const std::int64_t k = bd[rank - 2], n = bd[rank - 1];
  std::int64_t m = 1;
  for (std::size_t i = 0; i + 1 < cd.size(); ++i) m *= cd[i];
  if (k < 1 || n < 1 || m < 1) return std::nullopt;
  std::vector<float> bias;
  if (!spec.bias.is_zero()) {
    const ValueMeta& bias_meta = ctx.input(static_cast<std::size_t>(spec.bias_input));
    if (!bias_meta.constant || bias_meta.constant->numel() != n) return std::nullopt;
    const float* values = bias_meta.constant->data<float>();
    bias.assign(values, values + n);
  }
  if (ctx.fp32_gemm() == Fp32Gemm::automatic && !packed_sgemm_pays(m, k, n)) return std::nullopt;
  std::unique_ptr<Kernel> activation;
  if (!act.empty()) {
    activation = eltwise_kernel(m * n, act == "Gelu" ? dnnl::algorithm::eltwise_gelu_erf
                                                     : dnnl::algorithm::eltwise_gelu_tanh);
    if (!activation) return std::nullopt;
  }
  kernels::SgemmSource source;
  source.k = k;
  source.n = n;
  source.data = bmeta.constant->data<float>();
  source.stride_k = spec.b_transposed ? 1 : n;
  source.stride_n = spec.b_transposed ? k : 1;
  OpBuild b;
  b.outputs.push_back({DType::f32, out_dims, {}});
  b.kernel =
      std::make_unique<PackedSgemmKernel>(kernels::pack_sgemm_b(source, kernels::cpu_isa()), m,
                                          spec.alpha, std::move(bias), std::move(activation));
  return b;
}

OpBuild finish_matmul(const OpContext& ctx, MatmulSpec spec, const Dims& out_dims) {
  if (std::optional<OpBuild> packed = packed_sgemm(ctx, spec, out_dims)) return std::move(*packed);
  const ValueMeta& bmeta = ctx.input(static_cast<std::size_t>(spec.b_input));
  const bool const_b = bmeta.constant.has_value();
  const memory::desc b_any =
      const_b ? memory::desc(spec.b.dims(), memory::data_type::f32, tag::any) : spec.b;
  dnnl::primitive_attr attr;
  if (spec.alpha != 1.f) attr.set_output_scales(0, {spec.alpha});
  dnnl::post_ops po;
  if (!spec.addend.is_zero()) po.append_binary(dnnl::algorithm::binary_add, spec.addend);
  if (spec.post_scale != 1.f)
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, spec.post_scale, 0.f);
  std::unordered_map<int, memory> constants;
  append_fused_epilogue(ctx, static_cast<std::size_t>(spec.c.dims().size()), po, constants);
  attr.set_post_ops(po);
  dnnl::primitive prim;
  memory::desc b_final;
  create_or_explain(ctx, "matmul", [&] {
    dnnl::matmul::desc d(spec.a, b_any, spec.bias, spec.c);
    dnnl::matmul::primitive_desc pd(d, attr, cpu_engine());
    b_final = pd.weights_desc();
    prim = dnnl::matmul(pd);
    return 0;
  });
  std::vector<DnnlKernel::Binding> bindings;
  bindings.push_back({DNNL_ARG_SRC, spec.a_input, memory(spec.a, cpu_engine(), DNNL_MEMORY_NONE)});
  bindings.push_back({DNNL_ARG_DST, -1, memory(spec.c, cpu_engine(), DNNL_MEMORY_NONE)});
  if (const_b)
    constants[DNNL_ARG_WEIGHTS] = reorder_constant(*bmeta.constant, spec.b, b_final);
  else
    bindings.push_back(
        {DNNL_ARG_WEIGHTS, spec.b_input, memory(spec.b, cpu_engine(), DNNL_MEMORY_NONE)});
  if (!spec.bias.is_zero()) {
    const ValueMeta& bias = ctx.input(static_cast<std::size_t>(spec.bias_input));
    if (bias.constant)
      constants[DNNL_ARG_BIAS] = reorder_constant(*bias.constant, spec.bias, spec.bias);
    else
      bindings.push_back(
          {DNNL_ARG_BIAS, spec.bias_input, memory(spec.bias, cpu_engine(), DNNL_MEMORY_NONE)});
  }
  if (!spec.addend.is_zero()) {
    const int arg = DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1;
    if (spec.addend_value)
      constants[arg] = reorder_constant(*spec.addend_value, spec.addend, spec.addend);
    else
      bindings.push_back(
          {arg, spec.addend_input, memory(spec.addend, cpu_engine(), DNNL_MEMORY_NONE)});
  }
  OpBuild b;
  b.outputs.push_back({DType::f32, out_dims, {}});
  b.kernel =
      std::make_unique<DnnlKernel>(std::move(prim), std::move(bindings), std::move(constants));
  return b;
}

OpBuild build_gemm(const OpContext& ctx) {
  require_f32(ctx, 3);
  const ValueMeta& a = ctx.input(0);
  const ValueMeta& bm = ctx.input(1);
  if (a.dims.size() != 2 || bm.dims.size() != 2)
    ctx.invalid("A {} and B {} must be 2-D", to_string(a.dims), to_string(bm.dims));
  const bool ta = ctx.node().attr_int("transA", 0) != 0, tb = ctx.node().attr_int("transB", 0) != 0;
  const std::int64_t m = ta ? a.dims[1] : a.dims[0], k = ta ? a.dims[0] : a.dims[1];
  const std::int64_t n = tb ? bm.dims[0] : bm.dims[1], kb = tb ? bm.dims[1] : bm.dims[0];
  if (k != kb)
    ctx.invalid("A {} and B {} disagree on K ({} vs {}) with transA={} transB={}",
                to_string(a.dims), to_string(bm.dims), k, kb, ta, tb);
  // Before any oneDNN descriptor: oneDNN multiplies these sizes without overflow checks.
  check_output_size(ctx, {m, n});
  const std::int64_t macs = mac_count(ctx, {m, n, k});
  MatmulSpec spec;
  // A transposed is A^T stored row-major: logical [M, K] with strides {1, M}.
  spec.a =
      memory::desc({m, k}, memory::data_type::f32, ta ? memory::dims{1, m} : memory::dims{k, 1});
  spec.b =
      memory::desc({k, n}, memory::data_type::f32, tb ? memory::dims{1, k} : memory::dims{n, 1});
  spec.c = plain_desc({m, n});
  spec.a_transposed = ta;
  spec.b_transposed = tb;
  spec.alpha = ctx.node().attr_float("alpha", 1.f);
  const float beta = ctx.node().attr_float("beta", 1.f);
  if (ctx.has_input(2) && beta != 0.f) {
    const ValueMeta& c = ctx.input(2);
    // C broadcasts to [M, N] unidirectionally.
    Dims cd = c.dims;
    while (cd.size() < 2) cd.insert(cd.begin(), 1);
    if (cd.size() != 2 || (cd[0] != 1 && cd[0] != m) || (cd[1] != 1 && cd[1] != n))
      ctx.invalid("C {} cannot be broadcast to [{}, {}]", to_string(c.dims), m, n);
    if (cd[0] == 1 && cd[1] == n && beta == 1.f && spec.alpha == 1.f) {
      spec.bias = plain_desc({1, n});
      spec.bias_input = 2;
    } else {
      spec.addend = plain_desc(cd);
      if (beta != 1.f && !c.constant) {
        // alpha*AB + beta*C = beta * ((alpha/beta)*AB + C): scale, add C, then scale by beta.
        spec.post_scale = beta;
        spec.alpha /= beta;
      } else if (c.constant) {
        Tensor scaled = c.constant->clone();
        for (std::int64_t i = 0; i < scaled.numel(); ++i) scaled.data<float>()[i] *= beta;
        spec.addend_value = std::move(scaled);
      }
      spec.addend_input = 2;
    }
  }
  OpBuild b = finish_matmul(ctx, std::move(spec), {m, n});
  b.macs = macs;
  return b;
}

OpBuild build_matmul(const OpContext& ctx) {
  require_f32(ctx, 2);
  Dims ad = ctx.input(0).dims, bd = ctx.input(1).dims;
  if (ad.empty() || bd.empty()) ctx.invalid("inputs must have rank >= 1");
  // 1-D operands: A [K] -> [1, K], B [K] -> [K, 1]; the added dim is dropped afterwards.
  const bool a_vec = ad.size() == 1, b_vec = bd.size() == 1;
  if (a_vec) ad.insert(ad.begin(), 1);
  if (b_vec) bd.push_back(1);
  const std::size_t rank = std::max(ad.size(), bd.size());
  while (ad.size() < rank) ad.insert(ad.begin(), 1);
  while (bd.size() < rank) bd.insert(bd.begin(), 1);
  if (ad[rank - 1] != bd[rank - 2])
    ctx.invalid("A {} and B {} disagree on K", to_string(ctx.input(0).dims),
                to_string(ctx.input(1).dims));
  Dims cd(rank);
  for (std::size_t i = 0; i + 2 < rank; ++i) {
    if (ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1)
      ctx.invalid("batch dims of A {} and B {} cannot be broadcast", to_string(ctx.input(0).dims),
                  to_string(ctx.input(1).dims));
    cd[i] = std::max(ad[i], bd[i]);
  }
  cd[rank - 2] = ad[rank - 2];
  cd[rank - 1] = bd[rank - 1];
  check_output_size(ctx, cd);  // before any oneDNN descriptor, as for Gemm
  const std::int64_t macs = mac_count(ctx, {product(cd), ad[rank - 1]});
  MatmulSpec spec;
  spec.a = plain_desc(ad);
  spec.b = plain_desc(bd);
  spec.c = plain_desc(cd);
  // What fuse_matmul_epilogues (ir/passes.hpp) folded in: a scale, a bias of N values.
  spec.alpha = ctx.node().attr_float("bitplan_alpha", 1.f);
  if (ctx.node().attr_int("bitplan_fused_bias", 0) != 0) {
    const std::int64_t n = cd[rank - 1];
    if (!ctx.has_input(2) || ctx.input(2).dtype != DType::f32 || product(ctx.input(2).dims) != n ||
        b_vec)
      ctx.invalid("the fused bias must be {} float32 values for a matrix B", n);
    Dims bias_dims(rank, 1);
    bias_dims[rank - 1] = n;
    spec.bias = plain_desc(bias_dims);
    spec.bias_input = 2;
  }
  Dims out = cd;
  if (b_vec) out.pop_back();
  if (a_vec) out.erase(out.end() - (b_vec ? 1 : 2));
  OpBuild b = finish_matmul(ctx, std::move(spec), out);
  b.macs = macs;
  return b;
}

}  // namespace

void register_onednn_ops(OpRegistry& r) {
  r.add("Conv", [](const OpContext& ctx) { return build_conv(ctx, false); });
  r.add("ConvTranspose", [](const OpContext& ctx) { return build_conv(ctx, true); });
  r.add("Gemm", build_gemm);
  r.add("MatMul", build_matmul);
}

}  // namespace bitplan
