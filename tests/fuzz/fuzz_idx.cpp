// IDX reader, raw and gzip (dataset format idx, e.g. Fashion-MNIST's *-ubyte.gz), with the
// CLI's default size limit.
#include "data/idx.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("data-idx3-ubyte", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::read_idx(path); });
  return 0;
}
