// Which vector ISA bitplan's own CPU kernels (executor/kernels/) run with, chosen once at run
// time. Kernels are compiled for every ISA with function target attributes (never with
// -march flags for the whole build), and one of them is picked here:
//
//   cpu_isa() = min( what the CPU runs (cpuid, with the OS's register state),
//                    what oneDNN dispatches (its effective ISA: ONEDNN_MAX_CPU_ISA caps it),
//                    BITPLAN_MAX_CPU_ISA = scalar | avx2 | avx512 | avx512_vnni (when set) )
//
// so the kernel lists (executor/kernel_list.cpp), which decline on oneDNN's ISA, and the
// kernels agree, and tests force each path on any machine: BITPLAN_MAX_CPU_ISA=avx2 runs the
// AVX2 kernels on an AVX-512 CPU, =scalar the portable ones. Kernels also take an explicit
// Isa argument for tests that compare every path in one process.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace bitplan::kernels {

enum class Isa : unsigned char {
  scalar,  // portable C++
  avx2,    // AVX2 + FMA (256-bit)
  avx512,  // AVX-512 F (512-bit)
  // AVX-512 with VNNI (vpdpbusd: u8 x s8 dot products of 4 into s32), for the integer
  // kernels (w4a8); the float kernels run their AVX-512 path here.
  avx512_vnni,
};

std::string_view isa_name(Isa isa);
// "scalar", "avx2", "avx512", "avx512_vnni"; nullopt for anything else.
std::optional<Isa> isa_from_name(std::string_view name);

// Whether this CPU (and OS) can run `isa` at all, ignoring every cap.
bool cpu_supports(Isa isa);
// The widest ISA the kernels use here (see above); read once, then the same answer.
Isa cpu_isa();
// The widest kernel ISA that oneDNN's effective ISA name allows ("avx2", "avx512_core_vnni",
// ...: CpuCapabilities::onednn_isa, of this machine or of a profile): what a kernel list
// declines on for a target that is not this machine.
Isa isa_of_onednn(const std::string& onednn_isa);

}  // namespace bitplan::kernels
