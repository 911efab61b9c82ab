#include "search/pareto.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace bitplan::search {

bool dominates(const ObjectivePoint& a, const ObjectivePoint& b) {
  BITPLAN_ASSERT(a.size() == b.size());
  bool strictly_better = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] > b[i]) return false;
    if (a[i] < b[i]) strictly_better = true;
  }
  return strictly_better;
}

std::vector<std::size_t> non_dominated(const std::vector<ObjectivePoint>& points) {
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (std::size_t j = 0; j < points.size() && !dominated; ++j)
      dominated = j != i && dominates(points[j], points[i]);
    if (!dominated) kept.push_back(i);
  }
  return kept;
}

namespace {

struct Point2 {
  double x, y;
};

// Area dominated by `points` within the box below (ref_x, ref_y); the points must already
// be strictly inside it. Sweeping by ascending x, a point adds area only where it lowers
// the best y seen so far.
double area_2d(std::vector<Point2> points, double ref_x, double ref_y) {
  std::sort(points.begin(), points.end(), [](const Point2& a, const Point2& b) {
    return a.x < b.x || (a.x == b.x && a.y < b.y);
  });
  double area = 0, best_y = ref_y;
  for (const Point2& p : points) {
    if (p.y >= best_y) continue;
    area += (ref_x - p.x) * (best_y - p.y);
    best_y = p.y;
  }
  return area;
}

}  // namespace

double hypervolume(const std::vector<ObjectivePoint>& points, const ObjectivePoint& reference) {
  const std::size_t dims = reference.size();
  if (dims < 1 || dims > 3)
    fail_unsupported("compute hypervolume: {} objectives: only 1, 2 or 3 are supported", dims);
  std::vector<const ObjectivePoint*> inside;
  for (const ObjectivePoint& p : points) {
    if (p.size() != dims)
      fail_input("compute hypervolume: a point has {} objectives, the reference {}", p.size(),
                 dims);
    bool strictly_inside = true;
    for (std::size_t i = 0; i < dims; ++i) strictly_inside = strictly_inside && p[i] < reference[i];
    if (strictly_inside) inside.push_back(&p);
  }
  if (inside.empty()) return 0;
  if (dims == 1) {
    double best = reference[0];
    for (const ObjectivePoint* p : inside) best = std::min(best, (*p)[0]);
    return reference[0] - best;
  }
  if (dims == 2) {
    std::vector<Point2> flat;
    for (const ObjectivePoint* p : inside) flat.push_back({(*p)[0], (*p)[1]});
    return area_2d(std::move(flat), reference[0], reference[1]);
  }
  // Three objectives: between consecutive z values the dominated region's cross-section is
  // the 2-D region of every point with a smaller or equal z.
  std::sort(inside.begin(), inside.end(),
            [](const ObjectivePoint* a, const ObjectivePoint* b) { return (*a)[2] < (*b)[2]; });
  double volume = 0;
  std::vector<Point2> slice;
  for (std::size_t k = 0; k < inside.size(); ++k) {
    slice.push_back({(*inside[k])[0], (*inside[k])[1]});
    const double next_z = k + 1 < inside.size() ? (*inside[k + 1])[2] : reference[2];
    const double depth = next_z - (*inside[k])[2];
    if (depth > 0) volume += depth * area_2d(slice, reference[0], reference[1]);
  }
  return volume;
}

ObjectiveBounds bounds_of(const std::vector<ObjectivePoint>& points) {
  if (points.empty()) fail_input("compute objective bounds: no points: at least one is needed");
  ObjectiveBounds bounds{points.front(), points.front()};
  for (const ObjectivePoint& p : points) {
    if (p.size() != bounds.lower.size())
      fail_input("compute objective bounds: a point has {} objectives, the first {}", p.size(),
                 bounds.lower.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      bounds.lower[i] = std::min(bounds.lower[i], p[i]);
      bounds.upper[i] = std::max(bounds.upper[i], p[i]);
    }
  }
  return bounds;
}

std::vector<ObjectivePoint> normalize(const std::vector<ObjectivePoint>& points,
                                      const ObjectiveBounds& bounds) {
  const std::size_t dims = bounds.lower.size();
  if (bounds.upper.size() != dims)
    fail_input("normalize objectives: bounds have {} lower and {} upper values", dims,
               bounds.upper.size());
  std::vector<ObjectivePoint> scaled;
  scaled.reserve(points.size());
  for (const ObjectivePoint& p : points) {
    if (p.size() != dims)
      fail_input("normalize objectives: a point has {} objectives, the bounds {}", p.size(), dims);
    ObjectivePoint& out = scaled.emplace_back(dims);
    for (std::size_t i = 0; i < dims; ++i) {
      const double range = bounds.upper[i] - bounds.lower[i];
      out[i] = range > 0 ? (p[i] - bounds.lower[i]) / range : 0.0;
    }
  }
  return scaled;
}

}  // namespace bitplan::search
