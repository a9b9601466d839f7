// Statistics of the evaluation (see eval-math.h): log-softmax, KL, perplexity in float64; mean, standard
// error and the 95% intervals of records.
#include "eval/eval-math.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/core.h>

#include "hashattn/error.h"

namespace hashattn {

void eval_log_softmax(const float* x, int64_t n, std::vector<double>& out) {
  out.resize((size_t)n);
  double mx = -1e300;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, (double)x[i]);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp((double)x[i] - mx);
  const double lz = mx + std::log(z);
  for (int64_t i = 0; i < n; ++i) out[i] = (double)x[i] - lz;
}

void eval_ref_dist::set(const float* logits, int64_t n) {
  eval_log_softmax(logits, n, lp);
  p.resize(lp.size());
  for (size_t v = 0; v < lp.size(); ++v) p[v] = std::exp(lp[v]);
}

double eval_kl(const eval_ref_dist& ref, const std::vector<double>& lq) {
  if (lq.size() != ref.lp.size())
    fail("KL(dense || setting): vocabulary", std::to_string(lq.size()) + " log-probabilities",
         std::to_string(ref.lp.size()) + " (the reference's)");
  double k = 0;
  for (size_t v = 0; v < lq.size(); ++v) k += ref.p[v] * (ref.lp[v] - lq[v]);
  if (!(k >= -kl_rounding_eps))
    fail("KL(dense || setting)", fmt::format("{:.3e}", k), fmt::format(">= -{:.0e} (rounding)", kl_rounding_eps),
         "a KL below zero is a bug: the log-probabilities are not normalized or not of the same positions");
  return std::max(0.0, k);
}

double eval_perplexity(double nll_sum, double n_tokens) {
  if (!(n_tokens > 0)) fail("perplexity: tokens", fmt::format("{}", n_tokens), "> 0");
  if (!(nll_sum >= 0) || !std::isfinite(nll_sum))
    fail("perplexity: summed negative log-likelihood", fmt::format("{}", nll_sum), "finite and >= 0");
  return std::exp(nll_sum / n_tokens);
}

mean_stderr eval_mean_stderr(const std::vector<double>& v) {
  if (v.empty()) fail("mean of no values");
  mean_stderr r;
  for (double x : v) r.mean += x;
  const double n = (double)v.size();
  r.mean /= n;
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  r.stderr_ = v.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0;
  return r;
}

eval_ci eval_wilson(double p, double n) {
  if (!(n >= 1)) fail("Wilson interval: trials", fmt::format("{}", n), ">= 1");
  if (!(p >= 0 && p <= 1)) fail("Wilson interval: proportion", fmt::format("{}", p), "in [0, 1]");
  const double z2 = z95 * z95;
  const double c = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double h = z95 / (1 + z2 / n) * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  return {std::max(0.0, c - h), std::min(1.0, c + h)};
}

eval_ci eval_interval(const std::string& metric, double value, double stderr_, int n) {
  if (n < 1) return {};
  if (metric == "score") return eval_wilson(std::min(1.0, std::max(0.0, value)), n);
  if (n < 2) return {};
  if (metric == "ppl") {
    if (!(value > 0)) return {};
    return {std::exp(std::log(value) - z95 * stderr_), std::exp(std::log(value) + z95 * stderr_)};
  }
  return {value - z95 * stderr_, value + z95 * stderr_};
}

}  // namespace hashattn
