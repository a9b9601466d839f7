// Tests budget_tokens (density / count, sinks + window floor, clamping) and the dense policy.
#include <gtest/gtest.h>

#include "common/test-util.h"
#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn {
namespace {

TEST(Budget, DensityAndCount) {
  budget_params b;
  b.density = 1.0 / 32;
  b.sinks = 128;
  b.window = 128;
  EXPECT_EQ(budget_tokens(b, 65536), 2048);
  EXPECT_EQ(budget_tokens(b, 100000), 3125);
  EXPECT_EQ(budget_tokens(b, 8191), 256);  // floor(255.97) raised to sinks + window
  EXPECT_EQ(budget_tokens(b, 200), 200);   // clamped to n
  EXPECT_EQ(budget_tokens(b, 1), 1);
  EXPECT_EQ(budget_tokens(b, 0), 0);
  b.density = 0.1;
  b.sinks = 0;
  b.window = 0;
  EXPECT_EQ(budget_tokens(b, 10), 1);  // 0.1 * 10 is exactly 1 despite rounding
  EXPECT_EQ(budget_tokens(b, 30), 3);
  b.count = 500;
  EXPECT_EQ(budget_tokens(b, 100000), 500);
  EXPECT_EQ(budget_tokens(b, 300), 300);
  b.sinks = 400;
  b.window = 200;
  EXPECT_EQ(budget_tokens(b, 100000), 600);
  b.density = 1;
  b.count = 0;
  EXPECT_EQ(budget_tokens(b, 12345), 12345);
}

TEST(Budget, BadBudgetThrows) {
  budget_params b;
  b.density = 0;
  EXPECT_THROW(budget_tokens(b, 10), error);
  b.density = 1.5;
  EXPECT_THROW(budget_tokens(b, 10), error);
  b.density = 0.5;
  b.sinks = -1;
  EXPECT_THROW(budget_tokens(b, 10), error);
  b.sinks = 0;
  b.count = -3;
  EXPECT_THROW(budget_tokens(b, 10), error);
}

TEST(DensePolicy, ListsCoverEverything) {
  auto p = make_dense_policy();
  EXPECT_TRUE(p->is_dense());
  EXPECT_EQ(p->name(), "dense");
  EXPECT_EQ(p->aux_bits_per_token_head(), 0);
  p->begin(2, {6, 2, 8}, 100);
  kv_view kv;
  kv.n_tok = 37;
  kv.n_head_kv = 2;
  kv.head_dim = 8;
  index_lists l;
  std::vector<float> q(48, 1.f);
  p->select(0, q.data(), kv, l);
  ASSERT_EQ(l.n_lists(), 2);
  EXPECT_TRUE(l.per_group);
  for (int r = 0; r < 2; r++) {
    ASSERT_EQ(l.count[r], 37);
    for (int i = 0; i < 37; i++) EXPECT_EQ(l.idx[r * l.stride + i], i);
  }
}

}  // namespace
}  // namespace hashattn
