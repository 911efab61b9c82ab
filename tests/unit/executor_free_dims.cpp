// Free (symbolic) input dimensions (issue 17.12): only the first dimension of an input is the
// batch; the others take the samples' sizes (data) or --input-shape (bind_input_shapes), and a
// free one left unbound is a clear error. Data whose shape differs from the planned input is
// a clean error, never a write past the input buffer (which once crashed `evaluate`).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "data/npy.hpp"
#include "executor/evaluate.hpp"
#include "executor/model.hpp"
#include "executor/quant/simulate.hpp"
#include "tests/temp_dir.hpp"

namespace executor_free_dims_test {

using namespace bitplan;
namespace fs = std::filesystem;

namespace {

Tensor random_tensor(Dims dims, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// A MobileNetV3-style classifier head on an input [N, 3, H, W] with H and W free:
// Conv 3->4 (3x3, pad 1) -> GlobalAveragePool -> Flatten -> Gemm 4->10.
Graph free_hw_classifier(Dims input = {-1, 3, -1, -1}) {
  Graph g;
  g.name = "free_hw";
  g.opset = 13;
  g.inputs.push_back({"images", DType::f32, std::move(input), {"batch", "", "H", "W"}});
  g.outputs.push_back({"logits", DType::f32, {-1, 10}, {"batch", ""}});
  g.initializers["w"] = random_tensor({4, 3, 3, 3}, 1);
  g.initializers["b"] = random_tensor({4}, 2);
  g.initializers["fc_w"] = random_tensor({10, 4}, 3);
  g.initializers["fc_b"] = random_tensor({10}, 4);
  Node conv{"conv", "Conv", "", {"images", "w", "b"}, {"c"}, {}};
  conv.attrs["pads"] = std::vector<std::int64_t>{1, 1, 1, 1};
  Node gemm{"fc", "Gemm", "", {"f", "fc_w", "fc_b"}, {"logits"}, {}};
  gemm.attrs["transB"] = std::int64_t{1};
  g.nodes = {conv,
             {"pool", "GlobalAveragePool", "", {"c"}, {"p"}, {}},
             {"flatten", "Flatten", "", {"p"}, {"f"}, {}},
             gemm};
  return g;
}

// `count` float32 samples of `sample` dims in [0, 1] with labels 0..9, as NPY files.
std::unique_ptr<Dataset> npy_dataset(const test::TempDir& dir, std::int64_t count,
                                     const Dims& sample) {
  Dims dims = sample;
  dims.insert(dims.begin(), count);
  Tensor images = random_tensor(dims, 9);
  for (std::int64_t i = 0; i < images.numel(); ++i)
    images.data<float>()[i] = 0.5f + 0.5f * images.data<float>()[i];
  std::vector<std::int64_t> labels(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 10);
  write_npy(dir / "x.npy", images);
  write_npy(dir / "y.npy", Tensor::from_values<std::int64_t>({count}, labels));
  DatasetConfig config;
  config.format = "npy";
  config.images = dir / "x.npy";
  config.labels = dir / "y.npy";
  config.preprocess.scale = 1.0f;
  return open_dataset(config);
}

std::vector<std::int64_t> all_indices(const Dataset& dataset) {
  std::vector<std::int64_t> indices(static_cast<std::size_t>(dataset.size()));
  std::iota(indices.begin(), indices.end(), 0);
  return indices;
}

// The message of the Error `f` throws, after checking its kind.
template <typename F>
std::string error_of(F&& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(static_cast<int>(e.kind()) == static_cast<int>(kind));
    return e.what();
  }
  FAIL("no error thrown");
  return "";
}

bool has(const std::string& text, const std::string& part) {
  const bool found = text.find(part) != std::string::npos;
  if (!found) MESSAGE("'" << part << "' not in: " << text);
  return found;
}

// evaluate() on a free-H/W model agrees with the same model whose H and W are fixed to the
// samples' sizes, at a batch that leaves a partial last batch and at one sample per batch.
void check_evaluates_like_fixed(const Dims& sample) {
  test::TempDir dir;
  const auto dataset = npy_dataset(dir, 100, sample);
  const auto indices = all_indices(*dataset);
  const EvalResult free = evaluate(free_hw_classifier(), *dataset, indices, {64, true});
  const EvalResult fixed = evaluate(free_hw_classifier({-1, sample[0], sample[1], sample[2]}),
                                    *dataset, indices, {1, true});
  CHECK(free.samples == 100);
  CHECK(free.predictions == fixed.predictions);
  REQUIRE(free.logits.size() == fixed.logits.size());
  float worst = 0;
  for (std::size_t i = 0; i < free.logits.size(); ++i)
    worst = std::max(worst, std::abs(free.logits[i] - fixed.logits[i]));
  CHECK(worst < 1e-4f);
  CHECK(std::isfinite(free.top1));
}

}  // namespace

TEST_CASE("17.12 evaluate binds free H/W to NPY samples of 3x64x64 (batch 64, 100 samples)") {
  // Once planned at 64x64 pixels for the first batch (the batch size) and at 36x36 for the
  // last, whose samples were written past the input buffer: SIGSEGV.
  check_evaluates_like_fixed({3, 64, 64});
}

TEST_CASE("17.12 evaluate binds free H/W to NPY samples of 3x48x192 (batch 64, 100 samples)") {
  // Once planned at 64x64 pixels: munmap_chunk(): invalid pointer, abort.
  check_evaluates_like_fixed({3, 48, 192});
}

TEST_CASE("17.12 a free dimension after the batch axis is refused when planning, naming it") {
  const std::string message =
      error_of([] { ExecutionPlan plan(free_hw_classifier(), PlanOptions{1}); }, ErrorKind::usage);
  CHECK(has(message, "dimension 2 (H) of input 'images' [N, 3, H, W] is free"));
  CHECK(has(message, "--input-shape images=N,3,H,W"));
  // Without dim_param names the dimensions are numbered.
  Graph unnamed = free_hw_classifier();
  unnamed.inputs[0].dim_names.clear();
  CHECK(has(error_of([&] { ExecutionPlan plan(unnamed, PlanOptions{1}); }, ErrorKind::usage),
            "--input-shape images=N,3,D2,D3"));
}

TEST_CASE("17.12 bind_input_shapes sizes free dimensions and the batch axis stays the batch") {
  Graph g = free_hw_classifier();
  const std::vector<InputShape> shapes{{"images", {InputShape::kBatchAxis, 3, 32, 48}}};
  bind_input_shapes(g, shapes);
  CHECK(g.inputs[0].dims == Dims{-1, 3, 32, 48});
  const ExecutionPlan plan(g, PlanOptions{5});
  CHECK(plan.input_meta()[0].dims == Dims{5, 3, 32, 48});
  CHECK(plan.steps()[0].output_dims[0] == Dims{5, 4, 32, 48});
}

TEST_CASE("17.12 bind_input_shapes refuses shapes that do not fit the model") {
  auto bind_error = [](std::vector<InputShape> shapes) {
    Graph g = free_hw_classifier({-1, 3, -1, 64});
    return error_of([&] { bind_input_shapes(g, shapes); }, ErrorKind::usage);
  };
  const std::int64_t N = InputShape::kBatchAxis;
  CHECK(has(bind_error({{"image", {N, 3, 8, 64}}}),
            "--input-shape image=N,3,8,64: the model 'free_hw' has no input 'image'; its inputs "
            "are images"));
  CHECK(has(bind_error({{"images", {N, 3, 8}}}),
            "input 'images' has 4 dimensions (N,3,?,64), not 3"));
  CHECK(has(bind_error({{"images", {N, 3, 8, 32}}}),
            "dimension 3 of input 'images' is fixed to 64 by the model"));
  CHECK(has(bind_error({{"images", {1, 3, 8, 64}}}),
            "dimension 0 of input 'images' is its batch axis, sized by the command's batch; "
            "write it as N (images=N,3,8,64)"));
  CHECK(has(bind_error({{"images", {N, 3, 8, 64}}, {"images", {N, 3, 9, 64}}}),
            "input 'images' is given more than one shape"));
  CHECK(has(bind_error({{"images", {N, 3, N, 64}}}), "N (the batch) may only be the first"));
}

TEST_CASE("a model whose batch axis is fixed to 1 runs at batch 1 whatever batch is asked") {
  // A static export ([1, 3, 8, 8]) used to be refused ("needs float logits [N, classes]").
  test::TempDir dir;
  const auto dataset = npy_dataset(dir, 100, {3, 8, 8});
  const auto indices = all_indices(*dataset);
  const Graph fixed = free_hw_classifier({1, 3, 8, 8});
  std::string note;
  CHECK(model_batch(fixed, 64, &note) == 1);
  CHECK(has(note, "batch 1: the model fixes its batch axis to 1 (input 'images' is [1, 3, 8, 8])"));
  CHECK(model_batch(free_hw_classifier({-1, 3, 8, 8}), 64, &note) == 64);
  CHECK(note.empty());
  const EvalResult at64 = evaluate(fixed, *dataset, indices, {64, false});
  const EvalResult at1 = evaluate(fixed, *dataset, indices, {1, false});
  CHECK(at64.samples == 100);
  CHECK(at64.batch == 1);
  CHECK(at64.predictions == at1.predictions);
  // Calibration runs it the same way.
  CHECK(calibrate(fixed, *dataset, indices, {"c"}, {}, 64).count("c") == 1);
  // A fixed batch of 4 needs whole batches.
  const std::vector<std::int64_t> ten(indices.begin(), indices.begin() + 10);
  CHECK(has(error_of([&] { evaluate(free_hw_classifier({4, 3, 8, 8}), *dataset, ten, {64, false}); },
                     ErrorKind::invalid_input),
            "10 samples do not fill batches of 4, the batch size the model fixes"));
}

TEST_CASE("17.12 samples whose fixed dimensions differ from the model's: a clean error") {
  test::TempDir dir;
  const auto dataset = npy_dataset(dir, 10, {3, 48, 192});
  Graph g = free_hw_classifier({-1, 3, 64, -1});
  CHECK(has(error_of([&] { bind_input_to_samples(g, *dataset); }, ErrorKind::invalid_input),
            "the model input 'images' has shape [-1, 3, 64, -1] but the dataset's samples are "
            "[3, 48, 192]"));
  const auto indices = all_indices(*dataset);
  CHECK(has(error_of(
                [&] {
                  evaluate(g, *dataset, indices, {4, false});
                },
                ErrorKind::invalid_input),
            "[3, 48, 192]"));
}

TEST_CASE("17.12 calibration and evaluation run a free-H/W model once bound to the samples") {
  test::TempDir dir;
  const auto dataset = npy_dataset(dir, 30, {3, 16, 24});
  const auto indices = all_indices(*dataset);
  Graph g = free_hw_classifier();
  bind_input_to_samples(g, *dataset);
  CHECK(g.inputs[0].dims == Dims{-1, 3, 16, 24});
  const CalibrationRanges ranges = calibrate(g, *dataset, indices, {"c"}, {}, 8);
  REQUIRE(ranges.count("c") == 1);
  CHECK(ranges.at("c").max > ranges.at("c").min);
}

TEST_CASE("17.12 running a plan on data of another shape is a clean error naming both") {
  ExecutionPlan plan(free_hw_classifier({-1, 3, 8, 8}), PlanOptions{2});
  const Tensor wrong(DType::f32, {2, 3, 8, 9});
  const std::string message =
      error_of([&] { plan.run(std::span<const Tensor>(&wrong, 1)); }, ErrorKind::invalid_input);
  CHECK(has(
      message,
      "input 'images' is planned as float32 [2, 3, 8, 8] but the data is float32 [2, 3, 8, 9]"));
}

TEST_CASE("17.12 an input too large to plan is refused before any size overflows") {
  Graph g = free_hw_classifier({-1, 3, 1 << 20, 1 << 20});
  CHECK(has(error_of([&] { ExecutionPlan plan(g, PlanOptions{1}); }, ErrorKind::invalid_input),
            "input 'images' of shape [1, 3, 1048576, 1048576] has more than 2^40 elements"));
}

}  // namespace executor_free_dims_test
