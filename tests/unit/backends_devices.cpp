#include <doctest/doctest.h>

#include "backends/device.hpp"

namespace backends_devices_test {

using namespace bitplan;

TEST_CASE("the CPU is identified with the ISA oneDNN dispatches to") {
  const CpuDevice cpu = query_cpu();
  CHECK(cpu.logical_cores >= 1);
  CHECK(!cpu.onednn_isa.empty());
  CHECK(cpu.onednn_isa != "other");
  CHECK(cpu.onednn_version.rfind("2.", 0) == 0);
}

}  // namespace backends_devices_test
