#include "executor/kernels/isa.hpp"

#include <algorithm>
#include <cstdlib>

#include "backends/device.hpp"
#include "core/error.hpp"

namespace bitplan::kernels {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512_vnni:
      return "avx512_vnni";
  }
  return "?";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_vnni})
    if (name == isa_name(isa)) return isa;
  return std::nullopt;
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case Isa::avx512_vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::scalar;
#endif
}

Isa isa_of_onednn(const std::string& onednn_isa) {
  // Every oneDNN ISA past avx512_core (avx512_core_vnni, _bf16, _fp16, _amx...) has VNNI.
  if (onednn_isa == "avx512_core") return Isa::avx512;
  if (onednn_isa.rfind("avx512_core", 0) == 0) return Isa::avx512_vnni;
  if (onednn_isa.rfind("avx2", 0) == 0) return Isa::avx2;
  return Isa::scalar;
}

Isa cpu_isa() {
  static const Isa chosen = [] {
    Isa isa = Isa::avx512_vnni;
    while (isa != Isa::scalar && !cpu_supports(isa)) isa = static_cast<Isa>(int(isa) - 1);
    isa = std::min(isa, isa_of_onednn(query_cpu().onednn_isa));
    if (const char* cap = std::getenv("BITPLAN_MAX_CPU_ISA"); cap && *cap) {
      const auto named = isa_from_name(cap);
      if (!named)
        fail_input("BITPLAN_MAX_CPU_ISA='{}' is not one of scalar, avx2, avx512, avx512_vnni", cap);
      isa = std::min(isa, *named);
    }
    return isa;
  }();
  return chosen;
}

}  // namespace bitplan::kernels
