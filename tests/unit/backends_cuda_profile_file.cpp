// The CUDA profiler's profile file (backends/cuda/profile_file.hpp) without a GPU: what it
// writes loads with bitplan's own reader (load_hw_profile, yaml-cpp) field for field, a
// merge keeps old items and their order, and files it cannot merge into are refused with
// the reason.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "backends/cuda/errors.hpp"
#include "backends/cuda/profile_file.hpp"
#include "backends/hw_profile.hpp"
#include "tests/temp_dir.hpp"

namespace backends_cuda_profile_file_test {

using namespace bitplan;
using cuda::ProfileFile;

namespace {

cuda::ProfileHeader h100_header() {
  cuda::ProfileHeader header;
  header.target = "nvidia-h100-80gb-hbm3";
  header.device.name = "NVIDIA H100 80GB HBM3";
  header.device.sm_major = 9;
  header.device.multiprocessors = 132;
  header.device.memory_bytes = std::uint64_t{81079} << 20;
  header.device.clock_khz = 1980000;
  header.device.l2_bytes = std::int64_t{50} << 20;
  header.driver = "580.159.04";
  header.cuda_runtime = "13.0";
  header.cublaslt = "13.1.0";
  header.timing.min_repeats = 7;
  header.cudnn = "9.19.0";
  return header;
}

cuda::TimingResult timing(double median_us, double iqr_us, int repeats) {
  return {median_us, iqr_us, repeats};
}

}  // namespace

TEST_CASE("a profile the CUDA profiler writes loads with load_hw_profile") {
  test::TempDir dir;
  const std::string path = (dir / "h100.yaml").string();
  ProfileFile file = ProfileFile::load_or_empty(path);
  CHECK(file.device_name().empty());
  file.add_ceiling("gemm_fp16_tflops", 689.234, "TFLOP/s", "cublasLt 8192^3 fp16");
  file.add_entry("gemm:m4:n64:k128", "int8", timing(12.34567, 0.3004, 200),
                 "cublasLt heuristic #0 + int32->fp16 per-channel dequant kernel");
  // Text that YAML would need quoting or escapes for: quotes, backslash, ": ", "#", newline.
  const std::string reason = "cuBLASLt: \"n = 10\" # not a multiple of 4\\8\nsecond line";
  file.add_unsupported("conv:n1:c3:h9:w9:k10:r3:s3:st1x1:p1x1x1x1:d1x1:g1", "fp8_e4m3", reason);
  file.add_conversion("fp16", "int8", 512, timing(1.0004, 0.0996, 50));
  file.save(path, h100_header());

  const HwProfile profile = load_hw_profile(path);
  CHECK(profile.target == "nvidia-h100-80gb-hbm3");
  CHECK(profile.backend == "cuda");
  CHECK(profile.device.at("name") == "NVIDIA H100 80GB HBM3");
  CHECK(profile.device.at("compute_capability") == "9.0");
  CHECK(profile.device.at("multiprocessors") == "132");
  CHECK(profile.device.at("memory_mib") == "81079");
  CHECK(profile.device.at("sm_clock_mhz") == "1980");
  CHECK(profile.device.at("l2_mib") == "50");
  CHECK(profile.device.at("driver") == "580.159.04");
  CHECK(profile.libraries.at("cublaslt") == "13.1.0");
  CHECK(profile.libraries.at("cudnn").rfind("9.19.0 (convolutions: per shape the fastest", 0) == 0);
  CHECK(profile.timing.at("min_repeats") == "7");
  CHECK(profile.timing.at("statistic") == "median");

  REQUIRE(profile.ceilings.size() == 1);
  CHECK(profile.ceilings[0].name == "gemm_fp16_tflops");
  CHECK(profile.ceilings[0].value == doctest::Approx(689.234));
  CHECK(profile.ceilings[0].unit == "TFLOP/s");

  REQUIRE(profile.entries.size() == 2);
  const ProfileEntry* measured = profile.find("gemm:m4:n64:k128", "int8");
  REQUIRE(measured != nullptr);
  CHECK(measured->median_us == doctest::Approx(12.346));  // to the nanosecond
  CHECK(measured->iqr_us == doctest::Approx(0.300));
  CHECK(measured->repeats == 200);
  CHECK(measured->implementation ==
        "cublasLt heuristic #0 + int32->fp16 per-channel dequant kernel");
  CHECK(measured->unsupported.empty());
  const ProfileEntry* refused =
      profile.find("conv:n1:c3:h9:w9:k10:r3:s3:st1x1:p1x1x1x1:d1x1:g1", "fp8_e4m3");
  REQUIRE(refused != nullptr);
  CHECK(refused->unsupported == reason);

  REQUIRE(profile.conversions.size() == 1);
  CHECK(profile.conversions[0].from == "fp16");
  CHECK(profile.conversions[0].to == "int8");
  CHECK(profile.conversions[0].elements == 512);
  CHECK(profile.conversions[0].median_us == doctest::Approx(1.0));
}

TEST_CASE("merging into a CUDA profile keeps its measurements and their order") {
  test::TempDir dir;
  const std::string path = (dir / "p.yaml").string();
  ProfileFile first = ProfileFile::load_or_empty(path);
  first.add_entry("gemm:m1:n8:k8", "fp16", timing(5, 0.1, 60), "old");
  first.add_conversion("fp16", "fp8_e4m3", 64, timing(1, 0, 50));
  first.save(path, h100_header());

  ProfileFile merged = ProfileFile::load_or_empty(path);
  CHECK(merged.device_name() == "NVIDIA H100 80GB HBM3");
  CHECK(merged.has_entry("gemm:m1:n8:k8", "fp16"));
  CHECK_FALSE(merged.has_entry("gemm:m1:n8:k8", "bf16"));
  CHECK(merged.has_conversion("fp16", "fp8_e4m3", 64));
  CHECK_FALSE(merged.has_conversion("fp16", "fp8_e4m3", 128));
  merged.add_entry("gemm:m1:n8:k8", "fp16", timing(9, 0.1, 60), "remeasured");  // kept out
  merged.add_entry("gemm:m1:n8:k8", "bf16", timing(6, 0.1, 60), "new");
  merged.save(path, h100_header());

  const HwProfile profile = load_hw_profile(path);
  REQUIRE(profile.entries.size() == 2);
  CHECK(profile.entries[0].precision == "fp16");
  CHECK(profile.entries[0].implementation == "old");
  CHECK(profile.entries[1].precision == "bf16");
  CHECK(profile.conversions.size() == 1);
}

TEST_CASE("the CUDA profiler refuses to merge into what it did not write") {
  test::TempDir dir;
  const auto refusal = [](const std::string& path) {
    try {
      ProfileFile::load_or_empty(path);
    } catch (const cuda::ProfileError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  // A block-style YAML profile, as save_hw_profile writes them.
  const std::string yaml = dir.write("cpu.yaml", "bitplan_hw_profile: 1\ntarget: cpu\n");
  CHECK(refusal(yaml).find("not JSON text") != std::string::npos);
  const std::string other_version = dir.write("v2.yaml", R"({"bitplan_hw_profile": 2})");
  CHECK(refusal(other_version).find("\"bitplan_hw_profile\": 1") != std::string::npos);
  const std::string keyless =
      dir.write("keyless.yaml", R"({"bitplan_hw_profile": 1, "entries": [{"precision": "fp16"}]})");
  CHECK(refusal(keyless).find("entries[0]") != std::string::npos);
}

TEST_CASE("the checked-in H100 profile is one the CUDA profiler can merge into") {
  const std::filesystem::path path =
      std::filesystem::path(BITPLAN_SOURCE_DIR) / "hw_profiles/h100.yaml";
  const HwProfile profile = load_hw_profile(path);
  const ProfileFile file = ProfileFile::load_or_empty(path.string());
  CHECK(file.device_name() == profile.device.at("name"));
  for (const auto& entry : profile.entries) CHECK(file.has_entry(entry.key, entry.precision));
  for (const auto& c : profile.conversions) CHECK(file.has_conversion(c.from, c.to, c.elements));
  for (const auto& c : profile.ceilings) CHECK(file.has_ceiling(c.name));
}

}  // namespace backends_cuda_profile_file_test
