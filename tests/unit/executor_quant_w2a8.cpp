// <= 2-bit weights with dynamic per-token uint8 activations (W2A8t, W2g32A8t) in real
// execution (QuantSimulator::build_int8): the kernel list sends Gemm/MatMul layers to the
// W2A8 kernel (executor/kernels/w2a8.hpp) before the W4A8 one, which would take them too; the
// kernel computes with exactly the simulation's weights and activation codes, so real and
// simulated runs agree on every sample's top-1; other layers fall back with the reason.
#include <doctest/doctest.h>

#include "backends/device.hpp"
#include "executor/kernel_list.hpp"
#include "executor/quant/simulate.hpp"
#include "tests/unit/executor_kernel_list_util.hpp"
#include "tests/unit/executor_real_per_token.hpp"

namespace executor_quant_w2a8_test {

using namespace bitplan;
using testing::layer_quant;
using testing::matmul_layer;
using testing::onednn_target;

TEST_CASE("the CPU kernel list runs <= 2-bit weights with per-token uint8 on W2A8, with reasons") {
  const KernelTarget avx2 = onednn_target("avx2");
  for (const char* shorthand : {"W2A8t", "W2g32A8t", "W2g128A8t"})
    CHECK_MESSAGE(
        choose_kernel(uniform_layer_quant(shorthand), matmul_layer(), avx2).precision() == "w2a8",
        shorthand);
  for (const char* weights : {"int2/channel/sym", "uint2/group64/asym", "int2/tensor/sym"}) {
    const KernelChoice c = choose_kernel(layer_quant(weights, "uint8/token/asym", true),
                                         matmul_layer(), onednn_target("avx512_core_vnni"));
    REQUIRE(c.kernel);
    CHECK_MESSAGE(c.kernel->name == "cpu_w2a8", weights);
    CHECK(c.passed_over.empty());
  }
  // Wider weights go to W3A8 and W4A8; 2-bit weights with other activations keep their kernels.
  CHECK(choose_kernel(uniform_layer_quant("W3g64A8t"), matmul_layer(), avx2).precision() == "w3a8");
  CHECK(choose_kernel(uniform_layer_quant("W4g64A8t"), matmul_layer(), avx2).precision() == "w4a8");
  CHECK(choose_kernel(layer_quant("int2/channel/sym", "uint8/tensor/asym", false), matmul_layer(),
                      avx2)
            .precision() == "int8");
  CHECK(choose_kernel(layer_quant("int2/group32/sym", "fp32", false), matmul_layer(), avx2)
            .precision() == "w4a32");
  // Declines name the W2A8 kernel, then the W4A8 one (which declines the same layers).
  const LayerQuant q = layer_quant("int2/group32/sym", "uint8/token/asym", true);
  KernelChoice c = choose_kernel(q, matmul_layer(), onednn_target("sse41"));
  CHECK(!c.kernel);
  CHECK(c.why_not.find("the W2A8 kernel's portable path") != std::string::npos);
  KernelLayer conv = matmul_layer();
  conv.op_type = "Conv";
  c = choose_kernel(q, conv, avx2);
  CHECK(c.why_not.find("the W2A8 kernel is a Gemm/MatMul; this Conv") != std::string::npos);
  CHECK(c.why_not.find("the W4A8 kernel is a Gemm/MatMul; this Conv") != std::string::npos);
  KernelLayer batched = matmul_layer();
  batched.weight_rank = 3;
  CHECK(choose_kernel(q, batched, avx2).why_not.find("3 dims") != std::string::npos);
}

TEST_CASE("real W2A8 execution agrees with the simulation") {
  // The MLP's Gemms (K = 784 = 49 groups of 16), the ViT's MatMuls (a token per row).
  testing::check_real_per_token_kernel("W2A8", "W2A8t", &QuantSimulator::Int8Build::w2a8_layers,
                                       {{"fmnist_mlp", "int2/group16/sym"},
                                        {"fmnist_mlp", "uint2/channel/asym"},
                                        {"fmnist_vit", "int2/group32/sym"},
                                        {"fmnist_vit", "int2/channel/sym"},
                                        {"fmnist_vit", "uint2/group128/asym"}});
}

}  // namespace executor_quant_w2a8_test
