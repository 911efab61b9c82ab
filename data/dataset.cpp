#include "data/dataset.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <set>
#include <type_traits>
#include <utility>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/yaml_reader.hpp"
#include "data/idx.hpp"
#include "data/image_folder.hpp"
#include "data/normalize.hpp"
#include "data/npy.hpp"

namespace bitplan {
namespace fs = std::filesystem;
namespace {

// Without class_names, the class count is the largest label + 1; past this a label is
// more likely garbage than a class.
constexpr std::int64_t kMaxInferredClasses = 100000;

// ---- Arrays (IDX, NPY) -----------------------------------------------------------------

// One input of an array dataset: the stored array and, for float/uint8 data, how it is
// preprocessed.
struct ArrayInput {
  Tensor data;  // [N, C, H, W] images (C = 1 for [N, H, W]), or [N, stored dims...]
  std::optional<Normalizer> normalizer;  // none: an integer input, fed as stored
};

class ArrayDataset final : public Dataset {
 public:
  ArrayDataset(std::vector<ArrayInput> arrays, std::vector<DataInput> inputs, std::int64_t size,
               std::vector<std::int64_t> labels, std::vector<std::string> class_names,
               std::string note)
      : Dataset(std::move(inputs), size, std::move(labels), std::move(class_names),
                std::move(note)),
        arrays_(std::move(arrays)) {}

  void load(std::span<const std::int64_t> indices, float* dst) const override {
    BITPLAN_ASSERT(inputs()[0].dtype == DType::f32);
    load_raw(0, indices, dst);
  }

 protected:
  void load_raw(std::size_t input, std::span<const std::int64_t> indices,
                void* dst) const override {
    const ArrayInput& array = arrays_.at(input);
    const std::int64_t numel = product(inputs()[input].sample_dims);
    if (!array.normalizer) {  // integers: a copy of each sample's bytes
      const std::size_t bytes = static_cast<std::size_t>(numel) * dtype_size(array.data.dtype());
      const auto* src = static_cast<const char*>(array.data.raw());
      auto* out = static_cast<char*>(dst);
      for (std::size_t i = 0; i < indices.size(); ++i) {
        BITPLAN_ASSERT(indices[i] >= 0 && indices[i] < size());
        std::memcpy(out + i * bytes, src + static_cast<std::size_t>(indices[i]) * bytes, bytes);
      }
      return;
    }
    const Normalizer& normalizer = *array.normalizer;
    const std::int64_t pixels = numel / normalizer.channels();
    auto* out = static_cast<float*>(dst);
    const auto normalize = [&](const auto* src) {
      parallel_for(static_cast<std::int64_t>(indices.size()), 16,
                   [&](std::int64_t b, std::int64_t e) {
                     for (std::int64_t i = b; i < e; ++i) {
                       const std::int64_t index = indices[static_cast<std::size_t>(i)];
                       BITPLAN_ASSERT(index >= 0 && index < size());
                       normalizer.apply(src + index * numel, true, pixels, out + i * numel);
                     }
                   });
    };
    // open_array_input admits only these two float sources.
    if (array.data.dtype() == DType::u8)
      normalize(array.data.data<std::uint8_t>());
    else
      normalize(array.data.data<float>());
  }

