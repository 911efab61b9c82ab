#include "executor/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace bitplan {

Fidelity compare_outputs(std::span<const float> reference, std::span<const float> candidate,
                         std::int64_t width) {
  BITPLAN_ASSERT(reference.size() == candidate.size() && width > 0);
  const auto samples = static_cast<std::int64_t>(reference.size()) / width;
  Fidelity f;
  double signal = 0, noise = 0;
  std::int64_t agree = 0;
  for (std::int64_t s = 0; s < samples; ++s) {
    const float* r = reference.data() + s * width;
    const float* c = candidate.data() + s * width;
    agree += std::max_element(r, r + width) - r == std::max_element(c, c + width) - c;
    // Softmax in double from the row max (log-sum-exp), then KL = sum p (log p - log q).
    const double rmax = *std::max_element(r, r + width), cmax = *std::max_element(c, c + width);
    double rsum = 0, csum = 0;
    for (std::int64_t j = 0; j < width; ++j) {
      rsum += std::exp(r[j] - rmax);
      csum += std::exp(c[j] - cmax);
    }
    const double rlog = std::log(rsum), clog = std::log(csum);
    double kl = 0, dot = 0, rr = 0, cc = 0;
    for (std::int64_t j = 0; j < width; ++j) {
      const double log_p = r[j] - rmax - rlog, log_q = c[j] - cmax - clog;
      kl += std::exp(log_p) * (log_p - log_q);
      dot += static_cast<double>(r[j]) * c[j];
      rr += static_cast<double>(r[j]) * r[j];
      cc += static_cast<double>(c[j]) * c[j];
      signal += static_cast<double>(r[j]) * r[j];
      noise += (static_cast<double>(r[j]) - c[j]) * (static_cast<double>(r[j]) - c[j]);
    }
    f.kl_divergence += kl;
    f.cosine += (rr > 0 && cc > 0) ? dot / std::sqrt(rr * cc) : (rr == cc ? 1.0 : 0.0);
  }
  const double n = static_cast<double>(std::max<std::int64_t>(samples, 1));
  f.top1_agreement = static_cast<double>(agree) / n;
  f.kl_divergence /= n;
  f.cosine /= n;
  f.sqnr_db = noise > 0 ? 10 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  return f;
}

double worst_class_drop(const EvalResult& reference, const EvalResult& candidate) {
  double worst = 0;
  for (std::size_t c = 0;
       c < reference.class_accuracy.size() && c < candidate.class_accuracy.size(); ++c)
    if (!std::isnan(reference.class_accuracy[c]) && !std::isnan(candidate.class_accuracy[c]))
      worst = std::max(worst, reference.class_accuracy[c] - candidate.class_accuracy[c]);
  return worst;
}

}  // namespace bitplan
