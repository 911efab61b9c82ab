#include "search/nsga2.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.hpp"
#include "search/exact_solver.hpp"

namespace bitplan::search {

namespace {

constexpr double kCrossoverProbability = 0.9;
// Offspring that repeat a known plan are re-bred this many times before a random unseen
// plan takes their place (late in a run on a small space, most children are known).
constexpr int kBreedingAttempts = 16;

// Deb's constrained domination.
bool constrained_dominates(const Evaluation& a, const Evaluation& b) {
  const bool a_feasible = a.constraint_violation <= 0, b_feasible = b.constraint_violation <= 0;
  if (a_feasible != b_feasible) return a_feasible;
  if (!a_feasible) return a.constraint_violation < b.constraint_violation;
  bool strictly_better = false;
  for (std::size_t i = 0; i < a.objectives.size(); ++i) {
    if (a.objectives[i] > b.objectives[i]) return false;
    if (a.objectives[i] < b.objectives[i]) strictly_better = true;
  }
  return strictly_better;
}

// Fast non-dominated sort: fronts of indices into `pool`, best first.
template <typename MemberT>
std::vector<std::vector<std::size_t>> sort_into_fronts(const std::vector<MemberT>& pool) {
  const std::size_t n = pool.size();
  std::vector<std::vector<std::size_t>> dominated_by(n);  // i dominates these
  std::vector<std::size_t> domination_count(n, 0);        // how many dominate i
  std::vector<std::vector<std::size_t>> fronts(1);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      if (constrained_dominates(pool[i].evaluation, pool[j].evaluation))
        dominated_by[i].push_back(j);
      else if (constrained_dominates(pool[j].evaluation, pool[i].evaluation))
        ++domination_count[i];
    }
    if (domination_count[i] == 0) fronts[0].push_back(i);
  }
  while (true) {
    std::vector<std::size_t> next;
    for (std::size_t i : fronts.back())
      for (std::size_t j : dominated_by[i])
        if (--domination_count[j] == 0) next.push_back(j);
    if (next.empty()) break;
    std::sort(next.begin(), next.end());
    fronts.push_back(std::move(next));
  }
  return fronts;
}

// Crowding distance within one front: the normalised perimeter of the cuboid spanned by
// each member's neighbours, infinite at the extremes so they are always kept.
template <typename MemberT>
void assign_crowding(std::vector<MemberT>& pool, const std::vector<std::size_t>& front) {
  for (std::size_t i : front) pool[i].crowding = 0;
  if (front.empty()) return;
  const std::size_t objectives = pool[front[0]].evaluation.objectives.size();
  std::vector<std::size_t> order = front;
  for (std::size_t m = 0; m < objectives; ++m) {
    auto value = [&](std::size_t i) { return pool[i].evaluation.objectives[m]; };
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return value(a) < value(b); });
    const double range = value(order.back()) - value(order.front());
    pool[order.front()].crowding = std::numeric_limits<double>::infinity();
    pool[order.back()].crowding = std::numeric_limits<double>::infinity();
    if (range <= 0) continue;
    for (std::size_t k = 1; k + 1 < order.size(); ++k)
      pool[order[k]].crowding += (value(order[k + 1]) - value(order[k - 1])) / range;
  }
}

}  // namespace

Nsga2Policy::Nsga2Policy(const SearchSpace& space, const PolicyParams& params)
    : space_(space),
      sampler_(space, params.costs ? &*params.costs : nullptr),
      rng_(params.seed),
      population_size_(params.population_size),
      max_generations_(params.generations),
      seeds_(params.initial_genomes) {
  if (population_size_ < 2)
    fail_input("create the 'nsga2' policy: population size {}: tournaments need at least 2",
               population_size_);
  for (const Genome& seed : seeds_) {
    space_.check(seed);
    for (std::size_t l = 0; l < seed.size(); ++l)
      if (params.costs && !params.costs->supported(l, std::size_t(seed[l])))
        fail_input(
            "create the 'nsga2' policy: seed plan '{}' uses option '{}' of layer '{}': "
            "the target does not support it ({})",
            genome_key(space_, seed), space_.layers[l].options[std::size_t(seed[l])],
            space_.layers[l].layer, params.costs->unsupported_reason[l][std::size_t(seed[l])]);
  }
}

bool Nsga2Policy::finished() const {
  const bool batch_handed_out = next_in_batch_ == batch_.size();
  return exhausted_ ||
         (max_generations_ > 0 && generation_ >= max_generations_ && batch_handed_out);
}

std::vector<Genome> Nsga2Policy::ask(std::size_t max_count) {
  std::vector<Genome> plans;
  while (plans.size() < max_count) {
    if (next_in_batch_ < batch_.size()) {
      // A plan told since the batch was bred (e.g. resumed from the database) is skipped.
      const Genome& genome = batch_[next_in_batch_++];
      if (told_.contains(genome)) continue;
      awaiting_.insert(genome);
      plans.push_back(genome);
      continue;
    }
    if (!awaiting_.empty() || finished()) break;
    start_next_batch();
    if (batch_.empty()) {
      exhausted_ = true;
      break;
    }
  }
  return plans;
}

