// The Fashion-MNIST test set (Debian's dataset-fashion-mnist) as the fixture models see it.
#pragma once

#include <filesystem>
#include <memory>

#include "data/dataset.hpp"
#include "tests/skip.hpp"

namespace bitplan::testing {

inline DatasetConfig fashion_mnist_test_config() {
  DatasetConfig c;
  c.format = "idx";
  c.images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  c.labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  c.preprocess.mean = {0.2860f};
  c.preprocess.std = {0.3530f};
  return c;
}

// Null when the package is not installed: the caller skips (tests/skip.hpp) and returns.
inline std::unique_ptr<Dataset> open_fashion_mnist_test() {
  const DatasetConfig c = fashion_mnist_test_config();
  return std::filesystem::exists(c.images) ? open_dataset(c) : nullptr;
}

inline constexpr const char* kFashionMnistMissing =
    "Fashion-MNIST not installed (apt install dataset-fashion-mnist)";

}  // namespace bitplan::testing
