// Token sampler: greedy (temp <= 0: argmax, lowest id on ties), or top-k -> softmax(logits / temp)
// -> top-p (smallest most-likely prefix whose mass reaches p) -> renormalized draw with a seeded
// 64-bit Mersenne twister (the uniform variate is built from 53 random bits, so the sequence
// depends only on the seed, not on the standard library's distributions).
#include <algorithm>
#include <cmath>

#include "hashattn/error.h"
#include "hashattn/model.h"

namespace hashattn {

sampler::sampler(const sampler_params& p) : p_(p), rng_(p.seed) {
  if (!std::isfinite(p.temp)) fail("sampler: temperature", std::to_string(p.temp), "a finite number");
  if (p.top_k < 0) fail("sampler: top-k", std::to_string(p.top_k), ">= 0 (0: off)");
  if (!(p.top_p > 0.f && p.top_p <= 1.f))
    fail("sampler: top-p", std::to_string(p.top_p), "in (0, 1] (1: off)");
}

int32_t sampler::sample(const float* logits, int64_t n_vocab) {
  if (!logits || n_vocab <= 0) fail("sampler: empty logits", std::to_string(n_vocab), ">= 1");
  cand_.clear();
  if (p_.temp <= 0.f) {
    int64_t best = 0;
    for (int64_t i = 1; i < n_vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
  }
  // Candidates sorted by logit, descending (ids ascending on ties).
  auto by_logit = [&](const std::pair<int32_t, double>& a, const std::pair<int32_t, double>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  cand_.resize(n_vocab);
  for (int64_t i = 0; i < n_vocab; ++i) cand_[i] = {(int32_t)i, (double)logits[i]};
  const int64_t k = p_.top_k > 0 ? std::min<int64_t>(p_.top_k, n_vocab) : n_vocab;
  std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), by_logit);
  cand_.resize(k);
  const double mx = cand_[0].second;
  if (!std::isfinite(mx)) fail("sampler: non-finite largest logit", std::to_string(mx));
  double sum = 0;
  for (auto& c : cand_) sum += (c.second = std::exp((c.second - mx) / p_.temp));
  for (auto& c : cand_) c.second /= sum;
  if (p_.top_p < 1.f) {
    double cum = 0;
    size_t keep = 0;
    while (keep < cand_.size()) {
      cum += cand_[keep++].second;
      if (cum >= p_.top_p) break;
    }
    cand_.resize(keep);
    for (auto& c : cand_) c.second /= cum;
  }
  const double u = (double)(rng_() >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  double acc = 0;
  for (const auto& c : cand_) {
    acc += c.second;
    if (u < acc) return c.first;
  }
  return cand_.back().first;
}

}  // namespace hashattn
