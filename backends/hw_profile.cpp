#include "backends/hw_profile.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <initializer_list>
#include <map>
#include <regex>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/cuda/errors.hpp"
#include "backends/cuda/workloads.hpp"
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

const ModelOverhead* HwProfile::find_model(const std::string& model_hash, std::int64_t batch,
                                           const std::string& inputs) const {
  for (const auto& m : models)
    if (m.model_hash == model_hash && m.batch == batch && m.inputs == inputs) return &m;
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
    if (m.model_hash == overhead.model_hash && m.batch == overhead.batch &&
        m.inputs == overhead.inputs) {
      m = std::move(overhead);
      return;
    }
  models.push_back(std::move(overhead));
}

namespace {

// Every precision a backend times (backends/cuda/precision.cpp, the oneDNN profiler's
// int8 chains) and the activation precisions a conversion goes between.
constexpr std::string_view kPrecisions[] = {
    "fp32",  "int8",  "int8_chained", "bf16", "fp16", "fp8_e4m3", "fp8_e4m3_chained",
    "w4a16", "w8a16", "w4a32",        "w4a8", "w3a8", "w2a8",     "w8a8"};
constexpr std::string_view kActivationPrecisions[] = {"fp32", "int8", "bf16", "fp16", "fp8_e4m3"};

// Workload keys as backends/workload.hpp writes them; longer ones are not workloads.
constexpr std::size_t kMaxKeyLength = 256;

// A value as messages quote it: long text is cut.
std::string quoted(const std::string& text) {
  constexpr std::size_t kShown = 60;
  if (text.size() <= kShown) return fmt::format("'{}'", text);
  return fmt::format("'{}...' ({} characters)", text.substr(0, kShown), text.size());
}

// A profile field's value: text or a number.
template <typename T>
T field_value(const KeyValue& v) {
  const char* expected = std::is_arithmetic_v<T> ? "a number" : "text";
  if (!v.node.IsScalar())
    v.fail(fmt::format("field '{}' has the wrong type: {} is not {}", v.key,
                       v.node.IsMap()        ? "a mapping"
                       : v.node.IsSequence() ? "a list"
                                             : "empty",
                       expected));
  try {
    return v.node.as<T>();
  } catch (const YAML::Exception&) {
    v.fail(fmt::format("field '{}' has the wrong type: {} is not {}", v.key,
                       quoted(v.node.Scalar()), expected));
  }
}

// "missing field '<key>'" at `map` for the first of `keys` it lacks.
void require_fields(const YamlFile& file, const YAML::Node& map,
                    std::initializer_list<const char*> keys) {
  for (const char* key : keys)
    if (!map[key]) schema_error(file, map, fmt::format("missing field '{}'", key));
}

// A number that must be finite and >= 0.
double non_negative(const KeyValue& v) {
  const double value = field_value<double>(v);
  if (!std::isfinite(value) || value < 0)
    v.fail(fmt::format("{} must be a finite number >= 0, got {}", v.key, value));
  return value;
}

std::string precision(const KeyValue& v, std::span<const std::string_view> known) {
  const std::string value = field_value<std::string>(v);
  if (std::find(known.begin(), known.end(), value) == known.end())
    v.fail(fmt::format("{} {} is not one of {}", v.key, quoted(value), fmt::join(known, ", ")));
  return value;
}

std::string workload_key(const KeyValue& v) {
  static const std::regex pattern(
      R"(conv:n\d+:c\d+:h\d+:w\d+:k\d+:r\d+:s\d+:st\d+x\d+:p\d+x\d+x\d+x\d+:d\d+x\d+:g\d+|)"
      R"(gemm:m\d+:n\d+:k\d+)");
  const std::string key = field_value<std::string>(v);
  if (key.size() <= kMaxKeyLength && cuda::is_op_key(key)) {
    // One of the model's other ops (backends/workload.hpp): the GPU profiler's own grammar.
    try {
      cuda::parse_op_key(key);
    } catch (const cuda::ProfileError& e) {
      v.fail(fmt::format("key {} is not an op key: {}", quoted(key), e.what()));
    }
    return key;
  }
  if (key.size() > kMaxKeyLength || !std::regex_match(key, pattern))
    v.fail(
        fmt::format("key {} is not a workload key: conv:n{{N}}:c{{C}}:h{{H}}:w{{W}}:"
                    "k{{K}}:r{{R}}:s{{S}}:st{{sh}}x{{sw}}:p{{t}}x{{l}}x{{b}}x{{r}}:"
                    "d{{dh}}x{{dw}}:g{{G}}, gemm:m{{M}}:n{{N}}:k{{K}} or an op key "
                    "(eltwise, reduce, rownorm, copy, bmm), at most {} characters",
                    quoted(key), kMaxKeyLength));
  return key;
}

// device, libraries, timing: names (as the profilers write them) to plain values.
std::map<std::string, std::string> string_map(const KeyValue& v) {
  constexpr std::size_t kMaxName = 64;
  std::map<std::string, std::string> out;
  if (!v.node.IsMap()) v.fail("expected a mapping of names to values");
  for (const auto& kv : v.node) {
    const std::string& name = kv.first.Scalar();
    const bool plain = std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (name.empty() || name.size() > kMaxName || !plain)
      schema_error(v.file, kv.first,
                   fmt::format("{} name {} must be 1 to {} letters, digits, '_', '-' or '.'", v.key,
                               quoted(name), kMaxName));
    if (!kv.second.IsScalar())
      schema_error(v.file, kv.second, "expected a plain value (text or number)");
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return out;
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

constexpr KeyReader<Ceiling> kCeilingKeys[] = {
    {"name", [](const KeyValue& v, Ceiling& c) { c.name = field_value<std::string>(v); }},
    {"value", [](const KeyValue& v, Ceiling& c) { c.value = field_value<double>(v); }},
    {"unit", [](const KeyValue& v, Ceiling& c) { c.unit = field_value<std::string>(v); }},
    {"how", [](const KeyValue& v, Ceiling& c) { c.how = field_value<std::string>(v); }},
};

constexpr KeyReader<ProfileEntry> kEntryKeys[] = {
    {"key", [](const KeyValue& v, ProfileEntry& e) { e.key = workload_key(v); }},
    {"precision",
     [](const KeyValue& v, ProfileEntry& e) { e.precision = precision(v, kPrecisions); }},
    {"median_us", [](const KeyValue& v, ProfileEntry& e) { e.median_us = non_negative(v); }},
    {"iqr_us", [](const KeyValue& v, ProfileEntry& e) { e.iqr_us = non_negative(v); }},
    {"repeats",
     [](const KeyValue& v, ProfileEntry& e) {
       e.repeats = field_value<int>(v);
       if (e.repeats < 0) v.fail(fmt::format("repeats must be >= 0, got {}", e.repeats));
     }},
    {"implementation",
     [](const KeyValue& v, ProfileEntry& e) { e.implementation = field_value<std::string>(v); }},
    {"unsupported",
     [](const KeyValue& v, ProfileEntry& e) { e.unsupported = field_value<std::string>(v); }},
};

constexpr KeyReader<ConversionEntry> kConversionKeys[] = {
    {"from",
     [](const KeyValue& v, ConversionEntry& c) { c.from = precision(v, kActivationPrecisions); }},
    {"to",
     [](const KeyValue& v, ConversionEntry& c) { c.to = precision(v, kActivationPrecisions); }},
    {"elements",
     [](const KeyValue& v, ConversionEntry& c) {
       c.elements = field_value<std::int64_t>(v);
       if (c.elements < 1) v.fail(fmt::format("elements must be >= 1, got {}", c.elements));
     }},
    {"median_us", [](const KeyValue& v, ConversionEntry& c) { c.median_us = non_negative(v); }},
    {"iqr_us", [](const KeyValue& v, ConversionEntry& c) { c.iqr_us = non_negative(v); }},
};

constexpr KeyReader<ModelOverhead> kModelKeys[] = {
    {"model_hash",
     [](const KeyValue& v, ModelOverhead& m) { m.model_hash = field_value<std::string>(v); }},
    {"model", [](const KeyValue& v, ModelOverhead& m) { m.model = field_value<std::string>(v); }},
    {"batch",
     [](const KeyValue& v, ModelOverhead& m) {
       m.batch = field_value<std::int64_t>(v);
       if (m.batch < 1) v.fail(fmt::format("batch must be >= 1, got {}", m.batch));
     }},
    {"inputs", [](const KeyValue& v, ModelOverhead& m) { m.inputs = field_value<std::string>(v); }},
    {"other_us", [](const KeyValue& v, ModelOverhead& m) { m.other_us = non_negative(v); }},
    {"other_iqr_us", [](const KeyValue& v, ModelOverhead& m) { m.other_iqr_us = non_negative(v); }},
    {"total_fp32_us",
     [](const KeyValue& v, ModelOverhead& m) { m.total_fp32_us = non_negative(v); }},
};

// ceilings, entries, conversions, models: lists of sections, each item read with `table`
// into a new element of `items`, then checked by `check(item node, element)`; `identity`
// names an element in the "appears twice" error and tells two apart.
template <typename Item, typename Check, typename Identity>
void read_list(const KeyValue& v, KeyTable<Item> table, std::vector<Item>& items, Check check,
               Identity identity) {
  if (!v.node.IsSequence() && !v.node.IsNull()) v.fail(fmt::format("'{}' must be a list", v.key));
  Uniques uniques;
  for (const auto& node : v.node) {
    Item& item = items.emplace_back();
    read_section(v.file, node, v.name + "[]", table, item);
    check(node, item);
    const auto [what, key] = identity(item);
    uniques.add(v.file, node, what, key);
  }
}

constexpr KeyReader<HwProfile> kProfileKeys[] = {
    // Read before the table: a profile of another version may have other keys.
    {"bitplan_hw_profile", [](const KeyValue&, HwProfile&) {}},
    {"target", [](const KeyValue& v, HwProfile& p) { p.target = field_value<std::string>(v); }},
    {"backend",
     [](const KeyValue& v, HwProfile& p) {
       p.backend = field_value<std::string>(v);
       if (p.backend != "onednn" && p.backend != "cuda")
         v.fail(fmt::format("backend '{}' is not one of onednn, cuda", p.backend));
     }},
    {"device", [](const KeyValue& v, HwProfile& p) { p.device = string_map(v); }},
    {"libraries", [](const KeyValue& v, HwProfile& p) { p.libraries = string_map(v); }},
    {"timing", [](const KeyValue& v, HwProfile& p) { p.timing = string_map(v); }},
    {"ceilings",
     [](const KeyValue& v, HwProfile& p) {
       read_list<Ceiling>(
           v, kCeilingKeys, p.ceilings,
           [&](const YAML::Node& node, const Ceiling& ceiling) {
             require_fields(v.file, node, {"name", "value"});
             // A ceiling divides in the roofline estimate: it must be a positive rate.
             if (!std::isfinite(ceiling.value) || ceiling.value <= 0)
               schema_error(v.file, node["value"],
                            fmt::format("ceiling '{}' must be a finite number > 0, got {}",
                                        ceiling.name, ceiling.value));
           },
           [](const Ceiling& c) {
             return std::pair{fmt::format("ceiling {}", quoted(c.name)), c.name};
           });
     }},
    {"entries",
     [](const KeyValue& v, HwProfile& p) {
       read_list<ProfileEntry>(
           v, kEntryKeys, p.entries,
           [&](const YAML::Node& node, const ProfileEntry& entry) {
             require_fields(v.file, node, {"key", "precision"});
             if (entry.unsupported.empty()) {
               require_fields(v.file, node, {"median_us"});
               return;
             }
             for (const char* measured : {"median_us", "iqr_us", "repeats"})
               if (node[measured])
                 schema_error(v.file, node[measured],
                              fmt::format("an entry with 'unsupported' has no measurement, but "
                                          "it has '{}'",
                                          measured));
           },
           [](const ProfileEntry& e) {
             return std::pair{fmt::format("entry {} {}", e.key, e.precision),
                              e.key + "|" + e.precision};
           });
     }},
    {"conversions",
     [](const KeyValue& v, HwProfile& p) {
       read_list<ConversionEntry>(
           v, kConversionKeys, p.conversions,
           [&](const YAML::Node& node, const ConversionEntry&) {
             require_fields(v.file, node, {"from", "to", "elements", "median_us"});
           },
           [](const ConversionEntry& c) {
             return std::pair{
                 fmt::format("conversion {} -> {} of {} elements", c.from, c.to, c.elements),
                 fmt::format("{}|{}|{}", c.from, c.to, c.elements)};
           });
     }},
    {"models",
     [](const KeyValue& v, HwProfile& p) {
       read_list<ModelOverhead>(
           v, kModelKeys, p.models,
           [&](const YAML::Node& node, const ModelOverhead&) {
             require_fields(v.file, node, {"model_hash", "batch", "other_us"});
           },
           [](const ModelOverhead& m) {
             return std::pair{fmt::format("model {} at batch {}{}", quoted(m.model_hash), m.batch,
                                          m.inputs.empty() ? "" : " with inputs " + m.inputs),
                              fmt::format("{}|{}|{}", m.model_hash, m.batch, m.inputs)};
           });
     }},
};

}  // namespace

namespace {

// The cost model takes a CUDA profile's step_overhead_us off every entry, down to
// graph_step_us (docs/cuda_backend.md, "What the events add"). An entry was timed between the
// events whose cost that is, so it cannot be shorter: a larger value (or one without its floor)
// would make entries cost nothing and rank plans on noise.
void check_step_overhead(const std::filesystem::path& path, const HwProfile& p) {
  const Ceiling* overhead = p.find_ceiling("step_overhead_us");
  if (!overhead) return;
  if (!p.find_ceiling("graph_step_us"))
    fail_input(
        "hardware profile '{}': ceiling 'step_overhead_us' ({} us) needs the ceiling "
        "'graph_step_us', the floor of a step it is taken down to",
        path.string(), overhead->value);
  const ProfileEntry* shortest = nullptr;
  for (const auto& e : p.entries)
    if (e.unsupported.empty() && (!shortest || e.median_us < shortest->median_us)) shortest = &e;
  if (shortest && shortest->median_us <= overhead->value)
    fail_input(
        "hardware profile '{}': ceiling 'step_overhead_us' ({} us) is not below entry {} {} "
        "({} us): an entry is timed between the events whose cost it is, so every entry "
        "must be longer; re-measure the profile",
        path.string(), overhead->value, shortest->key, shortest->precision, shortest->median_us);
}

}  // namespace

HwProfile load_hw_profile(const std::filesystem::path& path) {
  const YamlFile file = YamlFile::load(path, "hardware profile", std::uint64_t{256} << 20);
  const YAML::Node& root = file.root();
  if (!root.IsMap())
    fail_input("hardware profile '{}': expected a mapping with 'bitplan_hw_profile: {}' at the top",
               path.string(), HwProfile::kVersion);
  const YAML::Node version_node = root["bitplan_hw_profile"];
  if (!version_node)
    fail_input(
        "hardware profile '{}': no 'bitplan_hw_profile' version field; is this a bitplan "
        "profile?",
        path.string());
  const int version =
      field_value<int>({file, version_node, "bitplan_hw_profile", "bitplan_hw_profile"});
  if (version != HwProfile::kVersion)
    schema_error(file, version_node,
                 fmt::format("schema version {} is not supported (this bitplan reads version {}); "
                             "re-run `bitplan profile` to regenerate it",
                             version, HwProfile::kVersion));
  HwProfile p;
  read_section(file, root, "", kProfileKeys, p);
  require_fields(file, root, {"target", "backend"});
  check_step_overhead(path, p);
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
  for (const auto& m : p.models) {
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "model_hash" << YAML::Value << m.model_hash
        << YAML::Key << "model" << YAML::Value << m.model << YAML::Key << "batch" << YAML::Value
        << m.batch;
    if (!m.inputs.empty()) out << YAML::Key << "inputs" << YAML::Value << m.inputs;
    out << YAML::Key << "other_us" << YAML::Value << m.other_us << YAML::Key << "other_iqr_us"
        << YAML::Value << m.other_iqr_us << YAML::Key << "total_fp32_us" << YAML::Value
        << m.total_fp32_us << YAML::EndMap;
  }
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
