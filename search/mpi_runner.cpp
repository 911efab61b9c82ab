#include "search/mpi_runner.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "executor/quant/plan.hpp"

namespace bitplan::search {
namespace {

using MpiClock = std::chrono::steady_clock;

double seconds_since(MpiClock::time_point t) {
  return std::chrono::duration<double>(MpiClock::now() - t).count();
}

// Message tags; every payload is JSON text.
enum Tag : int {
  kReady = 1,        // worker -> 0: set up, waiting for plans
  kSetupFailed = 2,  // worker -> 0: {message}
  kWork = 3,         // 0 -> worker: {ask, key, plan (YAML), single_layer}
  kResult = 4,       // worker -> 0: {ask, metrics (stored form), seconds; kl if single_layer}
  kEvalFailed = 5,   // worker -> 0: {ask, message}
  kStop = 6,         // 0 -> worker: the job is over
};

// Between polls: short enough to add nothing measurable to an evaluation of milliseconds or
// more, long enough that an idle rank leaves its core to the ranks that evaluate (a blocking
// MPI receive would spin on it).
constexpr auto kPollPause = std::chrono::microseconds(200);

// Rank 0 measures plans itself (on a second thread), when every worker is busy, only in
// small jobs: there its core is a large share of the job; in a large one that core is
// better left to taking results, writing the database and the policy, which every other
// rank waits on.
constexpr std::size_t kRankZeroMeasuresBelowWorkers = 4;

struct Message {
  int source = 0;
  int tag = 0;
  nlohmann::json body;
};

void send(int destination, int tag, const nlohmann::json& body) {
  const std::string text = body.dump();
  MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, destination, tag, MPI_COMM_WORLD);
}

// The next message from `source` (MPI_ANY_SOURCE: any rank), if one has arrived.
std::optional<Message> poll(int source) {
  int arrived = 0;
  MPI_Status status;
  MPI_Iprobe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &arrived, &status);
  if (!arrived) return std::nullopt;
  int size = 0;
  MPI_Get_count(&status, MPI_CHAR, &size);
  std::string text(static_cast<std::size_t>(size), '\0');
  MPI_Recv(text.data(), size, MPI_CHAR, status.MPI_SOURCE, status.MPI_TAG, MPI_COMM_WORLD,
           MPI_STATUS_IGNORE);
  return Message{status.MPI_SOURCE, status.MPI_TAG, nlohmann::json::parse(text)};
}

nlohmann::json error_json(const Error& e) {
  return {{"message", e.what()}};
}

class MpiJobImpl;

// The two kinds of job: a policy's plan (Evaluator::evaluate, stored by rank 0 as it
// arrives) and a sensitivity pass's single-layer plan (MeasureSingleLayer, stored by the
// pass in ask order).
enum class JobKind { plan, single_layer };

// A job's result, whichever its kind (kl: single-layer plans only).
struct JobResult {
  PlanMetrics metrics;
  bool from_database = false;
  double kl = 0;
};

// Rank 0's runner: dispatches asks to free workers, evaluates one itself when every worker
// is busy, tells the results in ask order.
class MpiRunner final : public Runner {
 public:
  MpiRunner(MpiJobImpl& job, ExecutorEvaluator& local, MeasureSingleLayer local_single,
            double timeout_s, std::function<void(const std::string&)> say)
      : job_(job),
        local_(local),
        local_single_(std::move(local_single)),
        timeout_s_(timeout_s),
        say_(std::move(say)) {}
  std::vector<Measured> run(std::span<const EvaluationAsk> asks, const RunnerHooks& hooks) override;
  std::vector<SingleLayerMeasured> run_single_layer(std::span<const EvaluationAsk> asks,
                                                    const SingleLayerHooks& hooks) override;
  std::string summary() const override;

