// Free (symbolic) input dimensions at the command line (issue 17.12): a classifier with input
// [N, 3, H, W] is evaluated on NPY samples of two sizes (once a SIGSEGV and an abort), and
// the commands without data take --input-shape or say that they need it.
//
// The model is written here with a few lines of protobuf wire format (the e2e binary links
// no protobuf), so the test states exactly what the file holds; the malformed-input
// catalogue uses the same bytes, committed as tests/fixtures/malformed/free_hw_classifier.onnx.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "run_bitplan.hpp"
#include "tests/temp_dir.hpp"

namespace bitplan::e2e::free_dims_test {
namespace {

namespace fs = std::filesystem;

// Protocol buffers wire format: just what an ONNX model needs.
struct Message {
  std::string bytes;

  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      bytes += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes += static_cast<char>(v);
  }
  Message& integer(int field, std::int64_t v) {
    varint(static_cast<std::uint64_t>(field) << 3);
    varint(static_cast<std::uint64_t>(v));
    return *this;
  }
  Message& text(int field, const std::string& s) {
    varint(static_cast<std::uint64_t>(field) << 3 | 2);
    varint(s.size());
    bytes += s;
    return *this;
  }
  Message& sub(int field, const Message& m) { return text(field, m.bytes); }
};

// onnx.proto field numbers.
constexpr int kFloat = 1, kAttrInt = 2, kAttrInts = 7;

Message tensor(const std::string& name, const std::vector<std::int64_t>& dims) {
  Message t;
  std::int64_t count = 1;
  for (auto d : dims) {
    t.integer(1, d);  // dims
    count *= d;
  }
  t.integer(2, kFloat).text(8, name);
  std::string raw;  // small deterministic weights: k * 0.01 - 0.1, cycling
  for (std::int64_t k = 0; k < count; ++k) {
    const float v = static_cast<float>(k % 21) * 0.01f - 0.1f;
    char b[4];
    std::memcpy(b, &v, 4);
    raw.append(b, 4);
  }
  return t.text(9, raw);  // raw_data
}

// ValueInfoProto of a float tensor; a dim is a size, or a dim_param name when it is empty.
Message value_info(const std::string& name,
                   const std::vector<std::pair<std::int64_t, std::string>>& dims) {
  Message shape;
  for (const auto& [size, param] : dims) {
    Message dim;
    if (param.empty())
      dim.integer(1, size);
    else
      dim.text(2, param);
    shape.sub(1, dim);
  }
  Message tensor_type;
  tensor_type.integer(1, kFloat).sub(2, shape);
  Message type;
  type.sub(1, tensor_type);
  Message info;
  return info.text(1, name).sub(2, type);
}

Message node(const std::string& name, const std::string& op, const std::vector<std::string>& in,
             const std::string& out, const std::vector<Message>& attrs = {}) {
  Message n;
  for (const auto& i : in) n.text(1, i);
  n.text(2, out).text(3, name).text(4, op);
  for (const auto& a : attrs) n.sub(5, a);
  return n;
}

// Conv 3->4 (3x3, pad 1) -> GlobalAveragePool -> Flatten -> Gemm 4->10 on `input_dims`.
std::string classifier(const std::vector<std::pair<std::int64_t, std::string>>& input_dims) {
  Message pads;
  pads.text(1, "pads");
  for (int i = 0; i < 4; ++i) pads.integer(8, 1);
  pads.integer(20, kAttrInts);
  Message trans_b;
  trans_b.text(1, "transB").integer(3, 1).integer(20, kAttrInt);
  Message graph;
  graph.sub(1, node("conv", "Conv", {"images", "w", "b"}, "c", {pads}))
      .sub(1, node("pool", "GlobalAveragePool", {"c"}, "p"))
      .sub(1, node("flatten", "Flatten", {"p"}, "f"))
      .sub(1, node("fc", "Gemm", {"f", "fc_w", "fc_b"}, "logits", {trans_b}))
      .text(2, "free_hw")
      .sub(5, tensor("w", {4, 3, 3, 3}))
      .sub(5, tensor("b", {4}))
      .sub(5, tensor("fc_w", {10, 4}))
      .sub(5, tensor("fc_b", {10}))
      .sub(11, value_info("images", input_dims))
      .sub(12, value_info("logits", {{0, "N"}, {10, ""}}));
  Message opset;
  opset.text(1, "").integer(2, 13);
  Message model;
  model.integer(1, 8).sub(8, opset).text(2, "bitplan-e2e").sub(7, graph);
  return model.bytes;
}

std::string free_hw_model() {
  return classifier({{0, "N"}, {3, ""}, {0, "H"}, {0, "W"}});
}

// NPY v1.0: magic, version, header length, a Python dict padded to 64 bytes, the data.
std::string npy(const std::string& descr, const std::vector<std::int64_t>& shape,
                const std::string& data) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ", ";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

// 100 uint8 samples of 3 x h x w (a pattern, not zeros) with labels 0..9.
void write_data(const bitplan::test::TempDir& dir, std::int64_t h, std::int64_t w) {
  std::string pixels(static_cast<std::size_t>(100 * 3 * h * w), '\0');
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<char>((i * 7) % 251);
  dir.write("x.npy", npy("|u1", {100, 3, h, w}, pixels));
  std::string labels;
  for (std::int64_t i = 0; i < 100; ++i) {
    const std::int64_t label = i % 10;
    char b[8];
    std::memcpy(b, &label, 8);
    labels.append(b, 8);
  }
  dir.write("y.npy", npy("<i8", {100}, labels));
}

void check_evaluates(std::int64_t h, std::int64_t w) {
  bitplan::test::TempDir dir;
  const std::string model = dir.write("cls.onnx", free_hw_model());
  write_data(dir, h, w);
  const std::string x = (fs::path(model).parent_path() / "x.npy").string();
  const std::string y = (fs::path(model).parent_path() / "y.npy").string();
  const Result r = run("evaluate --model " + model + " --images " + x + " --labels " + y +
                       " --batch 64 --threads 1 --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto json = nlohmann::json::parse(r.output);
  CHECK(json["samples"] == 100);
  CHECK(json["top1"].get<double>() >= 0.0);
}

}  // namespace

TEST_CASE("17.12 evaluate a free-H/W classifier on NPY samples of 3x64x64 (once SIGSEGV)") {
  check_evaluates(64, 64);
}

TEST_CASE("17.12 evaluate a free-H/W classifier on NPY samples of 3x48x192 (once an abort)") {
  check_evaluates(48, 192);
}

TEST_CASE("17.12 evaluate --plan W8A8 calibrates a free-H/W model at the samples' sizes") {
  bitplan::test::TempDir dir;
  const std::string model = dir.write("cls.onnx", free_hw_model());
  write_data(dir, 20, 30);
  const fs::path folder = fs::path(model).parent_path();
  const Result r = run("evaluate --model " + model + " --images " + (folder / "x.npy").string() +
                       " --labels " + (folder / "y.npy").string() + " --batch 32 --threads 1 " +
                       "--plan W8A8 --cache-dir " + (folder / "cache").string() + " --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.output)["quantized"]["top1"].get<double>() >= 0.0);
}

TEST_CASE("17.12 inspect a free-H/W model: a clear error without --input-shape, a plan with it") {
  bitplan::test::TempDir dir;
  const std::string model = dir.write("cls.onnx", free_hw_model());
  const Result bare = run("inspect " + model);
  INFO(bare.output);
  CHECK(bare.exit_code == 2);
  CHECK(contains(bare.output, "dimension 2 (H) of input 'images' [N, 3, H, W] is free"));
  CHECK(contains(bare.output, "--input-shape images=N,3,H,W"));
  const Result sized = run("inspect " + model + " --input-shape images=N,3,48,192 --batch 2");
  INFO(sized.output);
  CHECK(sized.exit_code == 0);
  CHECK(contains(sized.output, "[2, 4, 48, 192]"));
  const Result batch_number = run("inspect " + model + " --input-shape images=1,3,48,192");
  CHECK(batch_number.exit_code == 2);
  CHECK(contains(batch_number.output, "write it as N (images=N,3,48,192)"));
  const Result bad = run("inspect " + model + " --input-shape images=N,3,0,192");
  CHECK(bad.exit_code == 2);
  CHECK(contains(bad.output, "--input-shape 'images=N,3,0,192': dimension '0'"));
}

TEST_CASE("a model whose batch axis is fixed to 1 runs at batch 1, and says so") {
  // A static export used to be refused ("evaluation needs float logits [N, classes]").
  bitplan::test::TempDir dir;
  const std::string model = dir.write("cls.onnx", classifier({{1, ""}, {3, ""}, {8, ""}, {8, ""}}));
  write_data(dir, 8, 8);
  const fs::path folder = fs::path(model).parent_path();
  const std::string data =
      " --images " + (folder / "x.npy").string() + " --labels " + (folder / "y.npy").string();
  const Result r = run("evaluate --model " + model + data + " --batch 64 --threads 1");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "samples  100 (batch 1,"));
  CHECK(contains(r.output, "batch 1: the model fixes its batch axis to 1 (input 'images' is "
                           "[1, 3, 8, 8]), so it runs 1 sample at a time"));
  CHECK(contains(r.output, "data     scale 1/255 (the default for uint8 data)"));
  CHECK(run("evaluate --model " + model + data + " --batch 1 --threads 1").exit_code == 0);
}

