#include "backends/hw_profile.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/files.hpp"

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

[[noreturn]] void schema_error(const std::filesystem::path& file, const YAML::Node& node,
                               const std::string& rule) {
  const YAML::Mark mark = node.Mark();
  fail_input("hardware profile '{}' line {}, column {}: {}", file.string(), mark.line + 1,
             mark.column + 1, rule);
}

template <typename T>
T field(const std::filesystem::path& file, const YAML::Node& map, const char* key) {
  const YAML::Node value = map[key];
  if (!value) schema_error(file, map, fmt::format("missing field '{}'", key));
  try {
    return value.as<T>();
  } catch (const YAML::Exception&) {
    schema_error(file, value, fmt::format("field '{}' has the wrong type", key));
  }
}

template <typename T>
T optional_field(const std::filesystem::path& file, const YAML::Node& map, const char* key,
                 T fallback) {
  return map[key] ? field<T>(file, map, key) : fallback;
}

std::map<std::string, std::string> string_map(const std::filesystem::path& file,
                                              const YAML::Node& node) {
  std::map<std::string, std::string> out;
  if (!node) return out;
  if (!node.IsMap()) schema_error(file, node, "expected a mapping of names to values");
  for (const auto& kv : node) {
    if (!kv.second.IsScalar())
      schema_error(file, kv.second, "expected a plain value (text or number)");
    out[kv.first.as<std::string>()] = kv.second.as<std::string>();
  }
  return out;
}

const YAML::Node sequence(const std::filesystem::path& file, const YAML::Node& root,
                          const char* key) {
  const YAML::Node node = root[key];
  if (node && !node.IsSequence() && !node.IsNull())
    schema_error(file, node, fmt::format("'{}' must be a list", key));
  return node;
}

void check_non_negative(const std::filesystem::path& file, const YAML::Node& node, double v,
                        const char* what) {
  if (!std::isfinite(v) || v < 0)
    schema_error(file, node, fmt::format("{} must be a finite number >= 0, got {}", what, v));
}

}  // namespace

HwProfile load_hw_profile(const std::filesystem::path& path) {
  const std::string text = read_file(path, std::uint64_t{256} << 20, "hardware profile");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail_input("hardware profile '{}' line {}, column {}: YAML syntax error: {}", path.string(),
               e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (!root.IsMap())
    fail_input("hardware profile '{}': expected a mapping with 'bitplan_hw_profile: {}' at the top",
               path.string(), HwProfile::kVersion);
  if (!root["bitplan_hw_profile"])
    fail_input(
        "hardware profile '{}': no 'bitplan_hw_profile' version field; is this a bitplan "
        "profile?",
        path.string());
  const int version = field<int>(path, root, "bitplan_hw_profile");
  if (version != HwProfile::kVersion)
    schema_error(path, root["bitplan_hw_profile"],
                 fmt::format("schema version {} is not supported (this bitplan reads version {}); "
                             "re-run `bitplan profile` to regenerate it",
                             version, HwProfile::kVersion));
  HwProfile p;
  p.target = field<std::string>(path, root, "target");
  p.backend = field<std::string>(path, root, "backend");
  if (p.backend != "onednn" && p.backend != "cuda")
    schema_error(path, root["backend"],
                 fmt::format("backend '{}' is not one of onednn, cuda", p.backend));
  p.device = string_map(path, root["device"]);
  p.libraries = string_map(path, root["libraries"]);
  p.timing = string_map(path, root["timing"]);
  if (const auto node = sequence(path, root, "ceilings"))
    for (const auto& c : node) {
      p.ceilings.push_back({field<std::string>(path, c, "name"), field<double>(path, c, "value"),
                            optional_field<std::string>(path, c, "unit", ""),
                            optional_field<std::string>(path, c, "how", "")});
      // A ceiling divides in the roofline estimate: it must be a positive rate.
      if (!std::isfinite(p.ceilings.back().value) || p.ceilings.back().value <= 0)
        schema_error(path, c,
                     fmt::format("ceiling '{}' must be a finite number > 0, got {}",
                                 p.ceilings.back().name, p.ceilings.back().value));
    }
  if (const auto node = sequence(path, root, "entries"))
    for (const auto& e : node) {
      ProfileEntry entry;
      entry.key = field<std::string>(path, e, "key");
      entry.precision = field<std::string>(path, e, "precision");
      entry.unsupported = optional_field<std::string>(path, e, "unsupported", "");
      if (entry.unsupported.empty()) {
        entry.median_us = field<double>(path, e, "median_us");
        check_non_negative(path, e, entry.median_us, "median_us");
        entry.iqr_us = optional_field<double>(path, e, "iqr_us", 0.0);
        entry.repeats = optional_field<int>(path, e, "repeats", 0);
      }
      entry.implementation = optional_field<std::string>(path, e, "implementation", "");
      p.entries.push_back(std::move(entry));
    }
  if (const auto node = sequence(path, root, "conversions"))
    for (const auto& c : node) {
      ConversionEntry conv{field<std::string>(path, c, "from"), field<std::string>(path, c, "to"),
                           field<std::int64_t>(path, c, "elements"),
                           field<double>(path, c, "median_us"),
                           optional_field<double>(path, c, "iqr_us", 0.0)};
      check_non_negative(path, c, conv.median_us, "median_us");
      p.conversions.push_back(std::move(conv));
    }
  if (const auto node = sequence(path, root, "models"))
    for (const auto& m : node) {
      p.models.push_back({field<std::string>(path, m, "model_hash"),
                          optional_field<std::string>(path, m, "model", ""),
                          field<std::int64_t>(path, m, "batch"), field<double>(path, m, "other_us"),
                          optional_field<double>(path, m, "other_iqr_us", 0.0),
                          optional_field<double>(path, m, "total_fp32_us", 0.0)});
      check_non_negative(path, m, p.models.back().other_us, "other_us");
      if (p.models.back().batch < 1)
        schema_error(path, m, fmt::format("batch must be >= 1, got {}", p.models.back().batch));
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

Spread median_and_iqr(std::vector<double>& samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  // Linear interpolation between order statistics (the usual "type 7" quantile).
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(samples.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, samples.size() - 1);
    return samples[lo] + (pos - static_cast<double>(lo)) * (samples[hi] - samples[lo]);
  };
  return {quantile(0.5), quantile(0.75) - quantile(0.25)};
}

}  // namespace bitplan
