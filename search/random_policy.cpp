#include "search/random_policy.hpp"

#include "core/error.hpp"

namespace bitplan::search {

namespace {

int pick(const std::vector<int>& choices, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::size_t> index(0, choices.size() - 1);
  return choices[index(rng)];
}

}  // namespace

GenomeSampler::GenomeSampler(const SearchSpace& space, const LayerCostTable* costs)
    : allowed_(allowed_options(space, costs)) {
  std::uint64_t count = 1;
  for (const std::vector<int>& choices : allowed_) {
    count *= choices.size();
    if (count > kEnumerationLimit) return;
  }
  plan_count_ = count;
}

Genome GenomeSampler::random(std::mt19937_64& rng) const {
  Genome genome(allowed_.size());
  for (std::size_t i = 0; i < allowed_.size(); ++i) genome[i] = pick(allowed_[i], rng);
  return genome;
}

std::optional<Genome> GenomeSampler::random_unseen(std::mt19937_64& rng,
                                                   const GenomeSet& seen) const {
  constexpr int kRejectionTries = 64;
  for (int attempt = 0; attempt < kRejectionTries; ++attempt) {
    Genome genome = random(rng);
    if (!seen.contains(genome)) return genome;
  }
  if (!plan_count_) return std::nullopt;
  // Small space, mostly seen: walk the plans in mixed-radix order from a random start.
  std::uniform_int_distribution<std::uint64_t> start_index(0, *plan_count_ - 1);
  const std::uint64_t start = start_index(rng);
  Genome genome(allowed_.size());
  for (std::uint64_t step = 0; step < *plan_count_; ++step) {
    std::uint64_t index = (start + step) % *plan_count_;
    for (std::size_t i = 0; i < allowed_.size(); ++i) {
      genome[i] = allowed_[i][index % allowed_[i].size()];
      index /= allowed_[i].size();
    }
    if (!seen.contains(genome)) return genome;
  }
  return std::nullopt;
}

void GenomeSampler::mutate_layer(Genome& genome, std::size_t layer, std::mt19937_64& rng) const {
  const std::vector<int>& choices = allowed_[layer];
  if (choices.size() < 2) return;
  // Pick among the other options: index into `choices` skipping the current one.
  std::uniform_int_distribution<std::size_t> index(0, choices.size() - 2);
  int option = choices[index(rng)];
  if (option == genome[layer]) option = choices.back();
  genome[layer] = option;
}

RandomPolicy::RandomPolicy(const SearchSpace& space, const PolicyParams& params)
    : space_(space), sampler_(space, params.costs ? &*params.costs : nullptr), rng_(params.seed) {}

std::vector<Genome> RandomPolicy::ask(std::size_t max_count) {
  std::vector<Genome> plans;
  while (plans.size() < max_count && !exhausted_) {
    std::optional<Genome> genome = sampler_.random_unseen(rng_, seen_);
    if (!genome) {
      exhausted_ = true;
      break;
    }
    seen_.insert(*genome);
    plans.push_back(std::move(*genome));
  }
  return plans;
}

void RandomPolicy::tell(std::span<const Evaluation> results) {
  for (const Evaluation& result : results) {
    space_.check(result.genome);
    seen_.insert(result.genome);
  }
}

}  // namespace bitplan::search
