// Next-token statistics of the evaluation, in float64 from fp32 logits [n_vocab]: log-softmax, the
// dense reference's distribution at one position, KL(reference || setting) and perplexity.
// KL >= 0 holds exactly for normalized distributions (Gibbs' inequality), so a negative sum can only
// come from rounding or from a bug: within kl_rounding_eps it is rounding and reads 0; beyond it,
// eval_kl throws (never clamps a bug away).
#pragma once
#include <cstdint>
#include <vector>

namespace hashattn {

// |rounding| of eval_kl: log-probabilities are float64 (relative error ~1e-16 of values |lp| < ~1e3),
// weighted by probabilities that sum to 1, so the sum's rounding stays below ~1e-12 for any vocabulary
// up to 1e6 tokens; 1e-9 leaves a 1000x margin.
constexpr double kl_rounding_eps = 1e-9;

// out[i] = x[i] - log(sum_j exp(x[j])), in float64.
void eval_log_softmax(const float* x, int64_t n, std::vector<double>& out);

// The reference's distribution at one position: log-probabilities and probabilities (computed once,
// used for the KL of every setting).
struct eval_ref_dist {
  std::vector<double> lp, p;
  void set(const float* logits, int64_t n);
};

// KL(ref || q) from q's log-probabilities lq (same vocabulary): 0 for sums in [-kl_rounding_eps, 0);
// throws hashattn::error for a sum below -kl_rounding_eps or a size mismatch.
double eval_kl(const eval_ref_dist& ref, const std::vector<double>& lq);

// exp(nll_sum / n_tokens): the perplexity of n_tokens next-token predictions whose negative
// log-likelihoods sum to nll_sum; throws for n_tokens <= 0 or a negative or non-finite nll_sum.
double eval_perplexity(double nll_sum, double n_tokens);

}  // namespace hashattn
