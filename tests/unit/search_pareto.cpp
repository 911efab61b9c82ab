// Dominance, the non-dominated filter, hypervolume and normalisation, on hand-computed cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.hpp"
#include "search/pareto.hpp"

namespace search_pareto_test {

using namespace bitplan;
using namespace bitplan::search;

TEST_CASE("dominance is strict in one objective and ties keep both copies") {
  CHECK(dominates({1, 2}, {1, 3}));
  CHECK_FALSE(dominates({1, 2}, {1, 2}));
  CHECK_FALSE(dominates({1, 3}, {2, 2}));

  const std::vector<ObjectivePoint> points{{1, 5}, {2, 2}, {3, 3}, {2, 2}, {5, 1}, {1, 6}};
  CHECK(non_dominated(points) == std::vector<std::size_t>{0, 1, 3, 4});
}

TEST_CASE("hypervolume in 1, 2 and 3 objectives matches hand-computed volumes") {
  CHECK(hypervolume({{2}, {3}}, {5}) == 3.0);

  // Staircase (1,3), (2,2), (3,1) against (4,4), in vertical strips: x in [1,2) has
  // height 4-3 = 1, [2,3) height 2, [3,4) height 3 -> 6.
  const std::vector<ObjectivePoint> staircase{{1, 3}, {2, 2}, {3, 1}};
  CHECK(hypervolume(staircase, {4, 4}) == 6.0);
  // A dominated point, a duplicate and a point outside the reference add nothing.
  CHECK(hypervolume({{1, 3}, {2, 2}, {3, 1}, {3, 3}, {2, 2}, {5, 0}}, {4, 4}) == 6.0);
  CHECK(hypervolume({{4, 1}}, {4, 4}) == 0.0);

  // Two boxes against (2,2,2): (0,0,1) dominates 2*2*1 = 4, (1,1,0) dominates 1*1*2 = 2,
  // overlapping in [1,2]x[1,2]x[1,2] = 1 -> 5.
  CHECK(hypervolume({{0, 0, 1}, {1, 1, 0}}, {2, 2, 2}) == 5.0);
  // One point: a box.
  CHECK(hypervolume({{0.5, 0.25, 0}}, {1, 1, 1}) == doctest::Approx(0.5 * 0.75 * 1.0));
  // Three points on a simplex-like front against (1,1,1): each alone is 0.5*0.5*1 etc.
  // (0,0.5,0.5)->1*0.5*0.5, (0.5,0,0.5)->0.5*1*0.5, (0.5,0.5,0)->0.5*0.5*1, pairwise
  // overlaps 0.5^3 each (3 of them), triple overlap 0.5^3: 0.75 - 0.375 + 0.125 = 0.5.
  CHECK(hypervolume({{0, 0.5, 0.5}, {0.5, 0, 0.5}, {0.5, 0.5, 0}}, {1, 1, 1}) ==
        doctest::Approx(0.5));

  CHECK_THROWS_AS(hypervolume({{1, 1}}, {2, 2, 2}), Error);
}

namespace {

// The volume of a union of boxes [p, reference) by inclusion-exclusion over every subset:
// exponential, but exact and independent of the slicing algorithm.
double union_of_boxes(const std::vector<ObjectivePoint>& points, const ObjectivePoint& reference) {
  double volume = 0;
  for (unsigned mask = 1; mask < (1u << points.size()); ++mask) {
    ObjectivePoint corner(reference.size(), -1e300);
    int members = 0;
    for (std::size_t i = 0; i < points.size(); ++i) {
      if (!(mask & (1u << i))) continue;
      ++members;
      for (std::size_t d = 0; d < corner.size(); ++d) corner[d] = std::max(corner[d], points[i][d]);
    }
    double box = 1;
    for (std::size_t d = 0; d < corner.size(); ++d) box *= std::max(0.0, reference[d] - corner[d]);
    volume += members % 2 ? box : -box;
  }
  return volume;
}

}  // namespace

TEST_CASE("hypervolume in 4 to 6 objectives matches inclusion-exclusion") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> grid(0, 4);  // ties and duplicates are likely
  for (std::size_t dims : {4u, 5u, 6u}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<ObjectivePoint> points(1 + trial % 9, ObjectivePoint(dims));
      for (auto& p : points)
        for (double& v : p) v = 0.25 * grid(rng);
      const ObjectivePoint reference(dims, 1.1);
      CAPTURE(dims);
      CAPTURE(trial);
      CHECK(hypervolume(points, reference) == doctest::Approx(union_of_boxes(points, reference)));
    }
  }
  // One point: a box; a point outside the reference adds nothing.
  CHECK(hypervolume({{0, 0, 0, 0}, {2, 0, 0, 0}}, {1, 2, 3, 4}) == doctest::Approx(24.0));
}

