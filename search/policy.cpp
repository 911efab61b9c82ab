#include "search/policy.hpp"

#include "core/error.hpp"
#include "search/exact_solver.hpp"
#include "search/nsga2.hpp"
#include "search/random_policy.hpp"
#include "search/reinforce.hpp"

namespace bitplan::search {

std::vector<std::string> policy_names() {
  return {"random", "exact", "nsga2", "reinforce"};
}

std::unique_ptr<Policy> make_policy(std::string_view name, const SearchSpace& space,
                                    const PolicyParams& params) {
  space.validate();
  if (params.costs) params.costs->validate(space);
  if (name == "random") return std::make_unique<RandomPolicy>(space, params);
  if (name == "exact") return std::make_unique<ExactFrontPolicy>(space, params);
  if (name == "nsga2") return std::make_unique<Nsga2Policy>(space, params);
  if (name == "reinforce") return std::make_unique<ReinforcePolicy>(space, params);
  fail(ErrorKind::usage, "create search policy '{}': unknown name: use one of {}", name,
       fmt::join(policy_names(), ", "));
}

}  // namespace bitplan::search
