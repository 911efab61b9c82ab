// HAQ-style reinforcement-learning search: an agent walks the layers in order and picks
// each layer's option from a softmax policy network; the finished plan is evaluated and
// its reward trains the network.
//
// Why REINFORCE (with a moving-average baseline) rather than HAQ's DDPG: our actions are
// discrete per-layer choices, not a continuous bit width to round; the reward comes once
// per episode from a single evaluation; and with a few hundred evaluations there is too
// little data to fit a critic. A baseline-corrected policy gradient needs none.
//
// Network: input = the driver's features of the layer (standardised per feature over the
// layers; just index/L when none are given) + the walk's state (fraction of the latency
// budget used so far — or of the size budget, or of the all-dearest total when there is no
// budget — and a one-hot of the previous layer's option), one tanh hidden layer of
// params.hidden_units, one logit per option; options the layer lacks or the target does
// not support are masked out. Trained with Adam on
//   loss = -mean over episodes of [A * sum_t log pi(a_t)] - entropy_bonus * sum_t H(pi_t),
//   reward = -objectives[0] - violation_penalty * constraint_violation,
//   A = (reward - baseline) / running std,
// baseline and std being exponential moving averages over batches of
// params.population_size episodes. The driver chooses the scalarisation through what it
// puts in objectives[0] (e.g. metric loss + lambda * latency).
//
// Episodes that draw an already-evaluated plan reuse its stored reward instead of asking
// for it again, so ask() only returns new plans; when it keeps drawing known plans the
// policy has converged and finished() turns true. Deterministic for a given seed.
#pragma once

#include <memory>
#include <random>
#include <unordered_map>

#include "search/policy.hpp"

namespace bitplan::search {

class ReinforcePolicy final : public Policy {
 public:
  // Fails (invalid_input) on layer features that do not give one finite row of equal
  // length per layer, a batch (population_size) of 0, or non-positive learning rate.
  ReinforcePolicy(const SearchSpace& space, const PolicyParams& params);
  ~ReinforcePolicy() override;
  std::string name() const override { return "reinforce"; }
  std::vector<Genome> ask(std::size_t max_count) override;
  void tell(std::span<const Evaluation> results) override;
  bool finished() const override { return converged_; }

  // The most probable option of every layer under the current policy.
  Genome greedy() const;
  std::size_t updates() const { return updates_; }

 private:
  struct Network;
  struct Episode {
    Genome genome;
    std::optional<double> reward;
  };

  Genome sample_episode();
  void update_if_batch_complete();

  SearchSpace space_;
  double violation_penalty_;
  double entropy_bonus_;
  std::size_t batch_size_;
  std::unique_ptr<Network> network_;
  std::mt19937_64 rng_;
  std::vector<Episode> batch_;
  std::unordered_map<Genome, double, GenomeHash> rewards_;  // every told plan
  GenomeSet awaiting_;                                      // asked, not yet told
  std::optional<double> baseline_;
  double reward_variance_ = 1;
  std::size_t updates_ = 0;
  bool converged_ = false;
};

}  // namespace bitplan::search
