// AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
// Quantization"), layer-wise: every weight may take the grid level just below it or just
// above it, and the choice is learned so that the layer's output on the calibration inputs
// moves least, instead of rounding each weight to its nearest level on its own.
//
// The relaxation (the paper's eqs. 21-25). With s the slice's scale and ⌊w/s⌋ the level
// below w,
//   w̃(v) = s · clamp(⌊w/s⌋ + h(v), qmin, qmax),   h(v) = clip(σ(v)(ζ − γ) + γ, 0, 1),
// ζ = 1.1, γ = −0.1 (the rectified sigmoid reaches 0 and 1 exactly). bitplan writes it as
// w̃ = lo + h·(hi − lo) with lo, hi the levels of ⌊w/s⌋ and ⌊w/s⌋ + 1 after the clamp: the
// same value (h ∈ [0, 1] moves the code within [⌊w/s⌋, ⌊w/s⌋ + 1], and where that step leaves
// [qmin, qmax] both ends clamp to one level, hi = lo, and the weight has no choice). v starts
// where h(v) = frac(w/s), so the first w̃ is w itself. The objective is
//   L(V) = ‖(W̃ − W) X‖²_F / u + λ Σ (1 − |2h(v) − 1|^β),
// where X holds the calibration input vectors as columns. No activation is kept:
//   ‖(W̃ − W) X‖²_F = tr((W̃ − W) X Xᵀ (W̃ − W)ᵀ) = tr(D H Dᵀ),  D = W̃ − W,  H = Σ x xᵀ,
// the layer's input Hessian (hessian.hpp, Conv through its im2col windows). Its gradient is
//   ∂/∂W̃ tr(D H Dᵀ) = 2 D H  (H symmetric),
//   ∂L/∂v = (2 (D H)/u · (hi − lo) + λ · ∂reg/∂h) · ∂h/∂v,
//   ∂h/∂v = (ζ − γ) σ(v)(1 − σ(v)) where the clip is inactive, else 0,
//   ∂reg/∂h = −2β |2h − 1|^(β−1) sign(2h − 1),
// one (rows × K)·(K × K) product per iteration. Rows do not interact in L (each row's term
// reads only its own D row, and Adam is elementwise), so blocks of rows run in parallel,
// each its own optimisation; the blocks are fixed, so the result does not depend on the
// thread count.
//
// Scale of the reconstruction term (by a trace of H, not by its initial value, which is 0:
// the start is w̃ = w). bitplan divides tr(D H Dᵀ) by u = mean over the weights of s² H_jj
// (s the weight's scale, j its input): the error one grid step of one weight adds to the
// output were the inputs uncorrelated. In these units a weight moving one step costs about 1
// whatever the layer's scale, so λ is scale-free. The paper's λ = 0.01 is on its own scale
// (squared output error summed over a sample's outputs), where one step of one weight costs
// s²·E[x_j²]·(outputs per sample), for the fixtures' 4-bit layers about 0.01 to 1: its λ is
// 0.01 to 1 in these units. Measured on the tests' correlated case (int4 per channel, 1000
// iterations), the output error against round-to-nearest's is 0.73 at λ = 0.01 (h stays
// between 0 and 1 on many weights, so the hard rounding loses; 6 of 20 rows fall back to
// rtn), 0.53 at 0.1 and 0.47 from 0.3 to 3: bitplan takes λ = 1.
//
// Schedule (the paper's): β annealed linearly from 20 to 2 after a warm-up of 20 % of the
// iterations, during which the regulariser is off; Adam. At the end h is rounded to 0 or 1
// (v ≥ 0 ⟺ h ≥ ½): the codes are ⌊w/s⌋ or ⌊w/s⌋ + 1 on the grid of round-to-nearest
// (choose_weight_params of the fp32 weights, as GPTQ: kernels, exporters and sizes do not
// depend on the method). A row whose hard-rounded output error d H dᵀ came out above
// round-to-nearest's keeps round-to-nearest (measured exactly, so the method is never worse
// than rtn on the calibration data by its own measure; AdaroundResult::rows_kept_rtn counts
// them).
//
// Degenerate data: a non-finite H gives round-to-nearest with a warning; a layer no
// calibration input reaches (u = 0) gives round-to-nearest; a non-finite weight rounds as
// round-to-nearest does and adds nothing to D.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "executor/quant/hessian.hpp"

namespace bitplan {

struct AdaroundOptions {
  int iterations = 1000;
  // Adam's step on v. The paper uses 1e-3 with its own loss scale; on the normalised loss
  // above 1e-2 lets v cross the 0 ↔ 1 range (|v| ≲ 2.4) within the 1000 iterations.
  double learning_rate = 1e-2;
  double lambda = 1;  // the regulariser's weight, on the normalised scale above
  double beta_start = 20, beta_end = 2;
  double warmup = 0.2;  // share of the iterations before the regulariser starts
};

struct AdaroundResult {
  Tensor quantized;      // the weights' dims, every value a level of its slice
  double error = 0;      // Σ_rows d H dᵀ of the result
  double rtn_error = 0;  // the same for round-to-nearest
  std::int64_t rows = 0;
  std::int64_t rows_kept_rtn = 0;  // rows where AdaRound's rounding was not better
};

// The weights of `layer` rounded by AdaRound under `spec` (a weight_spec_for spec of an
// integer or ternary format) with `params` (choose_weight_params of the fp32 weights), from
// the layer's input Hessian `h`. `warning` (may be null) receives what was done to a
// degenerate Hessian, or stays untouched.
AdaroundResult adaround_quantize(const QuantSpec& spec, const QuantParams& params,
                                 const Tensor& weights, const QuantizableLayer& layer,
                                 const InputHessian& h, const AdaroundOptions& options = {},
                                 std::string* warning = nullptr);

// h(v), the rectified sigmoid, and the v where h(v) = fraction (fraction in [0, 1]).
double adaround_h(double v);
double adaround_v_for(double fraction);

// The objective above for `rows` rows of K weights ([rows][K], row-major), their levels
// below and above, and H ([K][K]), at v, with the gradient ∂L/∂v written to `gradient`. The
// same code as the optimisation's (there in float); for tests.
struct AdaroundRows {
  std::int64_t rows = 0, k = 0;
  std::vector<double> weights, low, high, hessian;
  double normalizer = 1;  // u
};
double adaround_objective(const AdaroundRows& p, std::span<const double> v, double beta,
                          double lambda, std::span<double> gradient);

}  // namespace bitplan
