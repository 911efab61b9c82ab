// Data as users hold it: the default scale follows the data's dtype, NPY samples of any rank,
// several named inputs (int64 kept integer), no labels, and a calibration source of inputs.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/yaml_reader.hpp"
#include "data/dataset.hpp"
#include "data/npy.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_inputs_test {
namespace {

namespace fs = std::filesystem;
using test::check_error;
using test::TempDir;
using Indices = std::vector<std::int64_t>;

DatasetConfig npy_config(const fs::path& images) {
  DatasetConfig config;
  config.format = "npy";
  config.images = images;
  return config;
}

std::vector<float> load_all(const Dataset& dataset, const Indices& indices) {
  std::vector<float> out(indices.size() * static_cast<std::size_t>(dataset.sample_numel()));
  dataset.load(indices, out.data());
  return out;
}

TEST_CASE("the default scale is 1/255 for uint8 data and 1 for float data; preprocess.scale wins") {
  TempDir dir;
  write_npy(dir / "u8.npy",
            Tensor::from_values<std::uint8_t>({1, 1, 1, 2}, std::vector<std::uint8_t>{255, 0}));
  write_npy(dir / "f32.npy",
            Tensor::from_values<float>({1, 1, 1, 2}, std::vector<float>{-1.5f, 0.25f}));
  const auto u8 = open_dataset(npy_config(dir / "u8.npy"));
  CHECK(load_all(*u8, {0}) == std::vector<float>{1.0f, 0.0f});
  CHECK(u8->preprocess_note() == "scale 1/255 (the default for uint8 data)");
  // An already normalised float array is fed as it is (ImageNet data scored 0% when divided).
  const auto f32 = open_dataset(npy_config(dir / "f32.npy"));
  CHECK(load_all(*f32, {0}) == std::vector<float>{-1.5f, 0.25f});
  CHECK(f32->preprocess_note() == "scale 1 (the default for float32 data: no rescaling)");
  DatasetConfig scaled = npy_config(dir / "f32.npy");
  scaled.preprocess.scale = 2.0f;
  CHECK(load_all(*open_dataset(scaled), {0}) == std::vector<float>{-3.0f, 0.5f});
  CHECK(open_dataset(scaled)->preprocess_note() == "scale 2 (preprocess.scale)");
}

TEST_CASE("NPY samples of any rank are fed with their stored dims") {
  TempDir dir;
  write_npy(dir / "feat.npy",
            Tensor::from_values<float>({3, 2}, std::vector<float>{0, 1, 2, 3, 4, 5}));
  const auto features = open_dataset(npy_config(dir / "feat.npy"));
  CHECK(features->size() == 3);
  CHECK(features->sample_dims() == Dims{2});
  CHECK_FALSE(features->has_labels());
  CHECK(features->class_names().empty());
  CHECK(load_all(*features, {2, 0}) == std::vector<float>{4, 5, 0, 1});
  write_npy(dir / "five.npy", Tensor(DType::f32, {2, 1, 2, 1, 3}));
  CHECK(open_dataset(npy_config(dir / "five.npy"))->sample_dims() == Dims{1, 2, 1, 3});
  // mean/std of one value apply to every element of a non-image sample.
  DatasetConfig normalised = npy_config(dir / "feat.npy");
  normalised.preprocess.mean = {1.0f};
  normalised.preprocess.std = {2.0f};
  CHECK(load_all(*open_dataset(normalised), {1}) == std::vector<float>{0.5f, 1.0f});
  write_npy(dir / "scalar.npy", Tensor::scalar<float>(1.0f));
  check_error([&] { open_dataset(npy_config(dir / "scalar.npy")); },
              {"scalar.npy", "a scalar array: samples must be [N, ...]"});
}

TEST_CASE("named inputs: int64 and int32 stay integer, every input's N must agree") {
  TempDir dir;
  write_npy(dir / "ids.npy",
            Tensor::from_values<std::int64_t>({2, 3}, std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
  write_npy(dir / "mask.npy",
            Tensor::from_values<std::int32_t>({2, 3}, std::vector<std::int32_t>{1, 1, 0, 1, 1, 1}));
  DatasetConfig config;
  config.format = "npy";
  config.inputs = {{"input_ids", dir / "ids.npy"}, {"attention_mask", dir / "mask.npy"}};
  const auto dataset = open_dataset(config);
  REQUIRE(dataset->inputs().size() == 2);
  CHECK(dataset->inputs()[0].name == "input_ids");
  CHECK(dataset->inputs()[0].dtype == DType::i64);
  CHECK(dataset->inputs()[0].sample_dims == Dims{3});
  CHECK(dataset->inputs()[1].dtype == DType::i32);
  CHECK(dataset->size() == 2);
  CHECK_FALSE(dataset->has_labels());
  CHECK(dataset->preprocess_note() ==
        "input 'input_ids': int64 fed as stored; input 'attention_mask': int32 fed as stored");

  const Indices second = {1};
  Tensor ids(DType::i64, {1, 3});
  dataset->load_input(0, second, ids);
  CHECK(ids.to_int64_vector() == std::vector<std::int64_t>{4, 5, 6});
  // An int32 file feeds an int64 model input (and back) unchanged.
  Tensor mask(DType::i64, {1, 3});
  dataset->load_input(1, Indices{0}, mask);
  CHECK(mask.to_int64_vector() == std::vector<std::int64_t>{1, 1, 0});
  Tensor narrow(DType::i32, {1, 3});
  dataset->load_input(0, second, narrow);
  CHECK(narrow.to_int64_vector() == std::vector<std::int64_t>{4, 5, 6});
  // Integers never become floats.
  Tensor floats(DType::f32, {1, 3});
  check_error([&] { dataset->load_input(0, second, floats); },
              {"input 'input_ids'", "ids.npy", "the data is int64 but the model input is float32"});

  write_npy(dir / "short.npy", Tensor(DType::i64, {3, 3}));
  config.inputs[1].path = dir / "short.npy";
  check_error([&] { open_dataset(config); },
              {"short.npy", "3 samples", "input 'input_ids' ('", "ids.npy') has 2",
               "every input must hold the same number of samples"});
}

TEST_CASE(
    "token_window feeds the first tokens of the token inputs, zeros past their end, the rest as "
    "stored") {
  TempDir dir;
  write_npy(dir / "ids.npy",
            Tensor::from_values<std::int64_t>({2, 3}, std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
  write_npy(dir / "mask.npy",
            Tensor::from_values<std::int32_t>({2, 3}, std::vector<std::int32_t>{1, 1, 0, 1, 0, 1}));
  write_npy(dir / "pos.npy",
            Tensor::from_values<std::int64_t>({2, 1, 2}, std::vector<std::int64_t>{7, 8, 9, 10}));
  DatasetConfig config;
  config.format = "npy";
  config.inputs = {{"input_ids", dir / "ids.npy"},
                   {"attention_mask", dir / "mask.npy"},
                   {"positions", dir / "pos.npy"}};
  const std::shared_ptr<const Dataset> full = open_dataset(config);
  const auto cut = token_window(full, 2);
  REQUIRE(cut->inputs().size() == 3);
  CHECK(cut->size() == 2);
  CHECK(cut->inputs()[0].sample_dims == Dims{2});
  CHECK(cut->inputs()[1].sample_dims == Dims{2});
  CHECK(cut->inputs()[2].sample_dims == Dims{1, 2});  // two axes: not a token input
  Tensor ids(DType::i64, {2, 2});
  cut->load_input(0, Indices{1, 0}, ids);
  CHECK(ids.to_int64_vector() == std::vector<std::int64_t>{4, 5, 1, 2});
  Tensor mask(DType::i64, {1, 2});  // int32 data into an int64 input, cut alike
  cut->load_input(1, Indices{1}, mask);
  CHECK(mask.to_int64_vector() == std::vector<std::int64_t>{1, 0});
  Tensor pos(DType::i64, {1, 1, 2});
  cut->load_input(2, Indices{1}, pos);
  CHECK(pos.to_int64_vector() == std::vector<std::int64_t>{9, 10});
  CHECK(token_window(full, 3)->inputs()[0].sample_dims == Dims{3});

  // Longer than the data: each row whole, then zeros (a tokenizer's padding: mask 0).
  const auto padded = token_window(full, 5);
  CHECK(padded->inputs()[0].sample_dims == Dims{5});
  CHECK(padded->inputs()[2].sample_dims == Dims{1, 2});
  Tensor padded_ids(DType::i64, {2, 5});
  padded->load_input(0, Indices{1, 0}, padded_ids);
  CHECK(padded_ids.to_int64_vector() == std::vector<std::int64_t>{4, 5, 6, 0, 0, 1, 2, 3, 0, 0});
  Tensor padded_mask(DType::i64, {1, 5});
  padded->load_input(1, Indices{0}, padded_mask);
  CHECK(padded_mask.to_int64_vector() == std::vector<std::int64_t>{1, 1, 0, 0, 0});

  check_error([&] { token_window(full, 0); },
              {"taking 0 tokens", "input 'input_ids'", "ids.npy", "must be at least 1"});
  write_npy(dir / "img.npy", Tensor(DType::f32, {2, 1, 2, 2}));
  const std::shared_ptr<const Dataset> images = open_dataset([&] {
    DatasetConfig c;
    c.format = "npy";
    c.images = dir / "img.npy";
    return c;
  }());
  check_error([&] { token_window(images, 1); }, {"no token input", "img.npy"});
}

TEST_CASE("labels are optional for arrays and checked against the sample count when given") {
  TempDir dir;
  write_npy(dir / "ids.npy", Tensor(DType::i64, {4, 2}));
  write_npy(dir / "y.npy",
            Tensor::from_values<std::int64_t>({4}, std::vector<std::int64_t>{0, 1, 1, 2}));
  DatasetConfig config;
  config.format = "npy";
  config.inputs = {{"input_ids", dir / "ids.npy"}};
  config.labels = dir / "y.npy";
  const auto dataset = open_dataset(config);
  CHECK(dataset->has_labels());
  CHECK(dataset->num_classes() == 3);
  CHECK(dataset->label(3) == 2);
}

TEST_CASE("dataset.inputs parses to named files in config order") {
  const YamlFile file = YamlFile::parse(R"(
dataset:
  format: npy
  inputs: {input_ids: x_ids.npy, attention_mask: /data/x_mask.npy}
  calibration:
    inputs: {input_ids: c_ids.npy, attention_mask: c_mask.npy}
    count: 8
)",
                                        "/cfg/run.yaml", "config");
  const DatasetConfig config = parse_dataset_config(file.root()["dataset"], file);
  REQUIRE(config.inputs.size() == 2);
  CHECK(config.inputs[0].name == "input_ids");
  CHECK(config.inputs[0].path == fs::path("/cfg/x_ids.npy"));
  CHECK(config.inputs[1].name == "attention_mask");
  CHECK(config.inputs[1].path == fs::path("/data/x_mask.npy"));
  CHECK(config.labels.empty());
  REQUIRE(config.calibration.inputs.size() == 2);
  CHECK(config.calibration.inputs[1].path == fs::path("/cfg/c_mask.npy"));
  CHECK(config.calibration.format == "npy");
  CHECK(config.calibration.count == 8);
}

TEST_CASE("a calibration source of named inputs must feed the dataset's inputs") {
  TempDir dir;
  write_npy(dir / "ids.npy", Tensor(DType::i64, {4, 5}));
  write_npy(dir / "c_ids.npy", Tensor(DType::i64, {6, 5}));
  write_npy(dir / "c_longer.npy", Tensor(DType::i64, {6, 7}));
  write_npy(dir / "c_other.npy", Tensor(DType::i64, {6, 7, 2}));
  DatasetConfig config;
  config.format = "npy";
  config.inputs = {{"input_ids", dir / "ids.npy"}};
  config.calibration.inputs = {{"input_ids", dir / "c_ids.npy"}};
  const auto dataset = open_dataset(config);
  const auto source = open_calibration_dataset(config, dataset->inputs());
  CHECK(source->size() == 6);
  config.calibration.inputs = {{"tokens", dir / "c_ids.npy"}};
  check_error([&] { open_calibration_dataset(config, dataset->inputs()); },
              {"dataset.calibration.inputs", "inputs [tokens]", "the dataset's are [input_ids]"});
  // Token sequences may be longer or shorter than the evaluation's; their rank must agree.
  config.calibration.inputs = {{"input_ids", dir / "c_longer.npy"}};
  CHECK(open_calibration_dataset(config, dataset->inputs())->inputs()[0].sample_dims == Dims{7});
  config.calibration.inputs = {{"input_ids", dir / "c_other.npy"}};
  check_error([&] { open_calibration_dataset(config, dataset->inputs()); },
              {"c_other.npy", "dims [7, 2]", "ids.npy", "give [5]"});
}

}  // namespace
}  // namespace bitplan::data_inputs_test
