#include "executor/kernel_list.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <dnnl.hpp>
#include <vector>

#include "core/error.hpp"
#include "executor/kernels/isa.hpp"
#include "executor/quant/formats.hpp"

namespace bitplan {
namespace {

using Reason = std::optional<std::string>;

bool is(FormatId f, std::initializer_list<FormatId> any) {
  return std::find(any.begin(), any.end(), f) != any.end();
}

bool signed_symmetric_integer_up_to(const QuantSpec& w, int bits) {
  const FormatTraits& t = format_traits(w.format);
  return t.kind == FormatKind::integer && t.is_signed && t.bits <= bits && w.symmetric;
}

std::string onednn_version() {
  return fmt::format("{}.{}.{}", DNNL_VERSION_MAJOR, DNNL_VERSION_MINOR, DNNL_VERSION_PATCH);
}

// Why an int8 GEMM with per-channel (or per-tensor) output scales cannot take `weights`:
// any symmetric signed integer grid of at most 8 bits (int2 ... int8) has its codes in s8
// and is computed exactly; a scale per group of weights is not one scale per output.
// `scale_rule` names who takes one scale per channel ("oneDNN 2.6's integer kernels take").
Reason int8_weights_declined(const QuantSpec& weights, std::string_view scale_rule) {
  if (!signed_symmetric_integer_up_to(weights, 8))
    return fmt::format(
        "weights '{}' are not a symmetric signed integer grid of <= 8 bits (int2 ... int8)",
        to_string(weights));
  if (weights.granularity == Granularity::per_group)
    return fmt::format(
        "weights '{}' have a scale per group of {} weights: {} one scale per "
        "channel or per tensor",
        to_string(weights), weights.group_size, scale_rule);
  return std::nullopt;
}

// --- oneDNN (CPU) ----------------------------------------------------------------------------

bool takes_bf16(const LayerQuant& q) {
  return q.weights.format == FormatId::bf16 && q.activations.format == FormatId::bf16;
}

Reason onednn_bf16_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  if (!t.cpu.bf16)
    return fmt::format(
        "oneDNN {} has no bf16 convolution kernel for this CPU (ISA {}): its bf16 kernels need "
        "AVX-512 (avx512_core) or newer",
        onednn_version(), t.cpu.onednn_isa.empty() ? "unknown" : t.cpu.onednn_isa);
  if (layer.op_type != "Conv")
    return fmt::format("oneDNN's bf16 kernel here is the convolution; this {} has none",
                       layer.op_type);
  return std::nullopt;
}

bool takes_8bit_activations(const LayerQuant& q) {
  return is(q.activations.format, {FormatId::uint8, FormatId::int8});
}

Reason onednn_int8_declines(const LayerQuant& q, const KernelLayer& layer, const KernelTarget& t) {
  if (Reason why = int8_weights_declined(q.weights, "oneDNN 2.6's integer kernels take"))
    return why;
  // Without VNNI, oneDNN stores int8 weights halved (scale_adjust 0.5) so that vpmaddubsw's
  // 16-bit pair sums cannot saturate; an odd 8-bit code would lose its last bit. 7-bit codes
  // are handed over doubled and stay exact (executor/ops/onednn_int8.cpp).
  if (format_traits(q.weights.format).bits == 8 && !t.cpu.vnni)
    return fmt::format(
        "this CPU has no VNNI (oneDNN ISA {}): oneDNN's int8 kernels would halve 8-bit weights "
        "(or saturate 16-bit pair sums), so integer results would differ from the plan; int7 "
        "weights (e.g. W7A8) run exactly here",
        t.cpu.onednn_isa.empty() ? "unknown" : t.cpu.onednn_isa);
  if (q.dynamic)
    return q.activations.granularity == Granularity::per_token
               ? "dynamic per-token activation ranges are simulated (the integer kernels take one "
                 "fixed input scale; per-token scales would rescale each row's int32 sums)"
               : "dynamic activation ranges are simulated (the integer kernels take a fixed input "
                 "scale)";
  if (layer.op_type == "ConvTranspose") return "ConvTranspose has no integer kernel here";
  if (!layer.gemm_default_attributes)
    return "Gemm with transA, alpha or beta other than the defaults";
  if (!layer.bias_per_output) return "the Gemm bias is not a constant with one value per output";
  return std::nullopt;
}

bool takes_float_activations(const LayerQuant& q) {
  return q.activations.format == FormatId::fp32;
}

Reason never_declines(const LayerQuant&, const KernelLayer&, const KernelTarget&) {
  return std::nullopt;
}

// Integer weights of at most 4 bits with float activations: bitplan's W4A32 kernel
// (executor/kernels/w4a32.hpp) reads them packed two per byte and dequantizes in registers,
// on any scale granularity (per tensor, channel or group of any length) and grid (int2-int4,
// uint2-uint4, symmetric or not).
bool takes_w4_weight_only(const LayerQuant& q) {
  const FormatTraits& w = format_traits(q.weights.format);
  return q.activations.format == FormatId::fp32 && w.kind == FormatKind::integer && w.bits <= 4;
}

Reason cpu_w4a32_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  if (kernels::isa_of_onednn(t.cpu.onednn_isa) == kernels::Isa::scalar)
    return fmt::format(
        "this CPU has no AVX2 (oneDNN ISA {}): the W4A32 kernel's portable path is slower than "
        "the fp32 kernel on decompressed weights",
        t.cpu.onednn_isa.empty() ? "unknown" : t.cpu.onednn_isa);
  if (layer.op_type != "Gemm" && layer.op_type != "MatMul")
    return fmt::format("the W4A32 kernel is a Gemm/MatMul; this {} has none", layer.op_type);
  if (layer.weight_rank != 2)
    return fmt::format("the W4A32 kernel takes a 2-D weight; this one has {} dims",
                       layer.weight_rank);
  if (!layer.gemm_default_attributes)
    return "Gemm with transA, alpha or beta other than the defaults";
  if (!layer.bias_per_output) return "the Gemm bias is not a constant with one value per output";
  return std::nullopt;
}

