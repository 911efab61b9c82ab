// NSGA-II (Deb et al. 2002) over per-layer option choices, generational ask/tell.
//
// Each generation: the told evaluations join the population, environmental selection keeps
// population_size of them by constrained non-dominated rank and crowding distance, and the
// next batch of offspring is bred by binary tournament, per-layer uniform crossover and
// per-layer mutation (probability 1/L). Constraint domination: a feasible plan beats an
// infeasible one, of two infeasible plans the smaller violation wins, two feasible plans
// compare by Pareto dominance. The first batch holds params.initial_genomes (e.g. the exact
// solver's front, spread-first when there are more than fit), then the uniform plans (the
// same label in every layer), then random plans. No plan is ever asked twice: offspring
// equal to a known plan are re-bred, then replaced by a random unseen plan.
//
// ask() hands out the current batch; once all of it has been asked it returns nothing
// until every asked plan has been told, then breeds the next generation.
#pragma once

#include <random>

#include "search/random_policy.hpp"

namespace bitplan::search {

class Nsga2Policy final : public Policy {
 public:
  // Fails (invalid_input) on a population size below 2 or an invalid seed plan.
  Nsga2Policy(const SearchSpace& space, const PolicyParams& params);
  std::string name() const override { return "nsga2"; }
  std::vector<Genome> ask(std::size_t max_count) override;
  void tell(std::span<const Evaluation> results) override;
  bool finished() const override;

  // Offspring generations bred so far (the initial batch not counted).
  std::size_t generation() const { return generation_; }
  // The best population_size plans told so far, by the same selection that picks parents.
  std::vector<Evaluation> population() const;

 private:
  struct Member {
    Evaluation evaluation;
    std::size_t rank = 0;  // 0 = first non-dominated front
    double crowding = 0;   // larger = more isolated, preferred among equal ranks
  };

  void start_next_batch();
  std::vector<Member> select_survivors(std::vector<Member> pool) const;
  std::vector<Genome> initial_batch(std::size_t count);
  std::vector<Genome> offspring_batch(std::size_t count);
  const Member& tournament();

  SearchSpace space_;
  GenomeSampler sampler_;
  std::mt19937_64 rng_;
  std::size_t population_size_;
  std::size_t max_generations_;  // 0 = no limit
  std::vector<Genome> seeds_;
  std::vector<Member> population_;
  std::vector<Evaluation> newcomers_;  // told since the last selection
  std::vector<Genome> batch_;
  std::size_t next_in_batch_ = 0;
  GenomeSet seen_;      // asked or told: never asked (again)
  GenomeSet told_;      // told: a second tell of the same plan is ignored
  GenomeSet awaiting_;  // asked, not yet told
  std::size_t generation_ = 0;
  std::optional<std::size_t> objective_count_;
  bool exhausted_ = false;
};

}  // namespace bitplan::search