 private:
  std::vector<ArrayInput> arrays_;
};

Tensor read_array(const std::string& format, const fs::path& path) {
  return format == "idx" ? read_idx(path) : read_npy(path);
}

// The labels file of an array dataset of `count` samples (from `samples_name`), checked; no
// labels file: none.
std::vector<std::int64_t> read_labels(const DatasetConfig& config, std::int64_t count,
                                      const std::string& samples_name) {
  if (config.labels.empty()) return {};
  const std::string labels_name = config.labels.string();
  const Tensor label_tensor = read_array(config.format, config.labels);
  if (label_tensor.rank() != 1)
    fail_input("open dataset '{}': labels of dims {}: must be [N]", labels_name,
               to_string(label_tensor.dims()));
  if (label_tensor.dtype() == DType::f32 || label_tensor.dtype() == DType::f64 ||
      label_tensor.dtype() == DType::boolean)
    fail_input("open dataset '{}': labels of dtype {}: must be integers", labels_name,
               dtype_name(label_tensor.dtype()));
  if (label_tensor.dim(0) != count)
    fail_input(
        "open dataset '{}': {} labels: the samples '{}' hold {} samples; the counts must "
        "match",
        labels_name, label_tensor.dim(0), samples_name, count);
  return label_tensor.to_int64_vector();
}

// The preprocessing note of one float input.
std::string scale_note(const Preprocess& preprocess, DType source) {
  if (preprocess.scale) return fmt::format("scale {} (preprocess.scale)", *preprocess.scale);
  return source == DType::u8
             ? "scale 1/255 (the default for uint8 data)"
             : fmt::format("scale 1 (the default for {} data: no rescaling)", dtype_name(source));
}

// Reads one input's array and decides how it is fed: integers as stored, uint8/float32
// preprocessed (rank 3/4 as images).
ArrayInput open_array_input(const DatasetConfig& config, const std::string& name,
                            const fs::path& path, DataInput& info, std::string& note) {
  const std::string file = path.string();
  Tensor data = read_array(config.format, path);
  const Dims dims = data.dims();
  if (data.rank() < 1)
    fail_input("open dataset '{}': a scalar array: samples must be [N, ...] (N samples first)",
               file);
  if (std::find(dims.begin(), dims.end(), 0) != dims.end())
    fail_input("open dataset '{}': samples of dims {}: every dimension must be positive", file,
               to_string(dims));
  if (data.dtype() == DType::f64) {  // float32 is what the executor runs on
    Tensor narrowed(DType::f32, dims);
    const auto values = data.values<double>();
    std::transform(values.begin(), values.end(), narrowed.data<float>(),
                   [](double v) { return static_cast<float>(v); });
    data = std::move(narrowed);
  }
  info.name = name;
  info.source = file;
  const std::string what = name.empty() ? "" : fmt::format("input '{}': ", name);
  if (data.dtype() == DType::i64 || data.dtype() == DType::i32) {
    info.dtype = data.dtype();
    info.sample_dims.assign(dims.begin() + 1, dims.end());
    note += fmt::format("{}{}{} fed as stored", note.empty() ? "" : "; ", what,
                        dtype_name(data.dtype()));
    return {std::move(data), std::nullopt};
  }
  if (data.dtype() != DType::u8 && data.dtype() != DType::f32)
    fail_unsupported(
        "open dataset '{}': samples of dtype {}: must be uint8 or float32 (preprocessed) or "
        "int64/int32 (fed as stored)",
        file, dtype_name(data.dtype()));
  info.dtype = DType::f32;
  note += fmt::format("{}{}{}", note.empty() ? "" : "; ", what,
                      scale_note(config.preprocess, data.dtype()));
  const bool image = data.rank() == 3 || data.rank() == 4;
  if (!image) {
    if (config.preprocess.layout != "NCHW")
      fail_input(
          "open dataset '{}': preprocess.layout {} applies to images ([N, H, W] or [N, C, H, "
          "W]); these samples are {}",
          file, config.preprocess.layout, to_string(dims));
    Normalizer normalizer(config.preprocess, 1, data.dtype(), file);
    info.sample_dims.assign(dims.begin() + 1, dims.end());
    return {std::move(data), std::move(normalizer)};
  }
  // [N, H, W] is one channel: a view with C = 1 keeps load() to one layout.
  if (data.rank() == 3) data = data.reshaped({dims[0], 1, dims[1], dims[2]});
  Normalizer normalizer(config.preprocess, data.dim(1), data.dtype(), file);
  info.sample_dims = normalizer.sample_dims(data.dim(2), data.dim(3));
  return {std::move(data), std::move(normalizer)};
}

std::unique_ptr<Dataset> open_array_dataset(const DatasetConfig& config) {
  const Preprocess& preprocess = config.preprocess;
  std::vector<NamedInput> sources = config.inputs;
  if (sources.empty()) sources.push_back({"", config.images});
  const std::string first_name = sources[0].path.string();
  // resize/crop/channels describe how an image folder is decoded; with an image-folder
  // calibration source they are its settings, and the arrays keep their stored size.
  if ((preprocess.resize != 0 || preprocess.crop != 0 || preprocess.channels != 0) &&
      config.calibration.format != "image_folder")
    fail_input(
        "open dataset '{}': preprocess resize, crop and channels apply to image "
        "folders only: {} images keep their stored size and channels",
        first_name, config.format);

  std::vector<ArrayInput> arrays;
  std::vector<DataInput> inputs;
  std::string note;
  for (const NamedInput& source : sources) {
    DataInput& info = inputs.emplace_back();
    arrays.push_back(open_array_input(config, source.name, source.path, info, note));
    if (arrays.back().data.dim(0) != arrays[0].data.dim(0))
      fail_input(
          "open dataset '{}': {} samples: input '{}' ('{}') has {}; every input must hold the "
          "same number of samples",
          source.path.string(), arrays.back().data.dim(0), sources[0].name, first_name,
          arrays[0].data.dim(0));
  }
  const std::int64_t count = arrays[0].data.dim(0);

  std::vector<std::int64_t> labels = read_labels(config, count, first_name);
  std::vector<std::string> class_names = config.class_names;
  if (!labels.empty()) {
    const std::string labels_name = config.labels.string();
    const bool inferred = class_names.empty();
    const std::int64_t limit =
        inferred ? kMaxInferredClasses : static_cast<std::int64_t>(class_names.size());
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] >= limit)
        fail_input("open dataset '{}': label {} at index {}: must be in [0, {}) ({})", labels_name,
                   labels[i], i, limit,
                   inferred ? "set dataset.class_names for more classes"
                            : "one per entry of dataset.class_names");
    if (inferred) {
      const std::int64_t classes = *std::max_element(labels.begin(), labels.end()) + 1;
      for (std::int64_t c = 0; c < classes; ++c) class_names.push_back(std::to_string(c));
    }
  } else {
    class_names.clear();
  }
  return std::make_unique<ArrayDataset>(std::move(arrays), std::move(inputs), count,
                                        std::move(labels), std::move(class_names), std::move(note));
}

