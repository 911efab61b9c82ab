// bitplan's own low-bit Gemm/MatMul ops on the kernels of executor/kernels/, written by
// QuantSimulator::build_int8 in place of a layer's float node. Both take the inputs
//   0 x [..., K] float32
//   1 codes [K, N] int8: the 4-bit container values (code + 8 for signed grids)
//   2 bias [N] (optional, "" when absent)
//   3 scales [G, N] float32, 4 offsets [G, N] float32 (offset = zero point + 8 or + 0)
// attribute group (weights per scale along K), and the epilogue attributes the float kernels
// read (bitplan_activation, bitplan_clip_*, bitplan_output_*):
//   bitplan::W4A32MatMul: <= 4-bit integer weights, float activations (w4a32.hpp);
//   bitplan::W4A8MatMul: the same weights, activations quantized per token to uint8 at run
//     time (w4a8.hpp);
//   bitplan::W3A8MatMul: 3-bit weights (codes and offsets in [0, 7]: code = q - qmin),
//     activations as W4A8's (w3a8.hpp);
//   bitplan::W2A8MatMul: 2-bit weights (codes and offsets in [0, 3]: code = q - qmin),
//     activations as W4A8's (w2a8.hpp);
//   bitplan::W8A8MatMul: signed <= 8-bit weights (codes = q, offsets = zero points, in
//     [-128, 127]), activations as W4A8's (w8a8.hpp).
// The weights are packed here, at plan build, for the kernel ISA of this CPU
// (kernels::cpu_isa()), and the per-token kernels' activation buffer is made here for the layer's
// rows; run only computes. Plans built from the same weight tensors share one packing
// (shared_packing below).
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <typeindex>

#include "executor/kernels/w2a8.hpp"
#include "executor/kernels/w3a8.hpp"
#include "executor/kernels/w4a32.hpp"
#include "executor/kernels/w4a8.hpp"
#include "executor/kernels/w8a8.hpp"
#include "executor/op_registry.hpp"

