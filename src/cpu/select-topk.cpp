// Selection over float scores (oracle top-k, Quest pages, Double Sparsity), hash.h:
// sinks [0, S'), window [n - W', n) and the top k_mid middle positions by score, ties to the most
// recent positions (order: score desc, position desc; NaN scores rank lowest). O(n) expected
// (nth_element on positions), then the chosen k_mid positions sorted ascending.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "hashattn/error.h"
#include "hashattn/hash.h"

namespace hashattn {

int64_t select_topk_float(const float* score, int64_t n, const budget_params& b, int32_t* idx) {
  const select_split sp = select_split_for(b, n);
  int64_t k = 0;
  for (int64_t t = 0; t < sp.lo; t++) idx[k++] = (int32_t)t;
  const int64_t n_mid = sp.hi - sp.lo;
  if (sp.k_mid >= n_mid) {
    for (int64_t t = sp.lo; t < sp.hi; t++) idx[k++] = (int32_t)t;
  } else if (sp.k_mid > 0) {
    thread_local std::vector<int32_t> cand;
    cand.resize(n_mid);
    std::iota(cand.begin(), cand.end(), (int32_t)sp.lo);
    auto key = [&](int32_t t) {
      const float v = score[t];
      return std::isnan(v) ? -INFINITY : v;
    };
    auto before = [&](int32_t a, int32_t c) {
      const float x = key(a), y = key(c);
      if (x != y) return x > y;
      return a > c;
    };
    std::nth_element(cand.begin(), cand.begin() + (sp.k_mid - 1), cand.end(), before);
    std::sort(cand.begin(), cand.begin() + sp.k_mid);
    std::copy(cand.begin(), cand.begin() + sp.k_mid, idx + k);
    k += sp.k_mid;
  }
  for (int64_t t = sp.hi; t < n; t++) idx[k++] = (int32_t)t;
  return k;
}

}  // namespace hashattn