TEST_CASE("evaluate feeds float NPY data as it is: no silent division by 255") {
  bitplan::test::TempDir dir;
  const std::string model = dir.write("cls.onnx", classifier({{0, "N"}, {3, ""}, {8, ""}, {8, ""}}));
  write_data(dir, 8, 8);  // x.npy: uint8
  // The same images as float32 already divided by 255, as a user's normalised export holds them.
  std::string floats;
  for (std::size_t i = 0; i < 100 * 3 * 8 * 8; ++i) {
    const float v = static_cast<float>((i * 7) % 251) / 255.0f;
    char b[4];
    std::memcpy(b, &v, 4);
    floats.append(b, 4);
  }
  dir.write("xf.npy", npy("<f4", {100, 3, 8, 8}, floats));
  const fs::path folder = fs::path(model).parent_path();
  const std::string y = " --labels " + (folder / "y.npy").string() + " --threads 1";
  const Result u8 = run("evaluate --model " + model + " --images " + (folder / "x.npy").string() +
                        y + " --predictions " + (folder / "u8.npy").string());
  const Result f32 = run("evaluate --model " + model + " --images " + (folder / "xf.npy").string() +
                         y + " --predictions " + (folder / "f32.npy").string());
  INFO(u8.output);
  INFO(f32.output);
  REQUIRE(u8.exit_code == 0);
  REQUIRE(f32.exit_code == 0);
  CHECK(contains(f32.output, "data     scale 1 (the default for float32 data: no rescaling)"));
  // Same predictions: the float data was not divided again.
  CHECK(read_text(folder / "u8.npy") == read_text(folder / "f32.npy"));
  // Asked for, the scale applies: --scale 255 on the uint8 data is a different input.
  const Result scaled = run("evaluate --model " + model + " --images " +
                            (folder / "xf.npy").string() + y + " --scale 255 --json");
  INFO(scaled.output);
  CHECK(scaled.exit_code == 0);
  CHECK(contains(scaled.output, "\"preprocess\": \"scale 255 (preprocess.scale)\""));
}

TEST_CASE("17.12 a negative dim_value in a model input is refused, not read as free") {
  bitplan::test::TempDir dir;
  const std::string model =
      dir.write("cls.onnx", classifier({{0, "N"}, {3, ""}, {-1, ""}, {8, ""}}));
  const Result r = run("inspect " + model + " --input-shape images=N,3,8,8");
  INFO(r.output);
  CHECK(r.exit_code == 3);
  CHECK(contains(r.output, "value 'images' has negative dimension -1"));
}

TEST_CASE("17.12 the catalogue's free-H/W fixture is this test's model") {
  const fs::path fixture =
      fs::path(BITPLAN_SOURCE_DIR) / "tests/fixtures/malformed/free_hw_classifier.onnx";
  CHECK(read_text(fixture) == free_hw_model());
}

}  // namespace bitplan::e2e::free_dims_test
