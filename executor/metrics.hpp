// Fidelity of a candidate's outputs against the fp32 reference, for models with or without
// labels (embedding models are judged by fidelity alone).
#pragma once

#include <cstdint>
#include <span>

#include "executor/evaluate.hpp"

namespace bitplan {

struct Fidelity {
  double top1_agreement = 0;  // fraction of samples whose argmax matches
  double kl_divergence = 0;   // mean KL(softmax(reference) || softmax(candidate)), nats
  double sqnr_db = 0;         // 10 log10(sum ref^2 / sum (ref - cand)^2); +inf when identical
  double cosine = 0;          // mean per-sample cosine similarity of the output rows
};

// `reference` and `candidate` are [samples, width] row-major.
Fidelity compare_outputs(std::span<const float> reference, std::span<const float> candidate,
                         std::int64_t width);

// The largest per-class top-1 drop (reference - candidate), in fractions; classes without
// samples are ignored.
double worst_class_drop(const EvalResult& reference, const EvalResult& candidate);

}  // namespace bitplan
