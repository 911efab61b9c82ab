// Hardware-profile reader (--target / target: in a config, profile --out when merging).
#include "backends/hw_profile.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("profile.yaml", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::load_hw_profile(path); });
  return 0;
}
