// Signed <= 8-bit weights with dynamic per-token uint8 activations (W8A8t, W8g128A8t) in real
// execution (QuantSimulator::build_int8): the kernel list sends Gemm/MatMul layers to the W8A8
// kernel (executor/kernels/w8a8.hpp) where oneDNN's ISA has AVX-512 VNNI, after the 2-, 3- and
// 4-bit kernels, which take narrower weights; the kernel computes with exactly the simulation's
// weights and activation codes, so real and simulated runs agree bit for bit; other layers,
// and every layer without VNNI, fall back with the reason.
#include <doctest/doctest.h>

#include "backends/device.hpp"
#include "executor/kernel_list.hpp"
#include "executor/quant/simulate.hpp"
#include "tests/unit/executor_kernel_list_util.hpp"
#include "tests/unit/executor_real_per_token.hpp"

namespace executor_quant_w8a8_test {

using namespace bitplan;
using testing::layer_quant;
using testing::matmul_layer;
using testing::onednn_target;

TEST_CASE(
    "the CPU kernel list runs signed 8-bit weights with per-token uint8 on W8A8, with reasons") {
  const KernelTarget vnni = onednn_target("avx512_core_vnni");
  for (const char* shorthand : {"W8A8t", "W8g128A8t", "W7A8t", "W6g32A8t"})
    CHECK_MESSAGE(
        choose_kernel(uniform_layer_quant(shorthand), matmul_layer(), vnni).precision() == "w8a8",
        shorthand);
  for (const char* weights : {"int8/channel/sym", "int8/group64/asym", "int8/tensor/sym"}) {
    const KernelChoice c =
        choose_kernel(layer_quant(weights, "uint8/token/asym", true), matmul_layer(), vnni);
    REQUIRE(c.kernel);
    CHECK_MESSAGE(c.kernel->name == "cpu_w8a8", weights);
    CHECK(c.passed_over.empty());
  }
  // Narrower weights keep their kernels; static activations stay on oneDNN's int8.
  CHECK(choose_kernel(uniform_layer_quant("W4g64A8t"), matmul_layer(), vnni).precision() == "w4a8");
  CHECK(choose_kernel(uniform_layer_quant("W2g64A8t"), matmul_layer(), vnni).precision() == "w2a8");
  CHECK(choose_kernel(uniform_layer_quant("W8A8"), matmul_layer(), vnni).precision() == "int8");
  // Unsigned 8-bit codes are no s8 operand: nothing takes them.
  CHECK(!choose_kernel(layer_quant("uint8/channel/asym", "uint8/token/asym", true), matmul_layer(),
                       vnni)
             .kernel);
  // Without VNNI: declined with the reason, and by oneDNN's int8 (8-bit weights need VNNI
  // there too; int7 ones would reach its refusal of dynamic ranges).
  const LayerQuant q = uniform_layer_quant("W8A8t");
  KernelChoice c = choose_kernel(q, matmul_layer(), onednn_target("avx2"));
  CHECK(!c.kernel);
  CHECK(c.why_not.find("no AVX-512 VNNI (oneDNN ISA avx2)") != std::string::npos);
  CHECK(c.why_not.find("2·255·128 > 32767") != std::string::npos);
  CHECK(c.why_not.find("oneDNN's int8 kernels would halve 8-bit weights") != std::string::npos);
  c = choose_kernel(uniform_layer_quant("W7A8t"), matmul_layer(), onednn_target("avx2"));
  CHECK(c.why_not.find("dynamic per-token activation ranges are simulated") != std::string::npos);
  KernelLayer conv = matmul_layer();
  conv.op_type = "Conv";
  c = choose_kernel(q, conv, vnni);
  CHECK(!c.kernel);
  CHECK(c.why_not.find("the W8A8 kernel is a Gemm/MatMul; this Conv") != std::string::npos);
}

TEST_CASE("real W8A8 execution agrees with the simulation") {
  // The MLP's Gemms (K = 784 = 49 groups of 16), the ViT's MatMuls (a token per row).
  testing::check_real_per_token_kernel("W8A8", "W8A8t", &QuantSimulator::Int8Build::w8a8_layers,
                                       {{"fmnist_mlp", "int8/channel/sym"},
                                        {"fmnist_mlp", "int8/group16/asym"},
                                        {"fmnist_vit", "int8/group32/sym"},
                                        {"fmnist_vit", "int7/channel/sym"}},
                                       kernels::Isa::avx512_vnni);
}

}  // namespace executor_quant_w8a8_test
