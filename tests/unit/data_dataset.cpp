#include <doctest/doctest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "data/npy.hpp"
#include "data_test_util.hpp"

namespace bitplan::data_dataset_test {
namespace {

namespace fs = std::filesystem;
using test::check_error;
using test::idx_header;
using test::TempDir;
using test::write_bytes;

using Indices = std::vector<std::int64_t>;

// ---- select_indices --------------------------------------------------------------------

TEST_CASE("select_indices without a seed takes samples in order from the offset") {
  CHECK(select_indices({}, 4, "calibration") == Indices{0, 1, 2, 3});
  CHECK(select_indices({2, 0, 0}, 4, "calibration") == Indices{0, 1});
  CHECK(select_indices({2, 0, 1}, 4, "calibration") == Indices{1, 2});
  CHECK(select_indices({0, 0, 3}, 4, "calibration") == Indices{3});
}

TEST_CASE("select_indices shuffles with a fixed, platform-independent generator") {
  // Pinned values, cross-checked against an independent Python splitmix64 + Fisher-Yates:
  // a change here changes which samples every existing config selects.
  CHECK(select_indices({0, 1, 0}, 10, "calibration") == Indices{4, 2, 8, 1, 9, 3, 0, 6, 7, 5});
  CHECK(select_indices({0, 42, 0}, 10, "calibration") == Indices{0, 9, 5, 8, 6, 4, 7, 2, 1, 3});
  CHECK(select_indices({8, 7, 0}, 1000, "calibration") ==
        Indices{426, 57, 118, 82, 134, 989, 100, 348});

  // Same seed, disjoint offsets: calibration and validation never share a sample.
  const Indices calibration = select_indices({300, 9, 0}, 1000, "calibration");
  const Indices validation = select_indices({0, 9, 300}, 1000, "validation");
  CHECK(validation.size() == 700);
  std::set<std::int64_t> all(calibration.begin(), calibration.end());
  all.insert(validation.begin(), validation.end());
  CHECK(all.size() == 1000);
  CHECK(*all.rbegin() == 999);
  CHECK(select_indices({300, 10, 0}, 1000, "calibration") != calibration);
}

TEST_CASE("select_indices rejects counts and offsets the dataset cannot meet") {
  check_error(
      [] {
        select_indices({600, 0, 0}, 500, "calibration");
      },
      {"calibration", "count 600 is larger than the 500 samples available"});
  check_error(
      [] {
        select_indices({450, 1, 100}, 500, "validation");
      },
      {"validation", "count 450", "400 samples available", "from offset 100"});
  check_error([] { select_indices({0, 0, 501}, 500, "validation"); }, {"offset 501"});
  check_error([] { select_indices({-1, 0, 0}, 500, "validation"); }, {"count -1"});
  check_error([] { select_indices({0, 0, 500}, 500, "validation"); }, {"none are left"});
}

// ---- parse_dataset_config --------------------------------------------------------------

DatasetConfig parse(const std::string& yaml, const fs::path& file = "/cfg/run.yaml") {
  const YamlFile config = YamlFile::parse(yaml, file, "config");
  return parse_dataset_config(config.root()["dataset"], config);
}

TEST_CASE("parse_dataset_config reads every field and resolves relative paths") {
  const DatasetConfig config = parse(R"(
dataset:
  format: idx
  images: data/images-ubyte.gz
  labels: /abs/labels-ubyte
  class_names: [a, b, "c d"]
  preprocess:
    scale: 0.5
    mean: [0.25]
    std: [2]
    layout: NHWC
  calibration: {count: 100, seed: 18446744073709551615, offset: 010}
  validation: {count: 0}
)");
  CHECK(config.format == "idx");
  CHECK(config.images == fs::path("/cfg/data/images-ubyte.gz"));
  CHECK(config.labels == fs::path("/abs/labels-ubyte"));
  CHECK(config.class_names == std::vector<std::string>{"a", "b", "c d"});
  CHECK(config.preprocess.scale == 0.5f);
  CHECK(config.preprocess.mean == std::vector<float>{0.25f});
  CHECK(config.preprocess.std == std::vector<float>{2.0f});
  CHECK(config.preprocess.layout == "NHWC");
  CHECK(config.calibration.count == 100);
  CHECK(config.calibration.seed == 18446744073709551615u);
  CHECK(config.calibration.offset == 10);  // decimal, not YAML 1.1 octal
  CHECK(config.validation.count == 0);

  const DatasetConfig folder = parse(R"(
dataset:
  format: image_folder
  images: cifar/test
  preprocess: {resize: 36, crop: 32, channels: 3}
)",
                                     "run.yaml");
  CHECK(folder.images == fs::path("cifar/test"));  // the config's folder is the working one
  CHECK(folder.preprocess.resize == 36);
  CHECK(folder.preprocess.crop == 32);
  CHECK(folder.preprocess.channels == 3);
  CHECK_FALSE(folder.preprocess.scale);  // the default for the data (1/255 for uint8)
  CHECK(folder.preprocess.layout == "NCHW");
}

TEST_CASE("parse_dataset_config errors name the file, line, column and rule") {
  const auto expect = [](const std::string& yaml, std::initializer_list<std::string_view> parts) {
    check_error([&] { parse(yaml, "run.yaml"); }, parts);
  };
  const std::string head = "dataset:\n  format: idx\n  images: i\n  labels: l\n";

  expect("dataset:\n  format: jpg\n  images: x\n",
         {"config 'run.yaml' line 2, column 11: dataset.format 'jpg' is not one of idx, npy, "
          "image_folder"});
  expect(head + "  lables: x\n",
         {"line 5, column 3: unknown key 'dataset.lables'; known keys are format, images"});
  expect(head + "  preprocess:\n    scael: 1\n",
         {"line 6, column 5: unknown key 'dataset.preprocess.scael'"});
  expect(head + "  calibration: {count: 5, sede: 1}\n",
         {"line 5, column 27: unknown key 'dataset.calibration.sede'"});
  expect(head + "  format: npy\n", {"line 5, column 3: key 'dataset.format' appears twice"});
  expect("dataset:\n  images: x\n", {"run.yaml", "dataset.format is required"});
  expect("dataset:\n  format: idx\n",
         {"dataset.images (one model input) or dataset.inputs (named model inputs) is required"});
  expect("dataset:\n  format: npy\n  images: x\n  inputs: {a: y}\n",
         {"line 4, column 11", "dataset.inputs and dataset.images exclude each other"});
  expect("dataset:\n  format: image_folder\n  inputs: {a: y}\n",
         {"line 3, column 11", "dataset.inputs applies to idx and npy datasets"});
  expect("dataset:\n  format: npy\n  inputs: [x]\n",
         {"line 3, column 11", "dataset.inputs must be a non-empty mapping of model input names"});
  expect("dataset:\n  format: npy\n  inputs: {a: y}\n  calibration: {images: c}\n",
         {"dataset.calibration.images applies to a dataset of one input"});
  expect("dataset:\n  format: npy\n  images: x\n  calibration: {inputs: {a: c}}\n",
         {"dataset.calibration.inputs needs dataset.inputs"});
  expect("dataset:\n  format: image_folder\n  images: x\n  labels: y\n",
         {"line 4, column 11", "dataset.labels does not apply to image_folder"});
  expect("dataset: [1, 2]\n", {"line 1, column 10", "dataset must be a mapping, not a list"});
  expect("dataset:\n", {"dataset must be a mapping, not empty"});
  expect("other: 1\n", {"run.yaml", "no dataset section"});
  expect(head + "  images: [a]\n", {"key 'dataset.images' appears twice"});
  expect("dataset:\n  format: idx\n  images: [a]\n",
         {"line 3, column 11", "dataset.images must be a string, not a list"});
  expect(head + "  calibration: {count: -1}\n",
         {"line 5, column 24", "dataset.calibration.count -1 must be in [0, "});
  expect(head + "  calibration: {count: ten}\n",
         {"dataset.calibration.count 'ten' is not an integer"});
  expect(head + "  validation: {seed: -3}\n",
         {"dataset.validation.seed -3 must be in [0, 18446744073709551615]"});
  expect(head + "  validation: {count: 99999999999999999999}\n",
         {"dataset.validation.count 99999999999999999999 must be in [0, 9223372036854775807]"});
  expect(head + "  validation: {seed: \"\"}\n", {"dataset.validation.seed must not be empty"});
  expect(head + "  validation: {offset: 1.5}\n",
         {"dataset.validation.offset '1.5' is not an integer"});
  expect(head + "  validation: 100\n", {"dataset.validation must be a mapping, not a scalar"});
  expect(head + "  preprocess: {scale: 1/255}\n",
         {"line 5, column 23", "dataset.preprocess.scale '1/255' is not a number"});
  expect(head + "  preprocess: {scale: 1e40}\n", {"scale 1e40 must be a finite float32"});
  expect(head + "  preprocess: {mean: 0.5}\n", {"dataset.preprocess.mean must be a list"});
  expect(head + "  preprocess: {std: [1, 0]}\n", {"dataset.preprocess.std has a 0"});
  expect(head + "  preprocess: {layout: CHW}\n", {"layout 'CHW' is not one of NCHW, NHWC"});
  expect(head + "  preprocess: {resize: 32}\n",
         {"line 5, column 24", "dataset.preprocess.resize applies to image_folder datasets (or an image_folder calibration source) only"});
  expect("dataset:\n  format: image_folder\n  images: x\n  preprocess: {channels: 2}\n",
         {"dataset.preprocess.channels 2 is not one of 0, 1, 3"});
  expect("dataset:\n  format: image_folder\n  images: x\n  preprocess: {crop: 100000}\n",
         {"dataset.preprocess.crop 100000 must be in [0, 65536]"});
  expect(head + "  class_names: [a, b, a]\n",
         {"line 5, column 23", "dataset.class_names lists 'a' twice"});
  expect(head + "  class_names: [a, [b]]\n", {"dataset.class_names must be a string, not a list"});
  expect(head + "  class_names: a\n", {"dataset.class_names must be a list of names"});
  expect(head + "  ? [a]\n  : 1\n",
         {"line 5, column 5: a key of dataset is a list; keys must be names"});
}

TEST_CASE("parse_dataset_config names the --set that made a key or value, not a line") {
  const auto expect = [](const std::string& assignment, std::string_view part) {
    YamlFile config = YamlFile::parse("dataset:\n  format: idx\n  images: i\n  labels: l\n",
                                      "run.yaml", "config");
    config.set(assignment);
    check_error([&] { parse_dataset_config(config.root()["dataset"], config); }, {part});
  };
  expect("dataset.preprocess.scael=1",
         "config 'run.yaml' (from --set dataset.preprocess.scael=1): unknown key "
         "'dataset.preprocess.scael'; known keys are scale, mean, std, layout, resize, crop, "
         "channels");
  expect("dataset.validation.seed=-3",
         "config 'run.yaml' (from --set dataset.validation.seed=-3): dataset.validation.seed -3 "
         "must be in [0, 18446744073709551615]");
  expect("dataset.labels=[a]",
         "config 'run.yaml' (from --set dataset.labels=[a]): dataset.labels must be a string");
}

TEST_CASE("parse_dataset_config reads a separate calibration source") {
  const DatasetConfig config = parse(R"(
dataset:
  format: idx
  images: test-images
  labels: test-labels
  calibration: {images: train/images.npy, labels: /abs/train-labels.npy, format: npy,
                count: 512, seed: 1}
)");
  CHECK(config.calibration.images == fs::path("/cfg/train/images.npy"));
  CHECK(config.calibration.labels == fs::path("/abs/train-labels.npy"));
  CHECK(config.calibration.format == "npy");
  CHECK(config.calibration.count == 512);
  CHECK(config.calibration.seed == 1);

  // The format defaults to the dataset's; labels are optional.
  const DatasetConfig folder = parse(R"(
dataset:
  format: image_folder
  images: cifar/test
  calibration: {images: cifar/calib, count: 8}
)");
  CHECK(folder.calibration.images == fs::path("/cfg/cifar/calib"));
  CHECK(folder.calibration.labels.empty());
  CHECK(folder.calibration.format == "image_folder");

  // Without images: a selection of the dataset's own images, as before.
  const DatasetConfig same = parse(R"(
dataset:
  format: idx
  images: i
  labels: l
  calibration: {count: 64, seed: 3, offset: 2}
)");
  CHECK(same.calibration.images.empty());
  CHECK(same.calibration.format.empty());
  CHECK(same.calibration.count == 64);
  CHECK(same.calibration.offset == 2);
}

TEST_CASE("parse_dataset_config rejects inconsistent calibration sources") {
  const auto expect = [](const std::string& yaml, std::initializer_list<std::string_view> parts) {
    check_error([&] { parse(yaml, "run.yaml"); }, parts);
  };
  const std::string head = "dataset:\n  format: idx\n  images: i\n  labels: l\n";
  expect(head + "  calibration: {labels: train-labels, count: 5}\n",
         {"line 5, column 25",
          "dataset.calibration.labels describes a separate calibration source: give its images"});
  expect(head + "  calibration: {format: npy}\n",
         {"dataset.calibration.format describes a separate calibration source"});
  expect(head + "  calibration: {images: t, format: jpg}\n",
         {"line 5, column 36", "dataset.calibration.format 'jpg' is not one of idx, npy"});
  expect(head + "  calibration: {images: t, format: image_folder, labels: x}\n",
         {"dataset.calibration.labels does not apply to an image_folder source"});
  expect("dataset:\n  format: image_folder\n  images: x\n  calibration: {images: c, labels: y}\n",
         {"dataset.calibration.labels does not apply to an image_folder source"});
  expect(head + "  calibration: {images: [a]}\n",
         {"dataset.calibration.images must be a string, not a list"});
  expect(head + "  calibration: {imgs: t}\n",
         {"unknown key 'dataset.calibration.imgs'; known keys are images, inputs, labels, format, "
          "count, seed, offset"});
}

// ---- IDX / NPY datasets ----------------------------------------------------------------

struct ArrayFiles {
  DatasetConfig config;
  std::vector<std::uint8_t> pixels;
};

// Five 2x3 images (pixel i of image n = 10 n + i) and labels {3, 0, 1, 2, 3} as IDX files.
ArrayFiles idx_files(const TempDir& dir) {
  ArrayFiles files;
  for (int n = 0; n < 5; ++n)
    for (int i = 0; i < 6; ++i) files.pixels.push_back(static_cast<std::uint8_t>(10 * n + i));
  write_bytes(dir / "images-ubyte",
              idx_header(0x08, {5, 2, 3}) + std::string(files.pixels.begin(), files.pixels.end()));
  write_bytes(dir / "labels-ubyte", idx_header(0x08, {5}) + std::string("\3\0\1\2\3", 5));
  files.config.format = "idx";
  files.config.images = dir / "images-ubyte";
  files.config.labels = dir / "labels-ubyte";
  return files;
}

TEST_CASE("an IDX dataset preprocesses uint8 samples on load") {
  TempDir dir;
  ArrayFiles files = idx_files(dir);
  files.config.preprocess.mean = {0.1f};
  files.config.preprocess.std = {0.5f};
  const auto dataset = open_dataset(files.config);
  CHECK(dataset->size() == 5);
  CHECK(dataset->sample_dims() == Dims{1, 2, 3});
  CHECK(dataset->num_classes() == 4);  // the largest label + 1
  CHECK(dataset->class_names() == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(dataset->label(0) == 3);

  const Indices indices = {4, 1};
  std::vector<float> batch(12);
  dataset->load(indices, batch.data());
  for (std::size_t s = 0; s < 2; ++s)
    for (std::size_t i = 0; i < 6; ++i)
      CHECK(batch[6 * s + i] ==
            doctest::Approx((files.pixels[6 * indices[s] + i] / 255.0f - 0.1f) / 0.5f));
}

TEST_CASE("an NPY dataset transposes to NHWC and applies scale to float32 images") {
  TempDir dir;
  // Two images of 3 channels x 1 x 2 pixels, channels-first as stored.
  std::vector<float> values(12);
  std::iota(values.begin(), values.end(), 0.0f);
  write_npy(dir / "x.npy", Tensor::from_values<float>({2, 3, 1, 2}, values));
  write_npy(dir / "y.npy", Tensor::from_values<std::int64_t>({2}, std::vector<std::int64_t>{1, 0}));
  DatasetConfig config;
  config.format = "npy";
  config.images = dir / "x.npy";
  config.labels = dir / "y.npy";
  config.class_names = {"no", "yes"};
  config.preprocess.scale = 1.0f;
  config.preprocess.mean = {0.0f, 1.0f, 2.0f};
  config.preprocess.layout = "NHWC";
  const auto dataset = open_dataset(config);
  CHECK(dataset->sample_dims() == Dims{1, 2, 3});
  CHECK(dataset->class_names() == config.class_names);
  const Indices indices = {1};
  std::vector<float> sample(6);
  dataset->load(indices, sample.data());
  // Image 1 holds channel planes {6, 7}, {8, 9}, {10, 11}; NHWC interleaves them.
  CHECK(sample == std::vector<float>{6, 8 - 1, 10 - 2, 7, 9 - 1, 11 - 2});
}

TEST_CASE("array datasets reject inconsistent images, labels and settings") {
  TempDir dir;
  ArrayFiles files = idx_files(dir);
  SUBCASE("label count differs from the image count") {
    write_bytes(files.config.labels, idx_header(0x08, {4}) + std::string("\0\1\2\3", 4));
    check_error([&] { open_dataset(files.config); },
                {"labels-ubyte", "4 labels", "images-ubyte", "hold 5 samples"});
  }
  SUBCASE("label out of range of the class names") {
    files.config.class_names = {"a", "b", "c"};
    check_error([&] { open_dataset(files.config); },
                {"labels-ubyte", "label 3 at index 0", "must be in [0, 3)"});
  }
  SUBCASE("negative label") {
    write_npy(dir / "y.npy", Tensor::from_values<std::int64_t>({5}, Indices{0, 1, -1, 0, 0}));
    files.config.format = "npy";
    write_npy(dir / "x.npy", Tensor(DType::u8, {5, 2, 3}));
    files.config.images = dir / "x.npy";
    files.config.labels = dir / "y.npy";
    check_error([&] { open_dataset(files.config); }, {"y.npy", "label -1 at index 2"});
  }
  SUBCASE("float labels") {
    write_npy(dir / "y.npy", Tensor(DType::f32, {5}));
    write_npy(dir / "x.npy", Tensor(DType::u8, {5, 2, 3}));
    files.config = {"npy", dir / "x.npy", {}, dir / "y.npy", {}, {}, {}, {}};
    check_error([&] { open_dataset(files.config); }, {"y.npy", "float32", "must be integers"});
  }
  SUBCASE("int8 samples") {
    write_bytes(files.config.images, idx_header(0x09, {5, 1, 1}) + std::string(5, '\0'));
    check_error([&] { open_dataset(files.config); },
                {"dtype int8", "uint8 or float32 (preprocessed) or int64/int32 (fed as stored)"},
                ErrorKind::unsupported);
  }
  SUBCASE("NHWC for samples that are not images") {
    write_bytes(files.config.images, idx_header(0x08, {5, 6}) + std::string(30, '\0'));
    files.config.preprocess.layout = "NHWC";
    check_error([&] { open_dataset(files.config); },
                {"images-ubyte", "preprocess.layout NHWC applies to images", "[5, 6]"});
  }
  SUBCASE("mean for the wrong channel count") {
    files.config.preprocess.mean = {0.5f, 0.5f, 0.5f};
    check_error([&] { open_dataset(files.config); },
                {"images-ubyte", "preprocess.mean has 3 values", "one per channel (1)"});
  }
  SUBCASE("image-folder settings") {
    files.config.preprocess.resize = 32;
    check_error([&] { open_dataset(files.config); }, {"apply to image folders only"});
  }
  SUBCASE("unknown format") {
    files.config.format = "csv";
    check_error([&] { open_dataset(files.config); }, {"format 'csv'"});
  }
}

TEST_CASE("the Fashion-MNIST test set loads as 10000 1x28x28 images of 10 classes") {
  const fs::path root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(root / "t10k-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: ", root.string(), " is absent (it is only on the project's machines)");
    return;
  }
  DatasetConfig config;
  config.format = "idx";
  config.images = root / "t10k-images-idx3-ubyte.gz";
  config.labels = root / "t10k-labels-idx1-ubyte.gz";
  const auto dataset = open_dataset(config);
  CHECK(dataset->size() == 10000);
  CHECK(dataset->sample_dims() == Dims{1, 28, 28});
  CHECK(dataset->num_classes() == 10);

  const Indices indices = select_indices({256, 1, 0}, dataset->size(), "calibration");
  std::vector<float> batch(indices.size() * 28 * 28);
  dataset->load(indices, batch.data());
  const double mean = std::accumulate(batch.begin(), batch.end(), 0.0) / batch.size();
  // Fashion-MNIST's mean pixel is about 0.29 of full scale.
  CHECK(mean > 0.2);
  CHECK(mean < 0.4);
  std::set<std::int64_t> labels;
  for (std::int64_t i = 0; i < dataset->size(); ++i) labels.insert(dataset->label(i));
  CHECK(labels.size() == 10);
}

// ---- Calibration source ------------------------------------------------------------------

// An IDX dataset config (idx_files) whose calibration source is `count` images of
// `height` x `width` in the same folder, without labels.
DatasetConfig with_calibration_source(const TempDir& dir, std::uint32_t count, std::uint32_t height,
                                      std::uint32_t width) {
  DatasetConfig config = idx_files(dir).config;
  const std::string pixels(std::size_t{count} * height * width, '\x40');
  write_bytes(dir / "calib-ubyte", idx_header(0x08, {count, height, width}) + pixels);
  config.calibration.images = dir / "calib-ubyte";
  config.calibration.format = "idx";
  return config;
}

TEST_CASE("a calibration source opens with the dataset's preprocessing, labels optional") {
  TempDir dir;
  DatasetConfig config = with_calibration_source(dir, 7, 2, 3);
  config.preprocess.mean = {0.25f};
  const auto source = open_calibration_dataset(config, Dims{1, 2, 3});
  CHECK(source->size() == 7);
  CHECK_FALSE(source->has_labels());  // no labels file: calibration reads none
  const Indices first = {0};
  std::vector<float> sample(6);
  source->load(first, sample.data());
  CHECK(sample[0] == doctest::Approx(64 / 255.0f - 0.25f));

  // With labels, they are checked like a dataset's.
  write_bytes(dir / "calib-labels", idx_header(0x08, {6}) + std::string(6, '\1'));
  config.calibration.labels = dir / "calib-labels";
  check_error(
      [&] {
        open_calibration_dataset(config, Dims{1, 2, 3});
      },
      {"open calibration source (dataset.calibration.images)", "calib-labels", "6 labels",
       "hold 7 samples"});
}

TEST_CASE("a calibration source must give the evaluation samples' dims") {
  TempDir dir;
  const DatasetConfig config = with_calibration_source(dir, 4, 3, 3);
  check_error(
      [&] {
        open_calibration_dataset(config, Dims{1, 2, 3});
      },
      {"open calibration source '", "calib-ubyte", "samples of dims [1, 3, 3]",
       "the dataset images '", "images-ubyte", "give [1, 2, 3]"});
}

TEST_CASE("a missing calibration source is an error naming the file") {
  TempDir dir;
  DatasetConfig config = idx_files(dir).config;
  config.calibration.images = dir / "no-such-train-images.gz";
  config.calibration.format = "idx";
  check_error(
      [&] {
        open_calibration_dataset(config, Dims{1, 2, 3});
      },
      {"open calibration source (dataset.calibration.images)", "no-such-train-images.gz",
       "does not exist"});
  config.calibration.format = "image_folder";
  check_error(
      [&] {
        open_calibration_dataset(config, Dims{1, 2, 3});
      },
      {"open calibration source", "no-such-train-images.gz", "does not exist"});
}

}  // namespace
}  // namespace bitplan::data_dataset_test
