// What the GPU tests share: a test skips (ctest's SKIP_RETURN_CODE) where no GPU is usable,
// with the reason; inputs are drawn from one engine seeded afresh every run.
#pragma once

#include <random>
#include <string>

#include "backends/cuda/runtime.hpp"
#include "tests/skip.hpp"

namespace bitplan::testing {

inline bool gpu_available() {
  std::string why;
  if (cuda::cuda_device_usable(why)) return true;
  skip(why);
  return false;
}

inline std::mt19937& rng() {
  static std::mt19937 engine(std::random_device{}());  // fresh inputs every run
  return engine;
}

}  // namespace bitplan::testing
