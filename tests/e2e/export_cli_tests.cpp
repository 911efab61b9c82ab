// End-to-end tests of `bitplan export`: every format on a fixture model, a format that
// cannot express the plan, and bad input (wrong layers, another model's plan, existing or
// unwritable outputs), each with one clear message, its exit code and no partial file.
#include <doctest/doctest.h>

#include "run_bitplan.hpp"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace export_cli_tests_test {

namespace fs = std::filesystem;
using namespace bitplan::e2e;  // run, Result, contains, kSource, ... (run_bitplan.hpp)

namespace {

// A fresh folder for one test's outputs and calibration cache.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("bitplan_export_e2e_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string mlp_export(const fs::path& dir, const std::string& rest) {
  return "export --config " + (kSource / "configs/fmnist_mlp.yaml").string() + " --cache-dir " +
         (dir / "cache").string() + " " + rest;
}

}  // namespace

TEST_CASE("export: every format from one plan, and a format that cannot express it") {
  if (!fs::exists(kFashionImages)) {
    bitplan::testing::skip(kFashionMissing);
    return;
  }
  const fs::path dir = scratch("formats");
  const Result qdq =
      run(mlp_export(dir, "--plan W8A8 --format onnx-qdq --output " + (dir / "mlp.onnx").string()));
  CHECK(qdq.exit_code == 0);
  CHECK(contains(qdq.output, "3 quantized layers"));
  CHECK(contains(read_text(dir / "mlp.onnx"), "/net/net.1/Gemm/input_quant/QuantizeLinear"));

  const Result overrides = run(mlp_export(
      dir, "--plan W8A8 --format ort-overrides --output " + (dir / "ort.json").string()));
  CHECK(overrides.exit_code == 0);
  CHECK(contains(read_text(dir / "ort.json"), "\"QUInt8\""));
  CHECK(contains(read_text(dir / "ort.json"), "\"net.1.weight\""));

  const Result json =
      run(mlp_export(dir, "--plan W8A8 --format json --output " + (dir / "plan.json").string()));
  CHECK(json.exit_code == 0);
  CHECK(contains(read_text(dir / "plan.json"), "\"bitplan_export\": 1"));

  // TensorRT quantizes activations symmetrically: uint8 asymmetric inputs are refused with
  // the nearest spec, and the plan with it exports.
  const Result trt = run(mlp_export(dir, "--plan W8A8 --format trt-precisions --output " +
                                             (dir / "trt.txt").string() + " --save-nearest-plan " +
                                             (dir / "nearest.yaml").string()));
  CHECK(trt.exit_code == 4);
  CHECK(contains(trt.output, "layer '/net/net.1/Gemm' activations uint8/tensor/asym"));
  CHECK(contains(trt.output, "nearest expressible: int8/tensor/sym"));
  CHECK_FALSE(fs::exists(dir / "trt.txt"));
  CHECK_FALSE(fs::exists(dir / "trt.onnx"));
  const Result nearest =
      run(mlp_export(dir, "--plan " + (dir / "nearest.yaml").string() +
                              " --format trt-precisions --output " + (dir / "trt.txt").string()));
  CHECK(nearest.exit_code == 0);
  CHECK(read_text(dir / "trt.txt") ==
        "/net/net.1/Gemm:int8,/net/net.3/Gemm:int8,/net/net.5/Gemm:int8\n");
  CHECK(fs::exists(dir / "trt.onnx"));
}

TEST_CASE("export: bad input gives one message, its exit code and no partial file") {
  const fs::path dir = scratch("bad");
  const std::string model = "--model " + (kSource / "models/fmnist_mlp.onnx").string();
  const std::string out = " --format onnx-qdq --output " + (dir / "out.onnx").string();

  SUBCASE("a plan naming layers the model does not have") {
    std::ofstream(dir / "wrong.yaml") << "bitplan_plan: 1\nlayers:\n  /no/such/Conv: "
                                         "{weights: int8/channel/sym}\n";
    const Result r = run("export " + model + " --plan " + (dir / "wrong.yaml").string() + out);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "/no/such/Conv"));
    CHECK(contains(r.output, "/net/net.1/Gemm"));  // the valid names are listed
  }
  SUBCASE("a plan made for another model") {
    std::ofstream(dir / "other.yaml") << "bitplan_plan: 1\nmodel_hash: 0123456789abcdef\n"
                                         "defaults: {weights: int8/channel/sym}\n";
    const Result r = run("export " + model + " --plan " + (dir / "other.yaml").string() + out);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "made for another model"));
  }
  SUBCASE("an existing output needs --force") {
    std::ofstream(dir / "out.onnx") << "keep me";
    const Result r = run("export " + model + " --plan W8" + out);
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "exists; pass --force"));
    CHECK(read_text(dir / "out.onnx") == "keep me");
    const Result forced = run("export " + model + " --plan W8" + out + " --force");
    CHECK(forced.exit_code == 0);
    CHECK(read_text(dir / "out.onnx") != "keep me");
  }
  SUBCASE("a missing output folder") {
    const Result r = run("export " + model + " --plan W8 --format json --output " +
                         (dir / "missing/out.json").string());
    CHECK(r.exit_code == 3);
    CHECK(contains(r.output, "does not exist"));
  }
  SUBCASE("an unknown format") {
    const Result r = run("export " + model + " --plan W8 --format tflite --output x");
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "onnx-qdq, trt-precisions, ort-overrides, json"));
  }
  for (const auto& entry : fs::directory_iterator(dir))
    CHECK_FALSE(contains(entry.path().filename().string(), ".tmp."));
}

}  // namespace export_cli_tests_test