namespace bitplan {
namespace {

// What both ops read from the node: the weights as the quantizer defines them, the bias and
// the epilogue, and the shapes.
struct LowbitGemm {
  kernels::W4a32Source source;
  std::array<Tensor, 3> weights;  // codes, scales, offsets: the handles `source` points into
  std::shared_ptr<std::vector<float>> bias;  // null when absent
  kernels::GemmEpilogue epilogue;            // bias pointer set at run (the vector above)
  std::int64_t m = 0, k = 0, n = 0;
  Dims out_dims;
};

LowbitGemm read_lowbit_gemm(const OpContext& ctx) {
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
  LowbitGemm out;
  out.k = codes.dim(0);
  out.n = codes.dim(1);
  const std::int64_t k = out.k, n = out.n;
  const std::int64_t group = node.attr_int("group", 0);
  if (group <= 0) ctx.invalid("group {} must be positive", group);
  const std::int64_t groups = (k + std::min(group, k) - 1) / std::min(group, k);
  const Tensor& scales = ctx.constant_input(3, "weight scales");
  const Tensor& offsets = ctx.constant_input(4, "weight offsets");
  for (const Tensor* t : {&scales, &offsets})
    if (t->dtype() != DType::f32 || t->numel() != groups * n)
      ctx.invalid("weight scales and offsets must be float32 [{}, {}]; one is {} {}", groups, n,
                  dtype_name(t->dtype()), to_string(t->dims()));
  out.source = kernels::W4a32Source{
      k, n, group, codes.data<std::int8_t>(), n, 1, scales.data<float>(), offsets.data<float>()};
  out.weights = {codes, scales, offsets};

  kernels::GemmEpilogue& epilogue = out.epilogue;
  if (ctx.has_input(2)) {
    const Tensor& b = ctx.constant_input(2, "bias");
    if (b.dtype() != DType::f32 || b.numel() != n)
      ctx.unsupported("the bias must be a constant of {} float32 values", n);
    out.bias =
        std::make_shared<std::vector<float>>(b.values<float>().begin(), b.values<float>().end());
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
  out.m = product(x.dims) / k;
  out.out_dims = x.dims;
  out.out_dims.back() = n;
  return out;
}

// The packing of `g`'s weights by `pack` for this CPU's kernel ISA, shared by every plan built
// from the same weight tensors. A search builds a plan per candidate, and its low-bit layers
// read the tensors QuantSimulator::lowbit_weights made once per (layer, spec); packing them
// again per plan took 1.7 s of each SmolLM2 candidate. Entries are keyed by the tensors'
// buffers, which they watch weakly: an entry lives as long as its weight tensors (the
// simulator's, for a search: plans come and go between candidates), and a buffer still alive
// holds the same data (initializers are never written after they are made). Weights whose
// buffers are owned elsewhere (views) are packed per plan.
template <class Packed>
std::shared_ptr<const Packed> shared_packing(const LowbitGemm& g,
                                             Packed (*pack)(const kernels::W4a32Source&,
                                                            kernels::Isa)) {
  const kernels::Isa isa = kernels::cpu_isa();
  using Key = std::tuple<std::type_index, int, const void*, const void*, const void*, std::int64_t,
                         std::int64_t, std::int64_t>;
  struct Entry {
    std::array<std::weak_ptr<void>, 3> buffers;
    std::shared_ptr<const void> packed;
    bool alive() const {
      return !buffers[0].expired() && !buffers[1].expired() && !buffers[2].expired();
    }
  };
  static std::mutex mutex;
  static std::map<Key, Entry> cache;
  const Key key{typeid(Packed),     static_cast<int>(isa), g.weights[0].raw(),
                g.weights[1].raw(), g.weights[2].raw(),    g.source.k,
                g.source.n,         g.source.group};
  const std::array<std::weak_ptr<void>, 3> buffers = {
      g.weights[0].buffer_owner(), g.weights[1].buffer_owner(), g.weights[2].buffer_owner()};
  const bool owned = !buffers[0].expired() && !buffers[1].expired() && !buffers[2].expired();
  if (!owned) return std::make_shared<const Packed>(pack(g.source, isa));
  std::lock_guard lock(mutex);
  std::erase_if(cache, [](const auto& item) { return !item.second.alive(); });
  if (auto it = cache.find(key); it != cache.end()) {
    // Alive, so the key's addresses are these buffers' own (a live buffer is not reused).
    bool same = true;
    for (std::size_t i = 0; i < 3; ++i)
      same = same && !it->second.buffers[i].owner_before(buffers[i]) &&
             !buffers[i].owner_before(it->second.buffers[i]);
    if (same) return std::static_pointer_cast<const Packed>(it->second.packed);
  }
  auto packed = std::make_shared<const Packed>(pack(g.source, isa));
  cache[key] = Entry{buffers, packed};
  return packed;
}

OpBuild build_w4a32_matmul(const OpContext& ctx) {
  const LowbitGemm g = read_lowbit_gemm(ctx);
  auto packed = shared_packing<kernels::PackedW4a32>(g, kernels::pack_w4a32);
  OpBuild b;
  b.outputs.push_back({DType::f32, g.out_dims, {}});
  b.macs = g.m * g.n * g.k;
  b.kernel = make_kernel([packed, bias = g.bias, epilogue = g.epilogue, m = g.m, k = g.k, n = g.n](
                             std::span<const Tensor> in, std::span<Tensor> out) mutable {
    epilogue.bias = bias ? bias->data() : nullptr;
    kernels::w4a32_gemm(*packed, in[0].data<float>(), m, k, out[0].data<float>(), n, epilogue);
  });
  return b;
}

// W4A8, W3A8, W2A8 and W8A8 (per_token.hpp): the weights packed by `pack`, and the quantized
// activations' buffer, once per plan: a plan runs one op at a time, so the kernel owns it.
template <class Packed>
OpBuild build_per_token_matmul(const OpContext& ctx,
                               Packed (*pack)(const kernels::W4a32Source&, kernels::Isa),
                               void (*gemm)(const Packed&, const float*, std::int64_t, std::int64_t,
                                            float*, std::int64_t, kernels::W4a8Activations&,
                                            const kernels::GemmEpilogue&)) {
  const LowbitGemm g = read_lowbit_gemm(ctx);
  auto packed = shared_packing<Packed>(g, pack);
  auto activations =
      std::make_shared<kernels::W4a8Activations>(kernels::make_w4a8_activations(*packed, g.m));
  OpBuild b;
  b.outputs.push_back({DType::f32, g.out_dims, {}});
  b.macs = g.m * g.n * g.k;
  b.kernel =
      make_kernel([packed, activations, gemm, bias = g.bias, epilogue = g.epilogue, m = g.m,
                   k = g.k, n = g.n](std::span<const Tensor> in, std::span<Tensor> out) mutable {
        epilogue.bias = bias ? bias->data() : nullptr;
        gemm(*packed, in[0].data<float>(), m, k, out[0].data<float>(), n, *activations, epilogue);
      });
  return b;
}

OpBuild build_w4a8_matmul(const OpContext& ctx) {
  return build_per_token_matmul<kernels::PackedW4a8>(ctx, kernels::pack_w4a8, kernels::w4a8_gemm);
}

OpBuild build_w3a8_matmul(const OpContext& ctx) {
  return build_per_token_matmul<kernels::PackedW3a8>(ctx, kernels::pack_w3a8, kernels::w3a8_gemm);
}

OpBuild build_w2a8_matmul(const OpContext& ctx) {
  return build_per_token_matmul<kernels::PackedW2a8>(ctx, kernels::pack_w2a8, kernels::w2a8_gemm);
}

OpBuild build_w8a8_matmul(const OpContext& ctx) {
  return build_per_token_matmul<kernels::PackedW8a8>(ctx, kernels::pack_w8a8, kernels::w8a8_gemm);
}

}  // namespace

void register_lowbit_ops(OpRegistry& r) {
  r.add("bitplan::W4A32MatMul", build_w4a32_matmul);
  r.add("bitplan::W4A8MatMul", build_w4a8_matmul);
  r.add("bitplan::W3A8MatMul", build_w3a8_matmul);
  r.add("bitplan::W2A8MatMul", build_w2a8_matmul);
  r.add("bitplan::W8A8MatMul", build_w8a8_matmul);
}

}  // namespace bitplan
