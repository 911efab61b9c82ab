// ONNX import of hostile models (issue 17): sizes checked against the data before anything
// is allocated, each value name defined once, untrusted strings shown whole in messages.
// The models are built here with the ONNX protobuf, one defect each.
#include <doctest/doctest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "ir/onnx_import.hpp"
#include "tests/temp_dir.hpp"

namespace ir_hardening_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {

onnx::NodeProto* add_node(onnx::ModelProto& model, const std::string& name, const std::string& op,
                          std::initializer_list<std::string> inputs,
                          std::initializer_list<std::string> outputs) {
  auto* node = model.mutable_graph()->add_node();
  node->set_name(name);
  node->set_op_type(op);
  for (const auto& in : inputs) node->add_input(in);
  for (const auto& out : outputs) node->add_output(out);
  return node;
}

// y = Relu(x) with x, y float [1, 4]: a valid model each test breaks in one way.
onnx::ModelProto relu_model() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  auto* graph = model.mutable_graph();
  graph->set_name("hardening");
  for (auto [info, name] :
       {std::pair{graph->add_input(), "x"}, std::pair{graph->add_output(), "y"}}) {
    info->set_name(name);
    auto* tensor_type = info->mutable_type()->mutable_tensor_type();
    tensor_type->set_elem_type(onnx::TensorProto::FLOAT);
    tensor_type->mutable_shape()->add_dim()->set_dim_value(1);
    tensor_type->mutable_shape()->add_dim()->set_dim_value(4);
  }
  add_node(model, "relu", "Relu", {"x"}, {"y"});
  return model;
}

onnx::TensorProto* add_initializer(onnx::ModelProto& model, const std::string& name,
                                   onnx::TensorProto::DataType type,
                                   std::initializer_list<std::int64_t> dims) {
  auto* tensor = model.mutable_graph()->add_initializer();
  tensor->set_name(name);
  tensor->set_data_type(type);
  for (auto d : dims) tensor->add_dims(d);
  return tensor;
}

fs::path save(const onnx::ModelProto& model, const fs::path& path) {
  std::ofstream out(path, std::ios::binary);
  REQUIRE(model.SerializeToOstream(&out));
  return path;
}

// The import's error; fails the test when the model loads or the error is not invalid input.
std::string import_error(const onnx::ModelProto& model, const test::TempDir& dir) {
  const fs::path path = save(model, dir / "model.onnx");
  try {
    load_onnx(path);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
    return e.what();
  }
  FAIL("the model was accepted");
  return "";
}

}  // namespace

TEST_CASE(
    "17.3 initializer claiming 1e12 elements and carrying no data is refused before "
    "allocation") {
  // Allocating first would need 4 TB: std::bad_alloc (exit 1 "out of memory") instead of this.
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_initializer(model, "huge_weight", onnx::TensorProto::FLOAT, {1000000, 1000000});
  const std::string error = import_error(model, dir);
  CHECK(error.find("tensor 'huge_weight' has 0 values but its shape [1000000, 1000000] needs "
                   "1000000000000") != std::string::npos);
}

TEST_CASE(
    "17.3 int64 initializer claiming 170 GB with three values is refused before "
    "allocation") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  auto* tensor = add_initializer(model, "shape_ids", onnx::TensorProto::INT64, {21250000000});
  for (int i = 0; i < 3; ++i) tensor->add_int64_data(i);
  CHECK(import_error(model, dir).find("tensor 'shape_ids' has 3 values") != std::string::npos);
}

TEST_CASE("17.3 raw_data shorter than the shape claims is refused with the tensor's name") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_initializer(model, "w", onnx::TensorProto::FLOAT, {50000, 10000})->set_raw_data("abcd");
  CHECK(import_error(model, dir)
            .find("tensor 'w' has 4 bytes of raw_data but shape [50000, "
                  "10000] of float32 needs 2000000000") != std::string::npos);
}

TEST_CASE("17.3 external data smaller than the shape claims is refused before allocation") {
  test::TempDir dir;
  std::ofstream(dir / "w.bin") << std::string(16, '\0');
  onnx::ModelProto model = relu_model();
  auto* tensor = add_initializer(model, "w", onnx::TensorProto::FLOAT, {1000000, 1000000});
  tensor->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = tensor->add_external_data();
  location->set_key("location");
  location->set_value("w.bin");
  CHECK(import_error(model, dir)
            .find("needs 4000000000000 bytes at offset 0 of 'w.bin', which "
                  "has only 16 bytes") != std::string::npos);
}

TEST_CASE("17.3 a shape whose byte size overflows 64 bits is refused") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_initializer(model, "w", onnx::TensorProto::FLOAT,
                  {std::int64_t{1} << 31, std::int64_t{1} << 31});
  CHECK(import_error(model, dir)
            .find("tensor 'w' has shape [2147483648, 2147483648]: its size "
                  "overflows 64 bits") != std::string::npos);
  // A zero dim does not excuse the others: later code multiplies subsets of the dims.
  model = relu_model();
  add_initializer(model, "v", onnx::TensorProto::FLOAT,
                  {0, std::int64_t{1} << 40, std::int64_t{1} << 40});
  CHECK(import_error(model, dir)
            .find("tensor 'v' has shape [0, 1099511627776, "
                  "1099511627776]: its size overflows") != std::string::npos);
}

