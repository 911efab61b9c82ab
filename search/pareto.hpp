// Pareto tools for minimised objectives: dominance, the non-dominated filter (in one pass
// over a set, or kept up to date point by point), exact hypervolume (any number of
// objectives) and normalisation to [0, 1] by given bounds.
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

// The non-dominated subset of the points inserted so far, kept up to date one point at a
// time: an insert costs one pass over the current front (the search inserts after every
// evaluation, where recomputing the whole front would cost a pass over all evaluations per
// point). Dominance is a strict partial order, so the members are exactly what
// non_dominated() gives on every inserted point, equal points included.
class IncrementalFront {
 public:
  // Adds the point named `id`. Returns false, leaving the front unchanged, when a member
  // dominates it; otherwise removes the members it dominates and returns true.
  bool insert(std::size_t id, const ObjectivePoint& point);
  // The members' ids, in insertion order.
  std::vector<std::size_t> ids() const;
  std::size_t size() const { return members_.size(); }

 private:
  struct Member {
    std::size_t id;
    ObjectivePoint point;
  };
  std::vector<Member> members_;  // insertion order
};

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
