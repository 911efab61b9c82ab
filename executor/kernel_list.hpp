// Which kernel runs a layer's quantization spec on each backend, and why the others do not.
//
// One ordered list per backend, most specialised first (oneDNN's cpu_convolution_list.cpp is
// the model): the first entry that takes the spec and does not decline it runs it. Every
// consumer asks these lists and nothing else:
//   - the real execution path (QuantSimulator::build_int8: which layers run on integer or
//     bf16 kernels, which are simulated and why),
//   - the CPU profiler (backends/cpu/onednn_profiler.cpp: which spec times "int8"),
//   - the cost models (cost_models/: which profile precision a layer's latency comes from),
//   - `bitplan cost`, `search --dry-run` and the report (the reason a spec is unsupported).
// A new kernel (W4 on the CPU, a new GPU precision, ...) is one new entry in kernel_list.cpp;
// docs/architecture.md ("Adding a kernel") says how. Kernels of one profile precision that
// differ only in speed (cuDNN vs bitplan's own convolutions on the GPU) are not entries here:
// the CUDA profiler times them all and keeps the fastest per shape (conv_kernels() in
// backends/cuda/layers.hpp), so the profile entry is already the best kernel's latency.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "backends/device.hpp"
#include "executor/quant/plan.hpp"

namespace bitplan {

// The facts of a layer that kernels decline on, read from the graph once.
struct KernelLayer {
  std::string name;
  std::string op_type;
  bool gemm_default_attributes = true;  // Gemm: transA 0, alpha 1, beta 1
  bool bias_per_output = true;          // Gemm/MatMul bias: constant, one value per output
  std::size_t weight_rank = 2;          // dims of the weight initializer
  static KernelLayer of(const Graph& graph, const QuantizableLayer& layer);
};

// What the kernels run on: a backend ("onednn", "cuda": a profile's backend) and, for the
// CPU, its capabilities (this machine's, or those a profile recorded).
struct KernelTarget {
  std::string backend;
  CpuCapabilities cpu;
  static KernelTarget host();  // oneDNN on this machine's CPU
};

// How the executor runs an entry's layers on this machine.
enum class ExecutorPath {
  float_kernel,  // fp32 kernel on the simulation's (decompressed) weights
  onednn_int8,   // oneDNN integer kernel on the weight codes
  onednn_bf16,   // oneDNN bf16 kernel
  cpu_w4a32,     // bitplan's W4A32 kernel on packed <= 4-bit codes (executor/kernels/w4a32.hpp)
  cpu_w4a8,      // bitplan's W4A8 kernel: the same codes, per-token uint8 activations (w4a8.hpp)
  cpu_w3a8,      // bitplan's W3A8 kernel: 3-bit codes in a 2-bit and a 1-bit plane (w3a8.hpp)
  cpu_w2a8,      // bitplan's W2A8 kernel: <= 2-bit codes four per byte, as W4A8 (w2a8.hpp)
  cpu_w8a8,      // bitplan's W8A8 kernel: signed <= 8-bit codes, as W4A8 (w8a8.hpp)
  profiled_only  // another device's kernel: timed by its profiler, simulated here
};

struct KernelEntry {
  std::string_view name;       // e.g. "onednn_int8"
  std::string_view precision;  // the profile precision it is timed under ("int8", "bf16")
  std::string_view runs;       // what it runs, for messages
  ExecutorPath path;
  // Whether the entry is for this kind of spec at all (its number formats). A spec that no
  // entry takes gets one "the backend has ..." message instead of every entry's refusal.
  bool (*takes)(const LayerQuant& spec);
  // Why it does not run `spec` on `layer` on `target` (action, value, rule), or nullopt.
  std::optional<std::string> (*declines)(const LayerQuant& spec, const KernelLayer& layer,
                                         const KernelTarget& target);
};

// The backend's entries in the order they are tried. Fails (input error) for a backend
// that is not "onednn" or "cuda".
std::span<const KernelEntry> kernel_list(const std::string& backend);

struct KernelChoice {
  const KernelEntry* kernel = nullptr;  // null: no kernel of the backend runs the spec
  std::string why_not;                  // when null: why, for the user
  // When an entry was chosen: why the entries before it that take the spec declined it
  // ("cpu_w4a32: ..."; empty when it was the first), so a fallback names its reason.
  std::string passed_over;
  std::string precision() const { return kernel ? std::string(kernel->precision) : ""; }
};

KernelChoice choose_kernel(const LayerQuant& spec, const KernelLayer& layer,
                           const KernelTarget& target);

// The uniform shorthand with the widest integer weights that the int8 entry runs on every
// layer of `graph` that some 8-bit plan runs in integers here ("W8A8" with VNNI, "W7A8"
// without): what the profiler times "int8" with and `profile --validate` checks.
std::string widest_int8_shorthand(const Graph& graph, const KernelTarget& target);

}  // namespace bitplan
