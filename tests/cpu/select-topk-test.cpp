// select_topk_float (hash.h) against a sort-based reference: sinks, window, and the k_mid middle
// positions of highest score, ties to the most recent, NaN lowest, ascending. Random scores with many
// ties (few distinct levels), NaNs and infinities, over budgets from empty middles to everything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/hash.h"

namespace hashattn {
namespace {

std::vector<int32_t> reference(const std::vector<float>& s, const budget_params& b) {
  const int64_t n = (int64_t)s.size();
  const select_split sp = select_split_for(b, n);
  std::vector<int32_t> out;
  for (int64_t t = 0; t < sp.lo; t++) out.push_back((int32_t)t);
  std::vector<int32_t> mid;
  for (int64_t t = sp.lo; t < sp.hi; t++) mid.push_back((int32_t)t);
  auto key = [&](int32_t t) { return std::isnan(s[t]) ? -INFINITY : s[t]; };
  std::sort(mid.begin(), mid.end(), [&](int32_t a, int32_t c) { return key(a) != key(c) ? key(a) > key(c) : a > c; });
  mid.resize((size_t)std::min<int64_t>(sp.k_mid, (int64_t)mid.size()));
  std::sort(mid.begin(), mid.end());
  out.insert(out.end(), mid.begin(), mid.end());
  for (int64_t t = sp.hi; t < n; t++) out.push_back((int32_t)t);
  return out;
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
    if (rng() % 2) b.count = 1 + (int64_t)(rng() % (n + 4));
    else b.density = std::max(1e-3, (double)(rng() % 1000) / 1000.0);
    std::vector<int32_t> got((size_t)n + 1, -1);
    const int64_t k = select_topk_float(s.data(), n, b, got.data());
    got.resize((size_t)k);
    ASSERT_EQ(got, reference(s, b)) << "trial " << trial << " n " << n << " levels " << levels;
  }
}

}  // namespace
}  // namespace hashattn
