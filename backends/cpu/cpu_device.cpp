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

// sysfs writes cache sizes as "48K" or "2048K" (or "32M" on some kernels).
std::int64_t parse_cache_size(const std::string& text) {
  std::int64_t value = 0;
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9')
    value = value * 10 + (text[i++] - '0');
  if (i < text.size() && text[i] == 'K') value <<= 10;
  if (i < text.size() && text[i] == 'M') value <<= 20;
  return value;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

void read_caches(CpuDevice& cpu) {
  for (int index = 0; index < 8; ++index) {
    const std::string dir = fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}/", index);
    const std::string level = read_line(dir + "level"), type = read_line(dir + "type");
    if (level.empty()) break;
    const std::int64_t bytes = parse_cache_size(read_line(dir + "size"));
    if (level == "1" && type == "Data") cpu.l1d_bytes = bytes;
    if (level == "2") cpu.l2_bytes = bytes;
    if (level == "3") cpu.l3_bytes = bytes;
  }
}

// Whether oneDNN creates a bf16 convolution here: the answer of primitive creation itself,
// which knows which ISAs its bf16 kernels need.
bool onednn_creates_bf16_convolution() {
  using namespace dnnl;
  const engine eng(engine::kind::cpu, 0);
  const memory::dims src{1, 32, 16, 16}, wei{32, 32, 3, 3}, dst{1, 32, 16, 16};
  const auto any = memory::format_tag::any;
  try {
    const convolution_forward::desc desc(
        prop_kind::forward_inference, algorithm::convolution_direct,
        memory::desc(src, memory::data_type::bf16, any),
        memory::desc(wei, memory::data_type::bf16, any),
        memory::desc(dst, memory::data_type::f32, any), {1, 1}, {1, 1}, {1, 1});
    (void)convolution_forward::primitive_desc(desc, eng);
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
}

CpuDevice probe_cpu() {
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
  read_caches(cpu);
  cpu.onednn_isa = isa_name(dnnl::get_effective_cpu_isa());
  cpu.capabilities = CpuCapabilities::of_onednn_isa(cpu.onednn_isa);
  cpu.capabilities.bf16 = onednn_creates_bf16_convolution();
  const dnnl_version_t* v = dnnl_version();
  cpu.onednn_version = fmt::format("{}.{}.{}", v->major, v->minor, v->patch);
  return cpu;
}
}  // namespace

CpuCapabilities CpuCapabilities::of_onednn_isa(const std::string& onednn_isa) {
  CpuCapabilities caps;
  caps.onednn_isa = onednn_isa;
  caps.avx512 = onednn_isa.rfind("avx512_core", 0) == 0;
  caps.vnni = onednn_isa == "avx2_vnni" || onednn_isa == "avx512_core_vnni" ||
              onednn_isa == "avx512_core_bf16" || onednn_isa == "avx512_core_amx";
  // oneDNN 2.6's bf16 convolutions need avx512_core: below avx512_core_bf16 it emulates the
  // bf16 dot products on AVX-512, but it does not run them on AVX2.
  caps.bf16 = caps.avx512;
  caps.amx = onednn_isa == "avx512_core_amx";
  return caps;
}

const CpuDevice& query_cpu() {
  static const CpuDevice cpu = probe_cpu();
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
