// Hard negatives (hard_negatives) on a synthetic capture with planted 64-bit codes (every query code zero,
// key t with a seeded random number of set bits): the pool equals a brute-force ranking of the non-label
// middle keys by score 64 - popcount (ties to the most recent), in head and group modes; bad arguments
// throw. Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hashattn/error.h"
#include "hashattn/train.h"
#include "train/capture-fixture.h"
#include "train/trainer-core.h"

namespace hashattn {
namespace {

TEST(HardNegatives, MatchBruteForce) {
  const uint64_t seed = 31;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int H = 4, Hk = 2, d = 8;
  const int64_t n = 300;
  const layer_capture c = test::random_capture(seed, H, Hk, d, n, 12);
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    eval_codes codes;
    codes.bits = 64;
    codes.key_per_group = mode == gqa_mode::per_group;
    const int nke = codes.key_per_group ? Hk : H;
    codes.q.assign((size_t)c.n_q() * H, 0);
    codes.k.resize((size_t)n * nke);
    std::mt19937_64 rng(seed + 2);
    std::vector<int> pc(codes.k.size());
    for (size_t j = 0; j < codes.k.size(); j++) {
      pc[j] = (int)(rng() % 65);
      codes.k[j] = pc[j] == 64 ? ~0ull : ((1ull << pc[j]) - 1);
    }
    hard_negative_params p;
    p.labels.sinks = 4;
    p.labels.window = 8;
    p.labels.density = 0.1;
    p.gqa = mode;
    p.pool = 7;
    const int G = H / Hk;
    for (int u = 0; u < (mode == gqa_mode::per_head ? H : Hk); u++) {
      const auto labels = make_labels(c, p.labels, mode, u);
      const auto hard = hard_negatives(c, codes, labels, p, u);
      ASSERT_EQ((int64_t)hard.size(), c.n_q());
      for (int64_t i = 0; i < c.n_q(); i++) {
        const middle_range r = label_middle(p.labels, c.qpos[i]);
        std::vector<std::pair<int, int32_t>> cand;  // (score, position)
        for (int64_t t = r.lo; t < r.hi; t++) {
          if (std::binary_search(labels[i].begin(), labels[i].end(), (int32_t)t)) continue;
          int s = 0;
          for (int g = 0; g < (mode == gqa_mode::per_head ? 1 : G); g++) {
            const int h = mode == gqa_mode::per_head ? u : u * G + g;
            s += 64 - pc[(size_t)t * nke + (codes.key_per_group ? h / G : h)];
          }
          cand.push_back({s, (int32_t)t});
        }
        std::sort(cand.begin(), cand.end(), [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second > b.second; });
        std::vector<int32_t> want;
        for (size_t j = 0; j < std::min<size_t>(p.pool, cand.size()); j++) want.push_back(cand[j].second);
        std::sort(want.begin(), want.end());
        EXPECT_EQ(hard[i], want) << "unit " << u << " query " << i;
      }
    }
  }
}

TEST(HardNegatives, BadArguments) {
  const layer_capture c = test::random_capture(5, 2, 1, 4, 100, 4);
  eval_codes codes;
  codes.bits = 64;
  codes.q.assign((size_t)c.n_q() * 2, 0);
  codes.k.assign((size_t)100 * 2, 0);
  hard_negative_params p;
  p.labels.sinks = p.labels.window = 4;
  const auto labels = make_labels(c, p.labels, gqa_mode::per_head, 0);
  EXPECT_THROW(hard_negatives(c, codes, labels, p, 2), error);
  p.pool = 0;
  EXPECT_THROW(hard_negatives(c, codes, labels, p, 0), error);
}

// The trainer's hard-negative path: with hard_neg > 0 the trained codes' top-k overlap on the capture rises
// well above the untrained codes'; bad values of hard_neg / hard_pool are rejected.
TEST(HardNegatives, TrainerUsesThemAndLearns) {
  const uint64_t seed = 4242;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int H = 2, Hk = 1, d = 16;
  const layer_capture c = test::random_capture(seed, H, Hk, d, 400, 64);
  train_params p;
  p.labels.sinks = 8, p.labels.window = 8, p.labels.k_fixed = 16;
  p.steps_per_window = 60, p.batch_queries = 16, p.batch_neg = 32;
  p.hard_neg = 4, p.hard_pool = 16;
  p.n_threads = 1, p.ctx = 400, p.seed = seed;
  hash_trainer t(1, H, Hk, d, p);
  const double before = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).top_overlap;
  EXPECT_TRUE(std::isfinite(t.train_layer(0, c, 0)));
  t.train_layer(0, c, 1);
  const double after = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).top_overlap;
  EXPECT_GT(after, before + 0.1) << "before " << before << " after " << after;
  p.hard_neg = -1;
  EXPECT_THROW(hash_trainer(1, H, Hk, d, p), error);
  p.hard_neg = 2, p.hard_pool = 0;
  EXPECT_THROW(hash_trainer(1, H, Hk, d, p), error);
}

}  // namespace
}  // namespace hashattn
