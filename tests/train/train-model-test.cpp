// End-to-end training on the default model (label model: needs the GGUF and data/texts from
// `scripts/setup --texts`): a short run on two layers must beat SimHash with the same bits on held-out
// text (Persuasion, not trained on) in top-k recall, in both GQA modes; the same seed gives the same
// weights; the written file is bound to the model, loads into the hash policy and decodes.
#include <gtest/gtest.h>

#include <fstream>

#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"
#include "hashattn/train.h"

namespace hashattn {
namespace {

const std::string k_root = HASHATTN_SOURCE_DIR;
const std::string k_model = k_root + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string k_train = k_root + "/data/texts/northangerabbey.txt";
const std::string k_heldout = k_root + "/data/texts/persuasion.txt";

struct train_fixture : ::testing::Test {
  static void SetUpTestSuite() {
    for (const std::string& p : {k_train, k_heldout})
      if (!std::ifstream(p)) GTEST_SKIP() << p << " missing: run `scripts/setup --texts`";
    m = model::load(k_model).release();
    train = new std::vector<train_text>(load_texts(*m, {k_train}));
    heldout = new std::vector<train_text>(load_texts(*m, {k_heldout}));
  }
  static void TearDownTestSuite() {
    delete train;
    delete heldout;
    delete m;
    train = heldout = nullptr;
    m = nullptr;
  }
  void SetUp() override {
    if (!m) GTEST_SKIP() << "texts missing: run `scripts/setup --texts`";
  }
  static train_params quick(gqa_mode mode, std::vector<int> layers) {
    train_params p;
    p.gqa = mode;
    p.layers = std::move(layers);
    p.ctx = 1024;
    p.n_windows = 3;
    p.queries_per_window = 192;
    p.steps_per_window = 30;
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
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    SCOPED_TRACE(mode == gqa_mode::per_head ? "head mode" : "group mode");
    const std::vector<int> layers = {3, 17};
    train_params tp = quick(mode, layers);
    const train_result r = train_hash_encoders(*m, *train, tp);
    recall_eval_params ep;
    ep.ctx = 2048;
    ep.queries_per_window = 48;
    ep.densities = {1.0 / 16};
    ep.gqa = mode;
    ep.layers = layers;
    ep.simhash_bits = {32};
    const auto rows = eval_recall_texts(*m, *heldout, &r.weights, ep);
    for (int l : layers) {
      double learned = -1, simhash = -1, lm = -1, sm = -1;
      for (const recall_row& row : rows) {
        if (row.layer != l) continue;
        if (row.method == "learned-32") learned = row.stats.topk_recall, lm = row.stats.mass_recall;
        if (row.method == "simhash-32") simhash = row.stats.topk_recall, sm = row.stats.mass_recall;
      }
      std::printf("layer %d: top-k recall learned %.3f simhash-32 %.3f; mass recall %.3f vs %.3f\n", l, learned,
                  simhash, lm, sm);
      EXPECT_GT(learned, simhash + 0.05) << "layer " << l;
      EXPECT_GT(lm, sm) << "layer " << l;
    }
  }
}

TEST_F(train_fixture, SameSeedSameWeightsAndTheFileWorks) {
  train_params tp = quick(gqa_mode::per_head, {5});
  tp.n_windows = 1;
  tp.steps_per_window = 5;
  tp.ctx = 512;
  tp.heads = {0, 4};
  tp.val_queries = 16;
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
