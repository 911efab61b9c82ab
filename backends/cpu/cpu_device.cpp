#include <fmt/format.h>
#include <dnnl.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "backends/device.hpp"

namespace bitplan {

namespace {
std::string isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}
}  // namespace

CpuDevice query_cpu() {
  CpuDevice cpu;
  cpu.logical_cores = static_cast<int>(std::thread::hardware_concurrency());
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  const std::set<std::string> wanted{"avx2",     "fma",      "f16c",        "avx512f",
                                     "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                                     "avx_vnni", "amx_int8", "amx_bf16"};
  std::set<std::string> found;
  while (std::getline(info, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && cpu.model.empty()) cpu.model = value;
    if (key == "flags" && found.empty()) {
      std::istringstream words(value);
      for (std::string w; words >> w;)
        if (wanted.count(w)) found.insert(w);
    }
  }
  cpu.flags.assign(found.begin(), found.end());
  cpu.onednn_isa = isa_name(dnnl::get_effective_cpu_isa());
  const dnnl_version_t* v = dnnl_version();
  cpu.onednn_version = fmt::format("{}.{}.{}", v->major, v->minor, v->patch);
  return cpu;
}

#ifndef BITPLAN_HAVE_CUDA
CudaInventory query_cuda() {
  CudaInventory inventory;
  inventory.unavailable =
      "bitplan was built without the CUDA backend (no CUDA toolkit at configure time)";
  return inventory;
}
#endif

}  // namespace bitplan