void Nsga2Policy::tell(std::span<const Evaluation> results) {
  for (const Evaluation& result : results) {
    space_.check(result.genome);
    if (!objective_count_) objective_count_ = result.objectives.size();
    if (result.objectives.empty() || result.objectives.size() != *objective_count_)
      fail_input(
          "tell nsga2 the result of '{}': {} objectives, earlier results had {}: every "
          "result needs the same objectives",
          genome_key(space_, result.genome), result.objectives.size(), *objective_count_);
    for (double objective : result.objectives)
      if (!std::isfinite(objective))
        fail_input(
            "tell nsga2 the result of '{}': objective {}: objectives must be finite (give "
            "a failed plan a constraint violation instead)",
            genome_key(space_, result.genome), objective);
    if (!(result.constraint_violation >= 0))
      fail_input("tell nsga2 the result of '{}': constraint violation {}: it must be >= 0",
                 genome_key(space_, result.genome), result.constraint_violation);
    awaiting_.erase(result.genome);
    seen_.insert(result.genome);
    if (told_.insert(result.genome).second) newcomers_.push_back(result);
  }
}

std::vector<Evaluation> Nsga2Policy::population() const {
  std::vector<Member> pool = population_;
  for (const Evaluation& evaluation : newcomers_) pool.push_back({evaluation});
  std::vector<Evaluation> survivors;
  for (Member& member : select_survivors(std::move(pool)))
    survivors.push_back(std::move(member.evaluation));
  return survivors;
}

void Nsga2Policy::start_next_batch() {
  std::vector<Member> pool = population_;
  for (Evaluation& evaluation : newcomers_) pool.push_back({std::move(evaluation)});
  newcomers_.clear();
  population_ = select_survivors(std::move(pool));
  batch_.clear();
  next_in_batch_ = 0;
  if (population_.size() < population_size_) {
    batch_ = initial_batch(population_size_ - population_.size());
  } else {
    batch_ = offspring_batch(population_size_);
    ++generation_;
  }
}

std::vector<Nsga2Policy::Member> Nsga2Policy::select_survivors(std::vector<Member> pool) const {
  const std::vector<std::vector<std::size_t>> fronts = sort_into_fronts(pool);
  std::vector<Member> survivors;
  for (std::size_t rank = 0; rank < fronts.size() && survivors.size() < population_size_; ++rank) {
    std::vector<std::size_t> front = fronts[rank];
    assign_crowding(pool, front);
    for (std::size_t i : front) pool[i].rank = rank;
    if (survivors.size() + front.size() > population_size_) {
      // The last front that fits only partly: keep its most isolated members.
      std::stable_sort(front.begin(), front.end(), [&](std::size_t a, std::size_t b) {
        return pool[a].crowding > pool[b].crowding;
      });
      front.resize(population_size_ - survivors.size());
    }
    for (std::size_t i : front) survivors.push_back(std::move(pool[i]));
  }
  return survivors;
}

std::vector<Genome> Nsga2Policy::initial_batch(std::size_t count) {
  std::vector<Genome> batch;
  auto add_if_new = [&](const Genome& genome) {
    if (batch.size() < count && seen_.insert(genome).second) batch.push_back(genome);
  };
  // More seeds than room: take them spread over the list (the exact front comes sorted by
  // latency), not just its cheap end.
  for (std::size_t i : bisection_order(seeds_.size())) add_if_new(seeds_[i]);
  seeds_.clear();
  // Uniform plans: every label that every layer allows, in order of first appearance.
  std::vector<std::string> labels;
  for (const LayerOptions& layer : space_.layers)
    for (const std::string& label : layer.options)
      if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
  for (const std::string& label : labels) {
    Genome uniform(space_.layers.size());
    bool everywhere = true;
    for (std::size_t l = 0; l < uniform.size() && everywhere; ++l) {
      const std::vector<std::string>& options = space_.layers[l].options;
      const int index = int(std::find(options.begin(), options.end(), label) - options.begin());
      const std::vector<int>& allowed = sampler_.allowed()[l];
      everywhere = std::find(allowed.begin(), allowed.end(), index) != allowed.end();
      uniform[l] = index;
    }
    if (everywhere) add_if_new(uniform);
  }
  while (batch.size() < count) {
    std::optional<Genome> genome = sampler_.random_unseen(rng_, seen_);
    if (!genome) break;
    add_if_new(*genome);
  }
  return batch;
}

const Nsga2Policy::Member& Nsga2Policy::tournament() {
  std::uniform_int_distribution<std::size_t> pick(0, population_.size() - 1);
  const Member& a = population_[pick(rng_)];
  const Member& b = population_[pick(rng_)];
  if (a.rank != b.rank) return a.rank < b.rank ? a : b;
  return b.crowding > a.crowding ? b : a;
}

std::vector<Genome> Nsga2Policy::offspring_batch(std::size_t count) {
  const std::size_t layers = space_.layers.size();
  const double mutation_probability = 1.0 / double(layers);
  std::bernoulli_distribution crossover(kCrossoverProbability), take_second(0.5),
      mutate(mutation_probability);
  std::vector<Genome> batch;
  while (batch.size() < count) {
    std::optional<Genome> child;
    for (int attempt = 0; attempt < kBreedingAttempts && !child; ++attempt) {
      const Genome& first = tournament().evaluation.genome;
      const Genome& second = tournament().evaluation.genome;
      Genome candidate = first;
      if (crossover(rng_))
        for (std::size_t l = 0; l < layers; ++l)
          if (take_second(rng_)) candidate[l] = second[l];
      for (std::size_t l = 0; l < layers; ++l)
        if (mutate(rng_)) sampler_.mutate_layer(candidate, l, rng_);
      if (!seen_.contains(candidate)) child = std::move(candidate);
    }
    if (!child) child = sampler_.random_unseen(rng_, seen_);
    if (!child) break;  // every plan has been asked
    seen_.insert(*child);
    batch.push_back(std::move(*child));
  }
  return batch;
}

}  // namespace bitplan::search