// Activations quantized per token to uint8, asymmetric, at run time (A8t): what the W4A8 and
// W3A8 and W2A8 kernels quantize each row to, with the simulation's rule.
bool per_token_uint8_activations(const LayerQuant& q) {
  return q.activations.format == FormatId::uint8 &&
         q.activations.granularity == Granularity::per_token && !q.activations.symmetric &&
         q.dynamic;
}

// Integer weights of at most 4 bits (any scale granularity and grid, as for W4A32) with
// per-token uint8 activations (W4g32A8t, W4A8t): bitplan's W4A8 kernel
// (executor/kernels/w4a8.hpp) quantizes each row with the simulation's rule and sums exact
// integer products.
bool takes_w4a8(const LayerQuant& q) {
  const FormatTraits& w = format_traits(q.weights.format);
  return w.kind == FormatKind::integer && w.bits <= 4 && per_token_uint8_activations(q);
}

// Integer weights of at most 2 bits (int2, uint2; any scale granularity, symmetric or not)
// with the same activations (W2A8t, W2g32A8t): bitplan's W2A8 kernel (w2a8.hpp) reads them
// four per byte, half W4A8's bytes. Before cpu_w4a8 in the list, which would take them too.
bool takes_w2a8(const LayerQuant& q) {
  const FormatTraits& w = format_traits(q.weights.format);
  return w.kind == FormatKind::integer && w.bits <= 2 && per_token_uint8_activations(q);
}

// Integer weights of exactly 3 bits (int3, uint3; any scale granularity, symmetric or not)
// with the same activations (W3A8t, W3g32A8t): bitplan's W3A8 kernel (w3a8.hpp) reads them
// as a 2-bit and a 1-bit plane, 3/8 of a byte a weight. Before cpu_w4a8 in the list, which
// would take them too; <= 2-bit weights go to cpu_w2a8 (before this entry), fewer bytes still.
bool takes_w3a8(const LayerQuant& q) {
  const FormatTraits& w = format_traits(q.weights.format);
  return w.kind == FormatKind::integer && w.bits == 3 && per_token_uint8_activations(q);
}

// Signed integer weights of up to 8 bits (int5 ... int8 in practice: narrower ones go to the
// entries above; any scale granularity, symmetric or not) with the same activations (W8A8t,
// W8g128A8t): bitplan's W8A8 kernel (w8a8.hpp) sums u8 x s8 products of the codes as stored.
// Unsigned 8-bit codes (0 ... 255) are no s8 operand: no kernel takes them.
bool takes_w8a8(const LayerQuant& q) {
  const FormatTraits& w = format_traits(q.weights.format);
  return w.kind == FormatKind::integer && w.is_signed && w.bits <= 8 &&
         per_token_uint8_activations(q);
}