// ---- Selection -------------------------------------------------------------------------

// splitmix64 (Steele, Lea, Flood 2014): a fixed, tiny generator, so a seed selects the same
// samples everywhere (std::shuffle's algorithm varies between standard libraries).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound): draws below 2^64 mod bound are rejected, which removes the
  // modulo bias.
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;)
      if (const std::uint64_t r = next(); r >= threshold) return r % bound;
  }

 private:
  std::uint64_t state_;
};

// ---- YAML ------------------------------------------------------------------------------

std::string_view node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "empty";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "a scalar";
  }
}

// The `dataset:` section: errors name the config file, line and column of the offending
// node (or the --set that made it).

template <typename... Args>
[[noreturn]] void fail_at(const KeyValue& v, fmt::format_string<Args...> format, Args&&... args) {
  v.fail(fmt::format(format, std::forward<Args>(args)...));
}

// The same key, name and file for another node: an item of the value's list.
KeyValue item_of(const KeyValue& v, const YAML::Node& item) {
  return {v.file, item, v.key, v.name};
}

// A section of `dataset:`, read with its key table.
template <typename Target>
void read_mapping(const KeyValue& v, std::type_identity_t<KeyTable<Target>> table, Target& target) {
  if (!v.node.IsMap()) fail_at(v, "{} must be a mapping, not {}", v.name, node_kind(v.node));
  read_section(v.file, v.node, v.name, table, target);
}

std::string string(const KeyValue& v) {
  if (!v.node.IsScalar()) fail_at(v, "{} must be a string, not {}", v.name, node_kind(v.node));
  if (v.node.Scalar().empty()) fail_at(v, "{} must not be empty", v.name);
  return v.node.Scalar();
}

// Decimal only: yaml-cpp's own conversion reads "010" as octal.
template <typename Int>
Int integer(const KeyValue& v, Int min, Int max) {
  const std::string text = string(v);
  const char* last = text.data() + text.size();
  // from_chars rejects a sign on unsigned types; "-3" is still a number, just out of range.
  const char* first = text.data() + (std::is_unsigned_v<Int> && text[0] == '-' ? 1 : 0);
  Int value{};
  const auto [end, ec] = std::from_chars(first, last, value);
  if (ec == std::errc::invalid_argument || end != last)
    fail_at(v, "{} '{}' is not an integer", v.name, text);
  if (ec == std::errc::result_out_of_range || first != text.data() || value < min || value > max)
    fail_at(v, "{} {} must be in [{}, {}]", v.name, text, min, max);
  return value;
}

