// score_select_cpu / select_topk_float (cpu-kernels.h) against the float64 reference rule
// (ref::select_rule_ref: a full sort, its own budget arithmetic): sinks, window, and the k_mid middle
// positions of highest score, ties to the most recent, NaN lowest, ascending. Random scores with many
// ties (few distinct levels), NaNs and infinities, over budgets from below the floor to everything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "ref/reference.h"

namespace hashattn {
namespace {

std::vector<int32_t> reference(const std::vector<float>& s, const budget_params& b) {
  std::vector<double> d(s.size());
  for (size_t i = 0; i < s.size(); i++) d[i] = std::isnan(s[i]) ? -INFINITY : (double)s[i];  // NaN lowest
  return ref::select_rule_ref(d.data(), (int64_t)d.size(), b);
}

TEST(SelectTopkFloat, MatchesSortReferenceWithTiesAndNaN) {
  const uint64_t seed = 9090;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 1 + (int64_t)(rng() % 700);
    const int levels = 1 + (int)(rng() % 12);  // few levels: many ties
    std::vector<float> s((size_t)n);
    for (auto& v : s) {
      const int r = (int)(rng() % 100);
      v = r < 3 ? NAN : r < 5 ? INFINITY : r < 7 ? -INFINITY : (float)(rng() % levels) - levels / 2.f;
    }
    budget_params b;
    b.sinks = (int64_t)(rng() % 8);
    b.window = (int64_t)(rng() % 8);
    if (rng() % 2) b.count = b.sinks + b.window + std::max<int64_t>(1, (int64_t)(rng() % (n + 4)));
    else b.density = std::max(1e-3, (double)(rng() % 1000) / 1000.0);
    std::vector<int32_t> got((size_t)n + 1, -1);
    const int64_t k = select_topk_float(s.data(), n, b, got.data());
    got.resize((size_t)k);
    ASSERT_EQ(got, reference(s, b)) << "trial " << trial << " n " << n << " levels " << levels;
  }
}

// The batched op: several lists with a row stride, every list against the reference.
TEST(SelectTopkFloat, BatchedListsMatchReference) {
  const uint64_t seed = 9191;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t n = 1 + (int64_t)(rng() % 500), stride = n + (int64_t)(rng() % 5);
    const int lists = 1 + (int)(rng() % 6);
    std::vector<float> s((size_t)lists * stride);
    for (auto& v : s) v = (float)(rng() % 7);
    score_select_params p;
    p.budget.sinks = (int64_t)(rng() % 6);
    p.budget.window = 1 + (int64_t)(rng() % 6);
    p.budget.density = 1.0 / (double)(1 + rng() % 16);
    const int64_t cap = std::max<int64_t>(budget_max_tokens(p.budget.density, 0, p.budget.sinks, p.budget.window, n), 1);
    std::vector<int32_t> idx((size_t)lists * cap, -1), cnt(lists, -1);
    p.score = s.data();
    p.n_tok = n;
    p.n_lists = lists;
    p.score_stride = stride;
    p.idx = idx.data();
    p.count = cnt.data();
    p.idx_stride = cap;
    p.n_threads = 2;
    score_select_cpu(p);
    for (int r = 0; r < lists; r++) {
      std::vector<float> row(s.begin() + (int64_t)r * stride, s.begin() + (int64_t)r * stride + n);
      std::vector<int32_t> got(idx.begin() + (int64_t)r * cap, idx.begin() + (int64_t)r * cap + cnt[r]);
      ASSERT_EQ(got, reference(row, p.budget)) << "trial " << trial << " list " << r;
    }
  }
}

}  // namespace
}  // namespace hashattn