 private:
  // Both kinds' dispatch: `finished` gets each result in ask order (with the seconds it
  // took; 0 for one from the database).
  void dispatch(std::span<const EvaluationAsk> asks, JobKind kind,
                const std::function<bool()>& stop_before_next,
                const std::function<void(std::size_t, const JobResult&, double)>& finished);

  struct Worker {
    bool ready = false;
    std::optional<std::size_t> ask;  // in flight
    MpiClock::time_point sent;
  };
  // Takes one message from the workers, if one has arrived; results go to `results`.
  bool take_message(std::span<const EvaluationAsk> asks, JobKind kind,
                    std::vector<std::optional<std::pair<JobResult, double>>>& results);
  // Fails on a worker past the timeout (its evaluation, or its setup).
  void check_deadlines(std::span<const EvaluationAsk> asks) const;
  // Takes rank 0's own measurement if it has finished.
  bool take_local(std::span<const EvaluationAsk> asks, JobKind kind,
                  std::vector<std::optional<std::pair<JobResult, double>>>& results);

  MpiJobImpl& job_;
  ExecutorEvaluator& local_;
  MeasureSingleLayer local_single_;
  double timeout_s_;
  std::function<void(const std::string&)> say_;
  std::vector<Worker> workers_;  // [rank]; rank 0 unused
  // Rank 0's own measurement, on a thread of its own so that this thread keeps taking the
  // workers' results (and writing the database, which that thread never touches).
  struct LocalMeasurement {
    std::size_t ask = 0;
    std::future<std::pair<JobResult, double>> result;
  };
  std::optional<LocalMeasurement> local_job_;
  std::optional<MpiClock::time_point> first_run_;
  // Where the time went (summary()).
  std::vector<int> evaluations_by_rank_, single_layer_by_rank_;
  double worker_seconds_ = 0;      // measuring, as the workers report it
  double round_trip_seconds_ = 0;  // sent to result taken, per worker evaluation, summed
  double local_seconds_ = 0;       // rank 0 measuring (on its own thread)
  double waiting_seconds_ = 0;     // rank 0's main thread idle, waiting for results
  double storing_seconds_ = 0;     // rank 0 writing the workers' results to the database
  std::size_t bytes_sent_ = 0, bytes_received_ = 0;
};

class MpiJobImpl final : public MpiJob {
 public:
  MpiJobImpl() {
    int provided = 0;
    // Only the main thread calls MPI; the evaluations' threads never do.
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm host;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host);
    MPI_Comm_size(host, &on_host_);
    MPI_Comm_free(&host);
  }
  ~MpiJobImpl() override {
    if (rank_ == 0)
      for (int r = 1; r < size_; ++r) send(r, kStop, nlohmann::json::object());
    MPI_Finalize();
  }
  MpiJobImpl(const MpiJobImpl&) = delete;
  MpiJobImpl& operator=(const MpiJobImpl&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int ranks_on_this_host() const override { return on_host_; }

  void report_setup_failure(const Error& error) override {
    send(0, kSetupFailed, error_json(error));
    wait_for_stop();
  }

  void serve(Evaluator& evaluator, const MeasureSingleLayer& measure_single, const Graph& graph,
             const std::string& model_hash) override {
    send(0, kReady, nlohmann::json::object());
    for (;;) {
      const std::optional<Message> message = poll(0);
      if (!message) {
        std::this_thread::sleep_for(kPollPause);
        continue;
      }
      if (message->tag == kStop) return;
      const nlohmann::json& work = message->body;
      const auto ask = work.at("ask").get<std::size_t>();
      const auto key = work.at("key").get<std::string>();
      const auto start = MpiClock::now();
      try {
        const QuantPlan plan =
            parse_plan(work.at("plan").get<std::string>(),
                       fmt::format("plan {} (from rank 0)", key), graph, model_hash);
        if (work.at("single_layer").get<bool>()) {
          const SingleLayerMeasured measured = measure_single(plan);
          send(0, kResult,
               {{"ask", ask},
                {"metrics", stored_metrics_json(measured.metrics)},
                {"kl", measured.kl},
                {"seconds", measured.seconds}});
        } else {
          const Measured measured = evaluator.evaluate(plan, key);
          send(0, kResult,
               {{"ask", ask},
                {"metrics", stored_metrics_json(measured.metrics)},
                {"seconds", seconds_since(start)}});
        }
      } catch (const Error& e) {
        nlohmann::json body = error_json(e);
        body["ask"] = ask;
        send(0, kEvalFailed, body);
      } catch (const std::exception& e) {
        send(0, kEvalFailed,
             {{"ask", ask}, {"message", fmt::format("internal error: {}", e.what())}});
      }
    }
  }

  std::unique_ptr<Runner> runner(ExecutorEvaluator& local, MeasureSingleLayer local_single,
                                 double evaluation_timeout_s,
                                 std::function<void(const std::string&)> say) override {
    return std::make_unique<MpiRunner>(*this, local, std::move(local_single), evaluation_timeout_s,
                                       std::move(say));
  }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::exit(exit_code);  // MPI_Abort does not return; this tells the compiler so
  }

 private:
  void wait_for_stop() {
    for (;;) {
      if (const auto message = poll(0); message && message->tag == kStop) return;
      std::this_thread::sleep_for(kPollPause);
    }
  }

  int rank_ = 0, size_ = 1, on_host_ = 1;
};