float number(const KeyValue& v) {
  const std::string text = string(v);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size())
    fail_at(v, "{} '{}' is not a number", v.name, text);
  if (!std::isfinite(static_cast<float>(value)))
    fail_at(v, "{} {} must be a finite float32", v.name, text);
  return static_cast<float>(value);
}

std::vector<float> numbers(const KeyValue& v) {
  if (!v.node.IsSequence())
    fail_at(v, "{} must be a list of numbers, not {}", v.name, node_kind(v.node));
  std::vector<float> values;
  for (const auto& item : v.node) values.push_back(number(item_of(v, item)));
  return values;
}

// Relative paths are relative to the config file's folder.
fs::path path(const KeyValue& v) {
  const fs::path path = string(v);
  return path.is_relative() ? v.file.path().parent_path() / path : path;
}

std::string one_of(const KeyValue& v, std::initializer_list<std::string_view> allowed) {
  const std::string value = string(v);
  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end())
    fail_at(v, "{} '{}' is not one of {}", v.name, value, fmt::join(allowed, ", "));
  return value;
}

std::vector<std::string> class_names(const KeyValue& v) {
  if (!v.node.IsSequence())
    fail_at(v, "{} must be a list of names, not {}", v.name, node_kind(v.node));
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& item : v.node) {
    names.push_back(string(item_of(v, item)));
    if (!seen.insert(names.back()).second)
      fail_at(item_of(v, item), "{} lists '{}' twice", v.name, names.back());
  }
  return names;
}

// A selection's keys, shared by dataset.validation (a Selection) and dataset.calibration.
template <typename S>
void read_count(const KeyValue& v, S& selection) {
  selection.count = integer<std::int64_t>(v, 0, std::numeric_limits<std::int64_t>::max());
}
template <typename S>
void read_seed(const KeyValue& v, S& selection) {
  selection.seed = integer<std::uint64_t>(v, 0, std::numeric_limits<std::uint64_t>::max());
}
template <typename S>
void read_offset(const KeyValue& v, S& selection) {
  selection.offset = integer<std::int64_t>(v, 0, std::numeric_limits<std::int64_t>::max());
}

// `inputs: {NAME: FILE, ...}`: one file per model input, in the order written.
std::vector<NamedInput> named_inputs(const KeyValue& v) {
  if (!v.node.IsMap() || v.node.size() == 0)
    fail_at(v, "{} must be a non-empty mapping of model input names to files, not {}", v.name,
            v.node.IsMap() ? std::string_view("an empty mapping") : node_kind(v.node));
  std::vector<NamedInput> inputs;
  for (const auto& item : v.node) {
    const std::string name = string(item_of(v, item.first));
    const KeyValue file{v.file, item.second, v.key, fmt::format("{}.{}", v.name, name)};
    inputs.push_back({name, path(file)});
  }
  return inputs;
}

constexpr KeyReader<Selection> kSelectionKeys[] = {
    {"count", read_count<Selection>},
    {"seed", read_seed<Selection>},
    {"offset", read_offset<Selection>},
};

constexpr KeyReader<CalibrationConfig> kCalibrationKeys[] = {
    {"images", [](const KeyValue& v, CalibrationConfig& c) { c.images = path(v); }},
    {"inputs", [](const KeyValue& v, CalibrationConfig& c) { c.inputs = named_inputs(v); }},
    {"labels", [](const KeyValue& v, CalibrationConfig& c) { c.labels = path(v); }},
    {"format",
     [](const KeyValue& v, CalibrationConfig& c) {
       c.format = one_of(v, {"idx", "npy", "image_folder"});
     }},
    {"count", read_count<CalibrationConfig>},
    {"seed", read_seed<CalibrationConfig>},
    {"offset", read_offset<CalibrationConfig>},
};

