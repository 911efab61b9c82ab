// ONNX import: external data confinement, truncation, unnamed nodes, topological order.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "ir/onnx_import.hpp"

namespace ir_import_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kFixtures = fs::path(BITPLAN_SOURCE_DIR) / "tests/fixtures/ir";

std::string error_of(const fs::path& model) {
  try {
    load_onnx(model);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("external data is read from inside the model folder") {
  const Graph g = load_onnx(kFixtures / "external_ok.onnx");
  const Tensor* w = g.initializer("w");
  REQUIRE(w != nullptr);
  CHECK(w->values<float>()[0] == 1.5f);
  CHECK(w->values<float>()[3] == 4.0f);
}

TEST_CASE("external data that escapes or overruns is refused with the reason") {
  CHECK(error_of(kFixtures / "external_past_end.onnx").find("has only 24 bytes") !=
        std::string::npos);
  CHECK(error_of(kFixtures / "external_absolute.onnx").find("absolute path") != std::string::npos);
  CHECK(error_of(fs::path(BITPLAN_SOURCE_DIR) / "tests/fixtures/cli/external_escape.onnx")
            .find("'..'") != std::string::npos);

  // A symlink inside the folder pointing outside it is refused too.
  const fs::path dir = fs::temp_directory_path() / "bitplan_ir_symlink_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kFixtures / "external_symlink.onnx", dir / "model.onnx");
  const fs::path outside = fs::temp_directory_path() / "bitplan_outside_weights.bin";
  std::ofstream(outside) << std::string(64, 'x');
  fs::create_symlink(outside, dir / "link.bin");
  CHECK(error_of(dir / "model.onnx").find("outside the model's folder") != std::string::npos);
  // A symlink that stays inside the folder is fine.
  fs::remove(dir / "link.bin");
  fs::copy_file(kFixtures / "weights.bin", dir / "real.bin");
  fs::create_symlink(dir / "real.bin", dir / "link.bin");
  CHECK(error_of(dir / "model.onnx").empty());
  fs::remove_all(dir);
  fs::remove(outside);
}

TEST_CASE("truncated and garbage files fail as invalid input, naming the file") {
  const fs::path cli = fs::path(BITPLAN_SOURCE_DIR) / "tests/fixtures/cli";
  for (const char* name : {"truncated.onnx", "garbage.onnx"}) {
    try {
      load_onnx(cli / name);
      FAIL("no error for " << name);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::invalid_input);
      CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
  }
}

TEST_CASE("topological_sort orders nodes and reports missing producers and cycles") {
  Graph g;
  g.name = "t";
  g.inputs.push_back({"x", DType::f32, {1}, {}});
  g.outputs.push_back({"z", DType::f32, {1}, {}});
  g.nodes.push_back({"second", "Relu", "", {"y"}, {"z"}, {}});
  g.nodes.push_back({"first", "Relu", "", {"x"}, {"y"}, {}});
  topological_sort(g);
  CHECK(g.nodes[0].name == "first");
  CHECK(g.nodes[1].name == "second");

  g.nodes[0].inputs = {"nowhere"};
  CHECK_THROWS_WITH_AS(topological_sort(g),
                       doctest::Contains("which no node, initializer or graph input provides"),
                       Error);
  g.nodes = {{"a", "Relu", "", {"b_out"}, {"a_out"}, {}},
             {"b", "Relu", "", {"a_out"}, {"b_out"}, {}}};
  CHECK_THROWS_WITH_AS(topological_sort(g), doctest::Contains("cycle"), Error);
}

}  // namespace ir_import_test