bool MpiRunner::take_message(std::span<const EvaluationAsk> asks, JobKind kind,
                             std::vector<std::optional<std::pair<JobResult, double>>>& results) {
  const std::optional<Message> message = poll(MPI_ANY_SOURCE);
  if (!message) return false;
  bytes_received_ += message->body.dump().size();
  Worker& worker = workers_[static_cast<std::size_t>(message->source)];
  switch (message->tag) {
    case kReady:
      worker.ready = true;
      return true;
    // A rank's own error, whatever its kind there, is a failed rank here: the same input
    // worked on rank 0.
    case kSetupFailed:
      fail(ErrorKind::rank_failed, "rank {} cannot evaluate plans: {}", message->source,
           message->body.at("message").get<std::string>());
    case kEvalFailed:
      fail(ErrorKind::rank_failed, "rank {}, candidate {}: {}", message->source,
           asks[message->body.at("ask").get<std::size_t>()].key,
           message->body.at("message").get<std::string>());
    case kResult: {
      const auto ask = message->body.at("ask").get<std::size_t>();
      const double seconds = message->body.at("seconds").get<double>();
      JobResult result{metrics_from_stored_json(message->body.at("metrics")), false, 0};
      if (kind == JobKind::single_layer) {
        result.kl = message->body.at("kl").get<double>();
        ++single_layer_by_rank_[static_cast<std::size_t>(message->source)];
      } else {
        // Stored as it arrives, not when told: a run killed later keeps it.
        const auto store_start = MpiClock::now();
        local_.store(asks[ask].key, result.metrics, seconds);
        storing_seconds_ += seconds_since(store_start);
        ++evaluations_by_rank_[static_cast<std::size_t>(message->source)];
      }
      results[ask] = {result, seconds};
      worker_seconds_ += seconds;
      round_trip_seconds_ += seconds_since(worker.sent);
      worker.ask.reset();
      return true;
    }
    default:
      fail(ErrorKind::internal, "rank 0: unexpected message tag {} from rank {}", message->tag,
           message->source);
  }
}

