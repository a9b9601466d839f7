// Tests the budget and the selection split (core.h) on hand-computed cases, and the dense policy.
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
  EXPECT_EQ(budget_tokens(b, 8192), 256);   // exactly sinks + window
  EXPECT_EQ(budget_tokens(b, 8191), 8191);  // floor(255.97) < sinks + window: below the floor, everything
  EXPECT_EQ(budget_tokens(b, 200), 200);
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
  b.sinks = 200;
  b.window = 300;
  EXPECT_EQ(budget_tokens(b, 100000), 500);
  b.sinks = 400;  // a fixed budget below sinks + window can never select
  EXPECT_THROW(budget_tokens(b, 100000), error);
  b.sinks = 0;
  b.window = 0;
  b.density = 1;
  b.count = 0;
  EXPECT_EQ(budget_tokens(b, 12345), 12345);
}

// The split's fields, computed by hand.
TEST(Budget, SplitByHand) {
  budget_params b;
  b.density = 0.1;
  b.sinks = 10;
  b.window = 20;
  select_split s = select_split_for(b, 1000);  // total 100 = 10 sinks + 70 middle + 20 window
  EXPECT_EQ(s.total, 100);
  EXPECT_EQ(s.n_sinks, 10);
  EXPECT_EQ(s.lo, 10);
  EXPECT_EQ(s.hi, 980);
  EXPECT_EQ(s.n_window, 20);
  EXPECT_EQ(s.k_mid, 70);
  EXPECT_FALSE(s.all());
  s = select_split_for(b, 300);  // floor(30) = sinks + window: no middle token
  EXPECT_EQ(s.total, 30);
  EXPECT_EQ(s.k_mid, 0);
  EXPECT_EQ(s.lo, 10);
  EXPECT_EQ(s.hi, 280);
  s = select_split_for(b, 299);  // floor(29.9) = 29 < 30: everything, the middle [10, 279) whole
  EXPECT_TRUE(s.all());
  EXPECT_EQ(s.total, 299);
  EXPECT_EQ(s.lo, 10);
  EXPECT_EQ(s.hi, 279);
  EXPECT_EQ(s.k_mid, 269);
  s = select_split_for(b, 25);  // shorter than sinks + window: sinks 10, window the other 15
  EXPECT_EQ(s.total, 25);
  EXPECT_EQ(s.n_sinks, 10);
  EXPECT_EQ(s.n_window, 15);
  EXPECT_EQ(s.k_mid, 0);
  s = select_split_for(b, 0);
  EXPECT_EQ(s.total, 0);
  b.count = 64;  // a fixed count: 10 + 34 + 20 of 1000
  s = select_split_for(b, 1000);
  EXPECT_EQ(s.total, 64);
  EXPECT_EQ(s.k_mid, 34);
  s = select_split_for(b, 64);  // the count covers the context
  EXPECT_TRUE(s.all());
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
