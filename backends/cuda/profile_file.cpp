#include "backends/cuda/profile_file.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "backends/cuda/errors.hpp"

namespace bitplan::cuda {

namespace {

using Json = nlohmann::ordered_json;  // keeps fields in the order the schema lists them

constexpr int kSchemaVersion = 1;  // backends/hw_profile.hpp's HwProfile::kVersion

std::string entry_id(const std::string& key, const std::string& precision) {
  return key + "|" + precision;
}
std::string conversion_id(const std::string& from, const std::string& to, std::int64_t elements) {
  return from + ">" + to + ":" + std::to_string(elements);
}

// Microseconds to the nanosecond, rates to a tenth: finer digits are noise, not data.
double rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

// Text of a value; an invalid UTF-8 byte (say, in a driver's error message) becomes U+FFFD
// instead of failing the whole save.
std::string text_of(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The document with each top-level field, and each item of a list, on a line of its own:
// a diff or grep of a profile then sees one measurement per line.
void write_one_item_per_line(std::ostream& out, const Json& document) {
  const char* separator = "{";
  for (const auto& [name, value] : document.items()) {
    out << separator << "\n " << text_of(Json(name)) << ": ";
    separator = ",";
    if (!value.is_array() || value.empty()) {
      out << text_of(value);
      continue;
    }
    const char* item_separator = "[";
    for (const auto& item : value) {
      out << item_separator << "\n  " << text_of(item);
      item_separator = ",";
    }
    out << "\n ]";
  }
  out << "\n}\n";
}

}  // namespace

void ProfileFile::Section::add(const std::string& id, Json item) {
  if (!ids_.insert(id).second) return;
  items_.push_back(std::move(item));
}

ProfileFile ProfileFile::load_or_empty(const std::string& path) {
  ProfileFile profile;
  if (!std::filesystem::exists(path)) return profile;
  const std::string action = "merging into profile '" + path + "'";
  std::ifstream file(path);
  if (!file) throw ProfileError(action + ": the file must be readable");
  Json document;
  try {
    document = Json::parse(file);
  } catch (const Json::parse_error& e) {
    throw ProfileError(action + ": not JSON text (" + e.what() +
                       "): --out must be a profile this tool wrote, or a new file");
  }
  if (!document.is_object() || document.value("bitplan_hw_profile", Json()) != kSchemaVersion)
    throw ProfileError(action + ": no \"bitplan_hw_profile\": " + std::to_string(kSchemaVersion) +
                       " field: --out must be a profile this tool wrote, or a new file");
  const auto each_item = [&](const char* list, const auto& add) {
    if (!document.contains(list)) return;
    const Json& items = document[list];
    if (!items.is_array()) throw ProfileError(action + ": \"" + list + "\": must be a list");
    for (std::size_t i = 0; i < items.size(); ++i) {
      try {
        add(items[i]);
      } catch (const Json::exception& e) {
        throw ProfileError(action + ": " + list + "[" + std::to_string(i) + "] " +
                           text_of(items[i]) + ": " + e.what() +
                           ": an item needs its identity fields, as this tool writes them");
      }
    }
  };
  try {
    if (document.contains("device"))
      profile.device_name_ = document["device"].at("name").get<std::string>();
  } catch (const Json::exception& e) {
    throw ProfileError(action + ": \"device\": " + e.what() + ": must be a mapping with a name");
  }
  each_item("ceilings", [&](const Json& item) {
    profile.ceilings_.add(item.at("name").get<std::string>(), item);
  });
  each_item("entries", [&](const Json& item) {
    profile.entries_.add(
        entry_id(item.at("key").get<std::string>(), item.at("precision").get<std::string>()), item);
  });
  each_item("conversions", [&](const Json& item) {
    profile.conversions_.add(
        conversion_id(item.at("from").get<std::string>(), item.at("to").get<std::string>(),
                      item.at("elements").get<std::int64_t>()),
        item);
  });
  return profile;
}

bool ProfileFile::has_ceiling(const std::string& name) const {
  return ceilings_.has(name);
}

bool ProfileFile::has_entry(const std::string& key, const std::string& precision) const {
  return entries_.has(entry_id(key, precision));
}

bool ProfileFile::has_conversion(const std::string& from, const std::string& to,
                                 std::int64_t elements) const {
  return conversions_.has(conversion_id(from, to, elements));
}

void ProfileFile::add_ceiling(const std::string& name, double value, const std::string& unit,
                              const std::string& how) {
  ceilings_.add(name, {{"name", name}, {"value", rounded(value, 3)}, {"unit", unit}, {"how", how}});
}

void ProfileFile::add_entry(const std::string& key, const std::string& precision,
                            const TimingResult& time, const std::string& implementation) {
  entries_.add(entry_id(key, precision), {{"key", key},
                                          {"precision", precision},
                                          {"median_us", rounded(time.median_us, 3)},
                                          {"iqr_us", rounded(time.iqr_us, 3)},
                                          {"repeats", time.repeats},
                                          {"implementation", implementation}});
}

void ProfileFile::add_unsupported(const std::string& key, const std::string& precision,
                                  const std::string& reason) {
  entries_.add(entry_id(key, precision),
               {{"key", key}, {"precision", precision}, {"unsupported", reason}});
}

void ProfileFile::add_conversion(const std::string& from, const std::string& to,
                                 std::int64_t elements, const TimingResult& time) {
  conversions_.add(conversion_id(from, to, elements), {{"from", from},
                                                       {"to", to},
                                                       {"elements", elements},
                                                       {"median_us", rounded(time.median_us, 3)},
                                                       {"iqr_us", rounded(time.iqr_us, 3)}});
}

void ProfileFile::save(const std::string& path, const ProfileHeader& header) const {
  const CudaDevice& device = header.device;
  Json document;
  document["bitplan_hw_profile"] = kSchemaVersion;
  document["target"] = header.target;
  document["backend"] = "cuda";
  document["device"] = {{"name", device.name},
                        {"compute_capability",
                         std::to_string(device.sm_major) + "." + std::to_string(device.sm_minor)},
                        {"multiprocessors", device.multiprocessors},
                        {"memory_mib", device.memory_bytes >> 20},
                        {"driver", header.driver},
                        {"sm_clock_mhz", device.clock_khz / 1000},
                        {"l2_mib", std::llround(double(device.l2_bytes) / (1 << 20))}};
  document["libraries"] = {
      {"cuda_runtime", header.cuda_runtime},
      {"cublaslt", header.cublaslt},
      {"cudnn", header.cudnn.empty()
                    ? std::string("none (convolutions: im2col + cuBLASLt, direct depthwise kernel)")
                    : header.cudnn +
                          " (convolutions: per shape the fastest of cuDNN, im2col + cuBLASLt "
                          "and the direct depthwise kernel)"}};
  document["timing"] = {{"warmup_runs", header.timing.warmup_runs},
                        {"min_repeats", header.timing.min_repeats},
                        {"budget_ms", header.timing.budget_ms},
                        {"statistic", "median"},
                        {"spread", "iqr"},
                        {"clock", "cuda_events"}};
  document["ceilings"] = ceilings_.items();
  document["entries"] = entries_.items();
  document["conversions"] = conversions_.items();

  write_atomically(path, "profile",
                   [&](std::ostream& out) { write_one_item_per_line(out, document); });
}

void write_atomically(const std::string& path, const std::string& what,
                      const std::function<void(std::ostream&)>& write) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary);
    if (!out)
      throw ProfileError("writing " + what + " '" + temporary + "': the file must be writable");
    write(out);
    if (!out.flush()) throw ProfileError("writing " + what + " '" + temporary + "': the write failed");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    throw ProfileError("writing " + what + " '" + path + "': renaming the temporary file failed");
}

}  // namespace bitplan::cuda
