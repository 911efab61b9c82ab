// Pareto tools for minimised objectives: dominance, the non-dominated filter, exact
// hypervolume (any number of objectives) and normalisation to [0, 1] by given bounds.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace bitplan::search {

using ObjectivePoint = std::vector<double>;

// a dominates b: no worse in every objective and strictly better in at least one.
bool dominates(const ObjectivePoint& a, const ObjectivePoint& b);

// Indices (ascending) of the points no other point dominates. Equal points do not dominate
// each other, so every copy of a non-dominated point is kept.
std::vector<std::size_t> non_dominated(const std::vector<ObjectivePoint>& points);

// For each of `points`, the index of the first of `rivals` that dominates it, or none. The
// search uses it to take front plans that the final re-evaluation shows beaten (by another
// front plan or a uniform baseline) off the front.
std::vector<std::optional<std::size_t>> first_dominators(const std::vector<ObjectivePoint>& points,
                                                         const std::vector<ObjectivePoint>& rivals);

// Volume of the region dominated by `points` and bounded by `reference` (a point worse
// than every point of interest). Points not strictly better than the reference in every
// objective add nothing. Exact for any number of objectives (slicing along the last one:
// O(n^(d-1) log n) for d objectives, fine for search fronts).
double hypervolume(const std::vector<ObjectivePoint>& points, const ObjectivePoint& reference);

struct ObjectiveBounds {
  ObjectivePoint lower;  // per objective; e.g. the ideal point
  ObjectivePoint upper;  // e.g. the nadir point
};

// Per-objective minimum and maximum over `points` (which must be non-empty).
ObjectiveBounds bounds_of(const std::vector<ObjectivePoint>& points);

// Maps each objective to (x - lower) / (upper - lower), so objectives with different units
// weigh alike in hypervolume and distances; an objective with upper == lower maps to 0.
std::vector<ObjectivePoint> normalize(const std::vector<ObjectivePoint>& points,
                                      const ObjectiveBounds& bounds);

}  // namespace bitplan::search
