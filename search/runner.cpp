#include "search/runner.hpp"

#include "core/error.hpp"

namespace bitplan::search {

std::vector<Measured> InProcessRunner::run(std::span<const EvaluationAsk> asks,
                                           const RunnerHooks& hooks) {
  std::vector<Measured> results;
  results.reserve(asks.size());
  for (std::size_t i = 0; i < asks.size(); ++i) {
    if (hooks.stop_before_next && hooks.stop_before_next()) break;
    results.push_back(evaluator_.evaluate(asks[i].plan, asks[i].key));
    if (hooks.finished) hooks.finished(i, results.back());
  }
  return results;
}

std::vector<SingleLayerMeasured> InProcessRunner::run_single_layer(
    std::span<const EvaluationAsk> asks, const SingleLayerHooks& hooks) {
  if (!measure_single_ && !asks.empty())
    fail(ErrorKind::internal, "InProcessRunner: no single-layer measurement given");
  std::vector<SingleLayerMeasured> results;
  results.reserve(asks.size());
  for (std::size_t i = 0; i < asks.size(); ++i) {
    if (hooks.stop_before_next && hooks.stop_before_next()) break;
    results.push_back(measure_single_(asks[i].plan));
    if (hooks.finished) hooks.finished(i, results.back());
  }
  return results;
}

}  // namespace bitplan::search
