#include "backends/hw_profile.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <span>

#include "backends/device.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/quote.hpp"
#include "core/yaml_reader.hpp"

namespace bitplan {

const ProfileEntry* HwProfile::find(const std::string& key, const std::string& precision) const {
  for (const auto& e : entries)
    if (e.key == key && e.precision == precision) return &e;
  return nullptr;
}

const ModelOverhead* HwProfile::find_model(const std::string& model_hash,
                                           std::int64_t batch) const {
  for (const auto& m : models)
    if (m.model_hash == model_hash && m.batch == batch) return &m;
  return nullptr;
}

const Ceiling* HwProfile::find_ceiling(const std::string& name) const {
  for (const auto& c : ceilings)
    if (c.name == name) return &c;
  return nullptr;
}

void HwProfile::put(ProfileEntry entry) {
  for (auto& e : entries)
    if (e.key == entry.key && e.precision == entry.precision) {
      e = std::move(entry);
      return;
    }
  entries.push_back(std::move(entry));
}

void HwProfile::put(ModelOverhead overhead) {
  for (auto& m : models)
    if (m.model_hash == overhead.model_hash && m.batch == overhead.batch) {
      m = std::move(overhead);
      return;
    }
  models.push_back(std::move(overhead));
}

namespace {

// Every precision a backend times (backends/cuda/precision.cpp, the oneDNN profiler's
// int8 chains) and the activation precisions a conversion goes between.
constexpr std::string_view kPrecisions[] = {"fp32", "int8",     "int8_chained", "bf16",
                                            "fp16", "fp8_e4m3", "w4a16"};
constexpr std::string_view kActivationPrecisions[] = {"fp32", "int8", "bf16", "fp16", "fp8_e4m3"};

constexpr std::string_view kTopKeys[] = {"bitplan_hw_profile", "target", "backend",  "device",
                                         "libraries",          "timing", "ceilings", "entries",
                                         "conversions",        "models"};
constexpr std::string_view kCeilingKeys[] = {"name", "value", "unit", "how"};
constexpr std::string_view kEntryKeys[] = {"key",     "precision",      "median_us",  "iqr_us",
                                           "repeats", "implementation", "unsupported"};
constexpr std::string_view kConversionKeys[] = {"from", "to", "elements", "median_us", "iqr_us"};
constexpr std::string_view kModelKeys[] = {"model_hash", "model",        "batch",
                                           "other_us",   "other_iqr_us", "total_fp32_us"};

// Workload keys as backends/workload.hpp writes them; longer ones are not workloads.
constexpr std::size_t kMaxKeyLength = 256;

// A value as messages quote it: long text is cut.
std::string quoted(const std::string& text) {
  constexpr std::size_t kShown = 60;
  if (text.size() <= kShown) return fmt::format("'{}'", text);
  return fmt::format("'{}...' ({} characters)", text.substr(0, kShown), text.size());
}

template <typename T>
T field(const YamlFile& file, const YAML::Node& map, const char* key) {
  const YAML::Node value = map[key];
  if (!value) schema_error(file, map, fmt::format("missing field '{}'", key));
  const char* expected = std::is_arithmetic_v<T> ? "a number" : "text";
  if (!value.IsScalar())
    schema_error(file, value,
                 fmt::format("field '{}' has the wrong type: {} is not {}", key,
                             value.IsMap()        ? "a mapping"
                             : value.IsSequence() ? "a list"
                                                  : "empty",
                             expected));
  try {
    return value.as<T>();
  } catch (const YAML::Exception&) {
    schema_error(file, value,
                 fmt::format("field '{}' has the wrong type: {} is not {}", key,
                             quoted(value.Scalar()), expected));
  }
}

template <typename T>
T optional_field(const YamlFile& file, const YAML::Node& map, const char* key, T fallback) {
  return map[key] ? field<T>(file, map, key) : fallback;
}

// device, libraries, timing: names (as the profilers write them) to plain values.
std::map<std::string, std::string> string_map(const YamlFile& file, const YAML::Node& root,
                                              const char* section) {
  constexpr std::size_t kMaxName = 64;
  std::map<std::string, std::string> out;
  const YAML::Node node = root[section];
  if (!node) return out;
  if (!node.IsMap()) schema_error(file, node, "expected a mapping of names to values");
  for (const auto& kv : node) {
    const std::string& name = kv.first.Scalar();
    const bool plain = std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (name.empty() || name.size() > kMaxName || !plain)
      schema_error(file, kv.first,
                   fmt::format("{} name {} must be 1 to {} letters, digits, '_', '-' or '.'",
                               section, quoted(name), kMaxName));
    if (!kv.second.IsScalar())
      schema_error(file, kv.second, "expected a plain value (text or number)");
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return out;
}

const YAML::Node sequence(const YamlFile& file, const YAML::Node& root, const char* key) {
  const YAML::Node node = root[key];
  if (node && !node.IsSequence() && !node.IsNull())
    schema_error(file, node, fmt::format("'{}' must be a list", key));
  return node;
}

// A number read from `map[key]`, which must be finite and >= 0; errors point at the value.
double non_negative(const YamlFile& file, const YAML::Node& map, const char* key, double v) {
  if (!std::isfinite(v) || v < 0)
    schema_error(file, map[key] ? map[key] : map,
                 fmt::format("{} must be a finite number >= 0, got {}", key, v));
  return v;
}

void check_precision(const YamlFile& file, const YAML::Node& map, const char* key,
                     const std::string& precision, std::span<const std::string_view> known) {
  if (std::find(known.begin(), known.end(), precision) == known.end())
    schema_error(
        file, map[key],
        fmt::format("{} {} is not one of {}", key, quoted(precision), fmt::join(known, ", ")));
}

void check_workload_key(const YamlFile& file, const YAML::Node& map, const std::string& key) {
  static const std::regex pattern(
      R"(conv:n\d+:c\d+:h\d+:w\d+:k\d+:r\d+:s\d+:st\d+x\d+:p\d+x\d+x\d+x\d+:d\d+x\d+:g\d+|)"
      R"(gemm:m\d+:n\d+:k\d+)");
  if (key.size() > kMaxKeyLength || !std::regex_match(key, pattern))
    schema_error(file, map["key"],
                 fmt::format("key {} is not a workload key: conv:n{{N}}:c{{C}}:h{{H}}:w{{W}}:"
                             "k{{K}}:r{{R}}:s{{S}}:st{{sh}}x{{sw}}:p{{t}}x{{l}}x{{b}}x{{r}}:"
                             "d{{dh}}x{{dw}}:g{{G}} or gemm:m{{M}}:n{{N}}:k{{K}}, at most {} "
                             "characters",
                             quoted(key), kMaxKeyLength));
}

// One entry per identity: a second would be silently shadowed by the first in lookups.
class Uniques {
 public:
  void add(const YamlFile& file, const YAML::Node& item, const std::string& what,
           const std::string& identity) {
    const auto [first, fresh] = seen_.emplace(identity, item.Mark());
    if (!fresh)
      schema_error(file, item,
                   fmt::format("{} appears twice (first at line {}); each may appear once", what,
                               first->second.line + 1));
  }

 private:
  std::map<std::string, YAML::Mark> seen_;
};

}  // namespace

HwProfile load_hw_profile(const std::filesystem::path& path) {
  const YamlFile file = YamlFile::load(path, "hardware profile", std::uint64_t{256} << 20);
  const YAML::Node& root = file.root();
  if (!root.IsMap())
    fail_input("hardware profile '{}': expected a mapping with 'bitplan_hw_profile: {}' at the top",
               path.string(), HwProfile::kVersion);
  if (!root["bitplan_hw_profile"])
    fail_input(
        "hardware profile '{}': no 'bitplan_hw_profile' version field; is this a bitplan "
        "profile?",
        path.string());
  const int version = field<int>(file, root, "bitplan_hw_profile");
  if (version != HwProfile::kVersion)
    schema_error(file, root["bitplan_hw_profile"],
                 fmt::format("schema version {} is not supported (this bitplan reads version {}); "
                             "re-run `bitplan profile` to regenerate it",
                             version, HwProfile::kVersion));
  check_keys(file, root, "", kTopKeys);
  HwProfile p;
  p.target = field<std::string>(file, root, "target");
  p.backend = field<std::string>(file, root, "backend");
  if (p.backend != "onednn" && p.backend != "cuda")
    schema_error(file, root["backend"],
                 fmt::format("backend '{}' is not one of onednn, cuda", p.backend));
  p.device = string_map(file, root, "device");
  p.libraries = string_map(file, root, "libraries");
  p.timing = string_map(file, root, "timing");
  Uniques ceilings, entries, conversions, models;
  if (const auto node = sequence(file, root, "ceilings"))
    for (const auto& c : node) {
      check_keys(file, c, "ceilings[]", kCeilingKeys);
      p.ceilings.push_back({field<std::string>(file, c, "name"), field<double>(file, c, "value"),
                            optional_field<std::string>(file, c, "unit", ""),
                            optional_field<std::string>(file, c, "how", "")});
      const Ceiling& ceiling = p.ceilings.back();
      // A ceiling divides in the roofline estimate: it must be a positive rate.
      if (!std::isfinite(ceiling.value) || ceiling.value <= 0)
        schema_error(file, c["value"],
                     fmt::format("ceiling '{}' must be a finite number > 0, got {}", ceiling.name,
                                 ceiling.value));
      ceilings.add(file, c, fmt::format("ceiling {}", quoted(ceiling.name)), ceiling.name);
    }
  if (const auto node = sequence(file, root, "entries"))
    for (const auto& e : node) {
      check_keys(file, e, "entries[]", kEntryKeys);
      ProfileEntry entry;
      entry.key = field<std::string>(file, e, "key");
      check_workload_key(file, e, entry.key);
      entry.precision = field<std::string>(file, e, "precision");
      check_precision(file, e, "precision", entry.precision, kPrecisions);
      entry.unsupported = optional_field<std::string>(file, e, "unsupported", "");
      if (entry.unsupported.empty()) {
        entry.median_us = non_negative(file, e, "median_us", field<double>(file, e, "median_us"));
        entry.iqr_us =
            non_negative(file, e, "iqr_us", optional_field<double>(file, e, "iqr_us", 0.0));
        entry.repeats = optional_field<int>(file, e, "repeats", 0);
        if (entry.repeats < 0)
          schema_error(file, e["repeats"],
                       fmt::format("repeats must be >= 0, got {}", entry.repeats));
      } else {
        for (const char* measured : {"median_us", "iqr_us", "repeats"})
          if (e[measured])
            schema_error(file, e[measured],
                         fmt::format("an entry with 'unsupported' has no measurement, but it has "
                                     "'{}'",
                                     measured));
      }
      entry.implementation = optional_field<std::string>(file, e, "implementation", "");
      entries.add(file, e, fmt::format("entry {} {}", entry.key, entry.precision),
                  entry.key + "|" + entry.precision);
      p.entries.push_back(std::move(entry));
    }
  if (const auto node = sequence(file, root, "conversions"))
    for (const auto& c : node) {
      check_keys(file, c, "conversions[]", kConversionKeys);
      ConversionEntry conv{field<std::string>(file, c, "from"), field<std::string>(file, c, "to"),
                           field<std::int64_t>(file, c, "elements"),
                           field<double>(file, c, "median_us"),
                           optional_field<double>(file, c, "iqr_us", 0.0)};
      check_precision(file, c, "from", conv.from, kActivationPrecisions);
      check_precision(file, c, "to", conv.to, kActivationPrecisions);
      if (conv.elements < 1)
        schema_error(file, c["elements"],
                     fmt::format("elements must be >= 1, got {}", conv.elements));
      non_negative(file, c, "median_us", conv.median_us);
      non_negative(file, c, "iqr_us", conv.iqr_us);
      conversions.add(
          file, c,
          fmt::format("conversion {} -> {} of {} elements", conv.from, conv.to, conv.elements),
          fmt::format("{}|{}|{}", conv.from, conv.to, conv.elements));
      p.conversions.push_back(std::move(conv));
    }
  if (const auto node = sequence(file, root, "models"))
    for (const auto& m : node) {
      check_keys(file, m, "models[]", kModelKeys);
      p.models.push_back({field<std::string>(file, m, "model_hash"),
                          optional_field<std::string>(file, m, "model", ""),
                          field<std::int64_t>(file, m, "batch"), field<double>(file, m, "other_us"),
                          optional_field<double>(file, m, "other_iqr_us", 0.0),
                          optional_field<double>(file, m, "total_fp32_us", 0.0)});
      const ModelOverhead& model = p.models.back();
      non_negative(file, m, "other_us", model.other_us);
      non_negative(file, m, "other_iqr_us", model.other_iqr_us);
      non_negative(file, m, "total_fp32_us", model.total_fp32_us);
      if (model.batch < 1)
        schema_error(file, m["batch"], fmt::format("batch must be >= 1, got {}", model.batch));
      models.add(file, m,
                 fmt::format("model {} at batch {}", quoted(model.model_hash), model.batch),
                 fmt::format("{}|{}", model.model_hash, model.batch));
    }
  return p;
}

void save_hw_profile(const std::filesystem::path& path, const HwProfile& p) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "bitplan_hw_profile" << YAML::Value << HwProfile::kVersion;
  out << YAML::Key << "target" << YAML::Value << p.target;
  out << YAML::Key << "backend" << YAML::Value << p.backend;
  for (const auto& [name, map] :
       {std::pair{"device", &p.device}, {"libraries", &p.libraries}, {"timing", &p.timing}}) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : *map) out << YAML::Key << k << YAML::Value << v;
    out << YAML::EndMap;
  }
  out << YAML::Key << "ceilings" << YAML::Value << YAML::BeginSeq;
  for (const auto& c : p.ceilings)
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << c.name << YAML::Key
        << "value" << YAML::Value << c.value << YAML::Key << "unit" << YAML::Value << c.unit
        << YAML::Key << "how" << YAML::Value << c.how << YAML::EndMap;
  out << YAML::EndSeq;
  out << YAML::Key << "entries" << YAML::Value << YAML::BeginSeq;
  for (const auto& e : p.entries) {
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "key" << YAML::Value << e.key << YAML::Key
        << "precision" << YAML::Value << e.precision;
    if (!e.unsupported.empty()) {
      out << YAML::Key << "unsupported" << YAML::Value << e.unsupported;
    } else {
      out << YAML::Key << "median_us" << YAML::Value << e.median_us << YAML::Key << "iqr_us"
          << YAML::Value << e.iqr_us << YAML::Key << "repeats" << YAML::Value << e.repeats;
    }
    if (!e.implementation.empty())
      out << YAML::Key << "implementation" << YAML::Value << e.implementation;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "conversions" << YAML::Value << YAML::BeginSeq;
  for (const auto& c : p.conversions)
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "from" << YAML::Value << c.from << YAML::Key
        << "to" << YAML::Value << c.to << YAML::Key << "elements" << YAML::Value << c.elements
        << YAML::Key << "median_us" << YAML::Value << c.median_us << YAML::Key << "iqr_us"
        << YAML::Value << c.iqr_us << YAML::EndMap;
  out << YAML::EndSeq;
  out << YAML::Key << "models" << YAML::Value << YAML::BeginSeq;
  for (const auto& m : p.models)
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "model_hash" << YAML::Value << m.model_hash
        << YAML::Key << "model" << YAML::Value << m.model << YAML::Key << "batch" << YAML::Value
        << m.batch << YAML::Key << "other_us" << YAML::Value << m.other_us << YAML::Key
        << "other_iqr_us" << YAML::Value << m.other_iqr_us << YAML::Key << "total_fp32_us"
        << YAML::Value << m.total_fp32_us << YAML::EndMap;
  out << YAML::EndSeq;
  out << YAML::EndMap;
  write_file_atomic(path, std::string(out.c_str()) + "\n");
}