constexpr KeyReader<Preprocess> kPreprocessKeys[] = {
    {"scale", [](const KeyValue& v, Preprocess& p) { p.scale = number(v); }},
    {"mean", [](const KeyValue& v, Preprocess& p) { p.mean = numbers(v); }},
    {"std",
     [](const KeyValue& v, Preprocess& p) {
       p.std = numbers(v);
       if (std::find(p.std.begin(), p.std.end(), 0.0f) != p.std.end())
         fail_at(v, "{} has a 0: every std must be non-zero", v.name);
     }},
    {"layout",
     [](const KeyValue& v, Preprocess& p) {
       p.layout = one_of(v, {"NCHW", "NHWC"});
     }},
    {"resize", [](const KeyValue& v, Preprocess& p) { p.resize = integer(v, 0, 1 << 16); }},
    {"crop", [](const KeyValue& v, Preprocess& p) { p.crop = integer(v, 0, 1 << 16); }},
    {"channels",
     [](const KeyValue& v, Preprocess& p) {
       p.channels = integer(v, 0, 3);
       if (p.channels == 2) fail_at(v, "{} 2 is not one of 0, 1, 3", v.name);
     }},
};

constexpr KeyReader<DatasetConfig> kDatasetKeys[] = {
    {"format",
     [](const KeyValue& v, DatasetConfig& c) {
       c.format = one_of(v, {"idx", "npy", "image_folder"});
     }},
    {"images", [](const KeyValue& v, DatasetConfig& c) { c.images = path(v); }},
    {"inputs", [](const KeyValue& v, DatasetConfig& c) { c.inputs = named_inputs(v); }},
    {"labels", [](const KeyValue& v, DatasetConfig& c) { c.labels = path(v); }},
    {"class_names", [](const KeyValue& v, DatasetConfig& c) { c.class_names = class_names(v); }},
    {"preprocess",
     [](const KeyValue& v, DatasetConfig& c) { read_mapping(v, kPreprocessKeys, c.preprocess); }},
    {"calibration",
     [](const KeyValue& v, DatasetConfig& c) { read_mapping(v, kCalibrationKeys, c.calibration); }},
    {"validation",
     [](const KeyValue& v, DatasetConfig& c) { read_mapping(v, kSelectionKeys, c.validation); }},
};

// The rules between keys, once each has been read: what a key requires of, or rules out for,
// the others.
void check_dataset_keys(const YamlFile& file, const YAML::Node& node, const DatasetConfig& config) {
  const auto fail = [&](const YAML::Node& at, const std::string& rule) { file.fail(at, rule); };
  if (!node["format"]) fail(node, "dataset.format is required: idx, npy or image_folder");
  if (!node["images"] && !node["inputs"])
    fail(node,
         "dataset.images (one model input) or dataset.inputs (named model inputs) is required");
  if (node["images"] && node["inputs"])
    fail(node["inputs"],
         "dataset.inputs and dataset.images exclude each other: images is the shorthand for the "
         "one input of a one-input model");
  const bool folder = config.format == "image_folder";
  if (folder && node["inputs"])
    fail(node["inputs"],
         "dataset.inputs applies to idx and npy datasets, not image_folder (one folder is one "
         "image input: dataset.images)");
  if (folder && node["labels"])
    fail(node["labels"],
         "dataset.labels does not apply to image_folder datasets: their labels are the class "
         "folders");
  const YAML::Node calibration = node["calibration"];
  // An npy dataset of 224 px images may calibrate on an image folder of another size: the
  // folder's decoding takes resize/crop/channels then.
  const bool folder_calibration = calibration && calibration.IsMap() && calibration["format"] &&
                                  calibration["format"].IsScalar() &&
                                  calibration["format"].Scalar() == "image_folder";
  if (const YAML::Node preprocess = node["preprocess"];
      preprocess && !folder && !folder_calibration)
    for (const char* key : {"resize", "crop", "channels"})
      if (preprocess[key])
        fail(preprocess[key],
             fmt::format(
                 "dataset.preprocess.{} applies to image_folder datasets (or an image_folder "
                 "calibration source) only, not {}",
                 key, config.format));
  if (!calibration) return;
  // dataset.calibration: a selection, optionally of its own source in its `format`
  // (default: the dataset's).
  const bool separate = calibration["images"].IsDefined() || calibration["inputs"].IsDefined();
  for (const char* key : {"labels", "format"})
    if (!separate && calibration[key])
      fail(calibration[key],
           fmt::format("dataset.calibration.{} describes a separate calibration source: give its "
                       "images too (dataset.calibration.images)",
                       key));
  // The calibration source feeds the same inputs as the dataset, in the same form.
  if (calibration["images"] && calibration["inputs"])
    fail(calibration["inputs"],
         "dataset.calibration.inputs and dataset.calibration.images exclude each other");
  if (calibration["inputs"] && !node["inputs"])
    fail(calibration["inputs"],
         "dataset.calibration.inputs needs dataset.inputs: a dataset of one image input "
         "calibrates from dataset.calibration.images");
  if (calibration["images"] && node["inputs"])
    fail(calibration["images"],
         "dataset.calibration.images applies to a dataset of one input (dataset.images); this "
         "one has dataset.inputs: give dataset.calibration.inputs");
  const std::string& source_format =
      config.calibration.format.empty() ? config.format : config.calibration.format;
  if (separate && source_format == "image_folder" && calibration["labels"])
    fail(calibration["labels"],
         "dataset.calibration.labels does not apply to an image_folder source: its labels are "
         "the class folders");
}

}  // namespace

