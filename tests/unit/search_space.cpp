// Search space validation and the readable genome keys used by the results database.
#include <doctest/doctest.h>

#include <cmath>

#include "core/error.hpp"
#include "search/space.hpp"

namespace search_space_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {
std::string validation_error(const SearchSpace& space) {
  try {
    space.validate();
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_input);
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("a search space counts its plans and rejects empty or ambiguous layers") {
  SearchSpace space{{{"conv1", {"W8A8", "W4A8"}}, {"fc", {"W8A8", "W4A8", "FP32"}}}};
  CHECK(validation_error(space).empty());
  CHECK(space.plan_count() == 6u);
  CHECK(space.size() == doctest::Approx(std::log10(6.0)));

  CHECK(validation_error(SearchSpace{}).find("no layers") != std::string::npos);
  CHECK(validation_error(SearchSpace{{{"conv1", {}}}}).find("layer 'conv1' has no options") !=
        std::string::npos);
  CHECK(validation_error(SearchSpace{{{"a", {"W8A8"}}, {"a", {"W8A8"}}}})
            .find("layer 'a' appears twice") != std::string::npos);
  CHECK(validation_error(SearchSpace{{{"a", {"W8A8", "W8A8"}}}}).find("option 'W8A8' twice") !=
        std::string::npos);

  CHECK_THROWS_AS(space.check({0}), Error);
  CHECK_THROWS_AS(space.check({0, 3}), Error);
  CHECK_NOTHROW(space.check({1, 2}));
}

TEST_CASE("genome keys are readable and parse back, even with separators in names") {
  SearchSpace space{{{"/layer1/conv;0", {"W8A8", "W4=A8"}}, {"fc\\out", {"FP32", "W8A8"}}}};
  const Genome genome{1, 0};
  const std::string key = genome_key(space, genome);
  CHECK(key == "/layer1/conv\\;0=W4\\=A8;fc\\\\out=FP32");
  CHECK(parse_genome_key(space, key) == genome);

  SearchSpace plain{{{"conv1", {"W8A8", "W4A8"}}, {"fc", {"W8A8", "FP32"}}}};
  CHECK(genome_key(plain, {0, 1}) == "conv1=W8A8;fc=FP32");
  CHECK(parse_genome_key(plain, "conv1=W8A8;fc=FP32") == Genome{0, 1});
  CHECK_FALSE(parse_genome_key(plain, "conv1=W2A2;fc=FP32"));  // unknown option
  CHECK_FALSE(parse_genome_key(plain, "fc=FP32;conv1=W8A8"));  // other layer order
  CHECK_FALSE(parse_genome_key(plain, "conv1=W8A8"));          // missing layer
  CHECK_FALSE(parse_genome_key(plain, "conv1=W8A8;fc"));       // malformed
}

TEST_CASE("a cost table must match the space and leave each layer a supported option") {
  SearchSpace space{{{"conv1", {"W8A8", "W4A8"}}, {"fc", {"W8A8", "FP32"}}}};
  LayerCostTable costs{{{0.1, 0.2}, {0.0, 0.3}}, {{1, 2}, {3, 4}}, {}, {}, {}};
  CHECK_NOTHROW(costs.validate(space));
  CHECK(allowed_options(space, &costs) == std::vector<std::vector<int>>{{0, 1}, {0, 1}});

  costs.unsupported_reason = {{"", "no INT4 kernel"}, {"", ""}};
  CHECK_NOTHROW(costs.validate(space));
  CHECK(allowed_options(space, &costs) == std::vector<std::vector<int>>{{0}, {0, 1}});

  costs.unsupported_reason = {{"no INT8 kernel", "no INT4 kernel"}, {"", ""}};
  try {
    costs.validate(space);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::unsupported);
    CHECK(std::string(e.what()).find("W4A8: no INT4 kernel") != std::string::npos);
  }

  LayerCostTable short_row{{{0.1}, {0.0, 0.3}}, {}, {}, {}, {}};
  CHECK_THROWS_WITH_AS(short_row.validate(space),
                       doctest::Contains("1 values for layer 'conv1', which has 2 options"), Error);
  LayerCostTable not_finite{{{0.1, NAN}, {0.0, 0.3}}, {}, {}, {}, {}};
  CHECK_THROWS_WITH_AS(not_finite.validate(space), doctest::Contains("must be finite"), Error);
}

}  // namespace search_space_test
