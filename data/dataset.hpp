// Datasets: samples of one or several named model inputs (labelled or not), preprocessed on
// demand, and the `dataset:` section of a run config that describes them.
//
//   dataset:
//     format: idx                  # idx | npy | image_folder
//     images: fashion/t10k-images-idx3-ubyte.gz     # the one input of a one-input model
//     labels: fashion/t10k-labels-idx1-ubyte.gz     # optional for idx/npy
//     # or several named inputs (idx/npy), one file each, every file with the same N:
//     # inputs: {input_ids: x_input_ids.npy, attention_mask: x_attention_mask.npy}
//     class_names: [T-shirt, Trouser, ...]   # optional
//     preprocess: {scale: 0.00392157, mean: [0.286], std: [0.353], layout: NCHW}
//     calibration: {count: 512, seed: 1}   # a subset of `images` (test samples: leaks)
//     calibration:                         # or a separate source, e.g. the train split
//       {images: fashion/train-images-idx3-ubyte.gz, format: idx, count: 512, seed: 1}
//     validation: {count: 0}
//
// IDX and NPY arrays are [N, ...] of any rank >= 1. uint8 and float32 arrays are
// preprocessed to float32 (Preprocess); a rank-3 or rank-4 one is read as images [N, H, W]
// or [N, C, H, W], channels-first, and any other rank as samples of the stored dims. int64
// and int32 arrays (token ids, masks) are kept integer and fed unchanged, never preprocessed.
// Labels are integer arrays [N]. Image folders hold root/<class>/<file>.{jpg,jpeg,png}.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "core/yaml_reader.hpp"

namespace bitplan {

// Each sample value becomes x = (v * scale - mean[c]) / std[c]. Without an explicit scale it
// is 1/255 for uint8 data (images of 0..255) and 1 for float data, which is taken to hold the
// intended range already (Dataset::preprocess_note says which applied).
struct Preprocess {
  std::optional<float> scale;   // none: the default for the data's dtype (default_scale)
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
// One model input's file in `dataset.inputs` / `dataset.calibration.inputs`.
struct NamedInput {
  std::string name;  // the model input it feeds
  std::filesystem::path path;
};

struct CalibrationConfig : Selection {
  std::filesystem::path images;    // file (idx/npy) or folder (image_folder); empty: the dataset's
  std::vector<NamedInput> inputs;  // or several named inputs (a dataset given by `inputs`)
  std::filesystem::path labels;    // idx/npy labels file, or empty
  std::string format;              // "idx" | "npy" | "image_folder"; the dataset's when not given
};

struct DatasetConfig {
  std::string format;              // "idx" | "npy" | "image_folder"
  std::filesystem::path images;    // file (idx/npy) or folder (image_folder); or empty and
  std::vector<NamedInput> inputs;  // several named inputs (idx/npy), in config order
  std::filesystem::path labels;    // idx/npy labels file; empty: none (or image folders)
  Preprocess preprocess;
  CalibrationConfig calibration;
  Selection validation;
  std::vector<std::string> class_names;  // optional; image folders use their folder names
};

// The scale Preprocess applies when none is given: 1/255 for uint8, 1 for anything else.
float default_scale(DType source);

// One model input a dataset feeds.
struct DataInput {
  std::string name;          // the model input; empty: the model's only input (`dataset.images`)
  std::string source;        // the file (or folder) it comes from, for messages
  DType dtype = DType::f32;  // what it loads: f32 (preprocessed) or i64/i32 (as stored)
  Dims sample_dims;          // one sample, without the batch axis
};

// Random access to preprocessed samples.
class Dataset {
 public:
  virtual ~Dataset() = default;
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  std::int64_t size() const { return size_; }
  // Every input, in the order of the config (one for `images`).
  const std::vector<DataInput>& inputs() const { return inputs_; }
  // The first input's sample dims: {C, H, W} for NCHW images, {H, W, C} for NHWC.
  const Dims& sample_dims() const { return inputs_[0].sample_dims; }
  std::int64_t sample_numel() const { return product(sample_dims()); }
  bool has_labels() const { return !labels_.empty() || size_ == 0; }
  std::int64_t num_classes() const { return static_cast<std::int64_t>(class_names_.size()); }
  // The configured names, the image folder names, or "0", "1", ... when neither exists;
  // empty without labels.
  const std::vector<std::string>& class_names() const { return class_names_; }
  // Requires has_labels().
  std::int64_t label(std::int64_t index) const;
  // What preprocessing the float inputs get, e.g. "scale 1/255 (the default for uint8
  // data)"; for messages, so a user sees which default applied.
  const std::string& preprocess_note() const { return preprocess_note_; }

  // Writes the first input's preprocessed samples `indices` contiguously into `dst`
  // (indices.size() * sample_numel() floats); requires a float first input. Image folders
  // decode here, not at open.
  virtual void load(std::span<const std::int64_t> indices, float* dst) const = 0;

  // Writes input `input`'s samples `indices` into `dst`, whose dtype may differ from the
  // input's only between integer types (int32 <-> int64, values checked to fit); its numel
  // must be indices.size() * the sample numel. Fails (invalid input) naming the input and
  // both dtypes when float and integer meet.
  void load_input(std::size_t input, std::span<const std::int64_t> indices, Tensor& dst) const;

 protected:
  // One float input of `sample_dims`, labelled; labels must already lie in
  // [0, class_names.size()).
  Dataset(Dims sample_dims, std::vector<std::int64_t> labels, std::vector<std::string> class_names);
  // Several inputs of `size` samples each; `labels` empty (unlabelled) or one per sample.
  Dataset(std::vector<DataInput> inputs, std::int64_t size, std::vector<std::int64_t> labels,
          std::vector<std::string> class_names, std::string preprocess_note);

  // Writes input `input`'s samples in its own dtype (inputs()[input].dtype). The default
  // serves one float input through load().
  virtual void load_raw(std::size_t input, std::span<const std::int64_t> indices, void* dst) const;

 private:
  std::vector<DataInput> inputs_;
  std::int64_t size_ = 0;
  std::vector<std::int64_t> labels_;
  std::vector<std::string> class_names_;
  std::string preprocess_note_;
};

// Opens the dataset `config` describes. IDX/NPY arrays are read whole (and kept in their
// dtype); image folders are only listed, and decoded batch by batch in load(). Labels are
// read when given (required for image folders' classes: they always have them).
std::unique_ptr<Dataset> open_dataset(const DatasetConfig& config);

// Opens the separate calibration source config.calibration.images or .inputs (one must be
// set) as open_dataset would, with the dataset's preprocessing; calibration reads no labels.
// Its inputs must be `expected`, the evaluation dataset's (names, dtypes, sample dims): the error
// names both files and both dims. Every error says it is about the calibration source.
std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const std::vector<DataInput>& expected);
// The same for a one-input dataset of float samples of `sample_dims`.
std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const Dims& sample_dims);

// A view of `source` whose token inputs (integer samples of one axis: token ids, attention
// masks) hold `tokens` tokens: their first ones, or all of them followed by zeros up to
// `tokens` (padding as a tokenizer pads to a fixed length: mask 0, id 0); other inputs as they
// are, no labels. What a token model's workload at another sequence is fed: one decoding
// step's shapes (`tokens` 1), or an encoder's fixed deployment length (128) above the data's.
// Only shapes and latency depend on it, never a metric. Fails (invalid input) when `source`
// has no token input, or `tokens` < 1.
std::unique_ptr<Dataset> token_window(std::shared_ptr<const Dataset> source, std::int64_t tokens);

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
