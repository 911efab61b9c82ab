// Hardware profiles that were read although docs/profiling.md says they are refused, or that
// meant something other than they say (issue 17, item 8): each is refused with the file,
// line and column, the value and the rule.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "backends/hw_profile.hpp"
#include "core/error.hpp"

namespace backends_profile_hardening_test {

namespace fs = std::filesystem;
using namespace bitplan;

namespace {
const fs::path kSource = BITPLAN_SOURCE_DIR;

class ProfileFiles {
 public:
  ProfileFiles()
      : dir_(fs::temp_directory_path() /
             ("bitplan_profile_hardening_" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
  }
  ~ProfileFiles() { fs::remove_all(dir_); }

  // The error of loading a profile with `body` after a valid header (lines 1-3).
  std::string error(const std::string& body) const {
    const fs::path file = dir_ / "p.yaml";
    std::ofstream(file) << "bitplan_hw_profile: 1\ntarget: t\nbackend: onednn\n" << body;
    try {
      load_hw_profile(file);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::invalid_input);
      const std::string prefix = "hardware profile '" + file.string() + "' ";
      const std::string message = e.what();
      CHECK(message.rfind(prefix, 0) == 0);
      return message.substr(prefix.size());
    }
    FAIL("the profile was accepted: " << body);
    return "";
  }

