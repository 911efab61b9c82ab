// Datasets: labelled samples, preprocessed to float on demand, and the `dataset:` section of
// a run config that describes them.
//
//   dataset:
//     format: idx                  # idx | npy | image_folder
//     images: fashion/t10k-images-idx3-ubyte.gz
//     labels: fashion/t10k-labels-idx1-ubyte.gz
//     class_names: [T-shirt, Trouser, ...]   # optional
//     preprocess: {scale: 0.00392157, mean: [0.286], std: [0.353], layout: NCHW}
//     calibration: {count: 512, seed: 1}   # a subset of `images` (test samples: leaks)
//     calibration:                         # or a separate source, e.g. the train split
//       {images: fashion/train-images-idx3-ubyte.gz, format: idx, count: 512, seed: 1}
//     validation: {count: 0}
//
// IDX and NPY images are uint8 (or float32 for .npy) arrays [N, H, W] or [N, C, H, W],
// always read as channels-first; labels are integer arrays [N]. Image folders hold
// root/<class>/<file>.{jpg,jpeg,png}.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "core/yaml_reader.hpp"

namespace bitplan {

// Each sample value becomes x = (v * scale - mean[c]) / std[c]. `scale` applies to float32
// .npy images too: set it to 1 when they already hold the intended range.
struct Preprocess {
  float scale = 1.0f / 255.0f;
  std::vector<float> mean;      // one per channel, or empty (= 0)
  std::vector<float> std;       // one per channel, or empty (= 1)
  std::string layout = "NCHW";  // or "NHWC": the layout of the samples handed out
  int resize = 0;               // image folders: shorter side after resizing, 0 = keep the size
  int crop = 0;                 // image folders: centre crop to crop x crop, 0 = none
  int channels = 0;             // image folders: 1 or 3; 0 = those of the first image
};

// Which samples a run uses: see select_indices.
struct Selection {
  std::int64_t count = 0;  // 0 = all from `offset` on
  std::uint64_t seed = 0;  // 0 = dataset order
  std::int64_t offset = 0;
};

// `dataset.calibration`: which samples calibration observes. Without `images` they are a
// selection of the dataset's own (evaluation) images, so a test set would leak into the
// activation ranges; with it, a selection of a separate source (a train or calibration split)
// read with the dataset's preprocessing. Labels are optional there: calibration reads none.
struct CalibrationConfig : Selection {
  std::filesystem::path images;  // file (idx/npy) or folder (image_folder); empty: the dataset's
  std::filesystem::path labels;  // idx/npy labels file, or empty
  std::string format;            // "idx" | "npy" | "image_folder"; the dataset's when not given
};

struct DatasetConfig {
  std::string format;            // "idx" | "npy" | "image_folder"
  std::filesystem::path images;  // file (idx/npy) or folder (image_folder)
  std::filesystem::path labels;  // idx/npy labels file; empty for image folders
  Preprocess preprocess;
  CalibrationConfig calibration;
  Selection validation;
  std::vector<std::string> class_names;  // optional; image folders use their folder names
};

// Random access to preprocessed samples.
class Dataset {
 public:
  virtual ~Dataset() = default;
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  std::int64_t size() const { return static_cast<std::int64_t>(labels_.size()); }
  // One sample's dims without the batch axis: {C, H, W} for NCHW, {H, W, C} for NHWC.
  const Dims& sample_dims() const { return sample_dims_; }
  std::int64_t sample_numel() const { return product(sample_dims_); }
  std::int64_t num_classes() const { return static_cast<std::int64_t>(class_names_.size()); }
  // The configured names, the image folder names, or "0", "1", ... when neither exists.
  const std::vector<std::string>& class_names() const { return class_names_; }
  std::int64_t label(std::int64_t index) const;

  // Writes the preprocessed samples `indices` contiguously into `dst`
  // (indices.size() * sample_numel() floats). Image folders decode here, not at open.
  virtual void load(std::span<const std::int64_t> indices, float* dst) const = 0;

 protected:
  // Labels must already lie in [0, class_names.size()).
  Dataset(Dims sample_dims, std::vector<std::int64_t> labels, std::vector<std::string> class_names);

 private:
  Dims sample_dims_;
  std::vector<std::int64_t> labels_;
  std::vector<std::string> class_names_;
};

// Opens the dataset `config` describes. IDX/NPY arrays are read whole (and kept as uint8 or
// float32); image folders are only listed, and decoded batch by batch in load().
std::unique_ptr<Dataset> open_dataset(const DatasetConfig& config);

// Opens the separate calibration source config.calibration.images (which must be set) as
// open_dataset would, with the dataset's preprocessing; without calibration labels every
// sample reads as class 0. Its samples must have `sample_dims`, those of the evaluation
// dataset config.images: the error names both files and both dims. Every error says it is
// about the calibration source.
std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const Dims& sample_dims);

// A deterministic subset of [0, dataset_size): positions [offset, offset + count) of a
// permutation that is the identity for seed 0 and a seeded shuffle otherwise (its own
// splitmix64 + Fisher-Yates, so the same seed selects the same samples on every platform
// and standard library). Calibration and validation can share a seed and take disjoint
// offsets. count 0 takes everything from offset on; more than is left is an error naming
// both numbers. `what` ("calibration") names the selection in messages.
std::vector<std::int64_t> select_indices(const Selection& selection, std::int64_t dataset_size,
                                         std::string_view what);

// Parses the `dataset:` section `node` of the config file `config_file`; relative paths
// resolve against the file's folder. Errors name the file, line and column (or the --set
// that made the node) and the rule; unknown keys are errors, so a typo is never silently
// ignored (repeated keys were refused when the file was read).
DatasetConfig parse_dataset_config(const YAML::Node& node, const YamlFile& config_file);

}  // namespace bitplan
