// Fine-tuning from given weights (train_params.init): the trainer starts from them instead of its seeded
// random initialisation, layers not trained keep them, the settings line records it, and weights of another
// shape (bits, MLP, hidden size, key encoders, model shape) or input standardization are refused.
// Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>

#include "hashattn/error.h"
#include "hashattn/train.h"
#include "train/capture-fixture.h"
#include "train/trainer-core.h"

namespace hashattn {
namespace {

train_params small_params(uint64_t seed) {
  train_params p;
  p.bits = 16;
  p.mlp_layers = 2;
  p.hidden = 8;
  p.labels.sinks = 8, p.labels.window = 8, p.labels.k_fixed = 8;
  p.steps_per_window = 5, p.batch_queries = 8, p.batch_neg = 16;
  p.n_threads = 1, p.ctx = 200, p.seed = seed;
  return p;
}

TEST(TrainInit, StartsFromGivenWeightsAndKeepsUntrainedLayers) {
  const uint64_t seed = 9101;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int L = 3, H = 4, Hk = 2, d = 8;
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    SCOPED_TRACE(::testing::Message() << "mode " << (mode == gqa_mode::per_head ? "head" : "group"));
    train_params pa = small_params(seed + 1);
    pa.gqa = mode;
    hash_trainer a(L, H, Hk, d, pa);
    const layer_capture c = test::random_capture(seed, H, Hk, d, 200, 24);
    for (int l = 0; l < L; l++) a.train_layer(l, c, 0);
    const hash_weights W = a.weights();  // trained weights of another seed

    train_params pb = small_params(seed + 2);
    pb.gqa = mode;
    hash_trainer fresh(L, H, Hk, d, pb);
    ASSERT_NE(fresh.weights().data, W.data);  // the random init of this seed differs
    pb.init = &W;
    hash_trainer b(L, H, Hk, d, pb);
    EXPECT_EQ(b.weights().data, W.data);
    EXPECT_EQ(b.weights().key_per_group, W.key_per_group);
    EXPECT_TRUE(std::isfinite(b.train_layer(1, c, 0)));
    const hash_weights& B = b.weights();
    for (int l : {0, 2})
      for (size_t i = 0; i < W.layer_floats(); i++)
        ASSERT_EQ(B.data[(size_t)l * W.layer_floats() + i], W.data[(size_t)l * W.layer_floats() + i])
            << "layer " << l << " float " << i;
    bool moved = false;
    for (size_t i = 0; i < W.layer_floats(); i++) moved |= B.data[W.layer_floats() + i] != W.data[W.layer_floats() + i];
    EXPECT_TRUE(moved) << "layer 1 was not trained";
    EXPECT_NE(train_settings_string(pb).find(" init=file"), std::string::npos) << train_settings_string(pb);
    pb.init = nullptr;
    EXPECT_EQ(train_settings_string(pb).find("init="), std::string::npos) << train_settings_string(pb);
  }
}

TEST(TrainInit, RefusesAnotherShape) {
  const uint64_t seed = 77;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int L = 2, H = 4, Hk = 2, d = 8;
  const train_params base = small_params(seed);
  const hash_weights W = hash_trainer(L, H, Hk, d, base).weights();
  auto refused = [&](train_params p, int nl, int nh, int nkv, int hd, const char* what) {
    p.init = &W;
    try {
      hash_trainer t(nl, nh, nkv, hd, p);
      ADD_FAILURE() << what << ": not refused";
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  train_params p = base;
  p.bits = 32;
  refused(p, L, H, Hk, d, "bits 16");
  p = base, p.hidden = 16;
  refused(p, L, H, Hk, d, "hidden 8");
  p = base, p.mlp_layers = 3;
  refused(p, L, H, Hk, d, "mlp_layers 2");
  p = base, p.gqa = gqa_mode::per_group;
  refused(p, L, H, Hk, d, "key encoders");
  refused(base, L + 1, H, Hk, d, "n_layer 2");
  refused(base, L, H, Hk, 16, "head_dim 8");
  refused(base, L, H, 1, d, "n_head_kv 2");
  p = base, p.input_norm = true;
  refused(p, L, H, Hk, d, "input norm");
  hash_weights cut = W;
  cut.data.pop_back();
  p = base, p.init = &cut;
  EXPECT_THROW(hash_trainer(L, H, Hk, d, p), error);
  p.init = &W;  // the same shape: accepted
  EXPECT_NO_THROW(hash_trainer(L, H, Hk, d, p));
}

}  // namespace
}  // namespace hashattn
