// The hardware profile the CUDA profiler writes and merges into: the one profile schema of
// backends/hw_profile.hpp (version 1) written as JSON text. JSON is YAML 1.2 flow syntax, so
// bitplan's load_hw_profile (yaml-cpp) reads these files unchanged, while the profiler needs
// only nlohmann/json, a header that travels to GPU machines with the standalone build (which
// has no yaml-cpp). Host code only: it builds, and is unit-tested, without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "backends/cuda/timing.hpp"
#include "backends/device.hpp"

namespace bitplan::cuda {

// Writes `path` through a temporary file renamed over it, so a run cut off mid-write leaves
// the previous file intact; `what` names the file in errors ("profile", "chain results").
void write_atomically(const std::string& path, const std::string& what,
                      const std::function<void(std::ostream&)>& write);

// Where and how a profile was measured: the fields before its lists.
struct ProfileHeader {
  std::string target;  // e.g. "nvidia-h100-80gb-hbm3"
  CudaDevice device;
  std::string driver;        // kernel driver version, e.g. "580.159.04"
  std::string cuda_runtime;  // e.g. "13.0"
  std::string cublaslt;      // e.g. "13.1.0"
  TimingOptions timing;      // of the entries (ceilings and conversions use their own)
  std::string cudnn;         // e.g. "9.19.0"; empty: a build without cuDNN
};

// A profile's ceilings, entries and conversions in file order, each identity (ceiling name;
// key and precision; conversion types and size) once, so that a merge keeps the old order,
// never measures twice and appends what is new.
class ProfileFile {
 public:
  // The profile at `path` as save() wrote it, or an empty one when there is no file. Throws
  // ProfileError naming the file when it is another format, another schema version, or has
  // an item without its identity fields.
  static ProfileFile load_or_empty(const std::string& path);

  // The GPU the loaded measurements were made on; empty for a new profile.
  const std::string& device_name() const { return device_name_; }

  bool has_ceiling(const std::string& name) const;
  bool has_entry(const std::string& key, const std::string& precision) const;
  bool has_conversion(const std::string& from, const std::string& to, std::int64_t elements) const;

  // Each add keeps an item already there: measurements are never replaced by a merge.
  void add_ceiling(const std::string& name, double value, const std::string& unit,
                   const std::string& how);
  void add_entry(const std::string& key, const std::string& precision, const TimingResult& time,
                 const std::string& implementation);
  void add_unsupported(const std::string& key, const std::string& precision,
                       const std::string& reason);
  void add_conversion(const std::string& from, const std::string& to, std::int64_t elements,
                      const TimingResult& time);

  // Writes the header and every item, one item per line, through a temporary file renamed
  // over `path`, so a run cut off mid-write leaves the previous profile intact.
  void save(const std::string& path, const ProfileHeader& header) const;

 private:
  class Section {
   public:
    bool has(const std::string& id) const { return ids_.count(id) != 0; }
    void add(const std::string& id, nlohmann::ordered_json item);
    const std::vector<nlohmann::ordered_json>& items() const { return items_; }

   private:
    std::set<std::string> ids_;
    std::vector<nlohmann::ordered_json> items_;
  };

  std::string device_name_;
  Section ceilings_, entries_, conversions_;
};

}  // namespace bitplan::cuda
