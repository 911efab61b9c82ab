#include "search/reinforce.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace bitplan::search {

namespace {

constexpr double kAdamBeta1 = 0.9, kAdamBeta2 = 0.999, kAdamEpsilon = 1e-8;
// Weight of the newest batch in the reward baseline and spread.
constexpr double kBaselineRate = 0.2;
// ask() gives up (converged) after drawing this many known plans per batch slot in a row.
constexpr std::size_t kKnownDrawsPerSlot = 16;

// Column-wise z-scores over the layers; a constant column carries no information and
// becomes 0 rather than dividing by zero.
Eigen::MatrixXd standardised_features(const SearchSpace& space,
                                      const std::vector<std::vector<double>>& rows) {
  const std::size_t layers = space.layers.size();
  if (rows.empty()) {
    Eigen::MatrixXd position(layers, 1);
    for (std::size_t l = 0; l < layers; ++l)
      position(Eigen::Index(l), 0) = double(l) / double(layers);
    return position;
  }
  if (rows.size() != layers)
    fail_input(
        "create the 'reinforce' policy: {} rows of layer features for {} layers: one row "
        "per layer",
        rows.size(), layers);
  Eigen::MatrixXd features(layers, Eigen::Index(rows[0].size()));
  for (std::size_t l = 0; l < layers; ++l) {
    if (rows[l].size() != rows[0].size())
      fail_input(
          "create the 'reinforce' policy: layer '{}' has {} features, layer '{}' {}: every "
          "layer needs the same features",
          space.layers[l].layer, rows[l].size(), space.layers[0].layer, rows[0].size());
    for (std::size_t f = 0; f < rows[l].size(); ++f) {
      if (!std::isfinite(rows[l][f]))
        fail_input(
            "create the 'reinforce' policy: feature {} of layer '{}' is {}: features must "
            "be finite",
            f, space.layers[l].layer, rows[l][f]);
      features(Eigen::Index(l), Eigen::Index(f)) = rows[l][f];
    }
  }
  for (Eigen::Index f = 0; f < features.cols(); ++f) {
    const double mean = features.col(f).mean();
    const double spread = std::sqrt((features.col(f).array() - mean).square().mean());
    if (spread > 0)
      features.col(f) = (features.col(f).array() - mean) / spread;
    else
      features.col(f).setZero();
  }
  return features;
}

}  // namespace

// The policy network and its Adam state; parameters live in one flat vector so that the
// optimiser treats them alike.
struct ReinforcePolicy::Network {
  Eigen::MatrixXd features;                      // [layer][feature], standardised
  std::vector<std::vector<bool>> allowed;        // [layer][option slot]
  std::vector<std::vector<double>> budget_cost;  // [layer][option], empty: no budget feature
  double budget_denominator = 1;
  Eigen::Index option_slots = 0;  // the largest option count
  Eigen::Index inputs = 0, hidden = 0;
  Eigen::VectorXd parameters, adam_mean, adam_variance;
  std::size_t adam_steps = 0;
  double learning_rate = 0;

  using MatrixView = Eigen::Map<Eigen::MatrixXd>;
  using VectorView = Eigen::Map<Eigen::VectorXd>;
  // Layout: w1 [hidden x inputs], b1 [hidden], w2 [slots x hidden], b2 [slots].
  Eigen::Index w1_offset() const { return 0; }
  Eigen::Index b1_offset() const { return hidden * inputs; }
  Eigen::Index w2_offset() const { return b1_offset() + hidden; }
  Eigen::Index b2_offset() const { return w2_offset() + option_slots * hidden; }
  Eigen::Index parameter_count() const { return b2_offset() + option_slots; }

  template <typename Vector>
  MatrixView w1(Vector& v) const {
    return MatrixView(v.data() + w1_offset(), hidden, inputs);
  }
  template <typename Vector>
  VectorView b1(Vector& v) const {
    return VectorView(v.data() + b1_offset(), hidden);
  }
  template <typename Vector>
  MatrixView w2(Vector& v) const {
    return MatrixView(v.data() + w2_offset(), option_slots, hidden);
  }
  template <typename Vector>
  VectorView b2(Vector& v) const {
    return VectorView(v.data() + b2_offset(), option_slots);
  }

