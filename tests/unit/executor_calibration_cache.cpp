// The calibration cache: ranges survive serialize -> parse bit for bit, malformed files fail
// naming the entry, and the cache key changes with everything that changes the ranges.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "core/hash.hpp"
#include "data_test_util.hpp"
#include "executor/quant/calibration.hpp"

namespace bitplan::executor_calibration_cache_test {
namespace {

using Range = RangeObserver::Range;
using test::check_error;
using test::TempDir;

void check_bit_identical(const CalibrationRanges& a, const CalibrationRanges& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, range] : a) {
    const std::string& layer = name;  // CAPTURE's lambda cannot capture a structured binding
    CAPTURE(layer);
    REQUIRE(b.count(name) == 1);
    CHECK(std::bit_cast<std::uint32_t>(b.at(name).min) == std::bit_cast<std::uint32_t>(range.min));
    CHECK(std::bit_cast<std::uint32_t>(b.at(name).max) == std::bit_cast<std::uint32_t>(range.max));
  }
}

CalibrationRanges awkward_ranges() {
  constexpr float kMax = std::numeric_limits<float>::max();
  constexpr float kTiny = std::numeric_limits<float>::denorm_min();
  return {
      {"conv1", {-1.25f, 3.5f}},
      {"tenths", {0.1f, 0.3f}},  // not exact in decimal
      {"extremes", {-kMax, kMax}},
      {"denormals", {-kTiny, std::nextafter(kTiny, 1.f)}},
      {"negative zero", {-0.f, 0.f}},
      {"constant", {7.f, 7.f}},
      {"next to one", {std::nextafter(1.f, 0.f), std::nextafter(1.f, 2.f)}},
      {"/blocks.0/attn/MatMul_output_0", {-2.f / 3.f, 1.f / 3.f}},
      {"quote \" backslash \\ newline \n tab \t", {-1.f, 1.f}},
      {"\xc3\xa9t\xc3\xa9 \xe2\x82\xac", {0.f, 1e-20f}},  // UTF-8
  };
}

TEST_CASE("serialize then parse gives bit-identical ranges") {
  const CalibrationRanges ranges = awkward_ranges();
  const std::string text = serialize_calibration_ranges(ranges);
  check_bit_identical(ranges, parse_calibration_ranges(text, "cache.json"));
  // Serialising is deterministic (sorted names), so equal ranges give equal files.
  CHECK(serialize_calibration_ranges(parse_calibration_ranges(text, "cache.json")) == text);
  CHECK(parse_calibration_ranges(serialize_calibration_ranges({}), "empty").empty());
}

TEST_CASE("ranges from a real observer round-trip through a cache file") {
  RangeObserver observer([] {
    CalibrationOptions options;
    options.method = CalibrationMethod::percentile;
    return options;
  }());
  std::vector<float> values;
  for (int i = 0; i < 10000; ++i) values.push_back(std::sin(static_cast<float>(i) * 0.37f) * 3.3f);
  observer.observe(values);
  const CalibrationRanges ranges{{"x", observer.range()}};
  TempDir dir;
  write_calibration_cache(dir / "calib.json", ranges);
  check_bit_identical(ranges, read_calibration_cache(dir / "calib.json"));
  check_error([&] { read_calibration_cache(dir / "missing.json"); },
              {"calibration cache", "missing.json", "does not exist"});
}

TEST_CASE("serialize refuses ranges parse would reject") {
  const auto serialize = [](CalibrationRanges ranges) {
    return [ranges] { serialize_calibration_ranges(ranges); };
  };
  check_error(serialize({{"a", {std::nanf(""), 1.f}}}), {"range of 'a'", "finite"});
  check_error(serialize({{"b", {2.f, 1.f}}}), {"range of 'b'", "min <= max"});
  check_error(serialize({{"bad \xff utf8", {0.f, 1.f}}}), {"UTF-8"});
}

