// The compact spec strings of plans ("int4/group128/sym"): canonical round trips, and
// errors that name the bad part and list what is valid.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "executor/quant/quantizer.hpp"

namespace executor_quant_spec_test {

using namespace bitplan;

namespace {

// The message of the invalid-input error `text` raises ("" when it parses).
std::string parse_error(std::string_view text) {
  try {
    parse_quant_spec(text);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("spec strings round-trip through to_string") {
  for (std::string_view text : {"int4/group128/sym",
                                "int8/channel/sym",
                                "int8/channel:1/sym",
                                "uint8/tensor/asym",
                                "uint8/tensor/sym",
                                "int2/tensor/asym",
                                "uint16/group7/sym",
                                "int3/group1/asym",
                                "fp8_e4m3/tensor",
                                "fp8_e5m2/channel",
                                "fp8_e4m3/group128",
                                "fp4_e2m1/group32",
                                "kmeans4/channel",
                                "kmeans2/tensor",
                                "kmeans3/channel:2",
                                "ternary/channel",
                                "ternary/group64",
                                "pow2_4/group64",
                                "pow2_3/tensor",
                                "fp16",
                                "bf16",
                                "fp32"}) {
    CAPTURE(text);
    CHECK(to_string(parse_quant_spec(text)) == text);
  }
}

TEST_CASE("spec strings fill the fields") {
  const QuantSpec a = parse_quant_spec("int4/group128/sym");
  CHECK(a.format == FormatId::int4);
  CHECK(a.granularity == Granularity::per_group);
  CHECK(a.group_size == 128);
  CHECK(a.symmetric);
  const QuantSpec b = parse_quant_spec("uint8/channel:3/asym");
  CHECK(b.format == FormatId::uint8);
  CHECK(b.granularity == Granularity::per_channel);
  CHECK(b.axis == 3);
  CHECK_FALSE(b.symmetric);
  const QuantSpec c = parse_quant_spec("fp16");
  CHECK(c.format == FormatId::fp16);
  CHECK(c.granularity == Granularity::per_tensor);
  const QuantSpec d = parse_quant_spec("uint8/token/asym");
  CHECK(d.granularity == Granularity::per_token);
  CHECK(to_string(d) == "uint8/token/asym");
  // Parts after the format may come in any order; to_string writes the canonical one.
  CHECK(to_string(parse_quant_spec("int4/sym/group128")) == "int4/group128/sym");
}

TEST_CASE("every format has a canonical spec that parses back") {
  for (const FormatTraits& f : all_formats()) {
    CAPTURE(f.name);
    QuantSpec spec;
    spec.format = f.id;
    if (f.block_size > 0) {
      spec.granularity = Granularity::per_group;
      spec.group_size = f.block_size;
    } else if (f.has_scale() || f.kind == FormatKind::codebook) {
      spec.granularity = Granularity::per_channel;
    }
    check_spec(spec);
    const std::string text = to_string(spec);
    CHECK(to_string(parse_quant_spec(text)) == text);
  }
}

TEST_CASE("bad spec strings name the bad part and list the valid values") {
  struct Bad {
    std::string_view text;
    std::vector<std::string_view> says;
  };
  const std::vector<Bad> cases = {
      {"int9/tensor/sym", {"unknown number format 'int9'", "valid formats: fp32, int2, int3"}},
      {"", {"unknown number format ''"}},
      {"int4/grp128/sym",
       {"'grp128' is neither a granularity (tensor, channel, channel:<axis>, group<size>, token) "
        "nor a symmetry (sym, asym)"}},
      {"int4/group0/sym", {"'group0' has a bad group size", "positive integer"}},
      {"int4/groupx/sym", {"'groupx' has a bad group size"}},
      {"int4/group-8/sym", {"'group-8' has a bad group size"}},
      {"int4/channel:-1/sym", {"'channel:-1' has a bad axis"}},
      {"int4/channel:/sym", {"'channel:' has a bad axis"}},
      {"int4/tensor", {"int4 needs a symmetry: sym or asym"}},
      {"int4/sym",
       {"int4 needs a granularity: tensor, channel, channel:<axis>, group<size>, token"}},
      {"fp8_e4m3", {"fp8_e4m3 needs a granularity"}},
      {"fp8_e4m3/tensor/sym", {"fp8_e4m3 is symmetric by construction"}},
      {"ternary/tensor/asym", {"ternary is symmetric by construction"}},
      {"fp16/tensor", {"fp16 takes no scale, so the spec is just 'fp16'"}},
      {"fp32/sym", {"fp32 takes no scale"}},
      {"fp4_e2m1/group16", {"fp4_e2m1 takes only group32 (its MX block), not 'group16'"}},
      {"fp4_e2m1/tensor", {"fp4_e2m1 takes only group32"}},
      {"fp4_e2m1", {"fp4_e2m1 needs a granularity: group32"}},
      {"kmeans4/group128", {"kmeans4 takes tensor, channel, channel:<axis>, not 'group128'"}},
      {"kmeans4/token", {"kmeans4 takes tensor, channel, channel:<axis>, not 'token'"}},
      {"fp16/token", {"fp16 takes no scale, so the spec is just 'fp16'"}},
      {"fp4_e2m1/token", {"fp4_e2m1 takes only group32 (its MX block), not 'token'"}},
      {"int4/tensor/channel/sym", {"'channel' repeats the granularity"}},
      {"int4/tensor/sym/asym", {"'asym' repeats the symmetry"}},
      {"int4/group128/sym/", {"'' is neither a granularity"}},
      {"int4 /tensor/sym", {"unknown number format 'int4 '"}},
  };
  for (const Bad& bad : cases) {
    CAPTURE(bad.text);
    const std::string message = parse_error(bad.text);
    CHECK(message.starts_with("parsing quantization spec '" + std::string(bad.text) + "': "));
    for (std::string_view part : bad.says) {
      CAPTURE(part);
      CHECK(message.find(part) != std::string::npos);
    }
  }
}

TEST_CASE("specs built in code are checked too") {
  QuantSpec kmeans_groups;
  kmeans_groups.format = FormatId::kmeans4;
  kmeans_groups.granularity = Granularity::per_group;
  kmeans_groups.group_size = 64;
  CHECK_THROWS_WITH_AS(check_spec(kmeans_groups),
                       doctest::Contains("kmeans4 takes tensor, channel"), Error);
  QuantSpec asym_fp8;
  asym_fp8.format = FormatId::fp8_e4m3;
  asym_fp8.symmetric = false;
  CHECK_THROWS_WITH_AS(check_spec(asym_fp8), doctest::Contains("symmetric by construction"), Error);
  QuantSpec no_group;
  no_group.format = FormatId::int4;
  no_group.granularity = Granularity::per_group;
  CHECK_THROWS_WITH_AS(check_spec(no_group), doctest::Contains("group size must be positive"),
                       Error);
}

}  // namespace executor_quant_spec_test