// What the integer kernels with per-token activations (`kernel`: W4A8, W3A8, W2A8, W8A8)
// decline. A K that is not a multiple of the group, or of 4 (8), is not among them: each pads
// its groups with codes that add nothing (w4a8.hpp, w3a8.hpp, w2a8.hpp, w8a8.hpp).
Reason per_token_kernel_declines(std::string_view kernel, const KernelLayer& layer,
                                 const KernelTarget& t) {
  if (kernels::isa_of_onednn(t.cpu.onednn_isa) == kernels::Isa::scalar)
    return fmt::format(
        "this CPU has no AVX2 (oneDNN ISA {}): the {} kernel's portable path is slower than "
        "the simulation's fp32 kernel",
        t.cpu.onednn_isa.empty() ? "unknown" : t.cpu.onednn_isa, kernel);
  if (layer.op_type != "Gemm" && layer.op_type != "MatMul")
    return fmt::format("the {} kernel is a Gemm/MatMul; this {} has none", kernel, layer.op_type);
  if (layer.weight_rank != 2)
    return fmt::format("the {} kernel takes a 2-D weight; this one has {} dims", kernel,
                       layer.weight_rank);
  if (!layer.gemm_default_attributes)
    return "Gemm with transA, alpha or beta other than the defaults";
  if (!layer.bias_per_output) return "the Gemm bias is not a constant with one value per output";
  return std::nullopt;
}

Reason cpu_w4a8_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  return per_token_kernel_declines("W4A8", layer, t);
}

Reason cpu_w2a8_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  return per_token_kernel_declines("W2A8", layer, t);
}

Reason cpu_w3a8_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  return per_token_kernel_declines("W3A8", layer, t);
}

Reason cpu_w8a8_declines(const LayerQuant&, const KernelLayer& layer, const KernelTarget& t) {
  if (kernels::isa_of_onednn(t.cpu.onednn_isa) != kernels::Isa::avx512_vnni)
    return fmt::format(
        "this CPU has no AVX-512 VNNI (oneDNN ISA {}): the W8A8 kernel's u8 x s8 sums of "
        "8-bit weights would overflow AVX2's 16-bit pair sums (2·255·128 > 32767), and its "
        "portable path is slower than the simulation's fp32 kernel",
        t.cpu.onednn_isa.empty() ? "unknown" : t.cpu.onednn_isa);
  return per_token_kernel_declines("W8A8", layer, t);
}

// Other weight-only specs with float activations run the float kernel on weights
// decompressed at load: the saving is size, not time.
constexpr KernelEntry onednn_kernels[] = {
    {"onednn_bf16_conv", "bf16", "bf16 (bf16 weights and activations, Conv)",
     ExecutorPath::onednn_bf16, takes_bf16, onednn_bf16_declines},
    {"cpu_w2a8", "w2a8",
     "w2a8 (<= 2-bit integer weights packed four per byte, any scale granularity, uint8 "
     "activations quantized per token at run time; Gemm/MatMul, AVX2 or AVX-512 VNNI)",
     ExecutorPath::cpu_w2a8, takes_w2a8, cpu_w2a8_declines},
    {"cpu_w3a8", "w3a8",
     "w3a8 (3-bit integer weights in a 2-bit and a 1-bit plane, any scale granularity, uint8 "
     "activations quantized per token at run time; Gemm/MatMul, AVX2 or AVX-512 VNNI)",
     ExecutorPath::cpu_w3a8, takes_w3a8, cpu_w3a8_declines},
    {"cpu_w4a8", "w4a8",
     "w4a8 (<= 4-bit integer weights packed two per byte, any scale granularity, uint8 "
     "activations quantized per token at run time; Gemm/MatMul, AVX2 or AVX-512 VNNI)",
     ExecutorPath::cpu_w4a8, takes_w4a8, cpu_w4a8_declines},
    {"cpu_w8a8", "w8a8",
     "w8a8 (signed <= 8-bit integer weights, any scale granularity, uint8 activations quantized "
     "per token at run time; Gemm/MatMul, AVX-512 VNNI)",
     ExecutorPath::cpu_w8a8, takes_w8a8, cpu_w8a8_declines},
    {"onednn_int8", "int8",
     "int8 (signed <= 8-bit symmetric per-channel/tensor weights, 8-bit static activations)",
     ExecutorPath::onednn_int8, takes_8bit_activations, onednn_int8_declines},
    {"cpu_w4a32", "w4a32",
     "w4a32 (<= 4-bit integer weights packed two per byte, any scale granularity, fp32 "
     "activations; Gemm/MatMul, AVX2 or AVX-512)",
     ExecutorPath::cpu_w4a32, takes_w4_weight_only, cpu_w4a32_declines},
    {"onednn_fp32", "fp32", "fp32 (float activations; weights decompressed at load)",
     ExecutorPath::float_kernel, takes_float_activations, never_declines},
};

