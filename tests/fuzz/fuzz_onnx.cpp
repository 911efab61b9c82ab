// ONNX loader: the op-type peek the CLI uses to list unsupported ops, then the full import.
#include "ir/onnx_import.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("model.onnx", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::peek_op_types(path); });
  bitplan::fuzz::expect_clean_error([&] { bitplan::load_onnx(path); });
  return 0;
}