TEST_CASE("malformed caches fail naming the file, the entry and the rule") {
  const auto parse = [](std::string text) {
    return [text] { parse_calibration_ranges(text, "c.json"); };
  };
  const std::string head = R"({"format": "bitplan-calibration", "version": 1, "ranges": )";
  check_error(parse("{not json"), {"'c.json'", "must be JSON"});
  check_error(parse("[1, 2]"), {"'c.json'", "not a calibration cache"});
  check_error(parse(R"({"format": 3})"), {"not a calibration cache"});
  check_error(parse(R"({"format": "bitplan-calibration", "version": 2, "ranges": {}})"),
              {"version 2", "must be 1"});
  check_error(parse(R"({"format": "bitplan-calibration", "ranges": {}})"), {"version missing"});
  check_error(parse(head + "[]}"), {"\"ranges\"", "must be an object"});
  check_error(parse(head + R"({"t": {"min": 0}}})"), {"range of 't'", "\"max\": number"});
  check_error(parse(head + R"({"t": {"min": 0, "max": "1"}}})"), {"range of 't'"});
  check_error(parse(head + R"({"t": {"min": 0, "max": 1, "scale": 2}}})"), {"range of 't'"});
  check_error(parse(head + R"({"t": [0, 1]}})"), {"range of 't'"});
  check_error(parse(head + R"({"t": {"min": 2, "max": 1}}})"), {"range of 't'", "min <= max"});
  check_error(parse(head + R"({"t": {"min": 0, "max": 1e300}}})"), {"range of 't'", "finite"});
}

TEST_CASE("the cache key changes with the model, the selection and every option used") {
  const std::string model = fnv1a64_hex("model bytes");
  const std::string selection = "calibration count=512 seed=1 offset=0";
  CalibrationOptions base;
  base.method = CalibrationMethod::percentile;
  const std::string key = calibration_cache_key(model, selection, base);
  CHECK(key.rfind("percentile-", 0) == 0);
  CHECK(key.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos);
  CHECK(calibration_cache_key(model, selection, base) == key);  // stable

  std::set<std::string> keys{key};
  const auto differs = [&](const std::string& other) {
    CHECK(keys.insert(other).second);  // differs from every key so far
  };
  differs(calibration_cache_key(fnv1a64_hex("other model"), selection, base));
  differs(calibration_cache_key(model, "calibration count=512 seed=2 offset=0", base));
  // Fields are length-prefixed: moving text between them is a different key.
  differs(calibration_cache_key(model + "c", selection.substr(1), base));
  for (const auto method :
       {CalibrationMethod::minmax, CalibrationMethod::mse, CalibrationMethod::entropy}) {
    CalibrationOptions options = base;
    options.method = method;
    differs(calibration_cache_key(model, selection, options));
  }
  CalibrationOptions options = base;
  options.symmetric = true;
  differs(calibration_cache_key(model, selection, options));
  options = base;
  options.percentile = 99.9;
  differs(calibration_cache_key(model, selection, options));
  options.percentile = std::nextafter(99.9, 100.0);
  differs(calibration_cache_key(model, selection, options));
  options = base;
  options.bins = 4096;
  differs(calibration_cache_key(model, selection, options));
  for (const auto method : {CalibrationMethod::mse, CalibrationMethod::entropy}) {
    options = base;
    options.method = method;
    options.target_bits = 4;
    differs(calibration_cache_key(model, selection, options));
    options.bins = 1024;
    differs(calibration_cache_key(model, selection, options));
  }

  // Options a method does not read leave its key alone, so its cache is still found.
  CalibrationOptions minmax;
  minmax.method = CalibrationMethod::minmax;
  const std::string minmax_key = calibration_cache_key(model, selection, minmax);
  minmax.bins = 512;
  minmax.percentile = 99;
  minmax.target_bits = 4;
  CHECK(calibration_cache_key(model, selection, minmax) == minmax_key);
  options = base;
  options.target_bits = 4;
  CHECK(calibration_cache_key(model, selection, options) == key);
}

}  // namespace
}  // namespace bitplan::executor_calibration_cache_test