KernelTarget kernel_target(const HwProfile& profile) {
  KernelTarget target{profile.backend, {}};
  if (profile.backend != "onednn") return target;
  const auto isa = profile.device.find("onednn_isa");
  const auto vnni = profile.device.find("vnni");
  if (isa == profile.device.end() && vnni == profile.device.end()) {
    target.cpu = CpuCapabilities{"unrecorded", true, true, true, true};
    return target;
  }
  if (isa != profile.device.end()) target.cpu = CpuCapabilities::of_onednn_isa(isa->second);
  if (vnni != profile.device.end()) target.cpu.vnni = vnni->second == "yes";
  return target;
}

ProfileNoise assess_noise(const HwProfile& profile) {
  ProfileNoise noise;
  double worst_ratio = 0;
  for (const ProfileEntry& e : profile.entries) {
    if (!e.unsupported.empty() || !(e.median_us > 0)) continue;
    ++noise.measured;
    const double ratio = e.iqr_us / e.median_us;
    noise.noisy += ratio >= ProfileNoise::kNoisyIqrRatio;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      noise.worst = &e;
    }
  }
  return noise;
}

std::string ProfileNoise::summary() const {
  if (!too_noisy()) return "";
  return fmt::format(
      "{} of {} entries have an IQR of at least {:.0f} % of their median (worst: {} {}, IQR "
      "{:.1f} us on {:.1f} us): the timings are too noisy to rank plans by; re-measure on an "
      "idle machine with fewer threads (--threads 1 on a 2-core machine) and --remeasure",
      noisy, measured, 100 * kNoisyIqrRatio, worst->key, worst->precision, worst->iqr_us,
      worst->median_us);
}

