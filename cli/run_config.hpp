// The run configuration file (YAML). One plain struct per section, filled from the file and
// overridden by command-line flags. Later sections (plan, search, target) join here.
//
//   model: models/fmnist_resnet.onnx        # relative to this file's folder
//   dataset: { ... }                        # see data/dataset.hpp
//   evaluate: {batch: 64, threads: 0}       # 0 threads = all cores
#pragma once

#include <filesystem>

#include "data/dataset.hpp"

namespace bitplan {

struct EvaluateSection {
  std::int64_t batch = 64;
  int threads = 0;
};

struct RunConfig {
  std::filesystem::path source;  // the config file, for messages
  std::filesystem::path model;
  DatasetConfig dataset;
  bool has_dataset = false;
  EvaluateSection evaluate;
};

// Reads and validates a run config. YAML syntax and schema errors name the file, line and
// column; unknown keys are errors.
RunConfig load_run_config(const std::filesystem::path& path);

}  // namespace bitplan