float default_scale(DType source) {
  return source == DType::u8 ? 1.0f / 255.0f : 1.0f;
}

Dataset::Dataset(Dims sample_dims, std::vector<std::int64_t> labels,
                 std::vector<std::string> class_names)
    : inputs_{DataInput{"", "", DType::f32, std::move(sample_dims)}},
      size_(static_cast<std::int64_t>(labels.size())),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)) {}

Dataset::Dataset(std::vector<DataInput> inputs, std::int64_t size, std::vector<std::int64_t> labels,
                 std::vector<std::string> class_names, std::string preprocess_note)
    : inputs_(std::move(inputs)),
      size_(size),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)),
      preprocess_note_(std::move(preprocess_note)) {
  BITPLAN_ASSERT(!inputs_.empty());
  BITPLAN_ASSERT(labels_.empty() || static_cast<std::int64_t>(labels_.size()) == size_);
}

std::int64_t Dataset::label(std::int64_t index) const {
  BITPLAN_ASSERT(index >= 0 && index < size() && !labels_.empty());
  return labels_[static_cast<std::size_t>(index)];
}

void Dataset::load_raw(std::size_t input, std::span<const std::int64_t> indices, void* dst) const {
  BITPLAN_ASSERT(input == 0 && inputs_[0].dtype == DType::f32);
  load(indices, static_cast<float*>(dst));
}

void Dataset::load_input(std::size_t input, std::span<const std::int64_t> indices,
                         Tensor& dst) const {
  const DataInput& info = inputs_.at(input);
  BITPLAN_ASSERT(dst.numel() ==
                 static_cast<std::int64_t>(indices.size()) * product(info.sample_dims));
  if (dst.dtype() == info.dtype) return load_raw(input, indices, dst.raw());
  const auto is_int = [](DType t) { return t == DType::i64 || t == DType::i32; };
  if (!is_int(dst.dtype()) || !is_int(info.dtype))
    fail_input(
        "feeding input '{}' from '{}': the data is {} but the model input is {}; give {} data "
        "for it",
        info.name, info.source, dtype_name(info.dtype), dtype_name(dst.dtype()),
        dtype_name(dst.dtype()));
  Tensor stored(info.dtype, dst.dims());
  load_raw(input, indices, stored.raw());
  const std::vector<std::int64_t> values = stored.to_int64_vector();
  if (dst.dtype() == DType::i64) {
    std::copy(values.begin(), values.end(), dst.data<std::int64_t>());
    return;
  }
  auto* out = dst.data<std::int32_t>();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] < std::numeric_limits<std::int32_t>::min() ||
        values[i] > std::numeric_limits<std::int32_t>::max())
      fail_input("feeding input '{}' from '{}': value {} does not fit the model's int32 input",
                 info.name, info.source, values[i]);
    out[i] = static_cast<std::int32_t>(values[i]);
  }
}

