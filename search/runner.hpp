// Scheduling evaluations. The policy loop hands a Runner a batch of plans to evaluate and
// gets their results back in the order it asked, whatever order they finished in; where the
// evaluations run (this process, or MPI ranks: search/mpi_runner.hpp) is the runner's business
// alone, so a new runner needs no change to the policy loop or the evaluators.
//
//   policy.ask() -> [EvaluationAsk...] -> Runner::run -> [Measured...] (ask order)
//                                           |  Evaluator::evaluate per ask
//                                           '- hooks: stop?, finished(i) (ask order)
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "search/evaluator.hpp"

namespace bitplan::search {

struct EvaluationAsk {
  QuantPlan plan;
  std::string key;  // names the plan across runs (Evaluator::evaluate)
};

struct RunnerHooks {
  // Asked before an evaluation starts; true: start no more of this batch (a time budget
  // spent, an interrupt).
  std::function<bool()> stop_before_next;
  // Called once per finished evaluation, in ask order, on the thread that called run()
  // (the driver records the result and reports progress).
  std::function<void(std::size_t ask_index, const Measured&)> finished;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // The results of the first asks of `asks`, in ask order: all of them unless
  // hooks.stop_before_next stopped the batch.
  virtual std::vector<Measured> run(std::span<const EvaluationAsk> asks,
                                    const RunnerHooks& hooks) = 0;
  // Where the runner's time went, for the run summary ("" when there is nothing beyond the
  // evaluations themselves to tell).
  virtual std::string summary() const { return ""; }
};

// Evaluates one ask after another in this process (each evaluation uses every core).
class InProcessRunner final : public Runner {
 public:
  explicit InProcessRunner(Evaluator& evaluator) : evaluator_(evaluator) {}
  std::vector<Measured> run(std::span<const EvaluationAsk> asks, const RunnerHooks& hooks) override;

 private:
  Evaluator& evaluator_;
};

}  // namespace bitplan::search