 private:
  fs::path dir_;
};

constexpr const char* kGemm = "gemm:m1:n10:k64";
}  // namespace

TEST_CASE("17.8 unknown precision") {
  const ProfileFiles files;
  CHECK(files.error(
            fmt::format("entries:\n  - {{key: {}, precision: int3, median_us: 1}}\n", kGemm)) ==
        "line 5, column 39: precision 'int3' is not one of fp32, int8, int8_chained, bf16, fp16, "
        "fp8_e4m3, fp8_e4m3_chained, w4a16, w8a16, w4a32, w4a8, w3a8, w2a8, w8a8");
  CHECK(files.error("conversions:\n  - {from: fp32, to: int4, elements: 8, median_us: 1}\n") ==
        "line 5, column 22: to 'int4' is not one of fp32, int8, bf16, fp16, fp8_e4m3");
}

TEST_CASE("17.8 negative iqr_us") {
  const ProfileFiles files;
  CHECK(files.error(fmt::format(
            "entries:\n  - {{key: {}, precision: fp32, median_us: 1, iqr_us: -0.5}}\n", kGemm)) ==
        "line 5, column 67: iqr_us must be a finite number >= 0, got -0.5");
  CHECK(files.error(
            "conversions:\n  - {from: fp32, to: int8, elements: 8, median_us: 1, iqr_us: -1}\n") ==
        "line 5, column 63: iqr_us must be a finite number >= 0, got -1");
  CHECK(files.error("models:\n  - {model_hash: h, batch: 1, other_us: 1, other_iqr_us: -2}\n") ==
        "line 5, column 58: other_iqr_us must be a finite number >= 0, got -2");
  CHECK(files.error(fmt::format(
            "entries:\n  - {{key: {}, precision: fp32, median_us: 1, iqr_us: .nan}}\n", kGemm)) ==
        "line 5, column 67: iqr_us must be a finite number >= 0, got nan");
}

TEST_CASE("17.8 negative repeats") {
  const ProfileFiles files;
  CHECK(files.error(fmt::format(
            "entries:\n  - {{key: {}, precision: fp32, median_us: 1, repeats: -3}}\n", kGemm)) ==
        "line 5, column 68: repeats must be >= 0, got -3");
  CHECK(files.error("conversions:\n  - {from: fp32, to: int8, elements: -8, median_us: 1}\n") ==
        "line 5, column 38: elements must be >= 1, got -8");
}

TEST_CASE("17.8 duplicate entries") {
  const ProfileFiles files;
  // Was: both read, and every lookup found the first.
  CHECK(files.error(fmt::format("entries:\n"
                                "  - {{key: {0}, precision: fp32, median_us: 1}}\n"
                                "  - {{key: {0}, precision: int8, median_us: 2}}\n"
                                "  - {{key: {0}, precision: fp32, median_us: 3}}\n",
                                kGemm)) ==
        "line 7, column 5: entry gemm:m1:n10:k64 fp32 appears twice (first at line 5); each may "
        "appear once");
  CHECK(files.error("ceilings:\n  - {name: bw, value: 1}\n  - {name: bw, value: 2}\n") ==
        "line 6, column 5: ceiling 'bw' appears twice (first at line 5); each may appear once");
  CHECK(files.error("conversions:\n"
                    "  - {from: fp32, to: int8, elements: 8, median_us: 1}\n"
                    "  - {from: fp32, to: int8, elements: 8, median_us: 2}\n") ==
        "line 6, column 5: conversion fp32 -> int8 of 8 elements appears twice (first at line "
        "5); each may appear once");
  CHECK(files.error("models:\n"
                    "  - {model_hash: h, batch: 1, other_us: 1}\n"
                    "  - {model_hash: h, batch: 1, other_us: 2}\n") ==
        "line 6, column 5: model 'h' at batch 1 appears twice (first at line 5); each may appear "
        "once");
  // A key twice within one entry is refused as YAML that says two things.
  CHECK(files.error(fmt::format(
            "entries:\n  - {{key: {}, precision: fp32, median_us: 1, median_us: 9}}\n", kGemm)) ==
        "line 5, column 59: key 'entries[0].median_us' appears twice in one mapping (first at "
        "line 5, column 45); each key may appear once");
}

TEST_CASE("17.8 malformed or huge keys") {
  const ProfileFiles files;
  CHECK(files.error("entries:\n  - {key: 'gemm:m1:n-10:k64', precision: fp32, median_us: 1}\n") ==
        "line 5, column 11: key 'gemm:m1:n-10:k64' is not a workload key: "
        "conv:n{N}:c{C}:h{H}:w{W}:k{K}:r{R}:s{S}:st{sh}x{sw}:p{t}x{l}x{b}x{r}:d{dh}x{dw}:g{G}, "
        "gemm:m{M}:n{N}:k{K} or an op key (eltwise, reduce, rownorm, copy, bmm), at most 256 "
        "characters");
  // The model's other ops have keys of their own, checked by the GPU profiler's grammar.
  {
    const fs::path file = fs::temp_directory_path() / "bitplan_profile_op_key.yaml";
    std::ofstream(file) << "bitplan_hw_profile: 1\ntarget: t\nbackend: cuda\nentries:\n"
                           "  - {key: 'rownorm:r4:c64', precision: fp16, median_us: 1}\n";
    CHECK(load_hw_profile(file).find("rownorm:r4:c64", "fp16") != nullptr);
    fs::remove(file);
  }
  CHECK(files.error("entries:\n  - {key: 'eltwise:o0:i4', precision: fp16, median_us: 1}\n")
            .find("key 'eltwise:o0:i4' is not an op key: parsing layer key: 'eltwise:o0:i4': "
                  "field 'o0' must be positive") != std::string::npos);
  CHECK(files.error("entries:\n  - {key: k, precision: fp32, median_us: 1}\n")
            .find("key 'k' is not a workload key") ==
        0 + std::string("line 5, column 10: ").size());
  // A huge key is cut in the message, with its length.
  const std::string huge = "gemm:m1:n10:k" + std::string(100000, '1');
  const std::string message =
      files.error("entries:\n  - {key: " + huge + ", precision: fp32, median_us: 1}\n");
  CHECK(message.find("key 'gemm:m1:n10:k1111") != std::string::npos);
  CHECK(message.find("...' (100013 characters) is not a workload key") != std::string::npos);
  CHECK(message.size() < 400);
  // The names in device, libraries and timing are names, not text of any length.
  CHECK(files.error("device: {'cpu model': x}\n") ==
        "line 4, column 10: device name 'cpu model' must be 1 to 64 letters, digits, '_', '-' or "
        "'.'");
  CHECK(files.error("timing: {" + std::string(65, 'n') + ": 1}\n").find("timing name 'nnnn") !=
        std::string::npos);
  // Real keys, conv and gemm, are read.
  const fs::path dir =
      fs::temp_directory_path() / ("bitplan_profile_ok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "ok.yaml")
      << "bitplan_hw_profile: 1\ntarget: t\nbackend: onednn\nentries:\n"
         "  - {key: 'conv:n1:c1:h28:w28:k16:r3:s3:st1x1:p1x1x1x1:d1x1:g1', precision: "
         "int8_chained, "
         "median_us: 1, iqr_us: 0, repeats: 15}\n"
         "  - {key: 'gemm:m1:n10:k64', precision: bf16, unsupported: no kernel}\n";
  CHECK(load_hw_profile(dir / "ok.yaml").entries.size() == 2);
  fs::remove_all(dir);
}

TEST_CASE("17.8 unknown keys") {
  const ProfileFiles files;
  CHECK(files.error("entires: []\n") ==
        "line 4, column 1: unknown key 'entires'; known keys are bitplan_hw_profile, target, "
        "backend, device, libraries, timing, ceilings, entries, conversions, models");
  CHECK(files.error(fmt::format(
            "entries:\n  - {{key: {}, precision: fp32, median_us: 1, iqr: 0.1}}\n", kGemm)) ==
        "line 5, column 59: unknown key 'entries[].iqr'; known keys are key, precision, "
        "median_us, iqr_us, repeats, implementation, unsupported");
  CHECK(files.error("ceilings:\n  - {name: bw, value: 1, units: GB/s}\n")
            .find("unknown key 'ceilings[].units'") != std::string::npos);
  CHECK(files.error("models:\n  - {model_hash: h, batch: 1, other_us: 1, total_us: 2}\n")
            .find("unknown key 'models[].total_us'") != std::string::npos);
  // An unsupported entry carries no measurement: which would a reader believe?
  CHECK(
      files.error(fmt::format(
          "entries:\n  - {{key: {}, precision: bf16, unsupported: no, median_us: 1}}\n", kGemm)) ==
      "line 5, column 73: an entry with 'unsupported' has no measurement, but it has "
      "'median_us'");
  // Entries that are not mappings, and values of the wrong kind.
  CHECK(files.error("entries:\n  - 3\n") == "line 5, column 5: entries[] must be a mapping");
  CHECK(files.error(
            fmt::format("entries:\n  - {{key: {}, precision: [fp32], median_us: 1}}\n", kGemm)) ==
        "line 5, column 39: field 'precision' has the wrong type: a list is not text");
  CHECK(files.error(
            fmt::format("entries:\n  - {{key: {}, precision: fp32, median_us: }}\n", kGemm)) ==
        "line 5, column 56: field 'median_us' has the wrong type: empty is not a number");
}

TEST_CASE("17.8 the shipped profiles pass the checks") {
  for (const char* name : {"hw_profiles/cpu-amd-epyc-2t.yaml", "hw_profiles/h100.yaml"}) {
    CAPTURE(name);
    CHECK(!load_hw_profile(kSource / name).entries.empty());
  }
}

}  // namespace backends_profile_hardening_test
