// A search spread over MPI ranks (docs/distributed.md). Rank 0 runs everything run_search
// runs and owns the results database (its only writer); the other ranks, the workers, build
// the simulator, the search subset and the sensitivity subset once
// (serve_search_evaluations) and evaluate the plans rank 0 sends them. The policy loop sees
// one more Runner:
//
//   rank 0: policy.ask -> MpiRunner::run --plan YAML--> free worker (or, in a job of fewer
//           than 5 ranks, a second thread of rank 0 when every worker is busy) --metrics-->
//           results database -> tell, in ask order
//
// The sensitivity pass's single-layer plans go the same way (MpiRunner::run_single_layer,
// a second kind of job: measured on the sensitivity subset, KL and metrics back), and the
// pass stores them in (layer, option) order as they are told.
//
// Dispatch is dynamic (the next ask goes to whichever rank is free), results are told in ask
// order, and every plan is measured the same way on every rank, so a seed gives the same
// front on any number of ranks. Rank 0 never blocks in a receive: it polls, and a worker
// that does not answer within the evaluation timeout fails the run naming its rank and
// candidate (what was told so far is in the database; running again resumes).
//
// Calibration is not sent: every rank's simulator reads the ranges from the calibration
// cache (written atomically) or, when they are not there yet (a first run: the sensitivity
// pass's plans are the first to need them, on every rank at once), computes the same ranges
// from the same samples (docs/distributed.md).
//
// Built with BITPLAN_MPI; without it (or outside an MPI launcher) start_mpi_job returns null
// and the search runs in one process.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/error.hpp"
#include "search/evaluator.hpp"
#include "search/runner.hpp"

namespace bitplan::search {

class MpiJob {
 public:
  virtual ~MpiJob() = default;  // rank 0 stops the workers; every rank leaves MPI
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks of this job on this machine (this one included): they share its cores.
  virtual int ranks_on_this_host() const = 0;

  // Worker ranks. After a failed setup (the model or data cannot be loaded here): tells rank
  // 0, which fails the job naming this rank and the error; returns when the job ends.
  virtual void report_setup_failure(const Error& error) = 0;
  // Evaluates the plans rank 0 sends (`graph` and `model_hash` read their YAML) until rank
  // 0 ends the job: the policy's with `evaluator`, the sensitivity pass's with
  // `measure_single`.
  virtual void serve(Evaluator& evaluator, const MeasureSingleLayer& measure_single,
                     const Graph& graph, const std::string& model_hash) = 0;

  // Rank 0: the runner of the sensitivity pass and the policy loop. `local` evaluates on
  // rank 0 and stores every policy result, `local_single` measures single-layer plans on
  // rank 0; `evaluation_timeout_s` > 0 bounds each worker evaluation (and a worker's setup,
  // counted from the first batch). `say` gets a line when the run is stopped (Ctrl-C, or
  // mpirun ending the job because a rank died) with evaluations in flight, naming each
  // rank and its candidate.
  virtual std::unique_ptr<Runner> runner(ExecutorEvaluator& local, MeasureSingleLayer local_single,
                                         double evaluation_timeout_s,
                                         std::function<void(const std::string&)> say) = 0;
  // Rank 0 after an error it has reported: ends every rank with `exit_code` (MPI_Abort), a
  // hung worker included.
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

// The MPI job this process is a rank of, when built with MPI and started by an MPI launcher
// (mpirun, srun); null otherwise.
std::unique_ptr<MpiJob> start_mpi_job();

}  // namespace bitplan::search