// --- CUDA (backends/cuda: timed by bitplan-cuda-profile, simulated on the CPU) --------------

// Integer weights with fp16 activations: the weight-only kernels (w4a16, then w8a16: a spec
// the int4 kernel declines for its bits goes on to the int8 one).
bool takes_integer_weights_fp16(const LayerQuant& q) {
  return q.activations.format == FormatId::fp16 &&
         format_traits(q.weights.format).kind == FormatKind::integer;
}

// The weight-only kernels' rule: symmetric signed integer weights of at most `bits` bits, and
// one fp16 scale per 128 k of a column. backends/cuda/w4a16.cu and w8a16.cu scale each 128-k
// chunk of a column by one scale: groups of 128, or one scale per channel or tensor repeated
// over the chunks. Smaller groups would read more scales than the timed kernels do, and no
// kernel of bitplan's reads them.
Reason weight_only_declines(const LayerQuant& q, int bits, std::string_view kernel) {
  if (!signed_symmetric_integer_up_to(q.weights, bits))
    return fmt::format(
        "the {} kernel takes symmetric signed integer weights of <= {} bits; weights '{}' are "
        "not",
        kernel, bits, to_string(q.weights));
  if (q.weights.granularity == Granularity::per_group && q.weights.group_size != 128)
    return fmt::format(
        "weights '{}' have a scale per group of {} weights; the {} kernel takes one scale per "
        "128 weights of a column (group 128), per channel or per tensor",
        to_string(q.weights), q.weights.group_size, kernel);
  return std::nullopt;
}

Reason w4a16_declines(const LayerQuant& q, const KernelLayer&, const KernelTarget&) {
  return weight_only_declines(q, 4, "w4a16");
}

Reason w8a16_declines(const LayerQuant& q, const KernelLayer&, const KernelTarget&) {
  return weight_only_declines(q, 8, "w8a16");
}

Reason cuda_int8_declines(const LayerQuant& q, const KernelLayer&, const KernelTarget&) {
  // Dynamic ranges, per tensor or per token, cost as static int8 here: the profiles time
  // the integer GEMM only, not the pass that finds each batch's (or each token's) range
  // nor the per-token rescale of the int32 sums. A profile entry for both is still missing.
  return int8_weights_declined(q.weights, "the int8 GEMM's epilogue takes");
}

bool takes_fp8(const LayerQuant& q) {
  return q.activations.format == FormatId::fp8_e4m3 && q.weights.format == FormatId::fp8_e4m3;
}

bool takes_fp16(const LayerQuant& q) {
  return q.activations.format == FormatId::fp16 &&
         is(q.weights.format, {FormatId::fp32, FormatId::fp16});
}

bool takes_cuda_bf16(const LayerQuant& q) {
  return q.activations.format == FormatId::bf16 &&
         is(q.weights.format, {FormatId::fp32, FormatId::bf16});
}

constexpr KernelEntry cuda_kernels[] = {
    {"cuda_w4a16", "w4a16", "w4a16 (<= 4-bit weights, fp16 activations)",
     ExecutorPath::profiled_only, takes_integer_weights_fp16, w4a16_declines},
    {"cuda_w8a16", "w8a16", "w8a16 (<= 8-bit weights, fp16 activations)",
     ExecutorPath::profiled_only, takes_integer_weights_fp16, w8a16_declines},
    {"cuda_int8", "int8", "int8 (<= 8-bit weights, 8-bit activations)", ExecutorPath::profiled_only,
     takes_8bit_activations, cuda_int8_declines},
    {"cuda_fp8_e4m3", "fp8_e4m3", "fp8 e4m3", ExecutorPath::profiled_only, takes_fp8,
     never_declines},
    {"cuda_fp16", "fp16", "fp16", ExecutorPath::profiled_only, takes_fp16, never_declines},
    {"cuda_bf16", "bf16", "bf16", ExecutorPath::profiled_only, takes_cuda_bf16, never_declines},
    {"cuda_fp32", "fp32", "fp32 (float activations; weights decompressed at load)",
     ExecutorPath::profiled_only, takes_float_activations, never_declines},
};

}  // namespace

