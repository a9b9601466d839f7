// Labels and recall evaluation on synthetic captures: label_middle arithmetic; make_labels against a
// brute-force float64 ranking (head and group modes, logit and value-norm ranks); eval_recall with
// planted codes whose bit scores reproduce (or reverse) the oracle order; SimHash sanity (more bits,
// more recall). Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hashattn/train.h"

namespace hashattn {
namespace {

#define SEED_TRACE(seed) SCOPED_TRACE(::testing::Message() << "seed " << (seed))

layer_capture random_capture(uint64_t seed, int n_head, int n_kv, int d, int64_t n_tok, int n_q) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  layer_capture c;
  c.n_head = n_head;
  c.n_head_kv = n_kv;
  c.head_dim = d;
  c.n_tok = n_tok;
  c.k.resize((size_t)n_tok * n_kv * d);
  for (auto& x : c.k) x = nd(rng) * 1.5f;
  c.vnorm.resize((size_t)n_tok * n_kv);
  std::uniform_real_distribution<float> ud(0.1f, 3.f);
  for (auto& x : c.vnorm) x = ud(rng);
  c.qpos = sample_positions(seed + 1, n_tok / 2, n_tok, n_q);
  c.q.resize((size_t)c.qpos.size() * n_head * d);
  for (auto& x : c.q) x = nd(rng) * 1.5f;
  return c;
}

double dot_scaled(const layer_capture& c, int64_t i, int h, int64_t t) {
  const int G = c.n_head / c.n_head_kv, d = c.head_dim;
  double s = 0;
  for (int j = 0; j < d; j++)
    s += (double)c.q[((size_t)i * c.n_head + h) * d + j] * c.k[((size_t)t * c.n_head_kv + h / G) * d + j];
  return s / std::sqrt((double)d);
}

TEST(Labels, MiddleRange) {
  label_params p;
  p.sinks = 4;
  p.window = 8;
  p.density = 0.25;
  p.k_fixed = 0;  // k from the density
  middle_range r = label_middle(p, 99);  // n = 100: middle [4, 92), 88 tokens, k = 22
  EXPECT_EQ(r.lo, 4);
  EXPECT_EQ(r.hi, 92);
  EXPECT_EQ(r.k, 22);
  r = label_middle(p, 5);  // n = 6: sinks take 4, window covers the rest
  EXPECT_EQ(r.lo, 4);
  EXPECT_EQ(r.hi, 4);
  EXPECT_EQ(r.k, 0);
  p.k_fixed = 32;
  r = label_middle(p, 99);
  EXPECT_EQ(r.k, 32);
  r = label_middle(p, 30);  // middle [4, 23): 19 < 32
  EXPECT_EQ(r.k, 19);
}

TEST(Labels, MatchBruteForce) {
  for (int mode_i = 0; mode_i < 2; mode_i++)
    for (int rank_i = 0; rank_i < 2; rank_i++) {
      const uint64_t seed = 50 + mode_i * 2 + rank_i;
      SEED_TRACE(seed);
      const layer_capture c = random_capture(seed, 6, 2, 16, 300, 12);
      label_params p;
      p.sinks = 5;
      p.window = 7;
      p.density = 0.1;
      p.k_fixed = 0;  // k from the density
      p.rank = rank_i ? label_rank::value_norm : label_rank::logit;
      const gqa_mode mode = mode_i ? gqa_mode::per_group : gqa_mode::per_head;
      const int n_units = mode_i ? 2 : 6;
      for (int u = 0; u < n_units; u++) {
        const auto labels = make_labels(c, p, mode, u);
        ASSERT_EQ((int64_t)labels.size(), c.n_q());
        for (int64_t i = 0; i < c.n_q(); i++) {
          const middle_range r = label_middle(p, c.qpos[i]);
          // brute force value per middle token
          std::vector<std::pair<double, int>> v;
          const int64_t n = c.qpos[i] + 1;
          std::vector<double> val(n, 0.0);
          if (!mode_i) {
            for (int64_t t = 0; t < n; t++) {
              const double a = std::exp(dot_scaled(c, i, u, t));
              val[t] = rank_i ? a * c.vnorm[t * 2 + u / 3] : a;
            }
          } else {
            for (int g = 0; g < 3; g++) {
              double z = 0;
              std::vector<double> e(n);
              for (int64_t t = 0; t < n; t++) z += (e[t] = std::exp(dot_scaled(c, i, u * 3 + g, t)));
              for (int64_t t = 0; t < n; t++) val[t] += e[t] / z;
            }
            if (rank_i)
              for (int64_t t = 0; t < n; t++) val[t] *= c.vnorm[t * 2 + u];
          }
          for (int64_t t = r.lo; t < r.hi; t++) v.push_back({val[t], (int)t});
          std::sort(v.begin(), v.end(), [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second > b.second; });
          std::vector<int32_t> want;
          for (int64_t j = 0; j < r.k; j++) want.push_back(v[j].second);
          std::sort(want.begin(), want.end());
          // The k-th and (k+1)-th values must be apart for the comparison to be exact (continuous inputs).
          if (r.k < (int64_t)v.size()) {
            ASSERT_GT(v[r.k - 1].first - v[r.k].first, 1e-9 * v[r.k - 1].first);
          }
          ASSERT_EQ(labels[i], want) << "unit " << u << " query " << i;
        }
      }
    }
}

// Codes whose bit scores reproduce the oracle order exactly: the oracle's attended set (same overlap and
// mass); reversed: less of both.
TEST(Recall, PlantedCodes) {
  const uint64_t seed = 77;
  SEED_TRACE(seed);
  for (int mode_i = 0; mode_i < 2; mode_i++) {
    layer_capture c = random_capture(seed, 3, 1, 16, 200, 1);
    c.qpos = {199};
    label_params p;
    p.sinks = 4;
    p.window = 4;
    p.density = 0.125;
    p.k_fixed = 0;  // k from the density
    const gqa_mode mode = mode_i ? gqa_mode::per_group : gqa_mode::per_head;
    const int h = 1;  // the measured list in head mode
    // oracle value per middle token (head mode: head h's logit; group mode: the summed weights)
    const int64_t n = 200;
    std::vector<double> val(n, 0.0);
    for (int g = 0; g < 3; g++) {
      if (!mode_i && g != h) continue;
      double z = 0;
      std::vector<double> e(n);
      for (int64_t t = 0; t < n; t++) z += (e[t] = std::exp(dot_scaled(c, 0, g, t)));
      for (int64_t t = 0; t < n; t++) val[t] += e[t] / z;
    }
    std::vector<int> order;
    for (int t = 4; t < 196; t++) order.push_back(t);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return val[a] < val[b]; });  // ascending
    for (int reverse = 0; reverse < 2; reverse++) {
      eval_codes codes;
      codes.bits = 256;
      codes.key_per_group = true;
      const int W = 4;
      codes.q.assign((size_t)3 * W, 0);  // all query codes zero: score = bits - popcount(k)
      codes.k.assign((size_t)n * W, ~uint64_t(0));
      for (size_t rnk = 0; rnk < order.size(); rnk++) {
        // rank 0 = lowest value; popcount = (reverse ? rnk : 191 - rnk): higher value -> fewer ones -> higher score
        const int ones = reverse ? (int)rnk : 191 - (int)rnk;
        uint64_t* k = codes.k.data() + (size_t)order[rnk] * W;
        for (int w = 0; w < W; w++) k[w] = 0;
        for (int b = 0; b < ones; b++) k[b / 64] |= uint64_t(1) << (b % 64);
      }
      const recall_stats st = eval_recall(c, codes, p, mode, {mode_i ? 0 : h});
      EXPECT_EQ(st.n, mode_i ? 3 : 1);  // (query, head) pairs: the group has 3 heads
      if (!reverse) {  // the codes rank as the oracle: the same attended set
        EXPECT_DOUBLE_EQ(st.top_overlap, st.oracle_overlap);
        EXPECT_NEAR(st.mass_recall, st.oracle_mass, 1e-12);
      } else {  // the worst middle keys: less of the top 32 and of the mass
        EXPECT_LT(st.top_overlap, st.oracle_overlap);
        EXPECT_LT(st.mass_recall, st.oracle_mass);
      }
      EXPECT_GT(st.oracle_overlap, 0.0);
      EXPECT_LE(st.oracle_overlap, 1.0);
      EXPECT_GT(st.oracle_mass, 0.125);  // top 1/8 carries more than its share
      EXPECT_LE(st.oracle_mass, 1.0 + 1e-12);
    }
  }
}

