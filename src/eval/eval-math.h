// Statistics of the evaluation. Next-token statistics in float64 from fp32 logits [n_vocab]: log-softmax,
// the dense reference's distribution at one position, KL(reference || setting) and perplexity. Sample
// statistics of a record: mean and standard error, and its 95% confidence interval (Wilson for scores,
// normal from the standard error for KL and recall, and for perplexity in log space).
// KL >= 0 holds exactly for normalized distributions (Gibbs' inequality), so a negative sum can only
// come from rounding or from a bug: within kl_rounding_eps it is rounding and reads 0; beyond it,
// eval_kl throws (never clamps a bug away).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hashattn/eval.h"

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

// ---- sample statistics ----
constexpr double z95 = 1.959963984540054;  // the two-sided 95% quantile of the standard normal

struct mean_stderr {
  double mean = 0;
  double stderr_ = 0;  // standard error of the mean: sample sd / sqrt(n); 0 for n < 2
};
// Throws for no values.
mean_stderr eval_mean_stderr(const std::vector<double>& v);

// Wilson score interval (z = z95) of a proportion p in [0, 1] over n >= 1 trials; fractional scores
// (string match of several references) are treated as the proportion of their mean.
eval_ci eval_wilson(double p, double n);
// The 95% interval of a record's value: metric "score" -> Wilson over the samples; "ppl" (value =
// exp(mean log-perplexity), stderr that of the mean log-perplexity) -> exp(log value +- z95 stderr);
// other metrics (kl, recall) -> value +- z95 stderr. None for n < 1, or n < 2 where it comes from a
// standard error.
eval_ci eval_interval(const std::string& metric, double value, double stderr_, int n);

}  // namespace hashattn
