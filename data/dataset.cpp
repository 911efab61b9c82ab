#include "data/dataset.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <map>
#include <numeric>
#include <set>

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

class ArrayDataset final : public Dataset {
 public:
  ArrayDataset(Tensor images, Normalizer normalizer, Dims sample_dims,
               std::vector<std::int64_t> labels, std::vector<std::string> class_names)
      : Dataset(std::move(sample_dims), std::move(labels), std::move(class_names)),
        images_(std::move(images)),
        normalizer_(std::move(normalizer)) {}

  void load(std::span<const std::int64_t> indices, float* dst) const override {
    const std::int64_t numel = sample_numel();
    const std::int64_t pixels = numel / normalizer_.channels();
    const auto normalize = [&](const auto* src) {
      parallel_for(static_cast<std::int64_t>(indices.size()), 16,
                   [&](std::int64_t b, std::int64_t e) {
                     for (std::int64_t i = b; i < e; ++i) {
                       const std::int64_t index = indices[static_cast<std::size_t>(i)];
                       BITPLAN_ASSERT(index >= 0 && index < size());
                       normalizer_.apply(src + index * numel, true, pixels, dst + i * numel);
                     }
                   });
    };
    // open_array_dataset admits only these two dtypes.
    if (images_.dtype() == DType::u8)
      normalize(images_.data<std::uint8_t>());
    else
      normalize(images_.data<float>());
  }

 private:
  Tensor images_;  // [N, C, H, W] (C = 1 for files holding [N, H, W])
  Normalizer normalizer_;
};

Tensor read_array(const std::string& format, const fs::path& path) {
  return format == "idx" ? read_idx(path) : read_npy(path);
}

// The labels file of an array dataset of `count` images, checked. Without
// `labels_required`, no labels file gives every sample label 0 (a calibration source,
// whose labels nothing reads).
std::vector<std::int64_t> read_labels(const DatasetConfig& config, std::int64_t count,
                                      bool labels_required) {
  if (config.labels.empty() && !labels_required)
    return std::vector<std::int64_t>(static_cast<std::size_t>(count), 0);
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
        "open dataset '{}': {} labels: the images '{}' hold {} samples; the counts must "
        "match",
        labels_name, label_tensor.dim(0), config.images.string(), count);
  return label_tensor.to_int64_vector();
}

