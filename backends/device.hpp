// What hardware bitplan can see: the CPU (ISA as oneDNN dispatches it) and CUDA GPUs.
// Profiles in hw_profiles/ record this identity next to every measured latency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bitplan {

// What a CPU's kernels can use, as oneDNN dispatches them: the kernel lists
// (executor/kernel_list.hpp) decline specs on these facts. The ISA is oneDNN's effective one,
// so ONEDNN_MAX_CPU_ISA (e.g. =AVX2) caps it, and with it every derived flag: tests force the
// AVX2-without-VNNI path on a VNNI machine that way.
struct CpuCapabilities {
  std::string onednn_isa;  // e.g. "avx2", "avx512_core_vnni", "avx512_core_amx"
  bool avx512 = false;     // avx512_core or newer
  bool vnni = false;       // int8 dot products without 16-bit pair sums (exact 8-bit weights)
  bool bf16 = false;       // oneDNN has bf16 convolution kernels (AVX-512 or newer)
  bool amx = false;        // AMX tiles (int8 and bf16)

  // The flags oneDNN's kernels have on a CPU whose effective ISA is `onednn_isa` (a name as
  // CpuDevice::onednn_isa writes it; "" or unknown names give none).
  static CpuCapabilities of_onednn_isa(const std::string& onednn_isa);
};

struct CpuDevice {
  std::string model;  // /proc/cpuinfo "model name"
  int logical_cores = 0;
  std::string onednn_isa;  // the ISA oneDNN's kernels use here (e.g. "avx512_core_vnni")
  std::string onednn_version;
  std::vector<std::string> flags;  // relevant ISA flags present (avx2, avx512f, avx512_vnni, ...)
  // Per-core data caches and the shared last level, from sysfs (0 where it does not say).
  std::int64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;
  CpuCapabilities capabilities;  // of onednn_isa
};

// One GPU as the CUDA runtime describes it (backends/cuda/device_properties.hpp reads it), for
// the inventory and for the CUDA profiler's profiles alike.
struct CudaDevice {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;  // compute capability
  int multiprocessors = 0;
  std::uint64_t memory_bytes = 0;
  int clock_khz = 0;  // SM clock
  int memory_bus_bits = 0;
  std::int64_t l2_bytes = 0;
};

struct CudaInventory {
  bool built = false;       // the CUDA backend was compiled in
  std::string unavailable;  // why no GPU can be used (empty when devices were found)
  int driver_version = 0, runtime_version = 0;
  std::vector<CudaDevice> devices;
};

// This machine's CPU, probed once (the first call) and then the same answer every time.
const CpuDevice& query_cpu();
CudaInventory query_cuda();

}  // namespace bitplan
