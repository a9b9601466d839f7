// Attention-mass recall and top-T-in-budget overlap on hand-computed cases.
#include <gtest/gtest.h>

#include <vector>

#include "hashattn/error.h"
#include "hashattn/metrics.h"

namespace hashattn {
namespace {

attention_recall of(const std::vector<double>& p, const std::vector<int32_t>& s, int top) {
  attention_recall_params a;
  a.prob = p.data();
  a.n = (int64_t)p.size();
  a.attended = s.data();
  a.n_attended = (int64_t)s.size();
  a.top = top;
  return attention_recall_of(a);
}

TEST(AttentionMetrics, MassIsTheAttendedWeightAndOverlapTheShareOfTopKeys) {
  // Weights of 6 keys; the top 2 are positions 4 (0.4) and 1 (0.3).
  const std::vector<double> p = {0.05, 0.3, 0.1, 0.05, 0.4, 0.1};
  // {0, 1, 2}: mass 0.05 + 0.3 + 0.1 = 0.45; holds 1 of the top 2.
  auto r = of(p, {0, 1, 2}, 2);
  EXPECT_NEAR(r.mass, 0.45, 1e-15);
  EXPECT_DOUBLE_EQ(r.top_overlap, 0.5);
  // {4, 1}: both top keys, mass 0.7.
  r = of(p, {4, 1}, 2);
  EXPECT_NEAR(r.mass, 0.7, 1e-15);
  EXPECT_DOUBLE_EQ(r.top_overlap, 1.0);
  // Top 3 = {4, 1} and a tie at 0.1 (positions 2 and 5): either one completes the top 3.
  EXPECT_DOUBLE_EQ(of(p, {4, 1, 5}, 3).top_overlap, 1.0);
  EXPECT_DOUBLE_EQ(of(p, {4, 1, 2}, 3).top_overlap, 1.0);
  // {1, 2, 5}: key 1, and the two tied keys share the one slot left by keys 4 and 1: 2 of 3 (key 4,
  // the heaviest, is missing).
  EXPECT_DOUBLE_EQ(of(p, {1, 2, 5}, 3).top_overlap, 2.0 / 3.0);
  // {2, 5}: the tied keys only: 1 of 3.
  EXPECT_DOUBLE_EQ(of(p, {2, 5}, 3).top_overlap, 1.0 / 3.0);
  // {0, 3}: no top key, mass 0.1.
  r = of(p, {0, 3}, 2);
  EXPECT_NEAR(r.mass, 0.1, 1e-15);
  EXPECT_DOUBLE_EQ(r.top_overlap, 0.0);
  // Empty set: nothing recalled.
  r = of(p, {}, 2);
  EXPECT_DOUBLE_EQ(r.mass, 0.0);
  EXPECT_DOUBLE_EQ(r.top_overlap, 0.0);
}

TEST(AttentionMetrics, TopLargerThanTheContextUsesEveryKey) {
  const std::vector<double> p = {0.5, 0.25, 0.25};
  // T = 32 > n = 3: the share of all 3 keys.
  EXPECT_DOUBLE_EQ(of(p, {0, 2}, 32).top_overlap, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(of(p, {0, 1, 2}, 32).top_overlap, 1.0);
  EXPECT_DOUBLE_EQ(of(p, {0, 1, 2}, 32).mass, 1.0);
}

TEST(AttentionMetrics, TopThirtyTwoOfALongContext) {
  // 100 keys, weight of key t proportional to t + 1: the top 32 are 68 .. 99.
  std::vector<double> p(100);
  double z = 0;
  for (int t = 0; t < 100; t++) z += p[t] = t + 1;
  for (double& x : p) x /= z;
  std::vector<int32_t> s;
  for (int t = 60; t < 100; t += 2) s.push_back(t);  // 60, 62, .., 98: 20 keys, 16 of them >= 68
  const auto r = of(p, s, 32);
  EXPECT_DOUBLE_EQ(r.top_overlap, 16.0 / 32.0);
  double mass = 0;
  for (int t = 60; t < 100; t += 2) mass += (t + 1) / z;  // (61 + 63 + .. + 99) / 5050 = 1600 / 5050
  EXPECT_NEAR(r.mass, 1600.0 / 5050.0, 1e-12);
  EXPECT_NEAR(mass, 1600.0 / 5050.0, 1e-12);
}

TEST(AttentionMetrics, BadInputsAreErrors) {
  const std::vector<double> p = {0.5, 0.5};
  EXPECT_THROW(of(p, {2}, 2), error);     // outside [0, n)
  EXPECT_THROW(of(p, {-1}, 2), error);
  EXPECT_THROW(of(p, {1, 1}, 2), error);  // repeated
  EXPECT_THROW(of(p, {0}, 0), error);     // top < 1
  EXPECT_THROW(of({}, {}, 2), error);     // no keys
}

}  // namespace
}  // namespace hashattn