  // Layer features, budget used so far, one-hot previous option (the last slot: none yet).
  Eigen::VectorXd input(std::size_t layer, double budget_used, int previous_option) const {
    Eigen::VectorXd x = Eigen::VectorXd::Zero(inputs);
    x.head(features.cols()) = features.row(Eigen::Index(layer)).transpose();
    x(features.cols()) = budget_used;
    x(features.cols() + 1 + (previous_option < 0 ? option_slots : previous_option)) = 1;
    return x;
  }

  // Hidden activations and the masked softmax over the layer's options.
  void forward(std::size_t layer, const Eigen::VectorXd& x, Eigen::VectorXd& h,
               Eigen::VectorXd& probabilities) {
    h = (w1(parameters) * x + b1(parameters)).array().tanh();
    const Eigen::VectorXd logits = w2(parameters) * h + b2(parameters);
    double largest = -std::numeric_limits<double>::infinity();
    for (Eigen::Index k = 0; k < option_slots; ++k)
      if (allowed[layer][std::size_t(k)]) largest = std::max(largest, logits(k));
    probabilities = Eigen::VectorXd::Zero(option_slots);
    for (Eigen::Index k = 0; k < option_slots; ++k)
      if (allowed[layer][std::size_t(k)]) probabilities(k) = std::exp(logits(k) - largest);
    probabilities /= probabilities.sum();
  }

  // Walks the layers; `choose(layer, x, h, probabilities)` returns the option taken.
  template <typename Choose>
  Genome walk(Choose&& choose) {
    Genome genome(std::size_t(features.rows()));
    double budget_used = 0;
    int previous = -1;
    Eigen::VectorXd h, probabilities;
    for (std::size_t l = 0; l < genome.size(); ++l) {
      const Eigen::VectorXd x = input(l, budget_used / budget_denominator, previous);
      forward(l, x, h, probabilities);
      genome[l] = previous = choose(l, x, h, probabilities);
      if (!budget_cost.empty()) budget_used += budget_cost[l][std::size_t(previous)];
    }
    return genome;
  }

  void adam_step(const Eigen::VectorXd& gradient) {
    ++adam_steps;
    adam_mean = kAdamBeta1 * adam_mean + (1 - kAdamBeta1) * gradient;
    adam_variance = kAdamBeta2 * adam_variance + (1 - kAdamBeta2) * gradient.cwiseAbs2();
    const double mean_correction = 1 - std::pow(kAdamBeta1, double(adam_steps));
    const double variance_correction = 1 - std::pow(kAdamBeta2, double(adam_steps));
    parameters.array() -= learning_rate * (adam_mean.array() / mean_correction) /
                          ((adam_variance.array() / variance_correction).sqrt() + kAdamEpsilon);
  }
};

