// Soft targets (train_params.targets = attention): label_attention_weights against a brute-force float64
// softmax over each query's labels (head and group modes); the trainer learns with them; soft targets with
// the BCE loss are rejected. Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hashattn/error.h"
#include "hashattn/train.h"
#include "train/train-internal.h"
#include "train/capture-fixture.h"
#include "train/trainer-core.h"

namespace hashattn {
namespace {

TEST(SoftTargets, WeightsAreTheLabelsAttention) {
  const uint64_t seed = 99;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int H = 4, Hk = 2, d = 8, G = H / Hk;
  const layer_capture c = test::random_capture(seed, H, Hk, d, 200, 10, 2.f);
  label_params lp;
  lp.sinks = 4, lp.window = 4, lp.k_fixed = 12;
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    const int nh = mode == gqa_mode::per_head ? 1 : G;
    for (int u = 0; u < (mode == gqa_mode::per_head ? H : Hk); u++) {
      const auto labels = make_labels(c, lp, mode, u);
      const auto w = train_detail::label_attention_weights(c, mode, u, labels);
      ASSERT_EQ(w.size(), labels.size());
      for (size_t i = 0; i < labels.size(); i++) {
        const auto& L = labels[i];
        ASSERT_EQ(w[i].size(), L.size());
        std::vector<double> want(L.size(), 0.0);
        for (int g = 0; g < nh; g++) {
          const int h = mode == gqa_mode::per_head ? u : u * G + g;
          std::vector<double> e(L.size());
          double z = 0;
          for (size_t j = 0; j < L.size(); j++) {
            double s = 0;
            for (int x = 0; x < d; x++)
              s += (double)c.q[(i * H + h) * d + x] * c.k[((size_t)L[j] * Hk + h / G) * d + x];
            z += e[j] = std::exp(s / std::sqrt((double)d));
          }
          for (size_t j = 0; j < L.size(); j++) want[j] += e[j] / z / nh * (double)L.size();
        }
        for (size_t j = 0; j < L.size(); j++) EXPECT_NEAR(w[i][j], want[j], 1e-4 * std::max(1.0, want[j]));
      }
    }
  }
}

TEST(SoftTargets, TrainerLearnsAndRejectsBce) {
  const uint64_t seed = 777;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int H = 2, Hk = 1, d = 16;
  const layer_capture c = test::random_capture(seed, H, Hk, d, 400, 64, 2.f);
  train_params p;
  p.labels.sinks = 8, p.labels.window = 8, p.labels.k_fixed = 16;
  p.steps_per_window = 60, p.batch_queries = 16, p.batch_neg = 32;
  p.targets = train_targets::attention;
  p.n_threads = 1, p.ctx = 400, p.seed = seed;
  hash_trainer t(1, H, Hk, d, p);
  const double before = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).mass_recall;
  EXPECT_TRUE(std::isfinite(t.train_layer(0, c, 0)));
  t.train_layer(0, c, 1);
  const double after = eval_recall(c, codes_learned(t.weights(), 0, c, 1), p.labels, p.gqa).mass_recall;
  EXPECT_GT(after, before + 0.05) << "before " << before << " after " << after;
  p.loss = train_loss::bce;
  EXPECT_THROW(hash_trainer(1, H, Hk, d, p), error);
}

}  // namespace
}  // namespace hashattn
