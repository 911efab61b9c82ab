// Precisions the CUDA backend times, and the element types their activations use.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace bitplan::cuda {

// int8_chained is the int8 layer between two int8 layers: it writes its reader's int8 codes
// itself (the per-channel requantization y * s_x s_w[c] / s_y in the GEMM's epilogue), so
// neither its fp16 output nor the reader's quantization pass exists; the CPU profiles'
// "int8_chained" entries are the same idea on oneDNN. fp8_e4m3_chained is the same for fp8:
// the GEMM writes e4m3 codes for an fp8 reader (per-tensor scales, cuBLASLt's D scale).
enum class Precision {
  fp32,
  fp16,
  bf16,
  int8,
  int8_chained,
  fp8_e4m3,
  fp8_e4m3_chained,
  w4a16,
  w8a16
};

// Element types of activations in device memory.
enum class ElementType { f32, f16, bf16, s8, e4m3 };

const std::vector<Precision>& all_precisions();
std::string to_string(Precision p);
// Throws ProfileError naming the accepted names when `name` is not one of them.
Precision parse_precision(const std::string& name);
// The precision named `name`, or nullopt.
std::optional<Precision> find_precision(const std::string& name);

std::string to_string(ElementType t);
std::size_t element_bytes(ElementType t);

// A layer at precision p reads its input in input_type(p) and writes output_type(p):
// int8 and fp8 layers take quantized activations and scale their result back to fp16,
// the activation precision of the GPU plans; int8_chained and fp8_e4m3_chained read and write
// their codes; w4a16 and w8a16 (weight-only) read and write fp16.
ElementType input_type(Precision p);
ElementType output_type(Precision p);
// Whether p reads quantized codes (int8 or e4m3) rather than a float type.
bool reads_codes(Precision p);
// The precision of the same layer when its reader takes its codes (int8 -> int8_chained,
// fp8_e4m3 -> fp8_e4m3_chained), or nullopt.
std::optional<Precision> chained_precision(Precision p);

// The float type beside activations of type t: t itself, or fp16 beside int8 and e4m3 codes
// (the activation precision of the GPU plans). The model's other ops run in it: after a layer,
// beside what the layer writes; before the first layer, beside what it reads.
ElementType float_beside(ElementType t);

// The profile names conversions by precision ("fp16" -> "int8"); each element type has
// one such name.
std::string precision_name(ElementType t);

}  // namespace bitplan::cuda