bool MpiRunner::take_local(std::span<const EvaluationAsk> asks, JobKind kind,
                           std::vector<std::optional<std::pair<JobResult, double>>>& results) {
  if (!local_job_ ||
      local_job_->result.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return false;
  const std::size_t ask = local_job_->ask;
  results[ask] = local_job_->result.get();  // rethrows the measurement's error
  local_job_.reset();
  const auto& [result, seconds] = *results[ask];
  if (kind == JobKind::single_layer) {
    ++single_layer_by_rank_[0];
  } else {
    local_.store(asks[ask].key, result.metrics, seconds);
    ++evaluations_by_rank_[0];
  }
  local_seconds_ += seconds;
  return true;
}

void MpiRunner::check_deadlines(std::span<const EvaluationAsk> asks) const {
  if (timeout_s_ <= 0) return;
  for (std::size_t r = 1; r < workers_.size(); ++r) {
    const Worker& w = workers_[r];
    if (w.ask && seconds_since(w.sent) > timeout_s_)
      fail(ErrorKind::rank_failed,
           "rank {} did not finish candidate {} within search.mpi.evaluation_timeout ({} s); "
           "the results told so far are in the database: run the same command again to resume",
           r, asks[*w.ask].key, timeout_s_);
    if (!w.ready && first_run_ && seconds_since(*first_run_) > timeout_s_)
      fail(ErrorKind::rank_failed,
           "rank {} did not finish loading the model and data within "
           "search.mpi.evaluation_timeout ({} s) of the first plans being ready",
           r, timeout_s_);
  }
}

std::vector<Measured> MpiRunner::run(std::span<const EvaluationAsk> asks,
                                     const RunnerHooks& hooks) {
  std::vector<Measured> told;
  dispatch(asks, JobKind::plan, hooks.stop_before_next,
           [&](std::size_t i, const JobResult& result, double) {
             told.push_back({result.metrics, result.from_database});
             if (hooks.finished) hooks.finished(i, told.back());
           });
  return told;
}

std::vector<SingleLayerMeasured> MpiRunner::run_single_layer(std::span<const EvaluationAsk> asks,
                                                             const SingleLayerHooks& hooks) {
  std::vector<SingleLayerMeasured> told;
  dispatch(asks, JobKind::single_layer, hooks.stop_before_next,
           [&](std::size_t i, const JobResult& result, double seconds) {
             told.push_back({result.kl, result.metrics, seconds});
             if (hooks.finished) hooks.finished(i, told.back());
           });
  return told;
}

void MpiRunner::dispatch(
    std::span<const EvaluationAsk> asks, JobKind kind,
    const std::function<bool()>& stop_before_next,
    const std::function<void(std::size_t, const JobResult&, double)>& finished) {
  if (workers_.empty()) {
    workers_.resize(static_cast<std::size_t>(job_.size()));
    evaluations_by_rank_.assign(workers_.size(), 0);
    single_layer_by_rank_.assign(workers_.size(), 0);
    first_run_ = MpiClock::now();
  }
  std::vector<std::optional<std::pair<JobResult, double>>> results(asks.size());
  std::size_t told = 0;
  std::size_t next = 0;  // the next ask to dispatch
  bool stopped = false;
  for (;;) {
    bool progressed = take_local(asks, kind, results);
    while (take_message(asks, kind, results)) progressed = true;
    // Told in ask order, whichever rank finished first.
    while (told < next && results[told]) {
      finished(told, results[told]->first, results[told]->second);
      ++told;
      progressed = true;
    }
    if (told == next && (stopped || next == asks.size())) break;
    while (next < asks.size() && !stopped) {
      if (stop_before_next && stop_before_next()) {
        stopped = true;
        // When mpirun ends the job because a rank died, this line is what names the
        // candidate it died on (mpirun names the rank).
        std::string in_flight;
        for (std::size_t r = 1; r < workers_.size(); ++r)
          if (workers_[r].ask)
            in_flight += fmt::format("{}rank {} (candidate {})", in_flight.empty() ? "" : ", ", r,
                                     asks[*workers_[r].ask].key);
        if (!in_flight.empty() && say_)
          say_("mpi: stopping; waiting for the evaluations in flight: " + in_flight);
        break;
      }
      const EvaluationAsk& ask = asks[next];
      // (The sensitivity pass asks only for pairs the database does not have.)
      if (auto found = kind == JobKind::plan ? local_.stored(ask.key) : std::nullopt) {
        results[next++] = {{found->metrics, found->from_database, 0}, 0.0};
        progressed = true;
        continue;
      }
      std::size_t free = 0;
      for (std::size_t r = 1; r < workers_.size() && !free; ++r)
        if (workers_[r].ready && !workers_[r].ask) free = r;
      if (free) {
        const nlohmann::json work = {{"ask", next},
                                     {"key", ask.key},
                                     {"plan", plan_to_yaml(ask.plan)},
                                     {"single_layer", kind == JobKind::single_layer}};
        bytes_sent_ += work.dump().size();
        send(static_cast<int>(free), kWork, work);
        workers_[free].ask = next++;
        workers_[free].sent = MpiClock::now();
        progressed = true;
        continue;
      }
      // Every worker busy: rank 0 measures this one itself rather than wait idle.
      if (local_job_ || workers_.size() - 1 >= kRankZeroMeasuresBelowWorkers) break;
      // The plan copied: the thread may outlive `asks` when this run fails.
      auto measure = [this, kind, plan = ask.plan] {
        if (kind == JobKind::single_layer) {
          const SingleLayerMeasured m = local_single_(plan);
          return std::pair{JobResult{m.metrics, false, m.kl}, m.seconds};
        }
        const auto [metrics, seconds] = local_.measure(plan);
        return std::pair{JobResult{metrics, false, 0}, seconds};
      };
      local_job_ = LocalMeasurement{next, std::async(std::launch::async, std::move(measure))};
      ++next;
      progressed = true;
    }
    check_deadlines(asks);
    if (!progressed) {
      const auto start = MpiClock::now();
      std::this_thread::sleep_for(kPollPause);
      waiting_seconds_ += seconds_since(start);
    }
  }
}

std::string MpiRunner::summary() const {
  if (workers_.empty()) return "";
  std::string by_rank, single_layer_by_rank;
  // Round trips are of both kinds of job; only the policy's results are stored as they come.
  int worker_evaluations = 0, worker_jobs = 0;
  for (std::size_t r = 0; r < evaluations_by_rank_.size(); ++r) {
    by_rank += fmt::format("{}{}", r ? " " : "", evaluations_by_rank_[r]);
    single_layer_by_rank += fmt::format("{}{}", r ? " " : "", single_layer_by_rank_[r]);
    if (r) {
      worker_evaluations += evaluations_by_rank_[r];
      worker_jobs += evaluations_by_rank_[r] + single_layer_by_rank_[r];
    }
  }
  const double per_message =
      worker_jobs ? (round_trip_seconds_ - worker_seconds_) / worker_jobs : 0.0;
  return fmt::format(
      "mpi: {} ranks; sensitivity pairs by rank [{}], evaluations by rank [{}]; workers measuring "
      "{:.2f} s, round trips {:.2f} s "
      "({:.2f} ms per evaluation beyond measuring: messages, queueing, polling); "
      "rank 0 measuring {:.2f} s (on its own thread), storing the workers' results {:.2f} s "
      "({:.2f} ms each), idle waiting for results {:.2f} s; {:.1f} KiB sent, {:.1f} KiB "
      "received",
      workers_.size(), single_layer_by_rank, by_rank, worker_seconds_, round_trip_seconds_,
      1e3 * per_message, local_seconds_, storing_seconds_,
      worker_evaluations ? 1e3 * storing_seconds_ / worker_evaluations : 0.0, waiting_seconds_,
      static_cast<double>(bytes_sent_) / 1024, static_cast<double>(bytes_received_) / 1024);
}

}  // namespace

std::unique_ptr<MpiJob> start_mpi_job() {
  // Started by an MPI launcher (Open MPI's mpirun, or a PMI/PMIx one such as Slurm's srun):
  // a plain `bitplan search` never initialises MPI, so it needs no MPI runtime at all.
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(variable)) return std::make_unique<MpiJobImpl>();
  return nullptr;
}

}  // namespace bitplan::search