std::vector<std::string> cpu_differences_from_host(const HwProfile& profile) {
  std::vector<std::string> differences;
  if (profile.backend != "onednn") return differences;
  const CpuDevice& here = query_cpu();
  auto compare = [&](const char* key, const char* what, const std::string& host) {
    const auto it = profile.device.find(key);
    const std::string recorded = it == profile.device.end() ? "unrecorded" : it->second;
    if (recorded != host)
      differences.push_back(fmt::format("{} '{}', here '{}'", what, escaped(recorded), host));
  };
  compare("name", "CPU", here.model);
  compare("onednn_isa", "oneDNN ISA", here.onednn_isa);
  compare("logical_cores", "logical cores", std::to_string(here.logical_cores));
  return differences;
}

std::vector<std::string> profile_warnings(const HwProfile& profile, const std::string& where) {
  std::vector<std::string> warnings;
  if (const auto differences = cpu_differences_from_host(profile); !differences.empty())
    warnings.push_back(fmt::format(
        "target '{}' was profiled on another CPU ({}): its latencies are that machine's; "
        "`target: host` measures this one",
        where, fmt::join(differences, "; ")));
  if (const std::string noisy = assess_noise(profile).summary(); !noisy.empty())
    warnings.push_back(fmt::format("target '{}': {}", where, noisy));
  return warnings;
}

std::string host_profile_name(int threads) {
  const CpuDevice& cpu = query_cpu();
  std::string name =
      fmt::format("cpu-{}-{}-{}c-{}t", cpu.model, cpu.onednn_isa, cpu.logical_cores, threads);
  for (char& c : name)
    c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
  name.erase(
      std::unique(name.begin(), name.end(), [](char a, char b) { return a == '-' && b == '-'; }),
      name.end());
  return name;
}

}  // namespace bitplan
