// Sampler properties: greedy is the argmax (lowest id on ties); seeded draws are reproducible;
// draw frequencies match softmax(logits / temp) after top-k and top-p truncation (checked within
// 5 standard deviations over 40,000 draws, fixed seeds); truncation keeps exactly the right set.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "hashattn/error.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

TEST(sampler, greedy_is_argmax_lowest_id_on_ties) {
  sampler s(sampler_params{});
  std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  EXPECT_EQ(s.sample(l.data(), (int64_t)l.size()), 1);
  for (uint64_t seed : {1u, 2u, 3u}) {
    HASHATTN_SEED(seed);
    std::mt19937_64 rng(seed);
    auto v = test::random_vec(rng, test::dist::normal, 1000);
    int64_t best = 0;
    for (int64_t i = 1; i < 1000; ++i)
      if (v[i] > v[best]) best = i;
    EXPECT_EQ(s.sample(v.data(), 1000), best);
  }
}

TEST(sampler, top_k_one_is_greedy) {
  sampler s(sampler_params{1.5f, 1, 1.0f, 7});
  std::vector<float> l = {0.1f, 0.3f, 0.29f, -2.f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(sampler, same_seed_same_draws) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 0.7f);
  sampler a(sampler_params{1.0f, 0, 1.0f, 123}), b(sampler_params{1.0f, 0, 1.0f, 123}),
      c(sampler_params{1.0f, 0, 1.0f, 124});
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 200; ++i) {
    da.push_back(a.sample(l.data(), 50));
    db.push_back(b.sample(l.data(), 50));
    dc.push_back(c.sample(l.data(), 50));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

// Draws n times and checks each id's frequency against the expected probabilities.
void check_frequencies(const sampler_params& p, const std::vector<float>& l, const std::vector<double>& want) {
  sampler s(p);
  const int n = 40000;
  std::vector<int> count(l.size(), 0);
  for (int i = 0; i < n; ++i) count[s.sample(l.data(), (int64_t)l.size())]++;
  for (size_t j = 0; j < l.size(); ++j) {
    const double pj = want[j];
    const double sd = std::sqrt(n * pj * (1 - pj));
    if (pj == 0) {
      EXPECT_EQ(count[j], 0) << "id " << j << " must never be drawn";
    } else {
      EXPECT_NEAR(count[j], n * pj, 5 * sd + 1) << "id " << j;
    }
  }
}

std::vector<double> softmax(const std::vector<float>& l, double temp, const std::vector<bool>& keep) {
  std::vector<double> p(l.size(), 0.0);
  double mx = -INFINITY, sum = 0;
  for (size_t j = 0; j < l.size(); ++j)
    if (keep[j]) mx = std::max(mx, (double)l[j]);
  for (size_t j = 0; j < l.size(); ++j)
    if (keep[j]) sum += p[j] = std::exp((l[j] - mx) / temp);
  for (auto& v : p) v /= sum;
  return p;
}

TEST(sampler, temperature_frequencies) {
  const std::vector<float> l = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, -INFINITY};
  const std::vector<bool> all = {true, true, true, true, true, false};
  for (float temp : {0.5f, 1.0f, 2.0f}) {
    SCOPED_TRACE("temp=" + std::to_string(temp));
    HASHATTN_SEED(99);
    check_frequencies(sampler_params{temp, 0, 1.0f, 99}, l, softmax(l, temp, all));
  }
}

TEST(sampler, top_k_keeps_the_k_largest) {
  const std::vector<float> l = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f};
  // k = 3 keeps ids 2 (2.0), 5 (1.5), 0 (1.0).
  HASHATTN_SEED(5);
  check_frequencies(sampler_params{1.0f, 3, 1.0f, 5}, l, softmax(l, 1.0, {true, false, true, false, false, true}));
}

TEST(sampler, top_p_keeps_the_smallest_prefix_reaching_p) {
  // Probabilities at temp 1 with these logits: ids 0..3 = 0.5, 0.3, 0.15, 0.05 (by construction).
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  sampler s(sampler_params{1.0f, 0, 0.8f, 3});
  s.sample(l.data(), 4);
  // 0.5 + 0.3 reaches 0.8 (up to rounding; 0.5 alone does not): {0, 1} or {0, 1, 2}.
  const auto& c = s.last_candidates();
  ASSERT_GE(c.size(), 2u);
  ASSERT_LE(c.size(), 3u);
  EXPECT_EQ(c[0].first, 0);
  EXPECT_EQ(c[1].first, 1);
  double sum = 0;
  for (auto& e : c) sum += e.second;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  HASHATTN_SEED(11);
  check_frequencies(sampler_params{1.0f, 0, 0.7f, 11}, l, {0.5 / 0.8, 0.3 / 0.8, 0, 0});
}

TEST(sampler, rejects_bad_parameters) {
  EXPECT_THROW(sampler(sampler_params{1.0f, -1, 1.0f, 0}), error);
  EXPECT_THROW(sampler(sampler_params{1.0f, 0, 0.0f, 0}), error);
  EXPECT_THROW(sampler(sampler_params{1.0f, 0, 1.5f, 0}), error);
  EXPECT_THROW(sampler(sampler_params{NAN, 0, 1.0f, 0}), error);
  sampler s(sampler_params{1.0f, 0, 1.0f, 0});
  std::vector<float> l(3, -INFINITY);
  EXPECT_THROW(s.sample(l.data(), 3), error);
  EXPECT_THROW(s.sample(l.data(), 0), error);
}

}  // namespace
}  // namespace hashattn
