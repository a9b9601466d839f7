// End-to-end training on the default model (label model: needs the GGUF and data/texts from
// `scripts/setup --texts`): a short run on two layers must beat SimHash with the same bits on held-out
// text (Persuasion, not trained on) in top-32-in-budget overlap, in both GQA modes; the same seed gives the same
// weights; the written file is bound to the model, loads into the hash policy and decodes.
#include <gtest/gtest.h>


#include "common/model-files.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"
#include "hashattn/train.h"

namespace hashattn {
namespace {

// Model and texts are loaded once, by the first test, in SetUp: a missing file or a loader error
// fails the tests instead of skipping them.
struct train_fixture : ::testing::Test {
  void SetUp() override {
    if (heldout) return;
    const std::string k_train = test::text_path("northangerabbey.txt"), k_heldout = test::text_path("persuasion.txt");
    for (const std::string& p : {test::model_path(), k_train, k_heldout}) ASSERT_NO_FATAL_FAILURE(test::require_file(p));
    if (!m) m = model::load(test::model_path()).release();
    if (!train) train = new std::vector<train_text>(load_texts(*m, {k_train}));
    heldout = new std::vector<train_text>(load_texts(*m, {k_heldout}));
  }
  static void TearDownTestSuite() {
    delete train;
    delete heldout;
    delete m;
    train = heldout = nullptr;
    m = nullptr;
  }
  static train_params quick(gqa_mode mode, std::vector<int> layers) {
    train_params p;
    p.gqa = mode;
    p.layers = std::move(layers);
    p.ctx = 1024;
    p.n_windows = 2;
    p.queries_per_window = 192;
    p.steps_per_window = 40;
    p.val_queries = 0;
    p.seed = 11;
    return p;
  }
  static model* m;
  static std::vector<train_text>* train;
  static std::vector<train_text>* heldout;
};
model* train_fixture::m = nullptr;
std::vector<train_text>* train_fixture::train = nullptr;
std::vector<train_text>* train_fixture::heldout = nullptr;

TEST_F(train_fixture, LearnedBeatsSimhashOnHeldOutText) {
  const std::vector<int> layers = {3, 17};
  // One held-out window of Persuasion (as long as the training windows: codes are not expected to
  // extrapolate to unseen positions), captured once, scores both modes.
  const int64_t ctx = 1024;
  window_capture cap(*m, ctx, layers, 0);
  cap.run(heldout->front().tokens.data() + 20000, ctx, sample_positions(5, ctx / 2, ctx, 64));
  std::vector<layer_capture> held(layers.size());
  for (size_t i = 0; i < layers.size(); i++) cap.get(layers[i], held[i]);
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    SCOPED_TRACE(mode == gqa_mode::per_head ? "head mode" : "group mode");
    const train_result r = train_hash_encoders(*m, *train, quick(mode, layers));
    label_params lp;  // density 1/16 of the middle, sinks and window 128
    lp.k_fixed = 0, lp.sinks = 128, lp.window = 128;
    for (size_t i = 0; i < layers.size(); i++) {
      const recall_stats learned = eval_recall(held[i], codes_learned(r.weights, layers[i], held[i], 0), lp, mode);
      const recall_stats simhash = eval_recall(held[i], codes_simhash(held[i], 32, 99), lp, mode);
      std::printf("%s layer %d: top-32-in-budget overlap learned %.3f simhash-32 %.3f; mass recall %.3f vs %.3f (%lld query-heads)\n",
                  mode == gqa_mode::per_head ? "head" : "group", layers[i], learned.top_overlap, simhash.top_overlap,
                  learned.mass_recall, simhash.mass_recall, (long long)learned.n);
      EXPECT_GT(learned.n, 100);
      EXPECT_GT(learned.top_overlap, simhash.top_overlap + 0.05) << "layer " << layers[i];
      EXPECT_GT(learned.mass_recall, simhash.mass_recall) << "layer " << layers[i];
    }
  }
}

TEST_F(train_fixture, SameSeedSameWeightsAndTheFileWorks) {
  train_params tp = quick(gqa_mode::per_head, {5});
  tp.n_windows = 1;
  tp.steps_per_window = 5;
  tp.ctx = 512;
  tp.heads = {0, 4};
  const train_result a = train_hash_encoders(*m, *train, tp);
  const train_result b = train_hash_encoders(*m, *train, tp);
  ASSERT_EQ(a.weights.data.size(), b.weights.data.size());
  EXPECT_TRUE(a.weights.data == b.weights.data) << "same seed, different weights";
  tp.seed = 12;
  const train_result c = train_hash_encoders(*m, *train, tp);
  EXPECT_FALSE(a.weights.data == c.weights.data);

  const model_hparams& hp = m->hparams();
  const hash_binding bind = hash_binding_for(m->file(), hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim);
  hash_train_info info;
  info.texts = a.texts;
  info.settings = train_settings_string(tp);
  const std::string path = ::testing::TempDir() + "train-model-test.gguf";
  hash_file_save(path, a.weights, bind, info);
  hash_file_contents loaded = hash_file_load(path, &bind, 32);
  std::remove(path.c_str());
  EXPECT_TRUE(loaded.weights.data == a.weights.data);
  EXPECT_EQ(loaded.binding.digest, model_layout_digest(m->file()));

  policy_config pc;
  pc.name = "hash";
  pc.weights = std::make_shared<hash_weights>(std::move(loaded.weights));
  pc.budget.density = 1.0 / 8;
  pc.budget.sinks = 4;
  pc.budget.window = 4;
  session_params sp;
  sp.n_ctx = 256;
  session s(*m, sp, make_policy(pc));
  s.eval(train->front().tokens.data(), 200);
  for (int i = 0; i < 3; i++) {
    const int32_t tok = train->front().tokens[200 + i];
    const float* lg = s.eval(&tok, 1);
    EXPECT_TRUE(std::isfinite(lg[0]));
  }
}

}  // namespace
}  // namespace hashattn