std::unique_ptr<Dataset> open_array_dataset(const DatasetConfig& config, bool labels_required) {
  const std::string images_name = config.images.string();
  const std::string labels_name = config.labels.string();
  const Preprocess& preprocess = config.preprocess;
  if (preprocess.resize != 0 || preprocess.crop != 0 || preprocess.channels != 0)
    fail_input(
        "open dataset '{}': preprocess resize, crop and channels apply to image "
        "folders only: {} images keep their stored size and channels",
        images_name, config.format);

  Tensor images = read_array(config.format, config.images);
  const Dims dims = images.dims();
  if (images.rank() != 3 && images.rank() != 4)
    fail_input("open dataset '{}': images of dims {}: must be [N, H, W] or [N, C, H, W]",
               images_name, to_string(dims));
  if (images.dtype() != DType::u8 && images.dtype() != DType::f32)
    fail_unsupported("open dataset '{}': images of dtype {}: must be uint8 or float32", images_name,
                     dtype_name(images.dtype()));
  if (std::find(dims.begin(), dims.end(), 0) != dims.end())
    fail_input("open dataset '{}': images of dims {}: every dimension must be positive",
               images_name, to_string(dims));
  // [N, H, W] is one channel: a view with C = 1 keeps load() to one layout.
  if (images.rank() == 3) images = images.reshaped({dims[0], 1, dims[1], dims[2]});
  const std::int64_t count = images.dim(0);

  std::vector<std::int64_t> labels = read_labels(config, count, labels_required);

  std::vector<std::string> class_names = config.class_names;
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

  Normalizer normalizer(preprocess, images.dim(1), images_name);
  Dims sample_dims = normalizer.sample_dims(images.dim(2), images.dim(3));
  return std::make_unique<ArrayDataset>(std::move(images), std::move(normalizer),
                                        std::move(sample_dims), std::move(labels),
                                        std::move(class_names));
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

// Reads the `dataset:` section, failing with the config file, line and column of the
// offending node (or the --set that made it).
class ConfigReader {
 public:
  explicit ConfigReader(const YamlFile& file) : file_(file) {}

  template <typename... Args>
  [[noreturn]] void fail(const YAML::Node& at, fmt::format_string<Args...> format,
                         Args&&... args) const {
    file_.fail(at, fmt::format(format, std::forward<Args>(args)...));
  }

  // The entries of the mapping `node` (named `name` in messages) by key, after checking
  // that every key is one of `known` (the reader refused repeated keys).
  std::map<std::string, YAML::Node> mapping(const YAML::Node& node, std::string_view name,
                                            std::initializer_list<std::string_view> known) const {
    if (!node.IsMap()) fail(node, "{} must be a mapping, not {}", name, node_kind(node));
    check_keys(file_, node, name, std::span(known.begin(), known.size()));
    std::map<std::string, YAML::Node> entries;
    for (const auto& entry : node) entries.emplace(entry.first.Scalar(), entry.second);
    return entries;
  }

  std::string string(const YAML::Node& node, std::string_view name) const {
    if (!node.IsScalar()) fail(node, "{} must be a string, not {}", name, node_kind(node));
    if (node.Scalar().empty()) fail(node, "{} must not be empty", name);
    return node.Scalar();
  }

  // Decimal only: yaml-cpp's own conversion reads "010" as octal.
  template <typename Int>
  Int integer(const YAML::Node& node, std::string_view name, Int min, Int max) const {
    const std::string text = string(node, name);
    const char* last = text.data() + text.size();
    // from_chars rejects a sign on unsigned types; "-3" is still a number, just out of range.
    const char* first = text.data() + (std::is_unsigned_v<Int> && text[0] == '-' ? 1 : 0);
    Int value{};
    const auto [end, ec] = std::from_chars(first, last, value);
    if (ec == std::errc::invalid_argument || end != last)
      fail(node, "{} '{}' is not an integer", name, text);
    if (ec == std::errc::result_out_of_range || first != text.data() || value < min || value > max)
      fail(node, "{} {} must be in [{}, {}]", name, text, min, max);
    return value;
  }

  float number(const YAML::Node& node, std::string_view name) const {
    const std::string text = string(node, name);
    double value = 0.0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size())
      fail(node, "{} '{}' is not a number", name, text);
    if (!std::isfinite(static_cast<float>(value)))
      fail(node, "{} {} must be a finite float32", name, text);
    return static_cast<float>(value);
  }

  std::vector<float> numbers(const YAML::Node& node, std::string_view name) const {
    if (!node.IsSequence())
      fail(node, "{} must be a list of numbers, not {}", name, node_kind(node));
    std::vector<float> values;
    for (const auto& item : node) values.push_back(number(item, name));
    return values;
  }

  fs::path path(const YAML::Node& node, std::string_view name) const {
    const fs::path path = string(node, name);
    return path.is_relative() ? file_.path().parent_path() / path : path;
  }

  Selection selection(const YAML::Node& node, std::string_view name) const {
    Selection selection;
    for (const auto& [key, value] : mapping(node, name, {"count", "seed", "offset"}))
      selection_field(key, value, name, selection);
    return selection;
  }

  // dataset.calibration: a selection, optionally of its own source in `format` (default:
  // `dataset_format`).
  CalibrationConfig calibration(const YAML::Node& node, const std::string& dataset_format) const {
    constexpr std::string_view kName = "dataset.calibration";
    CalibrationConfig calibration;
    const auto entries =
        mapping(node, kName, {"images", "labels", "format", "count", "seed", "offset"});
    for (const auto& [key, value] : entries) {
      const std::string field = fmt::format("{}.{}", kName, key);
      if (key == "images") calibration.images = path(value, field);
      if (key == "labels") calibration.labels = path(value, field);
      if (key == "format") {
        calibration.format = string(value, field);
        if (calibration.format != "idx" && calibration.format != "npy" &&
            calibration.format != "image_folder")
          fail(value, "{} '{}' is not one of idx, npy, image_folder", field, calibration.format);
      }
      if (key == "count" || key == "seed" || key == "offset")
        selection_field(key, value, kName, calibration);
    }
    const bool separate = entries.count("images") != 0;
    for (const char* key : {"labels", "format"})
      if (!separate && entries.count(key))
        fail(entries.at(key),
             "{}.{} describes a separate calibration source: give its images too "
             "(dataset.calibration.images)",
             kName, key);
    if (!separate) return calibration;
    if (calibration.format.empty()) calibration.format = dataset_format;
    if (calibration.format == "image_folder" && entries.count("labels"))
      fail(entries.at("labels"),
           "{}.labels does not apply to an image_folder source: its labels are the class folders",
           kName);
    return calibration;
  }

  // One of a selection's fields: count, seed or offset.
  void selection_field(const std::string& key, const YAML::Node& value, std::string_view name,
                       Selection& selection) const {
    const std::string field = fmt::format("{}.{}", name, key);
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    if (key == "count") selection.count = integer<std::int64_t>(value, field, 0, kMax);
    if (key == "seed")
      selection.seed =
          integer<std::uint64_t>(value, field, 0, std::numeric_limits<std::uint64_t>::max());
    if (key == "offset") selection.offset = integer<std::int64_t>(value, field, 0, kMax);
  }

  Preprocess preprocess(const YAML::Node& node, const std::string& format) const {
    Preprocess preprocess;
    constexpr std::string_view kName = "dataset.preprocess";
    for (const auto& [key, value] :
         mapping(node, kName, {"scale", "mean", "std", "layout", "resize", "crop", "channels"})) {
      const std::string field = fmt::format("{}.{}", kName, key);
      if ((key == "resize" || key == "crop" || key == "channels") && format != "image_folder")
        fail(value, "{} applies to image_folder datasets only, not {}", field, format);
      if (key == "scale") preprocess.scale = number(value, field);
      if (key == "mean") preprocess.mean = numbers(value, field);
      if (key == "std") {
        preprocess.std = numbers(value, field);
        if (std::find(preprocess.std.begin(), preprocess.std.end(), 0.0f) != preprocess.std.end())
          fail(value, "{} has a 0: every std must be non-zero", field);
      }
      if (key == "layout") {
        preprocess.layout = string(value, field);
        if (preprocess.layout != "NCHW" && preprocess.layout != "NHWC")
          fail(value, "{} '{}' is not one of NCHW, NHWC", field, preprocess.layout);
      }
      if (key == "resize") preprocess.resize = integer(value, field, 0, 1 << 16);
      if (key == "crop") preprocess.crop = integer(value, field, 0, 1 << 16);
      if (key == "channels") {
        preprocess.channels = integer(value, field, 0, 3);
        if (preprocess.channels == 2) fail(value, "{} 2 is not one of 0, 1, 3", field);
      }
    }
    return preprocess;
  }

  std::vector<std::string> class_names(const YAML::Node& node) const {
    constexpr std::string_view kName = "dataset.class_names";
    if (!node.IsSequence())
      fail(node, "{} must be a list of names, not {}", kName, node_kind(node));
    std::vector<std::string> names;
    std::set<std::string> seen;
    for (const auto& item : node) {
      names.push_back(string(item, kName));
      if (!seen.insert(names.back()).second) fail(item, "{} lists '{}' twice", kName, names.back());
    }
    return names;
  }

 private:
  const YamlFile& file_;
};

}  // namespace