ReinforcePolicy::ReinforcePolicy(const SearchSpace& space, const PolicyParams& params)
    : space_(space),
      violation_penalty_(params.violation_penalty),
      entropy_bonus_(params.entropy_bonus),
      batch_size_(params.population_size),
      network_(std::make_unique<Network>()),
      rng_(params.seed) {
  space_.validate();
  if (batch_size_ == 0)
    fail_input("create the 'reinforce' policy: 0 episodes per update: it needs at least 1");
  if (!(params.learning_rate > 0) || params.hidden_units == 0)
    fail_input(
        "create the 'reinforce' policy: learning rate {} and {} hidden units: both must be "
        "positive",
        params.learning_rate, params.hidden_units);
  const LayerCostTable* costs = params.costs ? &*params.costs : nullptr;
  if (costs) costs->validate(space_);

  Network& net = *network_;
  net.features = standardised_features(space_, params.layer_features);
  for (const LayerOptions& layer : space_.layers)
    net.option_slots = std::max(net.option_slots, Eigen::Index(layer.options.size()));
  net.allowed.assign(space_.layers.size(), std::vector<bool>(std::size_t(net.option_slots), false));
  const std::vector<std::vector<int>> allowed = allowed_options(space_, costs);
  for (std::size_t l = 0; l < allowed.size(); ++l)
    for (int option : allowed[l]) net.allowed[l][std::size_t(option)] = true;

  // The budget feature follows latency when it is modelled, else size.
  if (costs) {
    const bool use_latency = !costs->latency.empty();
    const std::vector<std::vector<double>>& table = use_latency ? costs->latency : costs->size;
    const std::optional<double>& budget =
        use_latency ? params.budgets.latency : params.budgets.size;
    if (!table.empty()) {
      net.budget_cost = table;
      double dearest = 0;
      for (std::size_t l = 0; l < table.size(); ++l) {
        double layer_dearest = 0;
        for (int option : allowed[l])
          layer_dearest = std::max(layer_dearest, std::abs(table[l][std::size_t(option)]));
        dearest += layer_dearest;
      }
      const double denominator = budget ? *budget : dearest;
      net.budget_denominator = denominator > 0 ? denominator : 1;
    }
  }

  net.inputs = net.features.cols() + 1 + net.option_slots + 1;
  net.hidden = Eigen::Index(params.hidden_units);
  net.learning_rate = params.learning_rate;
  net.parameters = Eigen::VectorXd::Zero(net.parameter_count());
  // Glorot-uniform hidden weights; near-zero output weights so the first policy is close
  // to uniform and every option gets tried.
  const double hidden_scale = std::sqrt(6.0 / double(net.inputs + net.hidden));
  std::uniform_real_distribution<double> hidden_init(-hidden_scale, hidden_scale),
      output_init(-0.01, 0.01);
  auto w1 = net.w1(net.parameters);
  for (Eigen::Index i = 0; i < w1.size(); ++i) w1.data()[i] = hidden_init(rng_);
  auto w2 = net.w2(net.parameters);
  for (Eigen::Index i = 0; i < w2.size(); ++i) w2.data()[i] = output_init(rng_);
  net.adam_mean = Eigen::VectorXd::Zero(net.parameter_count());
  net.adam_variance = Eigen::VectorXd::Zero(net.parameter_count());
}

ReinforcePolicy::~ReinforcePolicy() = default;

Genome ReinforcePolicy::sample_episode() {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  return network_->walk([&](std::size_t, const Eigen::VectorXd&, const Eigen::VectorXd&,
                            const Eigen::VectorXd& probabilities) {
    const double draw = unit(rng_);
    double cumulative = 0;
    Eigen::Index last_possible = 0;
    for (Eigen::Index k = 0; k < probabilities.size(); ++k) {
      if (probabilities(k) <= 0) continue;
      last_possible = k;
      cumulative += probabilities(k);
      if (draw < cumulative) return int(k);
    }
    return int(last_possible);  // rounding left the draw just above the total
  });
}

Genome ReinforcePolicy::greedy() const {
  return network_->walk([](std::size_t, const Eigen::VectorXd&, const Eigen::VectorXd&,
                           const Eigen::VectorXd& probabilities) {
    Eigen::Index best = 0;
    probabilities.maxCoeff(&best);
    return int(best);
  });
}

std::vector<Genome> ReinforcePolicy::ask(std::size_t max_count) {
  std::vector<Genome> plans;
  std::size_t known_in_a_row = 0;
  while (plans.size() < max_count) {
    update_if_batch_complete();
    if (batch_.size() == batch_size_) break;  // waiting for results of asked plans
    if (known_in_a_row >= kKnownDrawsPerSlot * batch_size_) {
      converged_ = true;
      break;
    }
    Genome genome = sample_episode();
    auto stored = rewards_.find(genome);
    if (stored != rewards_.end()) {
      batch_.push_back({std::move(genome), stored->second});
      ++known_in_a_row;
    } else if (awaiting_.contains(genome)) {
      batch_.push_back({std::move(genome), std::nullopt});
      ++known_in_a_row;
    } else {
      awaiting_.insert(genome);
      plans.push_back(genome);
      batch_.push_back({std::move(genome), std::nullopt});
      known_in_a_row = 0;
    }
  }
  return plans;
}