namespace {

bool token_sample(const DataInput& input) {
  return input.sample_dims.size() == 1 && (input.dtype == DType::i64 || input.dtype == DType::i32);
}

class TokenWindowDataset final : public Dataset {
 public:
  TokenWindowDataset(std::shared_ptr<const Dataset> source, std::vector<DataInput> inputs)
      : Dataset(std::move(inputs), source->size(), {}, {}, source->preprocess_note()),
        source_(std::move(source)) {}

  void load(std::span<const std::int64_t> indices, float* dst) const override {
    source_->load(indices, dst);  // a float first input is no token input: as it is
  }

 protected:
  void load_raw(std::size_t input, std::span<const std::int64_t> indices,
                void* dst) const override {
    const DataInput& full = source_->inputs()[input];
    const DataInput& cut = inputs()[input];
    const auto n = static_cast<std::int64_t>(indices.size());
    if (full.sample_dims == cut.sample_dims) {
      Tensor whole(full.dtype, concat_dims(n, full.sample_dims));
      source_->load_input(input, indices, whole);
      std::memcpy(dst, whole.raw(), whole.nbytes());
      return;
    }
    // The first min(stored, window) tokens of each row; past a row's end, zeros.
    Tensor whole(full.dtype, {n, full.sample_dims[0]});
    source_->load_input(input, indices, whole);
    const std::size_t element = dtype_size(full.dtype);
    const std::size_t row = static_cast<std::size_t>(cut.sample_dims[0]) * element;
    const std::size_t stored = static_cast<std::size_t>(full.sample_dims[0]) * element;
    std::memset(dst, 0, row * static_cast<std::size_t>(n));
    for (std::int64_t r = 0; r < n; ++r)
      std::memcpy(static_cast<char*>(dst) + r * row,
                  static_cast<const char*>(whole.raw()) + r * stored, std::min(row, stored));
  }

 private:
  static Dims concat_dims(std::int64_t n, const Dims& sample) {
    Dims dims{n};
    dims.insert(dims.end(), sample.begin(), sample.end());
    return dims;
  }
  std::shared_ptr<const Dataset> source_;
};

}  // namespace

std::unique_ptr<Dataset> token_window(std::shared_ptr<const Dataset> source, std::int64_t tokens) {
  std::vector<DataInput> inputs = source->inputs();
  bool any = false;
  for (DataInput& input : inputs) {
    if (!token_sample(input)) continue;
    if (tokens < 1)
      fail_input("taking {} tokens of input '{}' ('{}'): the sequence must be at least 1", tokens,
                 input.name, input.source);
    input.sample_dims[0] = tokens;
    any = true;
  }
  if (!any)
    fail_input(
        "taking a dataset's first {} tokens: it has no token input (integer "
        "samples of one axis, e.g. input_ids); its first input is '{}'",
        tokens, source->inputs()[0].source);
  return std::make_unique<TokenWindowDataset>(std::move(source), std::move(inputs));
}

std::unique_ptr<Dataset> open_dataset(const DatasetConfig& config) {
  if (config.format == "image_folder") return open_image_folder(config);
  if (config.format == "idx" || config.format == "npy") return open_array_dataset(config);
  fail_input("open dataset '{}': format '{}': must be idx, npy or image_folder",
             config.images.string(), config.format);
}

