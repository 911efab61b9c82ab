// What hardware bitplan can see: the CPU (ISA as oneDNN dispatches it) and CUDA GPUs.
// Profiles in hw_profiles/ record this identity next to every measured latency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bitplan {

struct CpuDevice {
  std::string model;  // /proc/cpuinfo "model name"
  int logical_cores = 0;
  std::string onednn_isa;  // the ISA oneDNN's kernels use here (e.g. "avx512_core_vnni")
  std::string onednn_version;
  std::vector<std::string> flags;  // relevant ISA flags present (avx2, avx512f, avx512_vnni, ...)
};

struct CudaDevice {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  std::uint64_t memory_bytes = 0;
  int clock_khz = 0;
  int memory_bus_bits = 0;
};

struct CudaInventory {
  bool built = false;       // the CUDA backend was compiled in
  std::string unavailable;  // why no GPU can be used (empty when devices were found)
  int driver_version = 0, runtime_version = 0;
  std::vector<CudaDevice> devices;
};

CpuDevice query_cpu();
CudaInventory query_cuda();

}  // namespace bitplan
