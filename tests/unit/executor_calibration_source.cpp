// Where calibration samples come from (calibration_data): a selection of the evaluation
// images, or a separate source named in the cache key and read only when the cache misses.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "data_test_util.hpp"
#include "executor/model.hpp"
#include "executor/quant/simulate.hpp"

namespace bitplan::executor_calibration_source_test {
namespace {

namespace fs = std::filesystem;
using test::check_error;
using test::idx_header;
using test::TempDir;
using test::write_bytes;

const fs::path kSource = BITPLAN_SOURCE_DIR;

// `count` 28x28 IDX images of pixel value `pixel` (Fashion-MNIST's shape) in `dir`/`name`.
fs::path write_images(const TempDir& dir, const std::string& name, std::uint32_t count,
                      char pixel) {
  return write_bytes(dir / name, idx_header(0x08, {count, 28, 28}) +
                                     std::string(std::size_t{count} * 28 * 28, pixel));
}

// A 4-image evaluation set in `dir` whose calibration source is 9 images of a brighter value.
DatasetConfig two_sources(const TempDir& dir) {
  DatasetConfig config;
  config.format = "idx";
  config.images = write_images(dir, "test-images", 4, '\x10');
  config.labels = write_bytes(dir / "test-labels", idx_header(0x08, {4}) + std::string(4, '\0'));
  config.calibration.count = 3;
  config.calibration.seed = 1;
  config.calibration.images = write_images(dir, "train-images", 9, '\x60');
  config.calibration.format = "idx";
  return config;
}

TEST_CASE("calibration_data: the old form selects from the evaluation images") {
  TempDir dir;
  DatasetConfig config = two_sources(dir);
  config.calibration.images.clear();
  const auto dataset = open_dataset(config);
  const CalibrationData data = calibration_data(config, *dataset, dir / "cache", 32);
  CHECK(data.dataset == dataset.get());
  CHECK(data.indices == select_indices(config.calibration, 4, "calibration"));
  CHECK(!data.open);
  CHECK(data.selection_id ==
        fmt::format("{}|{}|count=3|seed=1|offset=0", config.images.string(),
                    config.labels.string()));  // the id (and cache entries) of before
  CHECK(data.batch == 32);
}

TEST_CASE("calibration_data: a separate source enters the id and opens on first use") {
  TempDir dir;
  DatasetConfig config = two_sources(dir);
  const auto dataset = open_dataset(config);
  const CalibrationData data = calibration_data(config, *dataset, dir / "cache", 64);
  CHECK(data.dataset == nullptr);  // nothing read yet
  CHECK(data.selection_id.find("train-images") != std::string::npos);
  CHECK(data.selection_id.find("test-images") == std::string::npos);

  const CalibrationData::Samples samples = data.open();
  CHECK(samples.dataset->size() == 9);
  CHECK(samples.indices == select_indices(config.calibration, 9, "calibration"));

  config.calibration.count = 10;
  check_error(
      [&] { calibration_data(config, *dataset, {}, 64).open(); },
      {"select calibration ('", "train-images", "count 10 is larger than the 9 samples available"});
}

TEST_CASE("a separate calibration source gives its own ranges and is read only on a miss") {
  TempDir dir;
  const DatasetConfig config = two_sources(dir);
  const auto dataset = open_dataset(config);
  const LoadedModel model = load_model(kSource / "models/fmnist_mlp.onnx");
  const std::string first_input = quantizable_layers(model.graph).front().input;

  int opened = 0;
  const auto counting = [&] {
    CalibrationData data = calibration_data(config, *dataset, dir / "cache", 64);
    data.open = [&opened, open = data.open] {
      ++opened;
      return open();
    };
    return data;
  };
  QuantSimulator separate(model.graph, "test", counting());
  const RangeObserver::Range range =
      separate.ranges(CalibrationMethod::minmax, false, 8).at(first_input);
  CHECK(opened == 1);
  // The model's first layer sees the normalised pixels: the source's bright value, not the
  // evaluation images' dark one.
  CHECK(range.max == doctest::Approx(0x60 / 255.0f));

  DatasetConfig same_source = config;
  same_source.calibration.images.clear();
  QuantSimulator same(model.graph, "test",
                      calibration_data(same_source, *dataset, dir / "cache", 64));
  CHECK(same.ranges(CalibrationMethod::minmax, false, 8).at(first_input).max ==
        doctest::Approx(0x10 / 255.0f));

  // A second run finds the separate source's ranges in the cache and never opens it.
  QuantSimulator cached(model.graph, "test", counting());
  CHECK(cached.ranges(CalibrationMethod::minmax, false, 8).at(first_input).max ==
        doctest::Approx(range.max));
  CHECK(opened == 1);
}

}  // namespace
}  // namespace bitplan::executor_calibration_source_test
