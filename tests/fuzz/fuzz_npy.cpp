// NPY reader (evaluate --images/--labels x.npy, dataset format npy).
#include "data/npy.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("array.npy", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::read_npy(path); });
  return 0;
}
