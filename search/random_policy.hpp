// Uniform random search without repeats: the honest baseline every other policy must
// beat at the same number of evaluations. GenomeSampler, its sampling core, is shared with
// NSGA-II (initial population, refills when variation only finds known plans).
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "search/policy.hpp"

namespace bitplan::search {

class GenomeSampler {
 public:
  // `costs` may be null; when given, unsupported options are never sampled.
  GenomeSampler(const SearchSpace& space, const LayerCostTable* costs);

  const std::vector<std::vector<int>>& allowed() const { return allowed_; }
  Genome random(std::mt19937_64& rng) const;
  // A uniformly random plan not in `seen`; nullopt once every plan has been seen. Tries
  // rejection sampling first; spaces of at most kEnumerationLimit plans are then scanned
  // from a random start, larger ones (where `seen` is a vanishing fraction) give up.
  std::optional<Genome> random_unseen(std::mt19937_64& rng, const GenomeSet& seen) const;
  // `genome` with layer `layer` switched to another allowed option, chosen uniformly
  // (unchanged when the layer has only one).
  void mutate_layer(Genome& genome, std::size_t layer, std::mt19937_64& rng) const;

  static constexpr std::uint64_t kEnumerationLimit = 1'000'000;

 private:
  std::vector<std::vector<int>> allowed_;
  std::optional<std::uint64_t> plan_count_;  // allowed plans, when at most kEnumerationLimit
};

class RandomPolicy final : public Policy {
 public:
  RandomPolicy(const SearchSpace& space, const PolicyParams& params);
  std::string name() const override { return "random"; }
  std::vector<Genome> ask(std::size_t max_count) override;
  void tell(std::span<const Evaluation> results) override;
  bool finished() const override { return exhausted_; }

 private:
  SearchSpace space_;
  GenomeSampler sampler_;
  std::mt19937_64 rng_;
  GenomeSet seen_;  // asked or told
  bool exhausted_ = false;
};

}  // namespace bitplan::search
