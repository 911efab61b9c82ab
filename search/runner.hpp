// Scheduling evaluations. The policy loop hands a Runner a batch of plans to evaluate and
// gets their results back in the order it asked, whatever order they finished in; where the
// evaluations run (this process, or MPI ranks: search/mpi_runner.hpp) is the runner's business
// alone, so a new runner needs no change to the policy loop or the evaluators.
//
//   policy.ask() -> [EvaluationAsk...] -> Runner::run -> [Measured...] (ask order)
//                                           |  Evaluator::evaluate per ask
//                                           '- hooks: stop?, finished(i) (ask order)
//
// The sensitivity pass hands the same runner its single-layer plans (run_single_layer): the
// second kind of job, measured on the sensitivity selection, told in ask order the same way.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "search/evaluator.hpp"

namespace bitplan::search {

struct EvaluationAsk {
  QuantPlan plan;
  std::string key;  // names the plan across runs (Evaluator::evaluate)
};

// What measuring one single-layer plan of the sensitivity pass gave.
struct SingleLayerMeasured {
  double kl = 0;  // the output's mean KL divergence from fp32's
  PlanMetrics metrics;
  double seconds = 0;
};

// Measures a plan on the sensitivity selection: no database, no early stop (the sensitivity
// tables need every sample).
using MeasureSingleLayer = std::function<SingleLayerMeasured(const QuantPlan&)>;

template <typename Result>
struct Hooks {
  // Asked before an evaluation starts; true: start no more of this batch (a time budget
  // spent, an interrupt).
  std::function<bool()> stop_before_next;
  // Called once per finished evaluation, in ask order, on the thread that called run()
  // (the driver records the result and reports progress).
  std::function<void(std::size_t ask_index, const Result&)> finished;
};
using RunnerHooks = Hooks<Measured>;
using SingleLayerHooks = Hooks<SingleLayerMeasured>;

class Runner {
 public:
  virtual ~Runner() = default;
  // The results of the first asks of `asks`, in ask order: all of them unless
  // hooks.stop_before_next stopped the batch.
  virtual std::vector<Measured> run(std::span<const EvaluationAsk> asks,
                                    const RunnerHooks& hooks) = 0;
  // The same for the sensitivity pass's single-layer plans (MeasureSingleLayer): their
  // results in ask order; the caller stores them (none is in the database yet).
  virtual std::vector<SingleLayerMeasured> run_single_layer(std::span<const EvaluationAsk> asks,
                                                            const SingleLayerHooks& hooks) = 0;
  // Where the runner's time went, for the run summary ("" when there is nothing beyond the
  // evaluations themselves to tell).
  virtual std::string summary() const { return ""; }
};

// Evaluates one ask after another in this process (each evaluation uses every core).
// `measure_single` may be empty where no sensitivity pass runs (run_single_layer then fails).
class InProcessRunner final : public Runner {
 public:
  explicit InProcessRunner(Evaluator& evaluator, MeasureSingleLayer measure_single = {})
      : evaluator_(evaluator), measure_single_(std::move(measure_single)) {}
  std::vector<Measured> run(std::span<const EvaluationAsk> asks, const RunnerHooks& hooks) override;
  std::vector<SingleLayerMeasured> run_single_layer(std::span<const EvaluationAsk> asks,
                                                    const SingleLayerHooks& hooks) override;

 private:
  Evaluator& evaluator_;
  MeasureSingleLayer measure_single_;
};

}  // namespace bitplan::search
