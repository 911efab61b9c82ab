#include "search/pareto.hpp"

#include <algorithm>
#include <functional>

#include "core/error.hpp"

namespace bitplan::search {

bool dominates(const ObjectivePoint& a, const ObjectivePoint& b) {
  BITPLAN_ASSERT(a.size() == b.size());
  bool strictly_better = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] <= b[i])) return false;  // NaN (e.g. no latency) compares as incomparable
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

bool IncrementalFront::insert(std::size_t id, const ObjectivePoint& point) {
  for (const Member& member : members_)
    if (dominates(member.point, point)) return false;
  std::erase_if(members_, [&](const Member& member) { return dominates(point, member.point); });
  members_.push_back({id, point});
  return true;
}

std::vector<std::size_t> IncrementalFront::ids() const {
  std::vector<std::size_t> out;
  out.reserve(members_.size());
  for (const Member& member : members_) out.push_back(member.id);
  return out;
}

std::vector<std::optional<std::size_t>> first_dominators(
    const std::vector<ObjectivePoint>& points, const std::vector<ObjectivePoint>& rivals) {
  std::vector<std::optional<std::size_t>> out(points.size());
  for (std::size_t i = 0; i < points.size(); ++i)
    for (std::size_t r = 0; r < rivals.size() && !out[i]; ++r)
      if (rivals[r].size() == points[i].size() && dominates(rivals[r], points[i])) out[i] = r;
  return out;
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

// Volume dominated by `points` (all strictly inside the reference box) in the first `dims`
// objectives: slicing along objective dims-1 (HSO, While et al. 2006). Between consecutive
// values z_k < z_k+1 of that objective the cross-section is the (dims-1)-objective region
// dominated by every point with a value <= z_k, so
//   V_d = sum_k (z_k+1 - z_k) * V_(d-1)(points 0..k),  z_n = reference.
// Two objectives end the recursion with the sweep above. The cost is O(n^(d-1) log n): a
// search front of a few hundred points in up to 5 objectives takes well under a second.
double dominated_volume(std::vector<const ObjectivePoint*> inside, const ObjectivePoint& reference,
                        std::size_t dims) {
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
  const std::size_t last = dims - 1;
  std::sort(inside.begin(), inside.end(), [last](const ObjectivePoint* a, const ObjectivePoint* b) {
    return (*a)[last] < (*b)[last];
  });
  double volume = 0;
  std::vector<const ObjectivePoint*> slice;
  for (std::size_t k = 0; k < inside.size(); ++k) {
    slice.push_back(inside[k]);
    const double next = k + 1 < inside.size() ? (*inside[k + 1])[last] : reference[last];
    const double depth = next - (*inside[k])[last];
    if (depth > 0) {
      // Points of the slice dominated in the remaining objectives add nothing below; dropping
      // them keeps the recursion on the slice's own front.
      std::vector<const ObjectivePoint*> front;
      for (const ObjectivePoint* p : slice) {
        bool dominated = false;
        for (const ObjectivePoint* q : slice) {
          if (q == p) continue;
          bool no_worse = true, better = false;
          for (std::size_t i = 0; i < last && no_worse; ++i) {
            no_worse = (*q)[i] <= (*p)[i];
            better = better || (*q)[i] < (*p)[i];
          }
          // Of equal points keep the first, so duplicates count once.
          dominated = no_worse && (better || std::less<>{}(q, p));
          if (dominated) break;
        }
        if (!dominated) front.push_back(p);
      }
      volume += depth * dominated_volume(front, reference, last);
    }
  }
  return volume;
}

}  // namespace

double hypervolume(const std::vector<ObjectivePoint>& points, const ObjectivePoint& reference) {
  const std::size_t dims = reference.size();
  if (dims < 1) fail_input("compute hypervolume: the reference point has no objectives");
  std::vector<const ObjectivePoint*> inside;
  for (const ObjectivePoint& p : points) {
    if (p.size() != dims)
      fail_input("compute hypervolume: a point has {} objectives, the reference {}", p.size(),
                 dims);
    bool strictly_inside = true;
    for (std::size_t i = 0; i < dims; ++i) strictly_inside = strictly_inside && p[i] < reference[i];
    if (strictly_inside) inside.push_back(&p);
  }
  return dominated_volume(std::move(inside), reference, dims);
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
