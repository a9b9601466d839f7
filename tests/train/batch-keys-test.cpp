// The keys of one training step (train_detail::batch_keys) on a random capture: sampled mode holds each
// selected query's positives (all of them up to batch_pos, else at least batch_pos of them), its hard-negative draws
// and batch_neg draws (at most) from the union of the queries' middles; all_negatives holds every key of
// that union, nothing outside it but the positives, and draws no random negatives (the same RNG state
// after the call as with batch_neg = 0). The trainer learns with all_negatives. Seeds fixed and printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "hashattn/train.h"
#include "train/capture-fixture.h"
#include "train/train-internal.h"
#include "train/trainer-core.h"

namespace hashattn {
namespace {

TEST(BatchKeys, SampledAndAllNegatives) {
  const uint64_t seed = 777;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const layer_capture c = test::random_capture(seed, 2, 1, 8, 500, 40);
  train_params p;
  p.labels.sinks = 8, p.labels.window = 16, p.labels.k_fixed = 12;
  p.batch_pos = 5, p.batch_neg = 64;
  const auto labels = make_labels(c, p.labels, p.gqa, 0);
  std::vector<int32_t> qsel;
  for (int32_t i = 0; i < (int32_t)c.n_q(); i += 3) qsel.push_back(i);
  int64_t lo = c.n_tok, hi = 0;
  for (int32_t qi : qsel) {
    const middle_range r = label_middle(p.labels, c.qpos[qi]);
    lo = std::min(lo, r.lo), hi = std::max(hi, r.hi);
  }
  ASSERT_LT(lo, hi);
  std::vector<int32_t> hard_a = {(int32_t)lo + 1, (int32_t)lo + 2}, hard_b = {(int32_t)hi - 1};
  std::vector<const std::vector<int32_t>*> hard;
  for (size_t i = 0; i < qsel.size(); i++) hard.push_back(i % 2 ? &hard_b : &hard_a);
  p.hard_neg = 1;
  for (bool all : {false, true}) {
    SCOPED_TRACE(all ? "all negatives" : "sampled negatives");
    p.all_negatives = all;
    std::mt19937_64 rng(seed + 1), rng_ref(seed + 1);
    std::vector<int32_t> keys;
    train_detail::batch_keys(c, p, qsel, labels, hard, rng, keys);
    ASSERT_TRUE(std::is_sorted(keys.begin(), keys.end()));
    ASSERT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end()) << "duplicate key";
    const std::set<int32_t> ks(keys.begin(), keys.end());
    size_t n_pos = 0;
    std::set<int32_t> pos;
    for (int32_t qi : qsel) {
      size_t have = 0;
      for (int32_t t : labels[qi]) have += ks.count(t);
      // sampled: at least batch_pos of its own (other queries' positives and random draws may add more)
      if (all) {
        EXPECT_EQ(have, labels[qi].size()) << "query " << qi;
      } else {
        EXPECT_GE(have, std::min<size_t>(labels[qi].size(), p.batch_pos)) << "query " << qi;
      }
      pos.insert(labels[qi].begin(), labels[qi].end());
      n_pos += labels[qi].size();
    }
    ASSERT_GT(n_pos, 0u);
    for (int32_t t : keys) EXPECT_TRUE((t >= lo && t < hi) || pos.count(t)) << "key " << t << " outside the middles";
    if (all) {
      for (int64_t t = lo; t < hi; t++) EXPECT_TRUE(ks.count((int32_t)t)) << "middle key " << t << " missing";
      // no random draws: the generator advanced exactly as with batch_neg = 0
      train_params p0 = p;
      p0.all_negatives = false, p0.batch_neg = 0;
      std::vector<int32_t> k0;
      train_detail::batch_keys(c, p0, qsel, labels, hard, rng_ref, k0);
      EXPECT_EQ(rng(), rng_ref());
    } else {
      size_t in_mid = 0;
      for (int32_t t : keys) in_mid += t >= lo && t < hi;
      EXPECT_LE(in_mid, qsel.size() * (size_t)(p.batch_pos + p.hard_neg) + p.batch_neg);
      EXPECT_LT(keys.size(), (size_t)(hi - lo)) << "sampled mode took every middle key";
      EXPECT_TRUE(ks.count(hard_b[0])) << "hard negative of the odd queries missing";
    }
  }
}

TEST(BatchKeys, TrainerLearnsWithAllNegatives) {
  const uint64_t seed = 4343;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int H = 2, Hk = 1, d = 16;
  const layer_capture c = test::random_capture(seed, H, Hk, d, 400, 64);
  train_params p;
  p.labels.sinks = 8, p.labels.window = 8, p.labels.k_fixed = 16;
  p.steps_per_window = 60, p.batch_queries = 16, p.all_negatives = true;
  p.n_threads = 1, p.ctx = 400, p.seed = seed;
  for (train_loss loss : {train_loss::bce, train_loss::listwise}) {
    p.loss = loss;
    hash_trainer t(1, H, Hk, d, p);
    const double before = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).top_overlap;
    EXPECT_TRUE(std::isfinite(t.train_layer(0, c, 0)));
    t.train_layer(0, c, 1);
    const double after = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).top_overlap;
    EXPECT_GT(after, before + 0.1) << "loss " << (loss == train_loss::bce ? "bce" : "listwise") << " before "
                                   << before << " after " << after;
  }
}

}  // namespace
}  // namespace hashattn