std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const std::vector<DataInput>& expected) {
  const CalibrationConfig& calibration = config.calibration;
  BITPLAN_ASSERT(!calibration.images.empty() || !calibration.inputs.empty());
  DatasetConfig source;
  source.format = calibration.format.empty() ? config.format : calibration.format;
  source.images = calibration.images;
  source.inputs = calibration.inputs;
  source.labels = calibration.labels;
  source.preprocess = config.preprocess;
  if (source.format != "image_folder") {
    // An image-folder dataset's decoding settings; the calibration arrays keep their size.
    source.preprocess.resize = source.preprocess.crop = source.preprocess.channels = 0;
  }
  // class_names stay the dataset's concern: a calibration split's labels are never read.
  const std::string key = calibration.images.empty() ? "inputs" : "images";
  std::unique_ptr<Dataset> dataset;
  try {
    if (source.format == "image_folder")
      dataset = open_image_folder(source);
    else if (source.format == "idx" || source.format == "npy")
      dataset = open_array_dataset(source);
    else
      fail_input("open dataset '{}': format '{}': must be idx, npy or image_folder",
                 source.images.string(), source.format);
  } catch (const Error& e) {
    throw Error(e.kind(),
                fmt::format("open calibration source (dataset.calibration.{}): {}", key, e.what()));
  }
  const auto& got = dataset->inputs();
  const auto names = [](const std::vector<DataInput>& inputs) {
    std::vector<std::string> out;
    for (const DataInput& i : inputs) out.push_back(i.name.empty() ? "images" : i.name);
    return out;
  };
  if (names(got) != names(expected))
    fail_input(
        "open calibration source (dataset.calibration.{}): inputs [{}]: the dataset's are "
        "[{}]; calibration must feed the same inputs",
        key, fmt::join(names(got), ", "), fmt::join(names(expected), ", "));
  // Integer inputs (token ids, masks) may differ in length: only their rank must agree.
  const auto same_form = [](const DataInput& a, const DataInput& b) {
    if (a.dtype != b.dtype) return false;
    return a.dtype == DType::f32 ? a.sample_dims == b.sample_dims
                                 : a.sample_dims.size() == b.sample_dims.size();
  };
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!same_form(got[i], expected[i]))
      fail_input(
          "open calibration source '{}': samples of dims {} ({}): the dataset {} '{}' give {} "
          "({}); calibration samples must have the dims of the samples the model is evaluated "
          "on",
          got[i].source, to_string(got[i].sample_dims), dtype_name(got[i].dtype),
          got[i].name.empty() ? "images" : "input",
          expected[i].source.empty() ? config.images.string() : expected[i].source,
          to_string(expected[i].sample_dims), dtype_name(expected[i].dtype));
  return dataset;
}

std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const Dims& sample_dims) {
  return open_calibration_dataset(config,
                                  {DataInput{"", config.images.string(), DType::f32, sample_dims}});
}

std::vector<std::int64_t> select_indices(const Selection& selection, std::int64_t dataset_size,
                                         std::string_view what) {
  if (selection.offset < 0 || selection.offset > dataset_size)
    fail_input("select {} samples: offset {}: must be in [0, {}], the dataset's size", what,
               selection.offset, dataset_size);
  if (selection.count < 0)
    fail_input("select {} samples: count {}: must not be negative", what, selection.count);
  const std::int64_t available = dataset_size - selection.offset;
  const std::int64_t count = selection.count == 0 ? available : selection.count;
  if (count > available)
    fail_input(
        "select {} samples: count {} is larger than the {} samples available (the "
        "dataset has {}, from offset {})",
        what, count, available, dataset_size, selection.offset);
  if (count == 0)
    fail_input("select {} samples: none are left: the dataset has {}, from offset {}", what,
               dataset_size, selection.offset);

  std::vector<std::int64_t> order(static_cast<std::size_t>(dataset_size));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (selection.seed != 0) {
    // Fisher-Yates, from the back, as Knuth's Algorithm P.
    SplitMix64 rng(selection.seed);
    for (std::size_t i = order.size(); i-- > 1;)
      std::swap(order[i], order[static_cast<std::size_t>(rng.below(i + 1))]);
  }
  const auto first = order.begin() + selection.offset;
  return {first, first + count};
}

DatasetConfig parse_dataset_config(const YAML::Node& node, const YamlFile& config_file) {
  if (!node.IsDefined())
    fail_input("config '{}': no dataset section: a run needs `dataset:` with format and images",
               config_file.path().string());
  DatasetConfig config;
  read_mapping({config_file, node, "dataset", "dataset"}, kDatasetKeys, config);
  check_dataset_keys(config_file, node, config);
  // A separate calibration source is in the dataset's format unless it names its own.
  if ((!config.calibration.images.empty() || !config.calibration.inputs.empty()) &&
      config.calibration.format.empty())
    config.calibration.format = config.format;
  return config;
}

}  // namespace bitplan
