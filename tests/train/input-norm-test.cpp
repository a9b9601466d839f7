// Input standardization of the trainer (train_params.input_norm), checked by an invariance it must have:
// keys moved to a*k + b and queries to q/a (per dimension) keep every logit's ranking among keys (q.k only
// gains q.b/a, constant per query), so the labels are the same, and the standardized inputs are the same.
// Trained with the same seed on both captures, the saved (folded) encoders must then give the same codes
// on the raw inputs of their own capture. Without standardization the codes differ: the test can fail.
#include <gtest/gtest.h>

#include <random>

#include "common/test-util.h"
#include "hashattn/train.h"
#include "train/capture-fixture.h"
#include "train/trainer-core.h"

namespace hashattn {
namespace {

// Fraction of differing code bits between two code sets of one layer.
double bit_diff(const eval_codes& a, const eval_codes& b) {
  EXPECT_EQ(a.q.size(), b.q.size());
  EXPECT_EQ(a.k.size(), b.k.size());
  int64_t diff = 0, total = 0;
  for (size_t i = 0; i < a.q.size(); i++) diff += __builtin_popcountll(a.q[i] ^ b.q[i]), total += a.bits;
  for (size_t i = 0; i < a.k.size(); i++) diff += __builtin_popcountll(a.k[i] ^ b.k[i]), total += a.bits;
  return (double)diff / (double)total;
}

TEST(TrainInputNorm, FoldedEncodersAreInvariantToKeyShiftAndScale) {
  const uint64_t seed = 31337;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int H = 4, Hk = 2, d = 16, G = H / Hk;
  const layer_capture c = test::random_capture(seed, H, Hk, d, 600, 100, 2.f);
  // Per-dimension scale a in [0.5, 2] and shift b (large: a common key direction, as real models have).
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> ua(0.5f, 2.f), ub(-20.f, 20.f);
  std::vector<float> a((size_t)Hk * d), b((size_t)Hk * d);
  for (auto& x : a) x = ua(rng);
  for (auto& x : b) x = ub(rng);
  layer_capture c2 = c;
  for (int64_t t = 0; t < c.n_tok; t++)
    for (int hk = 0; hk < Hk; hk++)
      for (int j = 0; j < d; j++) {
        float& k = c2.k[((size_t)t * Hk + hk) * d + j];
        k = a[(size_t)hk * d + j] * k + b[(size_t)hk * d + j];
      }
  for (int64_t i = 0; i < c.n_q(); i++)
    for (int h = 0; h < H; h++)
      for (int j = 0; j < d; j++) c2.q[((size_t)i * H + h) * d + j] /= a[(size_t)(h / G) * d + j];

  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    SCOPED_TRACE(mode == gqa_mode::per_head ? "head" : "group");
    // Same labels on both captures (the premise of the test).
    train_params p;
    p.gqa = mode;
    p.labels.sinks = 8, p.labels.window = 8, p.labels.k_fixed = 12;
    p.steps_per_window = 30, p.batch_queries = 16, p.batch_neg = 64;
    p.n_threads = 1;
    p.ctx = 600;
    p.seed = seed;
    for (int u = 0; u < (mode == gqa_mode::per_head ? H : Hk); u++)
      ASSERT_EQ(make_labels(c, p.labels, mode, u), make_labels(c2, p.labels, mode, u));
    double diff_on = 0, diff_off = 0;
    for (bool norm : {true, false}) {
      p.input_norm = norm;
      hash_trainer t1(1, H, Hk, d, p), t2(1, H, Hk, d, p);
      t1.train_layer(0, c, 0);
      t2.train_layer(0, c2, 0);
      const double df = bit_diff(codes_learned(t1.weights(), 0, c, 1), codes_learned(t2.weights(), 0, c2, 1));
      (norm ? diff_on : diff_off) = df;
    }
    // fp32 rounding flips the odd bit near zero; a missing or wrong fold flips about half.
    EXPECT_LT(diff_on, 0.005);
    EXPECT_GT(diff_off, 0.05);
  }
}

}  // namespace
}  // namespace hashattn