KernelLayer KernelLayer::of(const Graph& graph, const QuantizableLayer& layer) {
  KernelLayer out;
  out.name = layer.name;
  out.op_type = layer.op_type;
  auto node = std::find_if(graph.nodes.begin(), graph.nodes.end(),
                           [&](const Node& n) { return n.name == layer.name; });
  BITPLAN_ASSERT(node != graph.nodes.end());
  if (layer.op_type == "Gemm")
    out.gemm_default_attributes = node->attr_int("transA", 0) == 0 &&
                                  node->attr_float("alpha", 1.f) == 1.f &&
                                  node->attr_float("beta", 1.f) == 1.f;
  out.weight_rank = graph.initializer(layer.weight)->rank();
  if (layer.op_type != "Conv" && node->inputs.size() > 2 && !node->inputs[2].empty()) {
    const Tensor* bias = graph.initializer(node->inputs[2]);
    const std::int64_t outputs =
        graph.initializer(layer.weight)->dim(static_cast<std::size_t>(layer.channel_axis));
    out.bias_per_output = bias && bias->numel() == outputs;
  }
  return out;
}

KernelTarget KernelTarget::host() {
  return {"onednn", query_cpu().capabilities};
}

std::span<const KernelEntry> kernel_list(const std::string& backend) {
  if (backend == "onednn") return onednn_kernels;
  if (backend == "cuda") return cuda_kernels;
  fail_input("choosing a kernel: backend '{}' is not one of onednn, cuda", backend);
}

KernelChoice choose_kernel(const LayerQuant& spec, const KernelLayer& layer,
                           const KernelTarget& target) {
  KernelChoice choice;
  std::vector<std::string> reasons;
  const auto entries = kernel_list(target.backend);
  for (const KernelEntry& entry : entries) {
    if (!entry.takes(spec)) continue;
    const Reason why = entry.declines(spec, layer, target);
    if (!why) {
      choice.kernel = &entry;
      return choice;
    }
    choice.passed_over +=
        fmt::format("{}{}: {}", choice.passed_over.empty() ? "" : "; ", entry.name, *why);
    reasons.push_back(*why);
  }
  choice.passed_over.clear();
  if (!reasons.empty()) {
    for (const auto& r : reasons) choice.why_not += (choice.why_not.empty() ? "" : "; ") + r;
    return choice;
  }
  std::vector<std::string_view> offered;
  for (const KernelEntry& entry : entries) offered.push_back(entry.runs);
  choice.why_not =
      fmt::format("no {} kernel runs weights {} with activations {}{}: the {} backend has {}",
                  target.backend == "onednn" ? "oneDNN CPU" : "CUDA", to_string(spec.weights),
                  to_string(spec.activations), spec.dynamic ? " (dynamic)" : "",
                  target.backend == "onednn" ? "CPU" : "CUDA", fmt::join(offered, ", "));
  return choice;
}

std::string widest_int8_shorthand(const Graph& graph, const KernelTarget& target) {
  const auto layers = quantizable_layers(graph);
  std::vector<KernelLayer> kernel_layers;
  for (const auto& layer : layers) kernel_layers.push_back(KernelLayer::of(graph, layer));
  std::string best;
  std::size_t best_count = 0;
  for (const char* shorthand : {"W8A8", "W7A8"}) {
    const QuantPlan plan = uniform_plan(shorthand, graph);
    std::size_t integer_layers = 0;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      auto it = plan.layers.find(layers[i].name);
      if (it == plan.layers.end()) continue;
      const KernelChoice choice = choose_kernel(it->second, kernel_layers[i], target);
      integer_layers += choice.kernel && choice.kernel->precision == "int8";
    }
    if (best.empty() || integer_layers > best_count) {
      best = shorthand;
      best_count = integer_layers;
    }
  }
  return best;
}

}  // namespace bitplan
