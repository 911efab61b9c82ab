// GPU tests (CTest label "gpu"): run on a machine with an NVIDIA GPU; elsewhere they report
// as skipped (tests/skip.hpp) with the CUDA runtime's reason.
#include <doctest/doctest.h>

#include "backends/device.hpp"
#include "tests/skip.hpp"

using namespace bitplan;

TEST_CASE("CUDA devices are listed with their compute capability") {
  const CudaInventory cuda = query_cuda();
  if (!cuda.built || cuda.devices.empty()) {
    testing::skip(cuda.unavailable);
    return;
  }
  for (const auto& d : cuda.devices) {
    MESSAGE("GPU " << d.index << ": " << d.name << " sm_" << d.sm_major << d.sm_minor << ", "
                   << d.multiprocessors << " SMs");
    CHECK(!d.name.empty());
    CHECK(d.sm_major >= 7);
    CHECK(d.multiprocessors > 0);
    CHECK(d.memory_bytes > (std::uint64_t{1} << 30));
  }
}
