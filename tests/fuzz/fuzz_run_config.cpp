// Run-config reader (--config), with one override, as `search --set` passes them.
#include "cli/run_config.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("config.yaml", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::load_run_config(path); });
  bitplan::fuzz::expect_clean_error(
      [&] { bitplan::load_run_config(path, {"search.constraints.max_accuracy_drop=0.5"}); });
  return 0;
}
