// Plan reader (--plan plan.yaml) against the fixture MLP, checked with its model hash as
// the CLI does.
#include <string>

#include "executor/quant/plan.hpp"
#include "ir/onnx_import.hpp"
#include "tests/fuzz/fuzz_common.hpp"

namespace {
const std::string kModel = BITPLAN_SOURCE_DIR "/models/fmnist_mlp.onnx";
const bitplan::Graph& graph() {
  static const bitplan::Graph g = bitplan::load_onnx(kModel);
  return g;
}
const std::string& model_hash() {
  static const std::string h = bitplan::model_file_hash(kModel);
  return h;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  graph();
  model_hash();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = bitplan::fuzz::write_input("plan.yaml", data, size);
  bitplan::fuzz::expect_clean_error([&] { bitplan::load_plan(path, graph(), model_hash()); });
  return 0;
}