TEST_CASE("17.3 initializers whose data matches their shape still load") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  auto* typed = add_initializer(model, "typed", onnx::TensorProto::INT64, {2});
  typed->add_int64_data(7);
  typed->add_int64_data(-3);
  add_initializer(model, "empty", onnx::TensorProto::FLOAT, {0, 5});
  const float raw[2] = {1.5f, -2.f};
  add_initializer(model, "raw", onnx::TensorProto::FLOAT, {2})
      ->set_raw_data(std::string(reinterpret_cast<const char*>(raw), sizeof raw));
  const Graph graph = load_onnx(save(model, dir / "model.onnx"));
  CHECK(graph.initializer("typed")->values<std::int64_t>()[1] == -3);
  CHECK(graph.initializer("empty")->numel() == 0);
  CHECK(graph.initializer("raw")->values<float>()[1] == -2.f);
}

TEST_CASE("17.4 two nodes writing the same output name are refused, naming both nodes") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_node(model, "second_writer", "Sigmoid", {"x"}, {"y"});
  CHECK(import_error(model, dir)
            .find("output 'y' of node 'second_writer' (Sigmoid) is already "
                  "an output of node 'relu' (Relu)") != std::string::npos);
}

TEST_CASE("17.4 unnamed nodes writing the same output are named as the import names them") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  model.mutable_graph()->mutable_node(0)->clear_name();
  add_node(model, "", "Sigmoid", {"x"}, {"y"});
  CHECK(import_error(model, dir)
            .find("output 'y' of node 'Sigmoid_1' (Sigmoid) is already an "
                  "output of node 'Relu_0' (Relu)") != std::string::npos);
}

TEST_CASE("17.4 a node output named like a graph input or an initializer is refused") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_node(model, "overwrite_input", "Relu", {"y"}, {"x"});
  CHECK(import_error(model, dir)
            .find("output 'x' of node 'overwrite_input' (Relu) is already "
                  "the graph input 'x'") != std::string::npos);

  model = relu_model();
  add_initializer(model, "bias", onnx::TensorProto::FLOAT, {1})->add_float_data(1.f);
  add_node(model, "overwrite_bias", "Relu", {"y"}, {"bias"});
  CHECK(import_error(model, dir)
            .find("output 'bias' of node 'overwrite_bias' (Relu) is already "
                  "the initializer 'bias'") != std::string::npos);

  // A Constant node is a definition too (it becomes an initializer at import).
  model = relu_model();
  add_initializer(model, "c", onnx::TensorProto::FLOAT, {1})->add_float_data(1.f);
  add_node(model, "const", "Constant", {}, {"c"});
  CHECK(import_error(model, dir)
            .find("output 'c' of node 'const' (Constant) is already the "
                  "initializer 'c'") != std::string::npos);
}

TEST_CASE("17.4 an initializer defined twice is refused; one also listed as an input is not") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_initializer(model, "w", onnx::TensorProto::FLOAT, {1})->add_float_data(1.f);
  add_initializer(model, "w", onnx::TensorProto::FLOAT, {1})->add_float_data(2.f);
  CHECK(import_error(model, dir).find("initializer 'w' is defined twice") != std::string::npos);

  // Old exporters list initializers among the graph inputs: that is one definition.
  model = relu_model();
  add_initializer(model, "w", onnx::TensorProto::FLOAT, {1})->add_float_data(1.f);
  *model.mutable_graph()->add_input() = model.graph().input(0);
  model.mutable_graph()->mutable_input(1)->set_name("w");
  const Graph graph = load_onnx(save(model, dir / "model.onnx"));
  CHECK(graph.inputs.size() == 1);
  CHECK(graph.initializer("w") != nullptr);
}

TEST_CASE("17.9 a NUL byte in an external-data location is shown escaped, with the whole line") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  auto* tensor = add_initializer(model, "w", onnx::TensorProto::FLOAT, {4});
  tensor->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = tensor->add_external_data();
  location->set_key("location");
  location->set_value(std::string("w\0.bin", 6));
  const std::string error = import_error(model, dir);
  CHECK(error.find('\0') == std::string::npos);
  CHECK(error.find("external data 'w\\x00.bin' of tensor 'w' contains a NUL byte") !=
        std::string::npos);
}

TEST_CASE("17.9 control bytes in a tensor name are shown escaped") {
  test::TempDir dir;
  onnx::ModelProto model = relu_model();
  add_initializer(model, std::string("bad\0name\n", 9), onnx::TensorProto::FLOAT, {3});
  const std::string error = import_error(model, dir);
  CHECK(error.find("tensor 'bad\\x00name\\x0a' has 0 values but its shape [3] needs 3") !=
        std::string::npos);
}

}  // namespace ir_hardening_test
