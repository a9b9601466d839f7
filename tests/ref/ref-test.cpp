// Sanity checks of the float64 references against closed forms (the oracle must itself be right):
// attention with equal keys = mean of V; one dominant key = its V; SiLU MLP on hand-set weights;
// bit scores; the selection rule's tie order.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test-util.h"
#include "ref/reference.h"

namespace hashattn {
namespace {

TEST(Ref, AttentionClosedForms) {
  const int d = 4, n = 5;
  std::vector<float> k(n * d, 0.5f), v(n * d), q(d, 1.f);
  for (int t = 0; t < n; t++)
    for (int j = 0; j < d; j++) v[t * d + j] = (float)(t + j);
  attn_decode_params p;
  p.q = q.data();
  p.kv = {k.data(), v.data(), dtype::f32, n, 1, d, d, 0};
  p.n_head = 1;
  p.scale = 1.f;
  std::vector<double> out(d);
  ref::attn_decode_ref(p, out.data());
  for (int j = 0; j < d; j++) EXPECT_NEAR(out[j], 2.0 + j, 1e-12);  // mean over t of t + j
  k[3 * d] = 1000.f;                                                 // token 3 dominates
  ref::attn_decode_ref(p, out.data());
  for (int j = 0; j < d; j++) EXPECT_NEAR(out[j], 3.0 + j, 1e-12);
}

TEST(Ref, MlpAndCodes) {
  // 2-layer MLP, 1 encoder, in 2, hidden 2, bits 16: y = W1^T silu(W0^T x + b0) + b1.
  std::vector<float> w0 = {1, 0, 0, 1}, b0 = {0, -1}, w1(2 * 16, 0.f), b1(16, 0.f);
  for (int j = 0; j < 16; j++) w1[0 * 16 + j] = (j % 2) ? 1.f : -1.f, b1[j] = j == 15 ? 5.f : 0.f;
  hash_mlp_view m;
  m.n_enc = 1, m.in_dim = 2, m.hidden = 2, m.bits = 16, m.n_layers = 2;
  m.w[0] = w0.data(), m.b[0] = b0.data(), m.w[1] = w1.data(), m.b[1] = b1.data();
  const float x[2] = {2.f, 0.5f};
  double out[16];
  ref::hash_mlp_ref(m, 0, x, out);
  const double h0 = 2.0 / (1 + std::exp(-2.0));
  EXPECT_NEAR(out[0], -h0, 1e-12);
  EXPECT_NEAR(out[1], h0, 1e-12);
  EXPECT_NEAR(out[15], h0 + 5, 1e-12);
  // Odd outputs positive: bits 1, 3, ..., 15 set, LSB first.
  EXPECT_EQ(ref::hash_code_from_outputs(out, 16), 0xaaaaull);
  EXPECT_EQ(ref::hash_score_ref(0xaaaa, 0xaaaa, 16), 16);
  EXPECT_EQ(ref::hash_score_ref(0xaaaa, 0x5555, 16), 0);
  EXPECT_EQ(ref::hash_score_ref(0xf0f0f0f0f0f0f0f0ull, 0xf0f0f0f0f0f0f0f1ull, 64), 63);
}

TEST(Ref, SelectionRuleTies) {
  // Scores with ties: 3 middle tokens needed among equal scores -> the most recent ones.
  const double s[12] = {9, 9, 1, 5, 5, 5, 5, 7, 5, 0, 9, 9};
  budget_params b{0, 8, 2, 2};  // sinks 0,1; window 10,11; k_mid 4
  const auto sel = ref::select_rule_ref(s, 12, b);
  EXPECT_EQ(sel, (std::vector<int32_t>{0, 1, 5, 6, 7, 8, 10, 11}));
  EXPECT_TRUE(test::selection_consistent(sel, s, 12, b));
  // Another tie order is consistent too, but not the deterministic one.
  const std::vector<int32_t> other = {0, 1, 3, 4, 7, 8, 10, 11};
  EXPECT_TRUE(test::selection_consistent(other, s, 12, b));
  EXPECT_FALSE(test::same_selection(other, sel));
  EXPECT_FALSE(test::selection_consistent({0, 1, 2, 3, 4, 7, 10, 11}, s, 12, b));  // 2 (score 1) over 8 (5)
}

}  // namespace
}  // namespace hashattn
