// Selection over float scores (oracle top-k, Quest pages, Double Sparsity; ops.h score_select):
// sinks [0, S'), window [n - W', n) and the top k_mid middle positions by score, ties to the most
// recent positions (order: score desc, position desc; NaN scores rank lowest). O(n) expected:
// nth_element over a copy of the middle scores finds the k_mid-th largest, one pass in position order
// writes the chosen positions (already ascending).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "hashattn/error.h"
#include "cpu/cpu-kernels.h"

namespace hashattn {

int64_t select_topk_float(const float* score, int64_t n, const budget_params& b, int32_t* idx) {
  const select_split sp = select_split_for(b, n);
  int64_t k = 0;
  for (int64_t t = 0; t < sp.lo; t++) idx[k++] = (int32_t)t;
  const int64_t n_mid = sp.hi - sp.lo;
  if (sp.k_mid >= n_mid) {
    for (int64_t t = sp.lo; t < sp.hi; t++) idx[k++] = (int32_t)t;
  } else if (sp.k_mid > 0) {
    // The k_mid-th largest value (NaN as -inf) by nth_element over a copy of the values, then one
    // pass in position order: every value above it, and of the values equal to it the most recent ones.
    thread_local std::vector<float> vals;
    vals.resize(n_mid);
    for (int64_t i = 0; i < n_mid; i++) {
      const float v = score[sp.lo + i];
      vals[i] = std::isnan(v) ? -INFINITY : v;
    }
    std::nth_element(vals.begin(), vals.begin() + (sp.k_mid - 1), vals.end(), std::greater<float>());
    const float kth = vals[sp.k_mid - 1];
    int64_t n_above = 0, n_equal = 0;
    for (int64_t t = sp.lo; t < sp.hi; t++) {
      const float v = std::isnan(score[t]) ? -INFINITY : score[t];
      n_above += v > kth;
      n_equal += v == kth;
    }
    const int64_t skip_equal = n_equal - (sp.k_mid - n_above);  // the oldest ties are left out
    int64_t seen_equal = 0;
    for (int64_t t = sp.lo; t < sp.hi; t++) {
      const float v = std::isnan(score[t]) ? -INFINITY : score[t];
      if (v > kth || (v == kth && seen_equal++ >= skip_equal)) idx[k++] = (int32_t)t;
    }
  }
  for (int64_t t = sp.hi; t < n; t++) idx[k++] = (int32_t)t;
  return k;
}

void score_select_cpu(const score_select_params& p) {
  score_select_validate(p);
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(nt, p.n_lists)))
  for (int r = 0; r < p.n_lists; r++)
    p.count[r] = (int32_t)select_topk_float(p.score + (int64_t)r * p.score_stride, p.n_tok, p.budget,
                                            p.idx + (int64_t)r * p.idx_stride);
}

}  // namespace hashattn