TEST_CASE("normalisation maps bounds to 0 and 1 and a constant objective to 0") {
  const std::vector<ObjectivePoint> points{{1, 10, 7}, {3, 20, 7}, {2, 15, 7}};
  const ObjectiveBounds bounds = bounds_of(points);
  CHECK(bounds.lower == ObjectivePoint{1, 10, 7});
  CHECK(bounds.upper == ObjectivePoint{3, 20, 7});
  const auto scaled = normalize(points, bounds);
  CHECK(scaled[0] == ObjectivePoint{0, 0, 0});
  CHECK(scaled[1] == ObjectivePoint{1, 1, 0});
  CHECK(scaled[2] == ObjectivePoint{0.5, 0.5, 0});
  CHECK_THROWS_AS(bounds_of({}), Error);
}

TEST_CASE("first_dominators names the first rival better on every objective") {
  // Front chosen on a subset: (0.08, 0.93, 128) and (0.10, 0.50, 40); on the final selection
  // a uniform baseline (0.085, 0.77, 59) beats the first, nothing beats the second.
  const std::vector<ObjectivePoint> front{{0.0857, 0.93, 128}, {0.10, 0.50, 40}};
  const std::vector<ObjectivePoint> rivals{front[0], front[1], {0.0850, 0.77, 59}};
  const auto beaten = first_dominators(front, rivals);
  REQUIRE(beaten.size() == 2);
  CHECK(beaten[0] == std::optional<std::size_t>(2));
  CHECK_FALSE(beaten[1].has_value());
  // A point does not dominate itself or an equal copy; NaN (no latency) dominates nothing.
  CHECK_FALSE(first_dominators({{1, 1}}, {{1, 1}, {1, 1}})[0].has_value());
  CHECK_FALSE(first_dominators({{1, 1}}, {{0.5, std::nan("")}})[0].has_value());
}

TEST_CASE("the incremental front equals the batch front on random points") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> grid(0, 5);  // ties and duplicates are likely
  std::bernoulli_distribution missing(0.05);      // NaN (no latency) dominates nothing
  for (std::size_t dims : {1u, 2u, 3u, 4u}) {
    for (int trial = 0; trial < 30; ++trial) {
      std::vector<ObjectivePoint> points(1 + static_cast<std::size_t>(trial) * 3,
                                         ObjectivePoint(dims));
      IncrementalFront front;
      for (std::size_t i = 0; i < points.size(); ++i) {
        for (double& v : points[i]) v = missing(rng) ? std::nan("") : 0.5 * grid(rng);
        front.insert(i, points[i]);
        // After every insert, not just at the end: the driver reads the front after each.
        std::vector<ObjectivePoint> so_far(points.begin(), points.begin() + long(i) + 1);
        std::vector<std::size_t> ids = front.ids();
        std::sort(ids.begin(), ids.end());
        CAPTURE(dims);
        CAPTURE(trial);
        CAPTURE(i);
        REQUIRE(ids == non_dominated(so_far));
      }
    }
  }
}

TEST_CASE("an incremental insert reports whether the point entered the front") {
  IncrementalFront front;
  CHECK(front.insert(0, {2, 2}));
  CHECK(front.insert(1, {2, 2}));  // an equal point does not dominate: both stay
  CHECK_FALSE(front.insert(2, {3, 3}));
  CHECK(front.insert(3, {1, 1}));  // dominates both copies
  CHECK(front.ids() == std::vector<std::size_t>{3});
  CHECK(front.size() == 1);
}

}  // namespace search_pareto_test