void ReinforcePolicy::tell(std::span<const Evaluation> results) {
  for (const Evaluation& result : results) {
    space_.check(result.genome);
    if (result.objectives.empty() || !std::isfinite(result.objectives[0]) ||
        !(result.constraint_violation >= 0) || !std::isfinite(result.constraint_violation))
      fail_input(
          "tell reinforce the result of '{}': objective 0 {} and violation {}: it needs a "
          "finite first objective and a finite violation >= 0",
          genome_key(space_, result.genome),
          result.objectives.empty() ? std::nan("") : result.objectives[0],
          result.constraint_violation);
    const double reward = -result.objectives[0] - violation_penalty_ * result.constraint_violation;
    rewards_[result.genome] = reward;
    awaiting_.erase(result.genome);
    for (Episode& episode : batch_)
      if (!episode.reward && episode.genome == result.genome) episode.reward = reward;
  }
  update_if_batch_complete();
}

void ReinforcePolicy::update_if_batch_complete() {
  if (batch_.size() < batch_size_) return;
  for (const Episode& episode : batch_)
    if (!episode.reward) return;

  double mean_reward = 0;
  for (const Episode& episode : batch_) mean_reward += *episode.reward;
  mean_reward /= double(batch_.size());
  double batch_variance = 0;
  for (const Episode& episode : batch_)
    batch_variance += (*episode.reward - mean_reward) * (*episode.reward - mean_reward);
  batch_variance /= double(batch_.size());
  if (!baseline_) {
    baseline_ = mean_reward;
    reward_variance_ = batch_variance > 0 ? batch_variance : 1;
  }
  const double spread = std::sqrt(reward_variance_) + 1e-12;

  Network& net = *network_;
  Eigen::VectorXd gradient = Eigen::VectorXd::Zero(net.parameter_count());
  auto w1_grad = net.w1(gradient);
  auto b1_grad = net.b1(gradient);
  auto w2_grad = net.w2(gradient);
  auto b2_grad = net.b2(gradient);
  const auto w2 = net.w2(net.parameters);
  const double episodes = double(batch_.size());
  for (const Episode& episode : batch_) {
    const double advantage = (*episode.reward - *baseline_) / spread;
    net.walk([&](std::size_t layer, const Eigen::VectorXd& x, const Eigen::VectorXd& h,
                 const Eigen::VectorXd& probabilities) {
      const int action = episode.genome[layer];
      // d(loss)/d(logits) of -A log pi(a) - beta H, over the layer's options only:
      // d log pi(a) = onehot(a) - pi;  dH/dz_k = -pi_k (log pi_k + H).
      double entropy = 0;
      for (Eigen::Index k = 0; k < probabilities.size(); ++k)
        if (probabilities(k) > 0) entropy -= probabilities(k) * std::log(probabilities(k));
      Eigen::VectorXd logit_grad = Eigen::VectorXd::Zero(probabilities.size());
      for (Eigen::Index k = 0; k < probabilities.size(); ++k) {
        if (probabilities(k) <= 0) continue;
        const double log_prob_grad = (k == action ? 1.0 : 0.0) - probabilities(k);
        const double entropy_grad = -probabilities(k) * (std::log(probabilities(k)) + entropy);
        logit_grad(k) = -(advantage * log_prob_grad + entropy_bonus_ * entropy_grad) / episodes;
      }
      w2_grad.noalias() += logit_grad * h.transpose();
      b2_grad += logit_grad;
      const Eigen::VectorXd pre_activation_grad =
          ((w2.transpose() * logit_grad).array() * (1 - h.array().square())).matrix();
      w1_grad.noalias() += pre_activation_grad * x.transpose();
      b1_grad += pre_activation_grad;
      return action;
    });
  }
  net.adam_step(gradient);
  ++updates_;

  reward_variance_ =
      (1 - kBaselineRate) * reward_variance_ +
      kBaselineRate * (batch_variance + (mean_reward - *baseline_) * (mean_reward - *baseline_));
  baseline_ = (1 - kBaselineRate) * *baseline_ + kBaselineRate * mean_reward;
  batch_.clear();
}

}  // namespace bitplan::search