TEST(Recall, SimhashMoreBitsMoreRecall) {
  const uint64_t seed = 91;
  SEED_TRACE(seed);
  // Queries correlated with some keys so that the top-k is meaningful.
  layer_capture c = random_capture(seed, 4, 2, 32, 1024, 48);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0, 0.3f);
  for (int64_t i = 0; i < c.n_q(); i++)
    for (int h = 0; h < 4; h++) {
      const int64_t src = 8 + (int64_t)(rng() % (c.qpos[i] - 16));
      for (int j = 0; j < 32; j++)
        c.q[((size_t)i * 4 + h) * 32 + j] = 2.f * c.k[((size_t)src * 2 + h / 2) * 32 + j] + nd(rng);
    }
  label_params p;
  p.sinks = 8;
  p.window = 8;
  p.density = 1.0 / 16;
  p.k_fixed = 0;  // k from the density
  for (int mode_i = 0; mode_i < 2; mode_i++) {
    const gqa_mode mode = mode_i ? gqa_mode::per_group : gqa_mode::per_head;
    const double r16 = eval_recall(c, codes_simhash(c, 16, 5), p, mode).top_overlap;
    const double r1024 = eval_recall(c, codes_simhash(c, 1024, 5), p, mode).top_overlap;
    EXPECT_GT(r1024, r16 + 0.1) << "mode " << mode_i;
    EXPECT_GT(r16, 1.0 / 16) << "SimHash-16 should beat random selection";
  }
}

}  // namespace
}  // namespace hashattn