Dataset::Dataset(Dims sample_dims, std::vector<std::int64_t> labels,
                 std::vector<std::string> class_names)
    : sample_dims_(std::move(sample_dims)),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)) {}

std::int64_t Dataset::label(std::int64_t index) const {
  BITPLAN_ASSERT(index >= 0 && index < size());
  return labels_[static_cast<std::size_t>(index)];
}

std::unique_ptr<Dataset> open_dataset(const DatasetConfig& config) {
  if (config.format == "image_folder") return open_image_folder(config);
  if (config.format == "idx" || config.format == "npy") return open_array_dataset(config, true);
  fail_input("open dataset '{}': format '{}': must be idx, npy or image_folder",
             config.images.string(), config.format);
}

std::unique_ptr<Dataset> open_calibration_dataset(const DatasetConfig& config,
                                                  const Dims& sample_dims) {
  const CalibrationConfig& calibration = config.calibration;
  BITPLAN_ASSERT(!calibration.images.empty());
  DatasetConfig source;
  source.format = calibration.format.empty() ? config.format : calibration.format;
  source.images = calibration.images;
  source.labels = calibration.labels;
  source.preprocess = config.preprocess;
  // class_names stay the dataset's concern: a calibration split's labels are never read.
  std::unique_ptr<Dataset> dataset;
  try {
    // Not open_dataset: that one requires labels.
    if (source.format == "image_folder")
      dataset = open_image_folder(source);
    else if (source.format == "idx" || source.format == "npy")
      dataset = open_array_dataset(source, false);
    else
      fail_input("open dataset '{}': format '{}': must be idx, npy or image_folder",
                 source.images.string(), source.format);
  } catch (const Error& e) {
    throw Error(e.kind(),
                fmt::format("open calibration source (dataset.calibration.images): {}", e.what()));
  }
  if (dataset->sample_dims() != sample_dims)
    fail_input(
        "open calibration source '{}': samples of dims {}: the dataset images '{}' give {}; "
        "calibration samples must have the dims of the samples the model is evaluated on",
        calibration.images.string(), to_string(dataset->sample_dims()), config.images.string(),
        to_string(sample_dims));
  return dataset;
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
  const ConfigReader reader(config_file);
  const auto entries = reader.mapping(
      node, "dataset",
      {"format", "images", "labels", "class_names", "preprocess", "calibration", "validation"});
  const auto find = [&](const std::string& key) -> const YAML::Node* {
    const auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  };

  DatasetConfig config;
  const YAML::Node* format = find("format");
  if (!format) reader.fail(node, "dataset.format is required: idx, npy or image_folder");
  config.format = reader.string(*format, "dataset.format");
  if (config.format != "idx" && config.format != "npy" && config.format != "image_folder")
    reader.fail(*format, "dataset.format '{}' is not one of idx, npy, image_folder", config.format);

  const YAML::Node* images = find("images");
  if (!images) reader.fail(node, "dataset.images is required");
  config.images = reader.path(*images, "dataset.images");

  const YAML::Node* labels = find("labels");
  if (config.format == "image_folder" && labels)
    reader.fail(*labels,
                "dataset.labels does not apply to image_folder datasets: their labels are the "
                "class folders");
  if (config.format != "image_folder" && !labels)
    reader.fail(node, "dataset.labels is required for {} datasets", config.format);
  if (labels) config.labels = reader.path(*labels, "dataset.labels");

  if (const YAML::Node* names = find("class_names"))
    config.class_names = reader.class_names(*names);
  if (const YAML::Node* preprocess = find("preprocess"))
    config.preprocess = reader.preprocess(*preprocess, config.format);
  if (const YAML::Node* calibration = find("calibration"))
    config.calibration = reader.calibration(*calibration, config.format);
  if (const YAML::Node* selection = find("validation"))
    config.validation = reader.selection(*selection, "dataset.validation");
  return config;
}

}  // namespace bitplan
