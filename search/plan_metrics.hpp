// What the search knows about one plan: accuracy and fidelity measured on a selection (by an
// Evaluator, search/evaluator.hpp) and the costs predicted by the cost models. Plain data.
#pragma once

#include <cstdint>

namespace bitplan::search {

struct PlanMetrics {
  double top1 = 0;  // on the subset (or the final selection for final_*)
  double worst_class_drop = 0;
  double kl = 0, sqnr_db = 0, agreement = 0;
  std::int64_t samples = 0;
  bool stopped_early = false;
  double latency_ms = 0;  // predicted from the profile (NaN without one)
  double size_bytes = 0;
  double gbops = 0;
};

}  // namespace bitplan::search
